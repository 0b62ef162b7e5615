from types import SimpleNamespace

import pytest
import torch

from core.config import AugmentConfig, ModelConfig, TrainConfig, to_json
from core.model.backbone import Backbone
from core.trainer.checkpoint import FORMAT, Checkpoint, CheckpointError, ResumeState


def resume_state():
    return ResumeState(optimizer={"state": {}, "param_groups": [{"lr": 0.1, "params": [0]}]},
                       generator=torch.Generator().manual_seed(1).get_state(),
                       order_generator=torch.Generator().manual_seed(2).get_state(),
                       torch_rng=torch.get_rng_state(), epoch_order=torch.arange(4), order_epoch=2)


def record(step=1, resume=False):
    return Checkpoint(config=TrainConfig(), backbone={"w": torch.ones(2)}, objective={}, step=step, epoch=0,
                      data_fingerprint="abc", class_names=("a", "b"), channels=1,
                      resume=resume_state() if resume else None)


def raw(**changes):
    """The on-disk dict of a weights-only record, with `changes` applied."""
    payload = {"format": FORMAT, "config": to_json(TrainConfig()), "backbone": {"w": torch.ones(2)},
               "objective": {}, "step": 1, "epoch": 0, "data_fingerprint": "abc", "class_names": ["a", "b"],
               "channels": 1, "baselines": []}
    payload.update(changes)
    return payload


def test_round_trip(tmp_path):
    record(3).save(tmp_path / "c.pt")
    loaded = Checkpoint.load(tmp_path / "c.pt")
    assert loaded.step == 3 and loaded.config == TrainConfig()
    assert torch.equal(loaded.backbone["w"], torch.ones(2))
    assert loaded.class_names == ("a", "b") and loaded.channels == 1
    assert loaded.baselines is None and loaded.resume is None


def test_a_resume_state_round_trips(tmp_path):
    saved = record(resume=True)
    saved.save(tmp_path / "c.pt")
    loaded = Checkpoint.load(tmp_path / "c.pt").resume
    assert loaded is not None
    assert loaded.optimizer == saved.resume.optimizer and loaded.order_epoch == 2
    for name in ("generator", "order_generator", "torch_rng", "epoch_order"):
        assert torch.equal(getattr(loaded, name), getattr(saved.resume, name)), name


def test_a_crash_while_writing_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    record(1).save(path)

    def dying_save(obj, handle):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt  # as if the process were interrupted mid-write

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        record(2).save(path)
    monkeypatch.undo()
    assert Checkpoint.load(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(_Payload.marker),))


def test_pickled_objects_are_refused_and_never_executed(tmp_path):
    _Payload.marker = str(tmp_path / "executed")
    evil = tmp_path / "evil.pt"
    torch.save(raw(extra=_Payload()), evil)
    with pytest.raises(CheckpointError, match="refused"):
        Checkpoint.load(evil)
    assert not (tmp_path / "executed").exists()


@pytest.mark.parametrize("content, message", [
    (b"", "not a readable checkpoint"),
    (b"not a zip file at all", "not a readable checkpoint"),
    (b"PK\x03\x04 truncated zip", "not a readable checkpoint"),
])
def test_garbage_files_are_refused(tmp_path, content, message):
    (tmp_path / "bad.pt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        Checkpoint.load(tmp_path / "bad.pt")


def test_foreign_and_incomplete_checkpoints(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not a vit2040 checkpoint"):
        Checkpoint.load(tmp_path / "foreign.pt")
    incomplete = raw()
    del incomplete["backbone"]
    torch.save(incomplete, tmp_path / "inc.pt")
    with pytest.raises(CheckpointError, match="lacks backbone"):
        Checkpoint.load(tmp_path / "inc.pt")
    with pytest.raises(CheckpointError, match="not found"):
        Checkpoint.load(tmp_path / "missing.pt")


def test_a_missing_channels_key_is_named(tmp_path):
    incomplete = raw()
    del incomplete["channels"]
    torch.save(incomplete, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="lacks channels"):
        Checkpoint.load(tmp_path / "c.pt")


def test_a_foreign_key_is_refused_and_named(tmp_path):
    torch.save(raw(surprise=1), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="holds keys no vit2040 checkpoint has: surprise"):
        Checkpoint.load(tmp_path / "c.pt")


def test_a_partial_resume_state_is_refused(tmp_path):
    torch.save(raw(optimizer={"state": {}, "param_groups": []}), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="has a partial resume state"):
        Checkpoint.load(tmp_path / "c.pt")


def test_a_step_that_is_not_an_int_is_refused(tmp_path):
    torch.save(raw(step="3"), tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="step of type str"):
        Checkpoint.load(tmp_path / "c.pt")


def test_data_mismatch_is_refused(tmp_path):
    record().save(tmp_path / "c.pt")
    loaded = Checkpoint.load(tmp_path / "c.pt")
    loaded.check_matches(SimpleNamespace(fingerprint="abc", class_names=("a", "b")))
    with pytest.raises(CheckpointError, match="other data"):
        loaded.check_matches(SimpleNamespace(fingerprint="xyz", class_names=("a", "b")))


def test_check_resumable_refuses_weights_only_and_another_config():
    record(resume=True).check_resumable(TrainConfig(epochs=60))  # more epochs: the same run, continued
    with pytest.raises(CheckpointError, match="no optimizer state"):
        record().check_resumable(TrainConfig())
    with pytest.raises(CheckpointError, match="differs in lr"):
        record(resume=True).check_resumable(TrainConfig(lr=1e-3))


def test_build_backbone_and_class_head(tmp_path):
    model = ModelConfig(image_size=14, patch_size=7, dim=16, depth=1, heads=2, dim_head=8, mlp_dim=32)
    state = Backbone(model, channels=1).state_dict()
    config = TrainConfig(model=model, augment=AugmentConfig(global_size=14, local_size=14))
    Checkpoint(config=config, backbone=state, objective={}, step=0, epoch=0, data_fingerprint="abc",
               class_names=("a", "b"), channels=1).save(tmp_path / "c.pt")
    loaded = Checkpoint.load(tmp_path / "c.pt")
    assert not loaded.predicts_classes and loaded.class_head() is None  # instance objective: no class head
    backbone = loaded.build_backbone("cpu")
    assert isinstance(backbone, Backbone) and not backbone.training
    rebuilt = backbone.state_dict()
    assert rebuilt.keys() == state.keys() and all(torch.equal(rebuilt[k], state[k]) for k in state)


def test_a_save_removes_temp_files_left_by_a_killed_writer(tmp_path):
    (tmp_path / ".c.pt.abc123.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".other.pt.x.tmp").write_bytes(b"another path's")
    record(1).save(tmp_path / "c.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.pt.x.tmp", "c.pt"]
