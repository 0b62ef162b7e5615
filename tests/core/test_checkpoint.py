import pytest
import torch

from core.checkpoint import CheckpointError, check_matches, load_checkpoint, save_checkpoint
from core.config import TrainConfig, to_json


def payload(step=1):
    return {"config": to_json(TrainConfig()), "backbone": {"w": torch.ones(2)}, "step": step, "epoch": 0,
            "data_fingerprint": "abc", "class_names": ["a", "b"]}


def test_round_trip(tmp_path):
    save_checkpoint(tmp_path / "c.pt", payload(3))
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert loaded["step"] == 3 and loaded["config"] == TrainConfig()
    assert torch.equal(loaded["backbone"]["w"], torch.ones(2))


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint(path, payload(1))

    def dying_save(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt  # as if the process were interrupted mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, payload(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(_Payload.marker),))


def test_pickled_objects_are_refused_and_never_executed(tmp_path):
    _Payload.marker = str(tmp_path / "executed")
    evil = tmp_path / "evil.pt"
    torch.save({**payload(), "format": "vit2040-checkpoint-v1", "extra": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    assert not (tmp_path / "executed").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable checkpoint"),
    (b"not a zip file at all", "not a readable checkpoint"),
    (b"PK\x03\x04 truncated zip", "not a readable checkpoint"),
])
def test_garbage_files_are_refused(tmp_path, content, message):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.pt")


def test_foreign_and_incomplete_checkpoints(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vit2040 checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    incomplete = payload()
    del incomplete["backbone"]
    save_checkpoint(tmp_path / "inc.pt", incomplete)
    with pytest.raises(CheckpointError, match="lacks backbone"):
        load_checkpoint(tmp_path / "inc.pt")
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_data_mismatch_is_refused(tmp_path):
    save_checkpoint(tmp_path / "c.pt", payload())
    loaded = load_checkpoint(tmp_path / "c.pt")
    check_matches(loaded, "abc", ("a", "b"))
    with pytest.raises(CheckpointError, match="other data"):
        check_matches(loaded, "xyz", ("a", "b"))


def test_a_save_removes_temp_files_left_by_a_killed_writer(tmp_path):
    (tmp_path / ".c.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.x.tmp").write_bytes(b"another path's")
    save_checkpoint(tmp_path / "c.pt", payload(1))
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x.tmp", "c.pt"]
