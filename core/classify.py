"""`python -m core.classify MODEL PATH...`: classify image files and folders (recursively) with a model file.

MODEL is a model file (core/serve/model_file.py: what `core.pipeline`, `core.train` and the app's "Download the
model" write; `core.export` makes one from a checkpoint) or a run folder holding one. No dataset is needed.
One line per image: its top classes and probabilities, the method (the class head, or a kNN vote over the
training images), and the flags "blank" (one flat colour: any answer means nothing) and "unlike the training
images" (its nearest training image is less similar than almost all of them are to their own nearest). An
unreadable file gets its reason on its line and the rest go on; the exit status is 1 when any file failed.
Images are embedded in batches.
"""
from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import torch

from core import console
from core.data.images import IMAGE_EXTENSIONS, ImageError, decode, is_blank
from core.runs.folder import RunFolder
from core.serve.classifier import HEAD, KNN, TOP_K, Answer, Classifier
from core.serve.model_file import ModelFile, ModelFileError, describe

METHODS = {"head": HEAD, "knn": KNN}
CHUNK = 256  # images decoded before a batch is classified: the decoded photos are dropped, their pixels kept


def build_parser() -> argparse.ArgumentParser:
    parser = console.parser("core.classify", __doc__)
    parser.add_argument("model", type=Path, help="a model file, or a run folder holding one (model.pt)")
    parser.add_argument("paths", type=Path, nargs="+", metavar="PATH", help="image files and folders (recursive)")
    parser.add_argument("--top", type=console.at_least(1), default=TOP_K, help="classes to show for each image")
    parser.add_argument("--method", choices=sorted(METHODS),
                        help="head: the class head; knn: a vote of the nearest training images (default: the "
                             "class head when the model has one)")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="also write every answer to FILE, a row an image")
    parser.add_argument("--embeddings", type=Path, metavar="FILE",
                        help="also write each image's embedding, with its file name, to FILE (.npz or .csv)")
    return parser


def images_under(paths: list[Path]) -> list[Path]:
    """Every image file among `paths`, folders searched recursively, in order; a path that does not exist is
    kept, so that its line says so."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                            and not any(part.startswith(".") for part in p.relative_to(path).parts))
        else:
            found.append(path)
    return found


def open_model(path: Path) -> ModelFile:
    run = RunFolder(path)
    return ModelFile.load(run.model_path if path.is_dir() else path)


def classify(classifier: Classifier, files: list[Path], method: str | None,
             top: int) -> list[tuple[Path, Answer | str]]:
    """(file, its answer or why it could not be read), in order, `CHUNK` files decoded at a time."""
    results: list[tuple[Path, Answer | str]] = []
    for start in range(0, len(files), CHUNK):
        read, pixels, blank = {}, [], []
        for file in files[start:start + CHUNK]:
            try:
                image = decode(file)
            except ImageError as exc:
                read[file] = str(exc)
                continue
            read[file] = len(pixels)
            pixels.append(classifier.model_input(image))  # uint8 (C, S, S)
            blank.append(is_blank(image))
        answers = classifier.answers(torch.stack(pixels), blank, method, top) if pixels else []
        results += [(file, answers[at] if isinstance(at, int) else at) for file, at in read.items()]
    return results


def line(file: Path, answer: Answer | str) -> str:
    if isinstance(answer, str):
        return f"{file}: error: {answer}"
    classes = ", ".join(f"{name} {p:.3f}" for name, p in answer.top)
    flags = "".join(f" [{flag}]" for flag, on in (("blank", answer.blank),
                                                    ("unlike the training images", answer.unlike_training)) if on)
    return f"{file}: {classes} ({answer.method}){flags}"


def write_csv(path: Path, results: list[tuple[Path, Answer | str]], top: int) -> None:
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["file", *[f"{kind}_{i}" for i in range(1, top + 1) for kind in ("class", "p")], "method",
                         "blank", "unlike_training", "error"])
        for name, answer in results:
            if isinstance(answer, str):
                writer.writerow([name, *[""] * (2 * top + 3), answer])
                continue
            cells = [cell for name_p in answer.top for cell in (name_p[0], f"{name_p[1]:.6f}")]
            writer.writerow([name, *cells, *[""] * (2 * top - len(cells)), answer.method, answer.blank,
                             answer.unlike_training, ""])


def write_embeddings(path: Path, results: list[tuple[Path, Answer | str]]) -> None:
    """Each readable image's embedding with its file name: an .npz (names, embeddings (N, D)) or a .csv."""
    kept = [(str(name), answer.embedding.numpy()) for name, answer in results if not isinstance(answer, str)]
    names = [name for name, _ in kept]
    vectors = np.stack([vector for _, vector in kept]) if kept else np.zeros((0, 0), np.float32)
    if path.suffix.lower() == ".npz":
        np.savez(path, names=np.array(names), embeddings=vectors)
        return
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["file", *[f"e{i}" for i in range(vectors.shape[1] if kept else 0)]])
        writer.writerows([name, *(f"{v:.6g}" for v in vector)] for name, vector in kept)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.embeddings is not None and args.embeddings.suffix.lower() not in (".npz", ".csv"):
        return console.error(f"--embeddings writes .npz or .csv, not {args.embeddings.name}")
    try:
        classifier = Classifier(open_model(args.model))
        method = METHODS[args.method] if args.method else None
        classifier.resolve_method(method)  # a model with no class head refuses --method head before any image
    except (ModelFileError, ValueError, OSError) as exc:
        return console.error(str(exc))
    files = images_under(args.paths)
    if not files:
        return console.error("no image files in " + ", ".join(map(str, args.paths)))
    print(f"{describe(classifier.published)}: {len(files)} images", file=sys.stderr)
    results = classify(classifier, files, method, args.top)
    for file, answer in results:
        print(line(file, answer))
    if args.csv is not None:
        write_csv(args.csv, results, args.top)
    if args.embeddings is not None:
        write_embeddings(args.embeddings, results)
    failed = sum(isinstance(answer, str) for _, answer in results)
    if failed:
        print(f"{failed} of {len(results)} files could not be classified", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
