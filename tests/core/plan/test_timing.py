"""The machine timed once per command: a throwaway trainer per model and views, each batch timed once."""
import pytest

from core.plan import auto
from core.plan.recipe import recipe
from core.plan.timing import Throughput, Timing, passes
from core.trainer.loop import Trainer


def test_a_trainer_whose_instance_head_is_as_wide_as_the_run_is_timed_once_per_batch(monkeypatch):
    """The throwaway trainer holds the run's image count, not one batch: the instance head's width is part of
    a step's cost (a head one batch wide read ~1.2x the run's images a second). A second question about the
    same config is answered from memory; another batch is timed on the same trainer; another side is not
    the same trainer."""
    timed, built = [], []
    real_init = Trainer.__init__

    def init(self, *args, **kwargs):
        built.append(args[0].model.image_size)
        real_init(self, *args, **kwargs)

    def time_steps(self, steps, batch=None):
        timed.append((self.objective.head.out_features, batch))
        return 100.0

    monkeypatch.setattr(Trainer, "__init__", init)
    monkeypatch.setattr(Trainer, "time_steps", time_steps)
    facts = auto.Facts(28, 300, 1, True, "cpu", 1.0)
    config = recipe(auto._base(facts, 28, 7, 0, False), "instance").with_overrides(batch_size=32, device="cpu")
    timing = Timing(n_train=300, n_eval=375, channels=1)
    first = timing.of(config)
    assert first.batch == 32 and first.images_per_s == 100.0 and first.eval_s > 0
    assert timing.of(config) is first and timed == [(300, 32)] and built == [28]
    timing.of(config.with_overrides(batch_size=64))
    assert timed == [(300, 32), (300, 64)] and built == [28]  # the same trainer, another batch
    timing.of(config.with_overrides(augment={"global_scale": (0.3, 1.0), "flip_p": 0.5}))
    assert len(timed) == 2  # crops and flips cost the same: not timed again


def test_the_passes_are_what_the_minutes_leave_once_the_evaluations_are_paid():
    timed = Throughput(100.0, eval_s=10.0, batch=128)
    assert passes(5.0, 1000, timed) == pytest.approx((300 - 90) * 100.0 / 1000)  # nine evaluations of 10 s
