"""A run's random streams: the order it visits the training images in, epoch by epoch, and the views' draws.

Both are seeded from the config, so a run is repeatable on one machine, and both are saved in every
checkpoint (core.checkpoint.ResumeState), so a resumed run continues the same streams: the rest of an
interrupted epoch visits the images that epoch had not reached yet.
"""
from __future__ import annotations

import torch

RANK_STRIDE = 7919  # a prime: ranks > 0 derive their views' stream on resume from the step (only rank 0's is saved)


class Sampling:
    def __init__(self, seed: int, rank: int, device: torch.device):
        self.seed, self.rank, self.device = seed, rank, device
        # Views differ per rank; the epoch order (drawn on the CPU) is the same on every rank.
        self.views = torch.Generator(device).manual_seed(seed + rank)
        self._order_stream = torch.Generator().manual_seed(seed)
        self._order: torch.Tensor | None = None  # the sample order of epoch `_order_epoch`
        self._order_epoch = -1

    def order(self, epoch: int, n: int) -> torch.Tensor:
        """The order (n,) of epoch `epoch`'s samples on the run's device, drawn when the epoch starts."""
        if self._order is None or self._order_epoch != epoch:
            self._order = torch.randperm(n, generator=self._order_stream).to(self.device)
            self._order_epoch = epoch
        return self._order

    def state(self) -> dict[str, torch.Tensor | int]:
        """ResumeState's fields for the streams (rank 0's views stream)."""
        return {"generator": self.views.get_state(), "order_generator": self._order_stream.get_state(),
                "epoch_order": self._order if self._order is not None else torch.empty(0, dtype=torch.long),
                "order_epoch": self._order_epoch}

    def restore(self, generator: torch.Tensor, order_generator: torch.Tensor, epoch_order: torch.Tensor,
                order_epoch: int, step: int) -> None:
        """Continue the streams a checkpoint saved at `step` (its ResumeState's fields)."""
        if self.rank == 0:
            self.views.set_state(generator.cpu())
        else:
            self.views.manual_seed(self.seed + self.rank + RANK_STRIDE * step)
        self._order_stream.set_state(order_generator.cpu())
        self._order = epoch_order.to(self.device) if len(epoch_order) else None
        self._order_epoch = order_epoch
