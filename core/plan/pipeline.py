"""The pipeline: the one driver that sequences a run's stages, for core.pipeline, the app and core.compare.

A pipeline is one run (core/runs/folder.py) with its stages inside. Its record says what was asked, what was
planned and why, and how each stage ended; it is written before and after every stage, so a pipeline that was
stopped, failed or killed goes on from it (`Pipeline.open(run, load).run(...)`) in the process that started it
or another: the app resumes what the command line started, and the other way round.

What it trains (core/plan/request.py plans the first stage):
- the best model the minutes allow: pretraining for PRETRAIN_SHARE of them when core/plan/payoff.py expects it
  to pay, ending when its held-out training images say so (core/trainer/handover.py), then, for what the clock
  has left, fine-tuning from the backbone its end event names best, or supervised training from scratch when
  the random init was best; or supervised training from scratch for all of the minutes;
- one stage (the app's Start), to which `finetune` may add fine-tuning (the app's Fine-tune);
- stages the caller fixed (core.compare's arms), whose folders may be shared with other runs: a stage whose
  folder already holds a finished run is not trained again.
Every minute counts: planning, loading and timing come out of the budget, and a pause between a stop and a
resume does not.
"""
from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import torch

from core import events as ev
from core.config import TrainConfig, from_json, to_json
from core.plan.recipe import FINETUNE, PRETRAIN, SUPERVISED, recipe, stage_of
from core.plan.request import Load, Request, plan_first
from core.plan.stage import run_stage
from core.runs.folder import LOG, RunFolder, StageFolder
from core.serve.model_file import ModelFile
from core.trainer.checkpoint import Checkpoint
from core.trainer.handover import kept_words

Emit = Callable[[ev.Event], None]
ENDED_BY_ITSELF = (ev.COMPLETED, ev.HANDED_OVER)
FAILED, REFUSED = "failed", "refused"  # a stage's training failed; an input could not be used (PipelineEnded)
LEAST_MINUTES = 0.05  # a stage the clock left almost nothing still trains a few steps


def _config(entry: dict) -> TrainConfig:
    return from_json(json.dumps(entry["config"]))


def _entry(stage: str, folder: str, config: TrainConfig, until: float | None = None, words: str = "") -> dict:
    """A stage in the record: what it trains, where, its config, the pipeline minute it must end by (None: its
    epochs decide), why it follows the stage before, and how it ended (None: not yet, or killed)."""
    return {"stage": stage, "folder": folder, "config": json.loads(to_json(config)), "until": until, "words": words,
            "ended": None, "best_epoch": None}


class Pipeline:
    def __init__(self, run: RunFolder, record: dict, load: Load, clock: Callable[[], float] = time.perf_counter,
                 label: str | None = None):
        self.folder, self.record, self.load, self.clock, self.label = run, record, load, clock, label
        self.config: TrainConfig | None = None  # the stage now training (the app publishes its snapshots with it)
        self.data = None  # ... and the splits it trains on
        self._spent_before = float(record.get("spent_minutes", 0.0))
        self._started: float | None = None
        self._handed: tuple[str, dict[str, torch.Tensor]] | None = None  # (best.pt's path, its weights) in memory

    # -- making and opening ------------------------------------------------------------------
    @classmethod
    def start(cls, run: RunFolder, request: Request, load: Load, label: str | None = None) -> Pipeline:
        """A new pipeline in `run`, written there once it is planned (a request refused while planning, its data
        missing say, leaves nothing behind); a folder that already holds a run is refused, not mixed into."""
        refuse_a_used_folder(run)
        return cls(run, {"request": request.to_json(), "minutes": request.minutes, "stages": []}, load, label=label)

    @classmethod
    def fixed(cls, run: RunFolder, stages: list[tuple[str, TrainConfig]], load: Load, label: str) -> Pipeline:
        """Stages the caller planned, each (its folder relative to the run, its config), trained in order."""
        record = run.record() or {"minutes": 0.0, "stages": [_entry(stage_of(c), f, c) for f, c in stages]}
        run.path.mkdir(parents=True, exist_ok=True)
        run.name(label)
        run.write_record(record)
        return cls(run, record, load)

    @classmethod
    def open(cls, run: RunFolder, load: Load) -> Pipeline:
        """The pipeline in `run`, to go on with (a run of stages with no record, core.train's say, is read as one:
        its record is written once something changes); ValueError when there is none."""
        record = run.record() or _record_of(run)
        if record is None:
            raise ValueError(f"{run.path} holds no pipeline run to resume")
        return cls(run, record, load)

    @property
    def finished(self) -> bool:
        return bool(self.record.get("model"))

    @property
    def stages(self) -> list[dict]:
        return self.record["stages"]

    # -- running -----------------------------------------------------------------------------
    def run(self, emit: Emit, stop: threading.Event) -> ev.PipelineEnded:
        """Plan (once), then train every stage still to train, in order, until one does not end by itself."""
        self._started, reason = self.clock(), ev.COMPLETED
        try:
            if not self.stages:
                self._plan(emit)
            while (entry := self._next()) is not None:
                if stop.is_set():  # stopped between two stages: the next one starts on resume
                    reason = ev.STOPPED
                    break
                outcome = self._train(entry, emit, stop)
                if not isinstance(outcome, ev.Finished) or outcome.reason not in ENDED_BY_ITSELF:
                    reason = FAILED if isinstance(outcome, ev.Failed) else outcome.reason
                    break
            else:
                self._write_model()
        except (ValueError, RuntimeError, OSError) as exc:  # data, checkpoint or config refused: said, not raised
            emit(ev.Failed(str(exc), 0, 0, None))
            reason = REFUSED
        finally:
            self._write()
            self._spent_before, self._started = self.record["spent_minutes"], None  # a later run() goes on from it
        model = self.folder.model() if self.finished else None
        ended = ev.PipelineEnded(reason, self.record["spent_minutes"], str(model) if model else None)
        emit(ended)
        return ended

    def _plan(self, emit: Emit) -> None:
        first = plan_first(Request.from_json(self.record["request"]), self.load)
        expected = first.expected
        self.record.update(
            base=json.loads(to_json(first.base)), hand_over=first.hand_over, words=list(first.words),
            pretrain=stage_of(first.stage) == PRETRAIN, expected_to_pay=expected and expected.pretrain,
            reason=expected and expected.reason, labels_per_class=expected and expected.labels_per_class,
            passes=expected and expected.passes)
        self.stages.append(_entry(stage_of(first.stage), stage_of(first.stage), first.stage, first.until))
        self.folder.name(self.label)
        self._write()
        emit(ev.Planned(*first.words))

    def _next(self) -> dict | None:
        """The first stage that has not ended by itself; after a pretraining whose hand-over decides what follows,
        the stage it decided (appended to the record)."""
        unfinished = next((entry for entry in self.stages if entry["ended"] not in ENDED_BY_ITSELF), None)
        if unfinished is not None or not self.record.get("hand_over") or len(self.stages) != 1:
            return unfinished
        self.stages.append(self._after_pretraining(self.stages[0]))
        return self.stages[-1]

    def _after_pretraining(self, pretraining: dict) -> dict:
        """Fine-tuning from the backbone the pretraining kept at its best held-out epoch, or, when that was the
        random-init encoder (epoch 0), supervised training from scratch; until the whole budget is spent."""
        best, minutes = pretraining["best_epoch"], self.record["minutes"]
        if best:
            start = self._folder(pretraining).best
            config = recipe(_config(pretraining), stage=FINETUNE, init_from=str(start))
            return _entry(FINETUNE, FINETUNE, config, minutes, kept_words(best))
        return _entry(SUPERVISED, SUPERVISED, recipe(from_json(json.dumps(self.record["base"])), stage=SUPERVISED),
                      minutes, kept_words(0))

    def _train(self, entry: dict, emit: Emit, stop: threading.Event) -> ev.Finished | ev.Failed:
        """Train (or resume, or reuse) one stage, its record written before and after."""
        stage, config = self._folder(entry), _config(entry)
        done = stage.ended()
        if entry["ended"] is None and isinstance(done, ev.Finished) and done.reason in ENDED_BY_ITSELF \
                and stage.last.is_file():  # finished already: by another run sharing it, or before a kill
            entry.update(ended=done.reason, best_epoch=done.best_epoch)
            return done
        resume = stage.last if stage.started() and stage.last.is_file() else None
        if resume is not None:  # the stage goes on with what is left of its fixed length
            config = Checkpoint.load(resume).config
        else:
            stage.clear_log()  # it left no checkpoint: it starts over, one curve, not two attempts
            if entry["until"] is not None:
                config = config.with_overrides(minutes=max(LEAST_MINUTES, entry["until"] - self.spent()))
        self.data, self.config = self.load(config), config
        self.folder.name(None, self.data.class_names)
        entry["ended"] = None
        self._write()
        emit(ev.StageStarted(entry["stage"], self.stages.index(entry), str(stage.path), entry["words"]))
        handed = self._handed[1] if self._handed and resume is None and config.init_from == self._handed[0] else None
        trained = run_stage(config, self.data, stage, emit, stop, resume_from=resume, init_backbone=handed)
        self.config, outcome = trained.config, trained.outcome
        entry.update(config=json.loads(to_json(trained.config)),
                     ended=outcome.reason if isinstance(outcome, ev.Finished) else FAILED)
        if isinstance(outcome, ev.Finished) and outcome.best_epoch is not None:
            entry["best_epoch"] = outcome.best_epoch
            self._handed = (str(stage.best), outcome.best_backbone)
        return outcome

    def _write_model(self) -> None:
        """The run's model file, from its last stage's checkpoint: what a person takes home (core/serve)."""
        last = Checkpoint.load(self._folder(self.stages[-1]).last)
        data = self.data or self.load(last.config)  # every stage was finished already: nothing loaded yet
        ModelFile.from_checkpoint(last, data.train).save(self.folder.model_path)
        self.record["model"] = self.folder.relative(self.folder.model_path)

    # -- a stage added by hand ---------------------------------------------------------------
    def finetune(self, epochs: int | None = None, labels_per_class: int = 0) -> tuple[TrainConfig, str]:
        """Add fine-tuning after the last stage, a pretraining that ended (completed, stopped or handed over):
        from the backbone it kept at its best held-out epoch when it kept one, else from its last checkpoint.
        Returns the stage's config and the name of the checkpoint it starts from. The pipeline's own hand-over
        no longer decides what follows."""
        tail = self.stages[-1] if self.stages else None
        if tail is not None and tail["stage"] in (FINETUNE, SUPERVISED):
            raise LookupError("this run already trains on the labels: fine-tune a pretrained run")
        if tail is None or tail["ended"] in (None, FAILED) or not self._folder(tail).last.is_file():
            raise LookupError("nothing to fine-tune: pretrain a run (or load a checkpoint) first")
        start = self._folder(tail).best if tail["best_epoch"] else self._folder(tail).last
        config = recipe(_config(tail), stage=FINETUNE, init_from=str(start), epochs=epochs,
                        labels_per_class=labels_per_class)
        self.stages.append(_entry(FINETUNE, FINETUNE, config))
        self.record.update(hand_over=False, model=None)
        self._write()
        return config, start.name

    # -- the record --------------------------------------------------------------------------
    def spent(self) -> float:
        """Minutes spent over every start of this pipeline, this one's until now."""
        now = (self.clock() - self._started) / 60 if self._started is not None else 0.0
        return self._spent_before + now

    def _folder(self, entry: dict) -> StageFolder:
        return self.folder.stage_folder(entry["folder"])

    def _write(self) -> None:
        self.record["spent_minutes"] = self.spent()
        if self.stages:  # nothing is written before a plan
            self.folder.write_record(self.record)


def _record_of(run: RunFolder) -> dict | None:
    """The record of a run of stages written without one, from its stages' configs and logs (None: not a run)."""
    stages = []
    for _, stage in run.stages():
        config, ended = stage.config(), stage.ended()
        if config is None:
            return None
        entry = _entry(stage_of(config), run.relative(stage.path), config)
        entry.update(ended=ended.reason if isinstance(ended, ev.Finished) else FAILED if ended else None,
                     best_epoch=ended.best_epoch if isinstance(ended, ev.Finished) else None)
        stages.append(entry)
    return {"minutes": 0.0, "stages": stages} if stages else None


def refuse_a_used_folder(run: RunFolder) -> None:
    """A stage's log appends (a resumed run continues it): a second run in a used folder would mix two runs'
    events, so it is refused rather than overwritten (nothing is lost)."""
    logs = [run.path / LOG] + sorted(run.path.glob(f"*/{LOG}"))
    used = [str(path.parent) for path in logs if path.is_file()]
    if used or run.is_pipeline:
        raise ValueError(f"{run.path} already holds a run ({', '.join(used) or 'a pipeline record'}): choose another "
                         "folder, or resume the run in it")
