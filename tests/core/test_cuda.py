"""The GPU fast path on a GPU: data and views on the device, bf16 autocast, fused AdamW, losses read
back in windows, and no host sync inside a step. Skipped where there is no CUDA device (CI and most
machines); tests/core/test_trainer.py runs the same code paths on the CPU."""
import pytest
import torch
from torch import nn

from core import events as ev
from core.plan.recipe import recipe
from core.trainer.loop import Trainer
from tests.core.conftest import Recorder

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture
def cuda_config(tiny_config):
    return tiny_config.with_overrides(device="cuda", checkpoint_every=0)


def test_a_cuda_run_keeps_its_data_on_the_device_and_trains(cuda_config, toy_data):
    trainer = Trainer(cuda_config, toy_data)
    assert trainer.train_images.is_cuda and trainer.train_images.dtype == torch.uint8
    assert trainer.optimizer.defaults["fused"] and trainer.sync_every == 16
    assert all(group.is_cuda for group in trainer.views(trainer.train_images[:4], trainer.sampling.views))
    seen = []
    linear = next(m for m in trainer.backbone.modules() if isinstance(m, nn.Linear))  # norms stay fp32
    handle = linear.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    events = Recorder()
    done = trainer.run(events)
    handle.remove()
    assert done.reason == "completed" and torch.bfloat16 in seen  # training forwards ran under autocast
    assert len(events.of(ev.StepMetrics)) == trainer.total_steps
    assert all(torch.isfinite(torch.tensor(s.loss)) for s in events.of(ev.StepMetrics))


@pytest.mark.parametrize("objective", ["instance", "contrastive", "supervised"])
def test_a_training_step_never_waits_for_the_device(cuda_config, toy_data, objective):
    trainer = Trainer(recipe(cuda_config, objective), toy_data)
    index = torch.arange(cuda_config.batch_size, device="cuda")
    trainer._train_step(index, 0)  # the first step initialises libraries and the optimizer's state
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any host sync from here on raises
    try:
        for epoch in (0, 1):  # Mixup on even epochs, CutMix on odd ones (fine-tuning)
            trainer._train_step(index, epoch)
    finally:
        torch.cuda.set_sync_debug_mode("default")
