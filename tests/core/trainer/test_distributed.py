"""Two gloo processes on the CPU train a few steps with DDP and must end with identical weights."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from core.trainer.loop import Trainer
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, make_splits


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    from core.config import TrainConfig

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    config = TrainConfig(dataset="toy", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=2, batch_size=16,
                         lr=1e-3, warmup_epochs=0, knn_k=5, device="cpu", eval_every=0, snapshot_every=0,
                         checkpoint_every=0)
    trainer = Trainer(config, make_splits())
    initial = {k: v.clone() for k, v in trainer.backbone.state_dict().items()}
    seen = []
    trainer.run(lambda event: seen.append(type(event).__name__))
    torch.save({"initial": initial, "final": trainer.backbone.state_dict(), "events": seen,
                "world": trainer.dist.world}, os.path.join(out, f"rank{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights(tmp_path):
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2
    for name, value in r0["final"].items():
        assert torch.equal(value, r1["final"][name]), name
    assert any(not torch.equal(r0["initial"][k], v) for k, v in r0["final"].items())  # it trained
    # only rank 0 reports progress; both learn how the run ended
    assert "StepMetrics" in r0["events"] and "StepMetrics" not in r1["events"]
    assert r0["events"][-1] == r1["events"][-1] == "Finished"
