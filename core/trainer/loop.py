"""The training loop: views -> backbone -> objective, with a stop event, a NaN guard and events.

One loop for both stages: pretraining (any objective in core.objectives) and fine-tuning, which is
a supervised run whose backbone starts from a pretrained checkpoint (`config.init_from`) with its
position embedding interpolated to the new resolution.

`Trainer.run(emit, stop)` runs in the caller's thread; `Trainer.start(emit, stop)` runs it in a
background thread. Events are plain records from core.events; the trainer knows no listener.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from core import events as ev
from core.config import TrainConfig
from core.data.augment import ViewMaker, mix
from core.data.labels import training_index
from core.data.splits import DataSplits
from core.model.backbone import build_backbone
from core.objectives import build_objective, objective_class
from core.runs.folder import StageFolder
from core.trainer import budget
from core.trainer.checkpoint import Checkpoint, ResumeState
from core.trainer.distributed import Dist, Joint, init_from_env, resolve_device
from core.trainer.handover import Best
from core.trainer.monitor import Evaluation, Monitor
from core.trainer.sampling import Sampling
from core.trainer.schedule import warmup_cosine, with_epochs

Emit = Callable[[ev.Event], None]


class Trainer:
    def __init__(self, config: TrainConfig, data: DataSplits, out_dir: str | Path | None = None,
                 resume_from: str | Path | None = None, clock: Callable[[], float] = time.perf_counter,
                 init_backbone: dict[str, torch.Tensor] | None = None):
        """`out_dir`: the stage folder its checkpoints go to (core/runs/folder.py; None: none are saved).
        `resume_from`: a checkpoint to continue. `init_backbone`: a fine-tuning run's pretrained weights in memory
        (a pipeline hands over its pretraining's best backbone so), instead of loading `config.init_from`."""
        self.config = config
        self.data = data
        self.folder = StageFolder(out_dir) if out_dir else None
        self.device = resolve_device(config.device)
        self.dist: Dist = init_from_env(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        # Few labels (config.labels_per_class): the run trains on the labelled images unless its
        # objective is label-free and may see every image (every kNN votes with them only: core/monitor.py).
        train_index = training_index(config, data.train.labels, objective_class(config.objective).predicts_classes)
        self.n_train = len(train_index)
        every = self.n_train == len(data.train)  # then no copy: Flowers' images at 144 px are 127 MB
        self.train_images = (data.train.images if every else data.train.images[train_index]).to(self.device)
        self.train_labels = (data.train.labels if every else data.train.labels[train_index]).to(self.device)
        self.n_classes = len(data.class_names)

        torch.manual_seed(config.seed)  # identical initial weights on every rank and every run
        self.backbone = build_backbone(config.model, data.train.channels).to(self.device)
        counts = torch.bincount(self.train_labels.cpu(), minlength=self.n_classes)
        self.objective = build_objective(config, self.n_train, self.n_classes, counts).to(self.device)
        # A fine-tuning run's random-init baseline is this seeded encoder, not the pretrained one it loads.
        self._random_init: dict[str, torch.Tensor] | None = None
        if config.init_from and resume_from is None:
            self._random_init = {k: v.clone() for k, v in self.backbone.state_dict().items()}
            self.backbone.load_pretrained(init_backbone if init_backbone is not None
                                          else Checkpoint.load(config.init_from).pretrained_weights(config, data))
        self.monitor = Monitor(config, data, self.backbone, self.objective,
                               self.train_images if every else data.train.images.to(self.device), clock)
        if config.stop_when_not_helping and self.dist.enabled:
            raise ValueError("stop_when_not_helping is read on one process: train it without torchrun")
        self.module: nn.Module = Joint(self.backbone, self.objective)
        if self.dist.enabled:
            self.module = DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.forward = torch.compile(self.module) if config.compile else self.module
        self.sync_every = config.sync_every or (1 if self.device.type == "cpu" else 16)
        self.optimizer = torch.optim.AdamW(self.module.parameters(), lr=config.lr,
                                           weight_decay=config.weight_decay,
                                           fused=self.device.type == "cuda")
        self.views = ViewMaker(config.augment)
        self.steps_per_epoch = math.ceil(self.n_train / config.batch_size)
        # A budgeted run's provisional length is never reached: it is fixed after a few seconds of steps
        # (until then only the warmup's ramp, which does not depend on the length, sets the lr).
        self._schedule(max(config.epochs, math.ceil(budget.PROVISIONAL_STEPS / self.steps_per_epoch))
                       if config.minutes else config.epochs)
        self._timer = budget.StepTimer(budget.RECENT_SHARE * config.minutes * 60)  # a budgeted run's step time
        self._budget_minutes = config.minutes  # kept once the length is fixed: later epochs check it
        self.sampling = Sampling(config.seed, self.dist.rank, self.device)
        self.step = 0
        self.last_checkpoint: str | None = None
        if resume_from is not None:
            self._restore(resume_from)

    @property
    def clock(self) -> Callable[[], float]:
        """The run's clock, the monitor's too (it times the evaluations): tests script it for a budgeted run."""
        return self.monitor.clock

    @clock.setter
    def clock(self, clock: Callable[[], float]) -> None:
        self.monitor.clock = clock

    def _schedule(self, epochs: int) -> None:
        """Warmup + cosine, per step, for a run of `epochs`."""
        self.total_steps = self.steps_per_epoch * epochs
        self.lrs = warmup_cosine(self.config.lr, self.config.min_lr, self.total_steps,
                                 round(self.config.warmup_epochs * self.steps_per_epoch))

    # -- state -------------------------------------------------------------------------------
    def checkpoint(self) -> Checkpoint:
        """The run as it stands, resumable."""
        handover = self.monitor.handover.state() if self.monitor.handover is not None else None
        resume = ResumeState(optimizer=self.optimizer.state_dict(), torch_rng=torch.get_rng_state(),
                             handover=handover, **self.sampling.state())
        return Checkpoint(
            config=self.config, backbone=self.backbone.state_dict(), objective=self.objective.state_dict(),
            step=self.step, epoch=self.step // self.steps_per_epoch, data_fingerprint=self.data.fingerprint,
            class_names=self.data.class_names, channels=self.data.train.channels,
            baselines=dataclasses.astuple(self.monitor.baselines) if self.monitor.baselines else None,
            resume=resume)

    def _save_best(self, best: Best) -> None:
        """A hand-over run's backbone at its best held-out epoch, weights only, beside its last checkpoint: the
        start of a fine-tuning that resumes in another process."""
        if self.folder is None or not self.dist.is_main:
            return
        dataclasses.replace(self.checkpoint(), backbone=best.backbone, objective=best.objective,
                            epoch=best.epoch, step=best.epoch * self.steps_per_epoch,
                            resume=None).save(self.folder.best)

    def _restore(self, path: str | Path) -> None:
        checkpoint = Checkpoint.load(path, map_location=self.device)
        checkpoint.check_matches(self.data)
        if self.config.minutes and not checkpoint.config.minutes:
            self.config = budget.resumed(self.config, checkpoint.config)
            self._budget_minutes = 0.0
            self._schedule(self.config.epochs)
        checkpoint.check_resumable(self.config)
        state = checkpoint.resume
        self.backbone.load_state_dict(checkpoint.backbone)
        self.objective.load_state_dict(checkpoint.objective)
        self.optimizer.load_state_dict(state.optimizer)
        self.step = checkpoint.step
        if self.step > self.total_steps:
            raise ValueError(f"checkpoint is at step {self.step}, beyond this run's {self.total_steps} steps")
        self.sampling.restore(state.generator, state.order_generator, state.epoch_order, state.order_epoch,
                              self.step)
        torch.set_rng_state(state.torch_rng.cpu())
        if checkpoint.baselines:
            self.monitor.baselines = ev.Baselines(*checkpoint.baselines)
        if state.handover is not None and self.monitor.handover is not None:
            self.monitor.handover.restore(state.handover)
        self.last_checkpoint = str(path)

    def save(self, emit: Emit) -> str | None:
        if self.folder is None or not self.dist.is_main:
            return None
        path = self.checkpoint().save(self.folder.last)
        self.last_checkpoint = str(path)
        emit(ev.CheckpointSaved(str(path), self.step // self.steps_per_epoch, self.step))
        return self.last_checkpoint

    # -- measurement -------------------------------------------------------------------------
    def evaluate(self) -> Evaluation:
        """The kNN monitor (and the class head, when the objective has one) on the test split."""
        return self.monitor.evaluate()

    def _baselines(self) -> ev.Baselines:
        """Raw pixels' and the random-init encoder's kNN (a fine-tuning run's: the seeded encoder it replaced)."""
        return self.monitor.measure_baselines(self._random_init)

    # -- a budget in minutes -----------------------------------------------------------------
    def _time_budget(self, emit: Emit, started: float, seconds: float, steps: int) -> None:
        """Called with each read-back window's step time in a budgeted run; once WARMUP_STEPS and
        WARMUP_SECONDS are timed (the first window, which allocates, not counted; epoch ends never are),
        fix the length so that the run ends `minutes` after `started` (core/budget.py)."""
        step_s = self._timer.add(seconds, steps)
        if step_s is not None and self.config.minutes:
            self._fit_length(emit, started, step_s, least=1)

    def _correct_budget(self, emit: Emit, started: float, epoch: int) -> None:
        """After an epoch of a budgeted run whose length is fixed: move the length when the recent step
        time says the run would end off time (it never ends before the next epoch)."""
        if self._budget_minutes and not self.config.minutes and self._timer.recent_step_s is not None:
            self._fit_length(emit, started, self._timer.recent_step_s, least=epoch + 1)

    def _fit_length(self, emit: Emit, started: float, step_s: float, least: int) -> None:
        """Fix (first) or move the run's length (budget.refit), and build its schedule for it."""
        minutes, planned, every = self._budget_minutes, self.config.epochs, self.config.eval_every
        first = bool(self.config.minutes)
        epochs, costs = planned, None
        if self.dist.is_main:
            if self.monitor.eval_s is None:  # a resumed run did not time its baselines
                self.monitor.timed()
            eval_s, train, test = self.monitor.eval_s, len(self.data.train), len(self.data.test)
            costs = budget.Costs(step_s, eval_s, eval_s * train / (train + test))
            epochs, every = budget.refit(minutes * 60 - (self.clock() - started), costs, self.steps_per_epoch,
                                         self.step, planned, every, self.config.snapshot_every, least, first)
        epochs, every = self.dist.agree(epochs, self.device), self.dist.agree(every, self.device)
        if epochs == planned and not first:
            return
        self.config = dataclasses.replace(with_epochs(self.config, epochs), minutes=0.0, eval_every=every)
        self._schedule(epochs)
        if costs is not None:
            rate = self.n_train / (self.steps_per_epoch * costs.step_s)
            emit(ev.BudgetFitted(minutes, epochs, self.step, self.total_steps, rate,
                                 budget.describe(minutes, epochs, rate, None if first else planned)))

    # -- the loop ----------------------------------------------------------------------------
    def _train_step(self, index: torch.Tensor, epoch: int) -> torch.Tensor:
        """One optimiser step; returns the loss as a device tensor (reading it would wait for the device)."""
        for group in self.optimizer.param_groups:
            group["lr"] = float(self.lrs[self.step])
        targets = self.objective.targets(index, self.train_labels[index])
        groups = [mix(views, self.config.augment, epoch, self.sampling.views)
                  for views in self.views(self.train_images[index], self.sampling.views)]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            loss = self.forward(groups, targets)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def time_steps(self, steps: int, batch: int | None = None) -> float:
        """Training images per second over `steps` optimiser steps on one batch of `batch` images (default: the
        config's), after one warm-up step (the first of a shape allocates). It trains this trainer's weights:
        time a throwaway trainer (core/plan/timing.py)."""
        index = torch.arange(min(batch or self.config.batch_size, self.n_train), device=self.device)
        self._train_step(index, 0)
        started = time.perf_counter()
        for _ in range(steps):
            loss = self._train_step(index, 0)
        loss.item()  # waits for the device
        return steps * len(index) / (time.perf_counter() - started)

    def _batch_index(self, order: torch.Tensor, step_in_epoch: int) -> torch.Tensor:
        b = self.config.batch_size
        return order[step_in_epoch * b:(step_in_epoch + 1) * b][self.dist.rank::self.dist.world]

    def _read_back(self, emit: Emit, window: list, epoch: int, since: float, losses: list[float]) -> str | None:
        """Read a window of step losses back at once (one device sync), emit them, and return an error
        message if one is not finite. window: (loss tensor, lr, images) per step, the last at self.step."""
        values = torch.stack([loss for loss, _, _ in window]).tolist()
        rate = sum(n for _, _, n in window) / max(self.clock() - since, 1e-9)
        for offset, (value, (_, lr, _)) in enumerate(zip(values, window)):
            step = self.step - len(window) + offset + 1
            if not math.isfinite(value):
                return f"loss became {value} at step {step} (lr {lr:.2e}); training stopped"
            losses.append(value)
            emit(ev.StepMetrics(step, epoch, value, lr, rate))
        window.clear()
        return None

    def _end_epoch(self, emit: Emit, epoch: int, losses: list[float], started: float) -> tuple:
        """Evaluate, snapshot and checkpoint as configured; returns (kNN, test top-1), None where not measured."""
        cfg = self.config
        last = epoch == cfg.epochs
        evaluate = last or (cfg.eval_every and epoch % cfg.eval_every == 0)
        snapshot = cfg.snapshot_every and (last or epoch % cfg.snapshot_every == 0)
        events = self.monitor.epoch_end(epoch, self.step, sum(losses) / max(len(losses), 1), started, evaluate,
                                        snapshot, self.monitor.reads_early(epoch, cfg.eval_every))
        for event in events:
            emit(event)
        if last or (cfg.checkpoint_every and epoch % cfg.checkpoint_every == 0):
            self.save(emit)
        return events[0].knn_top1, events[0].test_top1

    def run(self, emit: Emit, stop: threading.Event | None = None) -> ev.Finished | ev.Failed:
        """Train to the configured number of epochs, or until `stop` is set; returns the last event."""
        try:
            return self._run(emit, stop or threading.Event())
        except Exception as exc:  # reported as an event, and re-raised for the caller's traceback
            failed = ev.Failed(f"{exc.__class__.__name__}: {exc}", self.step // self.steps_per_epoch,
                               self.step, self.last_checkpoint)
            emit(failed)
            raise

    def _run(self, emit: Emit, stop: threading.Event) -> ev.Finished | ev.Failed:
        cfg, spe = self.config, self.steps_per_epoch
        main_emit = emit if self.dist.is_main else (lambda event: None)
        counts = tuple(torch.bincount(self.train_labels.cpu(), minlength=self.n_classes).tolist())
        main_emit(ev.RunStarted(str(self.device), self.n_train, len(self.data.test), spe,
                                self.total_steps, self.step, sum(p.numel() for p in self.module.parameters()),
                                cfg.objective, cfg.init_from, counts,
                                self.objective.weighs_classes, self.objective.predicts_classes, cfg.minutes,
                                cfg.epochs, cfg.batch_size, cfg.lr))
        started = self.clock()  # a time budget counts from here, baselines included
        if self.monitor.baselines is None and self.dist.is_main:
            self._baselines()
        if self.monitor.baselines is not None:
            main_emit(self.monitor.baselines)
        measured = (None, None)
        while self.step < self.total_steps:
            epoch, first = divmod(self.step, spe)
            order = self.sampling.order(epoch, self.n_train)
            losses, window, since, interrupted = [], [], self.clock(), False
            for step_in_epoch in range(first, spe):
                if interrupted := stop.is_set():
                    break
                index = self._batch_index(order, step_in_epoch)
                window.append((self._train_step(index, epoch), float(self.lrs[self.step]),
                               len(index) * self.dist.world))
                self.step += 1
                if len(window) == self.sync_every:
                    if error := self._read_back(main_emit, window, epoch, since, losses):
                        return self._fail(emit, error)
                    if self._budget_minutes:
                        self._time_budget(main_emit, started, self.clock() - since, self.sync_every)
                    since = self.clock()
            # Steps done since the last read-back are checked before any stop, evaluation or save.
            if window and (error := self._read_back(main_emit, window, epoch, since, losses)):
                return self._fail(emit, error)
            if interrupted:
                return self._finish(emit, ev.STOPPED, *measured)
            if self.dist.is_main:
                measured = self._end_epoch(main_emit, epoch + 1, losses, started)
            if self.monitor.handed_over:
                return self._finish(emit, ev.HANDED_OVER, *measured)
            self._correct_budget(main_emit, started, epoch + 1)
        return self._finish(emit, ev.COMPLETED, *measured)

    def _finish(self, emit: Emit, reason: str, knn: float | None, top1: float | None) -> ev.Finished:
        """The run's end: saved unless it completed (the last epoch saved already); a hand-over run's best
        held-out epoch and its weights ride on the event, and are saved beside the checkpoint too."""
        if reason != ev.COMPLETED:
            self.save(emit)
        best = self.monitor.handover.best if self.monitor.handover is not None else None
        if best is not None:
            self._save_best(best)
        done = ev.Finished(reason, self.step // self.steps_per_epoch, self.step, knn, self.last_checkpoint, top1,
                           best_epoch=None if best is None else best.epoch,
                           best_backbone=None if best is None else best.backbone)
        emit(done)
        return done

    def _fail(self, emit: Emit, message: str) -> ev.Failed:
        kept = f"; the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else ""
        failed = ev.Failed(message + kept, self.step // self.steps_per_epoch, self.step, self.last_checkpoint)
        emit(failed)
        return failed

    def start(self, emit: Emit, stop: threading.Event) -> threading.Thread:
        """Run in a daemon thread; errors arrive as a Failed event (the thread then ends)."""
        def target() -> None:
            try:
                self.run(emit, stop)
            except Exception:  # already emitted as Failed by run(); nothing else to tell
                return
        thread = threading.Thread(target=target, name="vit2040-trainer", daemon=True)
        thread.start()
        return thread
