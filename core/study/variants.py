"""The arms of core.compare: what each variant trains, and how one (variant, seed, labels) arm runs.

Compute is counted in *views seen* (forward/backward passes of one crop through the backbone; on a given
model every view costs the same). A pretrained variant spends PRETRAIN_SHARE of its views pretraining and the
rest fine-tuning (the paper's 800 + 200 epochs). With few labels (`labels_per_class`), fine-tuning and
supervised training see only the labelled images; pretraining sees every training image (`pretrain_on="all"`:
one pretraining per seed serves every K) or only the labelled ones (`"labelled"`: the paper's situation).

An arm is a pipeline run (core/plan/pipeline.py) of fixed stages: the same driver, run folder and recipe as
core.pipeline. Its base is the recipe the pipeline trains on the dataset (core/plan/presets.py: cpu-quick on
Fashion-MNIST, the auto recipe fitted to anything else), with the paper's CutMix and label smoothing on so that
the ablations remove something that is there. Each stage's measures are kept in its folder, so a re-run
reuses what finished.
"""
from __future__ import annotations

import os
import threading
from dataclasses import asdict, dataclass, field

from core import events as ev
from core import policy
from core.config import RESNET18_DIM, TrainConfig
from core.data.augment import ViewMaker
from core.data.labels import labelled_index
from core.data.splits import DataSplits
from core.metrics import linear_probe
from core.model.backbone import embed
from core.objectives import Supervised
from core.objectives.instance import with_paper_mixing
from core.plan.pipeline import Pipeline
from core.plan.recipe import FINETUNE, PRETRAIN, recipe
from core.runs.folder import RunFolder, StageFolder
from core.trainer.checkpoint import Checkpoint

EVALS_PER_STAGE = 5


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


def base_recipe(base: TrainConfig) -> TrainConfig:
    """The comparison's base: the recipe the pipeline trains on this data (`base`), with the paper's CutMix and
    label smoothing on, and no embedding snapshots (nothing draws them)."""
    return with_paper_mixing(base).with_overrides(snapshot_every=0)


def _epochs(views: float, n_images: int, views_per_image: int) -> int:
    return max(1, round(views / (n_images * views_per_image)))


def _stage(base: TrainConfig, epochs: int, objective: str | None = None, evaluations: int = EVALS_PER_STAGE,
           **recipe_args) -> TrainConfig:
    """The recipe's config for one stage of `epochs`, evaluated `evaluations` times and saved once, at the end."""
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


def measure_stage(stage: StageFolder, data: DataSplits, views_before: int, views_per_image: int) -> Stage:
    """A finished stage's measures, from its log (the curve, the last evaluation) and its checkpoint (a linear
    probe on its frozen embeddings); kept in its folder, so a stage shared by several arms is measured once."""
    if (kept := stage.result()) is not None:
        return Stage(**kept)
    events = stage.events()
    n_train = next(e.n_train for e in events if isinstance(e, ev.RunStarted))
    evaluated = [e for e in events if isinstance(e, ev.EpochMetrics) and e.knn_top1 is not None]
    curve = [(views_before + e.epoch * n_train * views_per_image, e.knn_top1, e.test_top1) for e in evaluated]
    checkpoint = Checkpoint.load(stage.last)
    config, backbone = checkpoint.config, checkpoint.build_backbone()
    # A linear probe, like the kNN, learns from the labelled images only.
    labelled = labelled_index(data.train.labels, config.labels_per_class, config.seed)
    side = config.model.image_size
    train, test = embed(backbone, data.train.resized(side)[labelled]), embed(backbone, data.test.resized(side))
    probe = linear_probe(train, data.train.labels[labelled], test, data.test.labels, len(data.class_names))
    last = evaluated[-1]
    measured = Stage(last.knn_top1, probe, last.test_top1, curve, last.elapsed_s, last.test_balanced)
    stage.write_result(asdict(measured))
    return measured


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


def run_arm(arm: Arm, base: TrainConfig, data: DataSplits, out: str | os.PathLike, stop: threading.Event) -> dict:
    """Run (or reuse) an arm's stages as a pipeline under `out` (the budget's folder) on the comparison's base
    recipe; returns its result record."""
    ablated = base.with_overrides(**arm.variant.ablation, seed=arm.seed, labels_per_class=arm.labels_per_class,
                                  pretrain_on=arm.pretrain_on)
    n_labelled = len(labelled_index(data.train.labels, arm.labels_per_class, arm.seed))
    run = RunFolder(os.path.join(out, arm.variant.name, arm.labels, f"seed{arm.seed}"))
    label = f"{arm.variant.name} · {arm.labels} · seed {arm.seed}"
    if not arm.variant.pretrains:
        config = _stage(ablated, _epochs(arm.budget, n_labelled, 1), arm.variant.objective, arm.variant.evaluations)
        _run(Pipeline.fixed(run, [(config.objective, config)], lambda _: data, label), stop)
        return {"final": asdict(measure_stage(run.stages()[0][1], data, 0, 1)), "pretrain": None}
    views = arm.variant.views_per_image(ablated)
    shared = arm.pretrain_on == "all" or not arm.labels_per_class
    # Pretraining on every image does not depend on K: one run per seed, kept apart, serves every K.
    pre_base = ablated.with_overrides(labels_per_class=0, pretrain_on="all") if shared else ablated
    pre_folder = (os.path.join(out, arm.variant.name, PRETRAIN, f"seed{arm.seed}") if shared
                  else os.path.join(run.path, PRETRAIN))
    seen = len(data.train) if shared else n_labelled
    pre_config = _stage(pre_base, _epochs(arm.budget * policy.PRETRAIN_SHARE, seen, views), arm.variant.objective)
    pre_views = pre_config.epochs * seen * views
    ft_config = _stage(pre_config.with_overrides(labels_per_class=arm.labels_per_class),
                       _epochs(arm.budget - pre_views, n_labelled, 1), stage=FINETUNE,
                       init_from=str(StageFolder(pre_folder).last))
    stages = [(os.path.relpath(pre_folder, run.path), pre_config), (FINETUNE, ft_config)]
    _run(Pipeline.fixed(run, stages, lambda _: data, label), stop)
    (_, pre), (_, final) = run.stages()
    return {"final": asdict(measure_stage(final, data, pre_views, 1)),
            "pretrain": asdict(measure_stage(pre, data, 0, views))}


def _run(pipeline: Pipeline, stop: threading.Event) -> None:
    ended = pipeline.run(lambda event: None, stop)
    if ended.reason != ev.COMPLETED:
        raise RuntimeError(f"{pipeline.folder.path}: the arm did not complete ({ended.reason})")
