"""Decoded datasets kept in memory for a long-lived process (the app): one decode per dataset, even
when several threads ask at once, and a folder decoded again once its files have changed."""
from __future__ import annotations

import threading
from pathlib import Path

from core.config import TrainConfig
from core.data.sources import load_dataset
from core.data.splits import DataSplits


def folder_stamp(spec: str) -> int | None:
    """For a folder dataset, a hash of its files' names, sizes and times, so that a folder changed
    since it was decoded is decoded again (named datasets never change: None)."""
    if not spec.startswith("folder:"):
        return None
    root = Path(spec[len("folder:"):]).expanduser()
    if not root.is_dir():
        return None  # load_dataset reports the missing folder
    entries = []
    for path in sorted(root.rglob("*")):
        try:
            stat = path.stat()
        except OSError:  # vanished or unreadable: the decode will say so
            continue
        entries.append((str(path), stat.st_size, stat.st_mtime_ns))
    return hash(tuple(entries))


class DatasetCache:
    """Thread-safe: `get` decodes a (dataset, stored side, seed) once and hands out the same splits."""

    def __init__(self, root: str | Path | None = None, download: bool = False):
        self.root = root
        self.download = download
        self._lock = threading.Lock()
        self._splits: dict[tuple, DataSplits] = {}

    def get(self, config: TrainConfig) -> DataSplits:
        """The splits `config` trains on; DatasetError (a ValueError) when they cannot be loaded."""
        key = (config.dataset, config.data_size, config.seed, folder_stamp(config.dataset))
        with self._lock:  # one decode per dataset, even when a preload and a Start race
            if key not in self._splits:
                for stale in [k for k in self._splits if k[:3] == key[:3]]:  # an older state of the folder
                    del self._splits[stale]
                self._splits[key] = load_dataset(config.dataset, root=self.root, download=self.download,
                                                 size=config.data_size, seed=config.seed)
            return self._splits[key]
