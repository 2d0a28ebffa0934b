"""A lazy skin (no feature count) loads an snnTorch state dict as the eager one does: ``DecoupledLIF`` from
``snn.Leaky`` and ``Synaptic`` from ``snn.Synaptic``, a decay of one value beside a per-neuron threshold included (the
threshold's channel count builds the core, whose decay must then come from the loaded value, not from the empty
placeholder it had), and the loaded skin then fires and integrates as snnTorch's neuron in float64."""

from __future__ import annotations

import pytest
import torch

snn = pytest.importorskip("snntorch")
from snn_parallel.adapters.snntorch import DecoupledLIF, Synaptic  # noqa: E402

F64 = torch.float64
C = 5


def _values(kind: str, low: float, high: float) -> float | torch.Tensor:
    """One value (a number) or one per neuron (a ``[C]`` tensor of different values) between ``low`` and ``high``."""
    return low if kind == "scalar" else torch.linspace(low, high, C, dtype=F64)


KINDS = [
    (beta, threshold, learn_beta, learn_threshold)
    for beta in ("scalar", "per_neuron")
    for threshold in ("scalar", "per_neuron")
    for learn_beta, learn_threshold in ((False, False), (False, True), (True, False), (True, True))
]


def _drive(steps: int = 30, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return 0.9 * torch.rand(steps, 3, C, dtype=F64)


def _assert_same_run(ours, ref, x: torch.Tensor) -> None:
    """Step by step (``mem`` passed back, as snnTorch's tutorials loop) and, for ours, ``multistep`` too: the spikes
    and the membranes are snnTorch's."""
    state_ref, state_ours, spikes, mems = (), (), [], []  # (mem,) or snn.Synaptic's (syn, mem), passed back
    for x_t in x.unbind(0):
        s_ref, *state_ref = ref(x_t, *state_ref)
        s_ours, *state_ours = ours(x_t, *state_ours)
        mem_ref = state_ref[-1]
        assert torch.equal(s_ours.to(F64), s_ref.to(F64))
        for got, expected in zip(state_ours, state_ref, strict=True):
            torch.testing.assert_close(got, expected)
        spikes.append(s_ref.to(F64))
        mems.append(mem_ref)
    spk_seq = torch.stack(spikes)
    assert 0.05 < spk_seq.mean() < 0.95  # the neurons fire, not always: the loaded thresholds and decays matter
    ours.reset_mem()
    spk_ours, *_, mem_ours = ours.multistep(x)
    assert torch.equal(spk_ours.to(F64), spk_seq)
    torch.testing.assert_close(mem_ours, torch.stack(mems))


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize("same", [True, False], ids=["same_values", "other_values"])
@pytest.mark.parametrize(("beta", "threshold", "learn_beta", "learn_threshold"), KINDS)
def test_a_skin_loads_snn_leakys_state_dict_lazy_or_not(beta, threshold, learn_beta, learn_threshold, lazy, same):
    """``DecoupledLIF`` built as ``snn.Leaky`` (the same kinds of ``beta`` and ``threshold``, learned or not; with the
    same values, or other values that the state dict's must replace) loads its state dict and is that neuron."""
    ref = snn.Leaky(
        beta=_values(beta, 0.75, 0.95),
        threshold=_values(threshold, 0.5, 1.0),
        learn_beta=learn_beta,
        learn_threshold=learn_threshold,
    ).double()
    given = (0.75, 0.95, 0.5, 1.0) if same else (0.6, 0.7, 1.5, 2.0)
    ours = DecoupledLIF(
        *(() if lazy else (C,)),
        beta=_values(beta, *given[:2]),
        threshold=_values(threshold, *given[2:]),
        learn_beta=learn_beta,
        learn_threshold=learn_threshold,
    ).double()
    ours.load_state_dict(ref.state_dict())
    _assert_same_run(ours, ref, _drive())
    state = ours.state_dict()  # and back: an snn.Leaky built the same way loads the skin's state dict
    back = snn.Leaky(
        beta=_values(beta, *given[:2]),
        threshold=_values(threshold, *given[2:]),
        learn_beta=learn_beta,
        learn_threshold=learn_threshold,
    )
    back.load_state_dict({k: v for k, v in state.items() if not k.startswith("core.")}, strict=False)
    torch.testing.assert_close(back.threshold.double(), ref.threshold)


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize("learn_threshold", [False, True])
@pytest.mark.parametrize("threshold", ["scalar", "per_neuron"])
def test_synaptic_loads_snn_synaptics_state_dict_lazy_or_not(threshold, learn_threshold, lazy):
    """``Synaptic`` (one ``alpha`` and ``beta``) likewise loads ``snn.Synaptic``'s state dict, lazy or not."""
    ref = snn.Synaptic(
        alpha=0.5, beta=0.75, threshold=_values(threshold, 0.5, 1.0), learn_threshold=learn_threshold
    ).double()
    ours = Synaptic(
        *(() if lazy else (C,)),
        alpha=0.3,
        beta=0.6,
        threshold=_values(threshold, 1.5, 2.0),
        learn_threshold=learn_threshold,
    ).double()
    ours.load_state_dict(ref.state_dict())
    _assert_same_run(ours, ref, 0.4 * _drive())
