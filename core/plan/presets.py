"""The named recipes a person chooses from: the tuned presets, and `auto` (core/plan/auto.py), which fits a
recipe to any dataset with no preset tuned on it. `default_recipe` is the one rule for which a run gets when
none is named: the command lines, the app and core.compare all ask it."""
from __future__ import annotations

from core.config import MODEL_SIZES, AugmentConfig, TrainConfig
from core.objectives import instance

AUTO = "auto"


def _cpu_quick() -> TrainConfig:
    # Tuned on Fashion-MNIST for 3 minutes on 2 CPU cores (docs/RESULTS.md): at this budget the number of
    # passes over each instance dominates, so one mild crop per image and no CutMix beat the paper's
    # multi-crop + CutMix, which pay off over hundreds of epochs. Strong brightness and contrast jitter
    # matters most; no flips, since Fashion-MNIST's shoes all face one way.
    return TrainConfig(
        dataset="fashion",
        augment=AugmentConfig(n_global=1, global_scale=(0.7, 1.0), n_local=0, flip_p=0.0,
                              jitter=instance.JITTER, blur_p=0.0, cutmix_alpha=0.0),
        epochs=60,
        batch_size=128,
        lr=1.5e-3,
        eval_every=10,
        snapshot_every=0,  # the CLI draws nothing; the app asks for snapshots itself
        checkpoint_every=10,
    )


def _paper() -> TrainConfig:
    # ../shared/PAPER.md, stage 1: DeiT-Tiny at 112 px (Flowers-102 stored at 144), the paper's IDMM (2 + 4
    # crops, CutMix 0.5, smoothing 0.1: core/objectives/instance.py), AdamW 5e-4 at batch 256, 800 epochs.
    return TrainConfig(
        dataset="flowers102",
        data_size=144,
        model=MODEL_SIZES["deit-tiny"],
        augment=AugmentConfig(global_size=112, local_size=112, jitter=instance.JITTER,
                              cutmix_alpha=instance.CUTMIX_ALPHA, **instance.MULTI_CROP),
        epochs=800,
        batch_size=256,
        lr=5e-4,
        weight_decay=1e-3,
        warmup_epochs=2,
        label_smoothing=instance.LABEL_SMOOTHING,
        eval_every=10,
        snapshot_every=10,
        checkpoint_every=10,
    )


PRESETS = {"cpu-quick": _cpu_quick, "paper": _paper}
RECIPES = (*sorted(PRESETS), AUTO)  # every name a person can choose


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[name]()


def default_recipe(dataset: str) -> str:
    """The preset tuned on `dataset` (cpu-quick on Fashion-MNIST), else the auto recipe. The paper preset is the
    paper's recipe for Flowers-102 at DeiT-Tiny's size: chosen by name, never by default (2.6 days on 2 cores)."""
    return "cpu-quick" if dataset == _cpu_quick().dataset else AUTO
