"""Stage 2: the supervised recipe, starting from a pretrained backbone."""

import pytest
import torch

from core import events as ev
from core.model.backbone import interpolate_positions
from core.plan.recipe import FINETUNE, recipe
from core.trainer.checkpoint import Checkpoint, CheckpointError
from core.trainer.loop import Trainer
from tests.core.conftest import Recorder, make_splits


@pytest.fixture
def pretrained(tiny_config, toy_data, tmp_path):
    config = tiny_config.with_overrides(epochs=2, augment={"cutmix_alpha": 0.0})
    Trainer(config, toy_data, out_dir=tmp_path / "pre").run(lambda e: None)
    return config, tmp_path / "pre" / "last.pt"


def test_finetuning_starts_from_the_pretrained_backbone_at_a_new_resolution(pretrained, toy_data, tmp_path):
    config, path = pretrained
    saved = Checkpoint.load(path).backbone
    ft = recipe(config, stage=FINETUNE, init_from=str(path), resolution=28, epochs=3).with_overrides(eval_every=1,
                                                                                                snapshot_every=1)
    trainer = Trainer(ft, toy_data, out_dir=tmp_path / "ft")
    state = trainer.backbone.state_dict()
    assert torch.equal(state["vit.to_patch_embedding.2.weight"], saved["vit.to_patch_embedding.2.weight"])
    # 2x2 patch grid at 14 px -> 4x4 at 28 px, CLS row kept
    expected = interpolate_positions(saved["vit.pos_embedding"], 1, (2, 2), (4, 4))
    assert state["vit.pos_embedding"].shape == (1 + 16, config.model.dim)
    assert torch.allclose(state["vit.pos_embedding"], expected)
    assert not any(key.startswith("head") for key in state)  # the instance head stays behind

    rec = Recorder()
    done = trainer.run(rec)
    assert rec.of(ev.RunStarted)[0].objective == "supervised"
    assert rec.of(ev.RunStarted)[0].init_from == str(path)
    tops = [e.test_top1 for e in rec.of(ev.EpochMetrics)]
    assert all(t is not None and 0 <= t <= 1 for t in tops)
    assert done.reason == "completed" and done.test_top1 == tops[-1]
    confusion = torch.tensor(rec.of(ev.EpochMetrics)[-1].confusion)  # rows: true class
    assert confusion.shape == (4, 4) and confusion.sum() == len(toy_data.test)
    assert confusion.sum(dim=1).tolist() == torch.bincount(toy_data.test.labels).tolist()
    assert confusion.diag().sum().item() / len(toy_data.test) == pytest.approx(tops[-1])
    snapshot = rec.of(ev.EmbeddingSnapshot)[-1]
    assert snapshot.head["head.weight"].shape == (4, config.model.dim)  # the class head travels with it
    assert Checkpoint.load(done.checkpoint).config.init_from == str(path)


def test_a_supervised_run_learns_the_labels(tiny_config):
    data = make_splits(n_train=64, n_test=40)
    config = recipe(tiny_config, "supervised", epochs=30).with_overrides(eval_every=30, lr=3e-3)
    done = Trainer(config, data).run(lambda e: None)
    assert done.test_top1 > 0.8  # 4 classes: chance is 0.25


def test_pretraining_objectives_report_no_class_accuracy(tiny_config, toy_data):
    rec = Recorder()
    Trainer(tiny_config.with_overrides(epochs=1, snapshot_every=1), toy_data).run(rec)
    assert rec.of(ev.EpochMetrics)[0].test_top1 is None and rec.of(ev.Finished)[0].test_top1 is None
    assert rec.of(ev.EpochMetrics)[0].confusion is None and rec.of(ev.EmbeddingSnapshot)[0].head is None


@pytest.mark.parametrize("change, problem", [
    ({"dataset": "other"}, "pretrained on 'toy'"),
    ({"model": {"dim": 24, "dim_head": 12}}, "model.dim"),
])
def test_finetuning_refuses_an_incompatible_checkpoint(pretrained, toy_data, change, problem):
    config, path = pretrained
    ft = recipe(config.with_overrides(**change), stage=FINETUNE, init_from=str(path))
    with pytest.raises(CheckpointError, match=problem):
        Trainer(ft, toy_data)


def test_finetuning_refuses_other_data(pretrained):
    config, path = pretrained
    other = make_splits(seed=1)
    with pytest.raises(CheckpointError, match="other data"):
        Trainer(recipe(config, stage=FINETUNE, init_from=str(path)), other)


def test_contrastive_pretraining_runs_and_learns(tiny_config, toy_data):
    config = tiny_config.with_overrides(objective="contrastive", epochs=3, projection_dim=8,
                                        augment={"n_local": 0, "cutmix_alpha": 0.0})
    rec = Recorder()
    done = Trainer(config, toy_data).run(rec)
    losses = [e.loss for e in rec.of(ev.EpochMetrics)]
    assert done.reason == "completed" and losses[-1] < losses[0]


def test_a_finetuning_runs_random_init_baseline_is_the_random_encoder_not_the_pretrained_one(pretrained, toy_data):
    config, path = pretrained
    ft = recipe(config, stage=FINETUNE, init_from=str(path), epochs=1)
    scratch = ft.with_overrides(init_from="")
    finetuned, from_scratch = Trainer(ft, toy_data), Trainer(scratch, toy_data)
    before = {k: v.clone() for k, v in finetuned.backbone.state_dict().items()}
    assert finetuned._baselines().random_init == from_scratch._baselines().random_init  # the same seeded encoder
    after = finetuned.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the pretrained weights are put back
    assert not torch.equal(finetuned.evaluate().train_embeddings, from_scratch.evaluate().train_embeddings)
