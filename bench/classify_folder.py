"""`python -m bench.classify_folder`: `core.classify` on a folder of photos, batched against one image at a time.

Makes a folder of 1,000 photos (scripts/make_folder_dataset.py: composited garments, 64 to 1,000 px, JPEG and
PNG) and a model file of the auto recipe's CPU ViT at 64 px over them (random weights: a forward pass costs the
same whatever was learned), then classifies every file twice: as `core.classify` does (decoded and framed one
by one, embedded in batches: Classifier.answers) and as the app's panel does (Classifier.classify, one forward
pass per image with its attention map and neighbours). Prints one markdown table; asserts nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import torch

from core.classify import classify, images_under
from core.config import MODEL_SIZES, AugmentConfig, TrainConfig
from core.data.images import decode
from core.data.sources import load_dataset
from core.serve.classifier import Classifier
from core.serve.model_file import ModelFile
from core.trainer.loop import Trainer
from scripts.make_folder_dataset import main as make_folder


def model_over(folder: Path) -> ModelFile:
    """The auto recipe's CPU ViT at 64 px (stored at 73), random weights, over the folder's images."""
    data = load_dataset(f"folder:{folder}", size=73)
    config = TrainConfig(dataset=f"folder:{folder}", data_size=73, epochs=1, warmup_epochs=0,
                         model=dataclasses.replace(MODEL_SIZES["cpu"], image_size=64, patch_size=8),
                         augment=AugmentConfig(n_global=1, global_size=64, n_local=0, local_size=64))
    return ModelFile.from_checkpoint(Trainer(config, data).checkpoint(), data.train)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classify_folder", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000, help="photos in the folder")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "photos"
        make_folder([str(folder), "--classes", "4", "--largest", str(args.images // 4), "--imbalance", "1"])
        classifier = Classifier(model_over(folder))
        files = images_under([folder])
        started = time.perf_counter()
        batched = classify(classifier, files, None, 5)
        batched_s = time.perf_counter() - started
        started = time.perf_counter()
        for file in files:
            classifier.classify(decode(file))
        single_s = time.perf_counter() - started
    print(f"| {len(files):,} photos, 64 px ViT, {torch.get_num_threads()} threads | seconds | images/s |")
    print("|---|---|---|")
    print(f"| core.classify (batched) | {batched_s:.1f} | {len(batched) / batched_s:.0f} |")
    print(f"| one at a time (the app's panel) | {single_s:.1f} | {len(files) / single_s:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
