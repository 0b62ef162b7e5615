"""The `paper` preset end to end on the Flowers-102 format fixture: pretraining at 112 px, then
fine-tuning at 224 px from its checkpoint, a couple of steps each (DeiT-Tiny, real sizes)."""
import pytest

from core import events as ev
from core.data.sources import load_dataset
from core.plan.presets import preset
from core.plan.recipe import FINETUNE, recipe
from core.trainer.checkpoint import Checkpoint
from core.trainer.loop import Trainer
from tests.core.data.test_sources import write_flowers_tree

pytestmark = pytest.mark.slow


def test_paper_recipe_chains_stage_one_into_stage_two(tmp_path):
    write_flowers_tree(tmp_path)
    stage1 = preset("paper").with_overrides(epochs=1, batch_size=4, warmup_epochs=0, eval_every=1,
                                            snapshot_every=0, checkpoint_every=1)
    data = load_dataset("flowers102", root=tmp_path, size=stage1.data_size)
    assert data.train.images.shape[1:] == (3, 144, 144) and len(data.train) == 8  # train + val
    first = Trainer(stage1, data, out_dir=tmp_path / "stage1").run(lambda e: None)
    assert first.reason == "completed" and first.step == 2
    checkpoint = Checkpoint.load(first.checkpoint)
    assert checkpoint.objective["head.weight"].shape == (8, 192)  # one instance per training image

    stage2 = recipe(checkpoint.config, stage=FINETUNE, init_from=first.checkpoint, resolution=224, epochs=1)
    data2 = load_dataset("flowers102", root=tmp_path, size=stage2.data_size)
    assert data2.train.images.shape[-1] == 256
    events = []
    second = Trainer(stage2, data2, out_dir=tmp_path / "stage2").run(events.append)
    assert second.reason == "completed" and second.test_top1 is not None
    assert next(e for e in events if isinstance(e, ev.RunStarted)).init_from == first.checkpoint
    finetuned = Checkpoint.load(second.checkpoint)
    assert finetuned.backbone["vit.pos_embedding"].shape == (1 + 14 * 14, 192)  # 7x7 grid -> 14x14
    assert finetuned.objective["head.weight"].shape[0] == len(data2.class_names)
