"""Training data from the browser: a zip of class subfolders unpacked safely into a folder dataset.

Nothing in an archive is trusted. A member that would land outside the folder (an absolute path, '..'), a link,
an archive over MAX_BYTES unpacked or MAX_FILES files, a file over MAX_FILE_BYTES, or an image over the pixel
limit (core.data.images.MAX_PIXELS, read from its header) refuses the whole archive in one sentence, and what
was unpacked is removed. Sizes are counted as the bytes are written, not read from headers an archive can
fake. Files that are not images, and hidden or system files (__MACOSX, .DS_Store), are left out. A zip of one
folder that holds the class folders (what zipping a folder makes) unpacks as that folder's classes. The result
is then a folder dataset like any typed path (core/data/folder.py validates it the same way).
"""
from __future__ import annotations

import shutil
import stat
import zipfile
from pathlib import Path, PurePosixPath

from PIL import Image

from core.data import images
from core.data.folder import folder_files
from core.data.images import IMAGE_EXTENSIONS
from core.data.splits import DatasetError

MAX_BYTES = 2 * 1024 ** 3  # unpacked, all files: a few thousand photos fit many times over
MAX_FILES = 100_000
MAX_FILE_BYTES = 100 * 1024 ** 2
CHUNK = 1024 ** 2


def unpack(archive: str | Path, into: str | Path) -> Path:
    """Unpack the zip `archive` into a new folder under `into`, named after it; returns the dataset folder (the
    one whose subfolders are the classes). DatasetError says why an archive is refused."""
    archive, into = Path(archive), Path(into)
    if not zipfile.is_zipfile(archive):
        raise DatasetError(f"{archive.name} is not a zip archive: zip a folder with one subfolder of images a class")
    target = _new_folder(into, archive.stem)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = _members(zipped, archive.name)
            written = 0
            for member, parts in members:
                written = _extract(zipped, member, target.joinpath(*parts), written, archive.name)
        root = _dataset_root(target)
        folder_files(str(root))  # the folder dataset's own checks: classes, images, counts, each named
        return root
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise


def _new_folder(into: Path, stem: str) -> Path:
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in stem).strip(".-") or "upload"
    into.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        target = into / (name if n == 1 else f"{name}-{n}")
        try:
            target.mkdir()
            return target
        except FileExistsError:
            continue
    raise DatasetError(f"too many uploads named {name} in {into}")


def _members(zipped: zipfile.ZipFile, name: str) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    """The image members to unpack, each with its safe relative path; refuses links, escapes and too many."""
    chosen = []
    infos = zipped.infolist()
    if len(infos) > MAX_FILES:
        raise DatasetError(f"{name} holds {len(infos):,} entries, over the limit of {MAX_FILES:,}")
    for info in infos:
        if stat.S_ISLNK(info.external_attr >> 16):
            raise DatasetError(f"{name} holds a link ({info.filename}): links are refused, zip the files themselves")
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or (path.parts and path.parts[0].endswith(":")):
            raise DatasetError(f"{name} holds {info.filename}, a path outside the archive's folder: refused")
        hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
        if info.is_dir() or hidden or path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if info.file_size > MAX_FILE_BYTES:
            raise DatasetError(f"{info.filename} in {name} is {info.file_size:,} bytes, over the limit of "
                               f"{MAX_FILE_BYTES:,} for one image")
        chosen.append((info, path.parts))
    return chosen


def _extract(zipped: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, written: int, name: str) -> int:
    """Copy one member to `dest`, counting the bytes as they come (an archive's sizes can lie); then check the
    image's pixels from its header. Returns the bytes written so far, all members."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    own = 0
    with zipped.open(info) as source, dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            own, written = own + len(chunk), written + len(chunk)
            if own > MAX_FILE_BYTES:
                raise DatasetError(f"{info.filename} in {name} unpacks to more than {MAX_FILE_BYTES:,} bytes: "
                                   "refused")
            if written > MAX_BYTES:
                raise DatasetError(f"{name} unpacks to more than {MAX_BYTES:,} bytes, the limit: refused")
            out.write(chunk)
    try:
        with Image.open(dest) as image:
            width, height = image.size
    except (OSError, ValueError, Image.DecompressionBombError):
        return written  # an unreadable image is skipped, and named, when the folder is loaded
    if width * height > images.MAX_PIXELS:
        raise DatasetError(f"{info.filename} in {name} is {width}×{height} pixels, over the limit of "
                           f"{images.MAX_PIXELS:,}: scale it down and zip again")
    return written


def _dataset_root(target: Path) -> Path:
    """The folder holding the classes: the archive's own folder, or the one folder it holds when it holds
    nothing else (a zipped folder)."""
    entries = [p for p in target.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and any(p.is_dir() for p in entries[0].iterdir()):
        return entries[0]
    return target
