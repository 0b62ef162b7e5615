"""A time budget in minutes -> a number of epochs, from costs this run measured on this machine.

A person thinks in minutes, a schedule in steps. A run with `TrainConfig.minutes > 0` trains a few
steps, times them and one evaluation, and then fixes its epochs here so that the steps, the
evaluations and the embedding snapshots still to come end on time; its warmup + cosine schedule is
then built for that length (core.trainer). Pure arithmetic: tests drive it with made-up costs.
"""
from __future__ import annotations

import dataclasses
from collections import deque
from dataclasses import dataclass

from core.config import TrainConfig

# Timed before the budget is fixed (the first window, which allocates, is not counted): at least this
# many steps and this many seconds of them, so that a few fast or slow steps do not decide the length.
WARMUP_STEPS = 8
WARMUP_SECONDS = 5.0
PROVISIONAL_STEPS = 100_000  # a budgeted run's length until it is fixed: more than any timing takes
# After each epoch a budgeted run checks its fixed length against the recent step time and moves it when
# the end would be off by more than this share (or two epochs): the first seconds can run faster
# (a CPU's turbo clock) than the rest. "Recent" is at least RECENT_STEPS steps and RECENT_SHARE of the
# budget's seconds: on 2 shared cores the rate swung between 185 and 288 images a second within one run,
# and a window of 100 steps (~12 s) followed each swing, moving the length 23 times in 5 minutes (each
# move rebuilds the cosine schedule).
RECENT_STEPS = 100
RECENT_SHARE = 0.1
CORRECTION_SHARE = 0.03


@dataclass(frozen=True)
class Costs:
    """Seconds one of each costs on this machine, as the run measured them."""

    step_s: float
    eval_s: float  # a kNN evaluation (train + test embeddings and the vote)
    snapshot_s: float  # an embedding snapshot without an evaluation (train embeddings only)

    def __post_init__(self) -> None:
        if min(self.step_s, self.eval_s, self.snapshot_s) < 0 or self.step_s == 0:
            raise ValueError(f"costs must be positive, got {self}")


class StepTimer:
    """Adds up the time of training steps read back in windows; the first window, which allocates and
    warms up, is not counted. The step time is known once WARMUP_STEPS and WARMUP_SECONDS are timed."""

    def __init__(self, recent_s: float = 0.0):
        """`recent_s`: the least seconds the recent step time spans (with at least RECENT_STEPS steps)."""
        self._seconds, self._steps, self._first = 0.0, 0, True
        self._recent_s = recent_s
        self._recent: deque[tuple[float, int]] = deque()  # the latest windows: RECENT_STEPS and recent_s or more

    def add(self, seconds: float, steps: int) -> float | None:
        """One window's time; returns the seconds per step once enough are timed, else None."""
        if self._first:
            self._first = False
            return None
        self._seconds, self._steps = self._seconds + seconds, self._steps + steps
        self._recent.append((seconds, steps))
        while (sum(n for _, n in self._recent) - self._recent[0][1] >= RECENT_STEPS
               and sum(t for t, _ in self._recent) - self._recent[0][0] >= self._recent_s):
            self._recent.popleft()
        enough = self._steps >= WARMUP_STEPS and self._seconds >= WARMUP_SECONDS
        return self._seconds / self._steps if enough else None

    @property
    def recent_step_s(self) -> float | None:
        """Seconds per step over the latest RECENT_STEPS steps and `recent_s` seconds: a machine that slows
        down (a CPU leaving its turbo clock, another job) shows here first."""
        steps = sum(n for _, n in self._recent)
        return sum(s for s, _ in self._recent) / steps if steps else None


def _end_cost(epoch: int, last: bool, costs: Costs, eval_every: int, snapshot_every: int) -> float:
    """What the end of `epoch` costs, by core.trainer's rule: the last epoch and every `eval_every`-th
    evaluate; other `snapshot_every`-th epochs embed the training set only (an evaluation's embeddings
    serve a snapshot at the same epoch)."""
    if last or (eval_every and epoch % eval_every == 0):
        return costs.eval_s
    return costs.snapshot_s if snapshot_every and epoch % snapshot_every == 0 else 0.0


def _open_epoch(done_steps: int, steps_per_epoch: int) -> int:
    """The epoch holding the next step, or the one whose steps just ended: its end is still to come."""
    return max(1, -(-done_steps // steps_per_epoch))


def fit_epochs(seconds: float, costs: Costs, steps_per_epoch: int, done_steps: int = 0, eval_every: int = 0,
               snapshot_every: int = 0) -> int:
    """The most epochs whose remaining steps and epoch ends fit in `seconds`, `done_steps` into the run;
    never fewer than the epoch already under way."""
    first = _open_epoch(done_steps, steps_per_epoch)
    spent, best, epoch = 0.0, first, first
    while True:
        spent += (epoch * steps_per_epoch - max(done_steps, (epoch - 1) * steps_per_epoch)) * costs.step_s
        if spent + _end_cost(epoch, True, costs, eval_every, snapshot_every) > seconds:
            return best
        best = epoch
        spent += _end_cost(epoch, False, costs, eval_every, snapshot_every)
        epoch += 1


def seconds_for(epochs: int, costs: Costs, steps_per_epoch: int, done_steps: int = 0, eval_every: int = 0,
                snapshot_every: int = 0) -> float:
    """Seconds from now to the end of a run of `epochs`, `done_steps` into it (fit_epochs' inverse)."""
    first = _open_epoch(done_steps, steps_per_epoch)
    steps = max(0, epochs * steps_per_epoch - done_steps)
    ends = sum(_end_cost(e, e == epochs, costs, eval_every, snapshot_every) for e in range(first, epochs + 1))
    return steps * costs.step_s + ends


def eval_every_for(planned_epochs: int, eval_every: int, epochs: int) -> int:
    """The evaluation interval once a budget fixed `epochs` where the recipe planned `planned_epochs` at
    `eval_every`: a shorter run keeps the evaluations that were planned (a recipe's length is only its
    estimate of what the clock allows, and the watchdog needs points on the curve to read); a longer one
    keeps the interval."""
    if not eval_every or epochs >= planned_epochs:
        return eval_every
    return max(1, round(eval_every * epochs / planned_epochs))


def refit(seconds: float, costs: Costs, steps_per_epoch: int, done_steps: int, planned: int, eval_every: int,
          snapshot_every: int, least: int, first: bool) -> tuple[int, int]:
    """(epochs, eval_every) for a run of `planned` epochs evaluated every `eval_every`, `done_steps` into it,
    with `seconds` of its budget left, never fewer than `least` epochs. The first fit fixes the length, and
    when it is shorter than planned keeps the planned evaluations (eval_every_for) and pays for them; a
    later one moves the length only when that is worth_correcting."""
    def fit(every: int) -> int:
        return max(least, fit_epochs(seconds, costs, steps_per_epoch, done_steps, every, snapshot_every))

    fitted = fit(eval_every)
    if first and (shorter := eval_every_for(planned, eval_every, fitted)) != eval_every:
        eval_every, fitted = shorter, fit(shorter)
    return (fitted if first or worth_correcting(planned, fitted) else planned), eval_every


def worth_correcting(planned: int, fitted: int) -> bool:
    """Whether a new fit differs enough from the planned length to move it mid-run."""
    return abs(fitted - planned) >= max(2, CORRECTION_SHARE * planned)


def describe(minutes: float, epochs: int, images_per_s: float, was: int | None = None) -> str:
    """What a run prints once its budget is fixed, e.g. '5 min budget: ~46 epochs at 410 img/s', and when
    it moves it ('... (was 52)')."""
    moved = f" (was {was})" if was is not None else ""
    return f"{minutes_words(minutes)} budget: ~{epochs} epochs at {images_per_s:,.0f} img/s{moved}"


def resumed(config: TrainConfig, saved: TrainConfig) -> TrainConfig:
    """A budgeted `config` resuming a run whose budget was already turned into epochs (`saved`'s): it trains
    what is left of them, and its length is no longer corrected (the budget's clock started in another
    process)."""
    return dataclasses.replace(config, epochs=saved.epochs, minutes=0.0, warmup_epochs=saved.warmup_epochs)


def minutes_words(minutes: float) -> str:
    """A length a person reads: '5 min', '2.9 min', '22 s' (a fitted stage's share is no round number)."""
    if minutes < 1:
        return f"{round(minutes * 60)} s"
    return f"{minutes:.1f}".removesuffix(".0") + " min"
