"""`python -m core.export RUN_OR_CHECKPOINT --out FILE [--onnx FILE.onnx]`: take a model home.

RUN_OR_CHECKPOINT is a run folder (its model file, or, before it has one, its last checkpoint), a training
checkpoint (last.pt: its dataset is loaded once to embed the training images), or a model file. `--out`
writes the model file (core/serve/model_file.py: what `core.classify` and the app's Load take, no dataset
needed); `--onnx` writes an ONNX graph that takes uint8 pixels (N, C, S, S) at the model's side and returns
class probabilities, the normalisation inside (core/serve/onnx_graph.py).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core import console
from core.data.cache import DatasetCache
from core.runs.folder import RunFolder
from core.serve import onnx_graph
from core.serve.classifier import HEAD, KNN
from core.serve.model_file import ModelFile, describe, read

METHODS = {"head": HEAD, "knn": KNN}


def build_parser() -> argparse.ArgumentParser:
    parser = console.parser("core.export", __doc__)
    parser.add_argument("source", type=Path, metavar="RUN_OR_CHECKPOINT",
                        help="a run folder, a training checkpoint (last.pt) or a model file")
    parser.add_argument("--out", type=Path, metavar="FILE", help="write the model file here")
    parser.add_argument("--onnx", type=Path, metavar="FILE",
                        help="write an ONNX graph here (uint8 pixels in, class probabilities out)")
    parser.add_argument("--method", choices=sorted(METHODS),
                        help="what the ONNX graph computes: head (the class head) or knn (a vote of the nearest "
                             "training images); default: the class head when the model has one")
    parser.add_argument("--data-root", type=Path, help="folder holding a checkpoint's dataset files")
    return parser


def model_of(source: Path, datasets: DatasetCache) -> ModelFile:
    """The model file `source` names or holds, built from a checkpoint (and its dataset) when it is one."""
    if source.is_dir():
        run = RunFolder(source)
        source = run.model()
        if source is None:
            raise ValueError(f"{run.path} holds no model file and no checkpoint")
    opened = read(source)
    if isinstance(opened, ModelFile):
        return opened
    data = datasets.get(opened.config)
    opened.check_matches(data)
    return ModelFile.from_checkpoint(opened, data.train)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.out is None and args.onnx is None:
        parser.error("say what to write: --out FILE (a model file), --onnx FILE, or both")
    try:
        model = model_of(args.source, DatasetCache(args.data_root))
        if args.out is not None:
            print(f"model file {model.save(args.out)}: {describe(model)}")
        if args.onnx is not None:
            graph = onnx_graph.export(model, args.onnx, METHODS[args.method] if args.method else None)
            print(f"ONNX graph {graph}: uint8 (N, {model.channels}, {model.side}, {model.side}) in, "
                  f"{len(model.class_names)} class probabilities out")
    except (ValueError, OSError) as exc:  # ModelFileError, CheckpointError and DatasetError are ValueErrors
        return console.error(str(exc))
    return console.OK


if __name__ == "__main__":
    sys.exit(main())
