"""A stage's event log: one JSON object per trainer event, appended as the run goes (a resumed run continues
it), and read back into the same event records. The one writer and the one reader of the format.

Arrays and weights stay out of the log (an embedding snapshot is logged by its shape, a hand-over's best
backbone by its epoch alone); reading never trusts a file: a half-written last line (a run still going, a
crash) is skipped.
"""
from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path
from typing import TextIO

import numpy as np

from core import events as ev

_EVENTS = {cls.__name__: cls for cls in typing.get_args(ev.Event)}
_TUPLES = ("class_counts", "confusion")  # JSON lists that the events hold as tuples


def _loggable(value) -> bool:
    """Plain data goes to the log; arrays and state dicts (weights) do not."""
    return not isinstance(value, (np.ndarray, dict))


class JsonlLog:
    """Appends the events it is called with to `path`, one JSON object a line."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file: TextIO = self.path.open("a", encoding="utf-8")

    def __call__(self, event: ev.Event) -> None:
        record = {"event": type(event).__name__}
        # Shallow, not dataclasses.asdict: that would deep-copy a Finished event's weights only to drop them.
        record.update({f.name: getattr(event, f.name) for f in dataclasses.fields(event)
                       if _loggable(getattr(event, f.name))})
        if isinstance(event, ev.EmbeddingSnapshot):
            record["shape"] = list(event.embeddings.shape)
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_events(path: str | Path) -> list[ev.Event]:
    """The events a log holds, as they were emitted (EmbeddingSnapshots, whose arrays were not logged, are
    left out); unreadable lines are skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            kind = _EVENTS[record.pop("event")]
            if kind is ev.EmbeddingSnapshot:
                continue
            for key in _TUPLES:
                if isinstance(record.get(key), list):
                    record[key] = _tuples(record[key])
            events.append(kind(**record))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
    return events


def _tuples(value):
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value
