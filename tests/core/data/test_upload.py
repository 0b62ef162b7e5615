"""Training data from the browser: a zip of class folders unpacked safely, every refusal one sentence."""
import stat
import zipfile

import numpy as np
import pytest
from PIL import Image

from core.data import images, upload
from core.data.sources import load_dataset
from core.data.splits import DatasetError


def png(size=(20, 16), seed=0) -> bytes:
    import io
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size[::-1], 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def archive(path, members: dict[str, bytes], links=()) -> str:
    with zipfile.ZipFile(path, "w") as zipped:
        for name, data in members.items():
            zipped.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zipped.writestr(info, "/etc/passwd")
    return str(path)


def classes(prefix="") -> dict[str, bytes]:
    return {f"{prefix}{name}/{i}.png": png(seed=i) for name in ("cats", "dogs") for i in range(3)}


def test_a_zipped_folder_unpacks_to_its_classes_and_trains_like_a_typed_path(tmp_path):
    junk = {"photos/__MACOSX/cats/._0.png": b"junk", "photos/cats/.DS_Store": b"junk", "photos/notes.txt": b"hi"}
    folder = upload.unpack(archive(tmp_path / "my photos.zip", {**classes("photos/"), **junk}), tmp_path / "uploads")
    assert folder == tmp_path / "uploads" / "my-photos" / "photos"
    assert sorted(p.name for p in folder.iterdir()) == ["cats", "dogs"] and not (folder / "notes.txt").exists()
    data = load_dataset(f"folder:{folder}", size=16)
    assert data.class_names == ("cats", "dogs") and len(data.train) + len(data.test) == 6
    assert set(data.train.names) <= {f"{c}/{i}.png" for c in ("cats", "dogs") for i in range(3)}
    again = upload.unpack(archive(tmp_path / "flat.zip", classes()), tmp_path / "uploads")  # classes at the top
    assert again == tmp_path / "uploads" / "flat" and (again / "cats" / "0.png").is_file()


@pytest.mark.parametrize("members, links, message", [
    ({"../evil/0.png": png()}, (), "a path outside the archive's folder"),
    ({"/etc/cats/0.png": png()}, (), "a path outside the archive's folder"),
    ({}, ("cats/link.png",), "holds a link (cats/link.png): links are refused"),
    ({"cats/0.png": png()}, (), "has only one class subfolder"),
])
def test_an_unsafe_or_unusable_archive_is_refused_whole_and_nothing_is_left(tmp_path, members, links, message):
    with pytest.raises(DatasetError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        upload.unpack(archive(tmp_path / "a.zip", {**classes(), **members} if "class" not in message else members,
                              links), tmp_path / "uploads")
    assert "\n" not in str(refused.value)
    assert not any((tmp_path / "uploads").iterdir())  # what was unpacked is gone


def test_limits_on_bytes_files_and_pixels(tmp_path, monkeypatch):
    (tmp_path / "not.zip").write_bytes(b"PK? no")
    with pytest.raises(DatasetError, match="not.zip is not a zip archive"):
        upload.unpack(tmp_path / "not.zip", tmp_path / "uploads")
    monkeypatch.setattr(upload, "MAX_BYTES", 300)  # counted while writing, whatever the headers say
    with pytest.raises(DatasetError, match="unpacks to more than 300 bytes, the limit"):
        upload.unpack(archive(tmp_path / "big.zip", classes()), tmp_path / "uploads")
    monkeypatch.setattr(upload, "MAX_BYTES", 10 ** 9)
    monkeypatch.setattr(upload, "MAX_FILES", 4)
    with pytest.raises(DatasetError, match="holds 6 entries, over the limit of 4"):
        upload.unpack(archive(tmp_path / "many.zip", classes()), tmp_path / "uploads")
    monkeypatch.setattr(upload, "MAX_FILES", 100)
    monkeypatch.setattr(images, "MAX_PIXELS", 100)
    with pytest.raises(DatasetError, match=r"cats/0.png in pixels.zip is 20×16 pixels, over the limit of 100"):
        upload.unpack(archive(tmp_path / "pixels.zip", classes()), tmp_path / "uploads")
    assert not any((tmp_path / "uploads").iterdir())
