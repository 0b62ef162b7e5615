"""The app's dataset cache: one decode per dataset, a changed folder decoded again."""
import threading

from PIL import Image

from core.config import TrainConfig
from core.data import cache as dataset_cache
from core.data.cache import DatasetCache, folder_stamp


def photo_folder(root, per_class=3):
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.new("RGB", (20, 20), (40 * i, 200 if cls == "a" else 0, 90)).save(root / cls / f"{i}.png")
    return root


def test_a_folder_dataset_changed_since_its_decode_is_decoded_again(tmp_path):
    folder = photo_folder(tmp_path / "photos")
    cache, config = DatasetCache(), TrainConfig(dataset=f"folder:{folder}", data_size=16)
    first = cache.get(config)
    assert cache.get(config) is first  # unchanged: decoded once
    Image.new("RGB", (20, 20), (1, 2, 3)).save(folder / "b" / "3.png")
    again = cache.get(config)
    assert again is not first and len(again.train) + len(again.test) == 7
    assert len(cache._splits) == 1  # the older state of the folder is dropped


def test_concurrent_requests_decode_once(tmp_path, monkeypatch):
    folder = photo_folder(tmp_path / "photos")
    calls, real = [], dataset_cache.load_dataset
    monkeypatch.setattr(dataset_cache, "load_dataset", lambda *a, **k: calls.append(a) or real(*a, **k))
    cache, config = DatasetCache(), TrainConfig(dataset=f"folder:{folder}", data_size=16)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get(config))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and all(splits is got[0] for splits in got)


def test_only_folders_have_a_stamp(tmp_path):
    assert folder_stamp("fashion") is None and folder_stamp(f"folder:{tmp_path / 'missing'}") is None
    folder = photo_folder(tmp_path / "photos")
    before = folder_stamp(f"folder:{folder}")
    assert before == folder_stamp(f"folder:{folder}")
    (folder / "a" / "0.png").unlink()
    assert folder_stamp(f"folder:{folder}") != before
