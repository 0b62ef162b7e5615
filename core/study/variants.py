"""The arms of core.compare: what each variant trains, and how one (variant, seed, labels) arm runs.

Compute is counted in *views seen* (forward/backward passes of one crop through the backbone; on a
given model every view costs the same). A pretrained variant spends PRETRAIN_SHARE of its views
pretraining and the rest fine-tuning (the paper's 800 + 200 epochs). With few labels
(`labels_per_class`), fine-tuning and supervised training see only the labelled images; pretraining
sees every training image (`pretrain_on="all"`: one pretraining per seed serves every K) or only the
labelled ones (`"labelled"`: the paper's situation). Each stage leaves a small JSON record beside its
run folder, so a re-run reuses what finished.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core import events as ev
from core.config import RESNET18_DIM, TrainConfig, preset
from core.data.augment import ViewMaker
from core.data.labels import labelled_index
from core.data.splits import DataSplits
from core.metrics import linear_probe
from core.model.backbone import embed
from core.objectives import Supervised
from core.plan.recipe import FINETUNE, PRETRAIN_SHARE, recipe
from core.runs import folder as runs
from core.runs.log import JsonlLog
from core.trainer.loop import Trainer

EVALS_PER_STAGE = 5
STAGE_RECORD = "stage.json"


@dataclass(frozen=True)
class Variant:
    """One arm of the comparison: a stage-1 objective (through the recipe) and what it changes."""

    name: str
    description: str
    objective: str  # stage 1's objective; "supervised" is supervised from scratch, with no stage 2
    ablation: dict = field(default_factory=dict)  # overrides of the base recipe for stage 1
    # kNN evaluations per stage (the curve's points); the CNN's cost a minute each, so it has only the last.
    evaluations: int = EVALS_PER_STAGE

    @property
    def pretrains(self) -> bool:
        return self.objective != Supervised.name

    @property
    def arch(self) -> str:
        """The backbone: a variant with another one (the CNN) is budgeted at its own cost per view."""
        return self.ablation.get("model", {}).get("arch", "vit")

    def views_per_image(self, base: TrainConfig) -> int:
        """Views of each image per stage-1 step, as the recipe gives them (contrastive: a pair)."""
        return ViewMaker(recipe(base.with_overrides(**self.ablation), self.objective).augment).views_per_image


VARIANTS = (
    Variant("scratch", "supervised from scratch: the fine-tuning recipe for the whole budget", Supervised.name),
    Variant("idmm+ft", "IDMM (CutMix 0.5, label smoothing 0.1), then fine-tuning", "instance"),
    Variant("contrastive+ft", "SimCLR NT-Xent (2 views, T 0.2, 128-d projection), then fine-tuning", "contrastive"),
    Variant("idmm-no-cutmix+ft", "IDMM without CutMix, then fine-tuning", "instance",
            {"augment": {"cutmix_alpha": 0.0}}),
    Variant("idmm-no-ls+ft", "IDMM without label smoothing, then fine-tuning", "instance", {"label_smoothing": 0.0}),
    Variant("cnn", "torchvision's ResNet-18 with a small-image stem, supervised from scratch: the same recipe, "
            "images, labels and minutes (its views are scaled by its measured cost per view)", Supervised.name,
            {"model": {"arch": "resnet18", "dim": RESNET18_DIM}}, evaluations=1),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)


def variant(name: str) -> Variant:
    return next(v for v in VARIANTS if v.name == name)


def base_recipe(dataset: str, seed: int) -> TrainConfig:
    """cpu-quick with the paper's IDMM ingredients back on (CutMix 0.5, smoothing 0.1), so that the
    ablations remove something that is there."""
    return preset("cpu-quick").with_overrides(dataset=dataset, seed=seed, augment={"cutmix_alpha": 0.5},
                                              label_smoothing=0.1, snapshot_every=0)


def _epochs(views: float, n_images: int, views_per_image: int) -> int:
    return max(1, round(views / (n_images * views_per_image)))


def _stage(base: TrainConfig, epochs: int, objective: str | None = None, evaluations: int = EVALS_PER_STAGE,
           **recipe_args) -> TrainConfig:
    """The recipe's config for one stage of `epochs` (core.recipe also fits the warmup to a short
    stage), evaluated `evaluations` times and saved once, at the end."""
    config = recipe(base, objective, epochs=epochs, **recipe_args)
    return config.with_overrides(eval_every=max(1, epochs // evaluations), checkpoint_every=epochs)


@dataclass
class Stage:
    """What one training stage left: final measures and its curve of (views seen, kNN, test top-1)."""

    knn: float
    probe: float
    top1: float | None
    curve: list = field(default_factory=list)
    seconds: float = 0.0
    balanced: float | None = None  # the class head's balanced accuracy (mean recall over classes)


def run_stage(config: TrainConfig, data: DataSplits, out: Path, views_before: int, views_per_image: int,
              stop: threading.Event) -> Stage:
    """Train one stage in run folder `out`; its record (STAGE_RECORD) is written there when it completes,
    and a stage whose record and checkpoint exist is not trained again (a later stage starts from it)."""
    record = out / STAGE_RECORD
    if record.exists() and (out / "last.pt").exists():
        return Stage(**json.loads(record.read_text()))
    trainer = Trainer(config, data, out_dir=out)
    curve, balanced = [], []
    # A run folder like any other: the app lists the arms too. A stage cut short starts over, so its
    # half-written log goes first (the app would otherwise show both attempts as one curve).
    (out / runs.METRICS).unlink(missing_ok=True)
    runs.begin(out, config, data.class_names, label=" · ".join(out.parts[-4:]))
    log = JsonlLog(out / runs.METRICS)

    def listen(event: ev.Event) -> None:
        log(event)
        if isinstance(event, ev.EpochMetrics) and event.knn_top1 is not None:
            views = views_before + event.epoch * trainer.n_train * views_per_image
            curve.append((views, event.knn_top1, event.test_top1))
            balanced.append(event.test_balanced)

    started = time.perf_counter()
    try:
        outcome = trainer.run(listen, stop)
    finally:
        log.close()
    if not isinstance(outcome, ev.Finished) or outcome.reason != "completed":
        raise RuntimeError(f"{out}: the run did not complete ({outcome})")
    monitor = trainer.monitor
    labelled = monitor.labelled  # a linear probe, like the kNN, learns from the labelled images only
    train, test = embed(trainer.backbone, monitor.eval_train[labelled]), embed(trainer.backbone, monitor.eval_test)
    probe = linear_probe(train, data.train.labels[labelled], test, data.test.labels, len(data.class_names))
    stage = Stage(outcome.knn_top1, probe, outcome.test_top1, curve, time.perf_counter() - started, balanced[-1])
    record.write_text(json.dumps(asdict(stage)))
    return stage


@dataclass(frozen=True)
class Arm:
    """One cell of a comparison: a variant at a seed, a budget in views, and the labels it may use."""

    variant: Variant
    seed: int
    budget: int  # views, already scaled to this variant's backbone
    labels_per_class: int = 0  # 0: every label
    pretrain_on: str = "all"

    @property
    def labels(self) -> str:
        """The arm's folder name for its labels: all, 20, or 20-labelled (pretrained on those 20 only)."""
        if not self.labels_per_class:
            return "all"
        labelled_only = self.variant.pretrains and self.pretrain_on == "labelled"
        return f"{self.labels_per_class}" + ("-labelled" if labelled_only else "")


def run_arm(arm: Arm, data: DataSplits, out: Path, stop: threading.Event) -> dict:
    """Run (or reuse) an arm's stages under `out` (the budget's folder); returns its result record."""
    base = base_recipe(data.name, arm.seed)
    ablated = base.with_overrides(**arm.variant.ablation, labels_per_class=arm.labels_per_class,
                                  pretrain_on=arm.pretrain_on)
    n_labelled = len(labelled_index(data.train.labels, arm.labels_per_class, arm.seed))
    folder = out / arm.variant.name / arm.labels / f"seed{arm.seed}"
    if not arm.variant.pretrains:
        config = _stage(ablated, _epochs(arm.budget, n_labelled, 1), arm.variant.objective, arm.variant.evaluations)
        return {"final": asdict(run_stage(config, data, folder, 0, 1, stop)), "pretrain": None}
    views = arm.variant.views_per_image(base)
    shared = arm.pretrain_on == "all" or not arm.labels_per_class
    # Pretraining on every image does not depend on K: one run per seed, kept apart, serves every K.
    pre_base = ablated.with_overrides(labels_per_class=0, pretrain_on="all") if shared else ablated
    pre_folder = out / arm.variant.name / "pretrain" / f"seed{arm.seed}" if shared else folder / "pretrain"
    seen = len(data.train) if shared else n_labelled
    pre_config = _stage(pre_base, _epochs(arm.budget * PRETRAIN_SHARE, seen, views), arm.variant.objective)
    pre = run_stage(pre_config, data, pre_folder, 0, views, stop)
    pre_views = pre_config.epochs * seen * views
    ft_config = _stage(pre_config.with_overrides(labels_per_class=arm.labels_per_class),
                       _epochs(arm.budget - pre_views, n_labelled, 1), stage=FINETUNE,
                       init_from=str(pre_folder / "last.pt"))
    final = run_stage(ft_config, data, folder / "finetune", pre_views, 1, stop)
    return {"final": asdict(final), "pretrain": asdict(pre)}
