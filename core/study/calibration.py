"""The comparison's budget: minutes turned into views at a rate measured once per output folder, and the CNN's
cost per view against the ViT's, both kept in the folder's calibration record so a re-run gets the same
budget and reuses every finished arm instead of re-measuring a slightly different rate and starting over."""
from __future__ import annotations

import json
import statistics
import threading
import time
from pathlib import Path

from core import events as ev
from core.config import TrainConfig
from core.data.splits import DataSplits
from core.objectives import Supervised
from core.plan.recipe import recipe
from core.runs.folder import CALIBRATION
from core.study.variants import variant
from core.trainer.loop import Trainer


def _supervised_config(base: TrainConfig, arch: str) -> TrainConfig:
    config = recipe(base, Supervised.name, epochs=1000)
    if arch != "vit":
        config = config.with_overrides(**variant("cnn").ablation)
    return config.with_overrides(eval_every=0, checkpoint_every=0)


def calibrate(base: TrainConfig, data: DataSplits, arch: str = "vit", seconds: float = 20.0) -> float:
    """Views per second of the supervised recipe on `base` on this machine (median over steps after a warm-up)."""
    rates, stop = [], threading.Event()
    deadline = time.perf_counter() + seconds + 30  # the first step also waits for the baselines

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.StepMetrics):
            rates.append(event.images_per_s)
            if time.perf_counter() > deadline or len(rates) >= 60:
                stop.set()

    Trainer(_supervised_config(base, arch), data).run(listen, stop)
    return statistics.median(rates[3:] or rates)


def _saved(out: Path, dataset: str) -> dict:
    path = out / CALIBRATION
    saved = json.loads(path.read_text()) if path.exists() else {}
    return saved if saved.get("dataset") == dataset else {"dataset": dataset}


def measured_rate(out: Path, base: TrainConfig, data: DataSplits) -> float:
    """The views/s that turns --minutes into views, measured once per output folder `out`."""
    saved = _saved(out, base.dataset)
    if "rate" in saved:
        print(f"using the rate measured before: {saved['rate']:.0f} views/s (delete {out / CALIBRATION} "
              "to re-measure)")
        return float(saved["rate"])
    saved["rate"] = calibrate(base, data)
    (out / CALIBRATION).write_text(json.dumps(saved))
    return saved["rate"]


def cost_ratio(out: Path, base: TrainConfig, data: DataSplits, arch: str) -> float:
    """Views of `arch` per view of the ViT in the same time, both measured now, back to back (so a load on the
    machine slows both alike), and kept in the folder's calibration record like the rate."""
    if arch == "vit":
        return 1.0
    saved = _saved(out, base.dataset)
    ratios = saved.setdefault("ratios", {})
    if arch not in ratios:
        ratios[arch] = calibrate(base, data, arch) / calibrate(base, data)
        (out / CALIBRATION).write_text(json.dumps(saved))
    return float(ratios[arch])
