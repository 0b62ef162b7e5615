"""Child process for test_faults: a toy run that saves a checkpoint every epoch and stalls half-way
through writing its second one, so the parent can kill -9 it mid-write.

`python -m tests.reliability.checkpoint_writer OUT_DIR`; prints "mid-write WRITTEN TOTAL" once the
first half of the second checkpoint's bytes is on disk.
"""
from __future__ import annotations

import io
import sys
import time

import torch

from core.config import TrainConfig
from core.trainer.loop import Trainer
from tests.core.conftest import TINY_AUGMENT, TINY_MODEL, make_splits

CONFIG = TrainConfig(dataset="toy", model=TINY_MODEL, augment=TINY_AUGMENT, epochs=3, batch_size=16, lr=1e-3,
                     warmup_epochs=1, knn_k=5, eval_every=1, snapshot_every=0, checkpoint_every=1)


def main(out_dir: str) -> None:
    real_save = torch.save
    saves = 0

    def stalling_save(obj, handle) -> None:
        nonlocal saves
        saves += 1
        if saves == 1:
            real_save(obj, handle)
            return
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        handle.write(data[:len(data) // 2])
        handle.flush()
        print(f"mid-write {len(data) // 2} {len(data)}", flush=True)
        time.sleep(600)  # the parent kills us here

    torch.save = stalling_save  # core.checkpoint calls torch.save through the module
    Trainer(CONFIG, make_splits(), out_dir=out_dir).run(lambda event: None)


if __name__ == "__main__":
    main(sys.argv[1])
