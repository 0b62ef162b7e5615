import math

import pytest

from core.trainer.schedule import warmup_cosine


def test_warmup_then_cosine():
    lrs = warmup_cosine(1.0, 0.0, total_steps=110, warmup_steps=10)
    assert len(lrs) == 110
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert lrs[10] == pytest.approx(1.0)
    assert lrs[60] == pytest.approx(0.5)
    assert lrs[-1] == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(lrs[10:].tolist(), lrs[11:].tolist()))


def test_no_warmup_starts_at_base():
    assert warmup_cosine(2.0, 0.5, 5, 0)[0] == pytest.approx(2.0)


def test_bad_lengths_are_refused():
    with pytest.raises(ValueError):
        warmup_cosine(1.0, 0.0, 5, 6)
