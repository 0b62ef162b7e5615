"""The best-model pipeline's plan (core/stages.py): what each stage trains, and what follows pretraining."""
import dataclasses

from core.plan import stages
from core.plan.recipe import PRETRAIN_SHARE
from core.trainer.handover import BEST
from core.trainer.loop import Trainer


def test_pretraining_takes_its_share_of_the_minutes_and_hands_over_scratch_takes_them_all(tiny_config):
    first = stages.pretraining(tiny_config, "instance", 5.0)
    assert first.objective == "instance" and first.stop_when_not_helping and first.minutes == 5.0 * PRETRAIN_SHARE
    scratch = stages.from_scratch(tiny_config, 5.0)
    assert scratch.objective == "supervised" and not scratch.init_from and scratch.minutes == 5.0


def best_checkpoint(config, data, folder, epoch):
    trainer = Trainer(config, data)
    dataclasses.replace(trainer.checkpoint(), epoch=epoch, resume=None).save(folder / BEST)


def test_after_pretraining_fine_tune_its_best_held_out_epoch(tiny_config, toy_data, tmp_path):
    first = stages.pretraining(tiny_config, "instance", 1.0)
    best_checkpoint(first, toy_data, tmp_path, epoch=3)
    then = stages.after_pretraining(first, tiny_config, tmp_path, 0.5)
    assert (then.stage, then.best_epoch) == (stages.FINETUNE_STAGE, 3) and "epoch 3" in then.words
    assert then.config.objective == "supervised" and then.config.init_from == str(tmp_path / BEST)
    assert then.config.minutes == 0.5 and not then.config.stop_when_not_helping


def test_after_pretraining_that_never_beat_the_random_init_train_from_scratch(tiny_config, toy_data, tmp_path):
    first = stages.pretraining(tiny_config, "instance", 1.0)
    best_checkpoint(first, toy_data, tmp_path, epoch=0)
    then = stages.after_pretraining(first, tiny_config, tmp_path, 0.5)
    assert (then.stage, then.best_epoch, then.config.init_from) == (stages.SUPERVISED, 0, "")
    assert "no pretraining epoch beat the random-init encoder" in then.words
    # a pretraining run that left no best backbone (stopped before its baselines) is treated the same
    assert stages.after_pretraining(first, tiny_config, tmp_path / "none", 0.5).stage == stages.SUPERVISED
