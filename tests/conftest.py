"""Shared test helpers."""

from __future__ import annotations

import pytest
import torch

from snn_parallel.surrogate import Surrogate


class SmoothSpike(Surrogate):
    """A differentiable stand-in for the Heaviside step, whose derivative is exact.

    With it every op is a smooth function, so ``torch.autograd.gradcheck`` checks the
    hand-written backward passes exactly (with a true surrogate the numerical derivative
    of the step is zero almost everywhere).
    """

    name = "smooth"

    def heaviside(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(3 * x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(3 * x)
        return 3 * s * (1 - s)


@pytest.fixture
def smooth() -> SmoothSpike:
    return SmoothSpike()


@pytest.fixture
def float64():
    """Build and run in float64 (the default dtype), so that a framework's neuron and ours compute with the same
    numbers, not float32 ones cast up."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch):
    """Make the fused ops cut even tiny inputs into many time blocks."""
    from snn_parallel.ops import _blocks

    def use(elements: int) -> None:
        monkeypatch.setattr(_blocks, "BLOCK_ELEMENTS", elements)
        monkeypatch.setattr(_blocks, "MAX_BLOCKS", 10**9)

    return use
