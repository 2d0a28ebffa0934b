"""The ``StateLeaky`` and ``LinearLeaky`` skins against snnTorch 1.0's own ``snn.StateLeaky`` / ``snn.LinearLeaky``
(its causal convolution with the kernel ``exp(-k / tau)``, ``tau = 1 / (1 - beta + 1e-12)``, truncated to ``K``
taps): spikes, ``mem`` and the gradients of the input, ``tau``, the threshold, the graded factor and the linear
weights, state dicts both ways, ``from_snntorch`` / ``to_snntorch``, training steps, snnTorch's docstring examples,
long sequences in float32, and bad input. Skipped where snnTorch has no ``StateLeaky`` (before 1.0)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

snn = pytest.importorskip("snntorch")
if not hasattr(snn, "StateLeaky"):
    pytest.skip(f"snnTorch {snn.__version__} has no StateLeaky (added in 1.0)", allow_module_level=True)
import snntorch.functional.quant  # noqa: E402
import snntorch.surrogate  # noqa: E402
from snn_parallel.adapters import snntorch as adapter  # noqa: E402
from snn_parallel.adapters.snntorch import LinearLeaky, StateLeaky, from_snntorch, to_snntorch  # noqa: E402

F64 = torch.float64
C = 4

# snnTorch's options for a layer of C channels (beta included), and the input scale at which it fires now and then
CASES = {
    "scalar": ({"beta": 0.9}, 0.3),
    "per_channel": ({"beta": torch.tensor([0.5, 0.8, 0.95, 0.99])}, 0.3),
    "truncated": ({"beta": 0.95, "kernel_truncation_steps": 5}, 0.5),
    "truncated_per_channel": ({"beta": torch.tensor([0.6, 0.9, 0.97, 0.999]), "kernel_truncation_steps": 7}, 0.5),
    "learned": (
        {
            "beta": torch.tensor([0.7, 0.8, 0.9, 0.95]),
            "learn_beta": True,
            "threshold": 0.8,
            "learn_threshold": True,
            "graded_spikes_factor": 1.5,
            "learn_graded_spikes_factor": True,
            "kernel_truncation_steps": 6,
        },
        0.4,
    ),
    "learned_scalar_fast_sigmoid": (
        {"beta": 0.85, "learn_beta": True, "spike_grad": snntorch.surrogate.fast_sigmoid(slope=10)},
        0.4,
    ),
    "surrogate_disable": ({"beta": 0.9, "surrogate_disable": True, "learn_threshold": True}, 0.3),
    "state_quant": ({"beta": 0.9, "state_quant": snntorch.functional.quant.state_quant(num_bits=4)}, 0.3),
    "mem_only": ({"beta": torch.tensor([0.5, 0.8, 0.95, 0.99]), "learn_beta": True, "output": False}, 0.3),
}


def _pair(options: dict, dtype: torch.dtype, linear: int | None = None) -> tuple[nn.Module, nn.Module]:
    """snnTorch's neuron and ours with the same options (ours loading snnTorch's state dict), in ``dtype``."""
    if linear is None:
        make = lambda cls: cls(channels=C, **copy.deepcopy(options))  # noqa: E731
    else:
        make = lambda cls: cls(in_features=linear, out_features=C, **copy.deepcopy(options))  # noqa: E731
    theirs = make(snn.LinearLeaky if linear else snn.StateLeaky).to(dtype)
    ours = make(LinearLeaky if linear else StateLeaky).to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return theirs, ours


def _run(neuron: nn.Module, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """The outputs and the gradients of a loss of them (weighting spikes and ``mem`` unevenly) w.r.t. the input and
    each parameter (``None``: none reaches it, as snnTorch's unused ``beta`` parameter)."""
    x = x.clone().requires_grad_(True)
    out = neuron(x)
    outs = list(out) if isinstance(out, tuple) else [out]
    weights = torch.linspace(-1.0, 2.0, outs[-1].numel(), dtype=x.dtype).view_as(outs[-1])
    loss = sum(((o * weights).sum() + (o**2).mean()) for o in outs)
    grads = torch.autograd.grad(loss, [x, *neuron.parameters()], allow_unused=True)
    return [o.detach() for o in outs], list(grads)


def _assert_same(theirs: nn.Module, ours: nn.Module, x: torch.Tensor, tol: float) -> None:
    """The outputs within ``tol``, the gradients within ``max(tol, 1e-6)``: snnTorch's spike functions return float32
    spikes, so a gradient through them is rounded to float32 (relative 1e-7) even on float64 inputs."""
    (out_t, grad_t), (out_o, grad_o) = _run(theirs, x), _run(ours, x)
    assert len(out_t) == len(out_o)
    for a, b in zip(out_t, out_o, strict=True):
        torch.testing.assert_close(b.to(a.dtype), a, rtol=tol, atol=tol)
    grad_tol = max(tol, 1e-6)
    names = ["input", *(name for name, _ in theirs.named_parameters())]
    for name, a, b in zip(names, grad_t, grad_o, strict=True):
        if a is None:  # none reaches it in snnTorch: none or zeros (surrogate_disable's constant spikes) in ours
            assert b is None or not b.any(), name
        else:
            torch.testing.assert_close(b, a, rtol=grad_tol, atol=grad_tol, msg=lambda m, name=name: f"grad {name}: {m}")


@pytest.mark.parametrize("dtype, tol", [(F64, 1e-10), (torch.float32, 2e-4)], ids=["float64", "float32"])
@pytest.mark.parametrize("case", CASES)
def test_matches_snntorch(case: str, dtype: torch.dtype, tol: float) -> None:
    options, scale = CASES[case]
    theirs, ours = _pair(options, dtype)
    x = scale * torch.randn(30, 3, C, generator=torch.Generator().manual_seed(1), dtype=dtype) + 0.1
    if options.get("output", True):
        spikes = theirs(x)[0]
        assert 0 < bool(spikes.count_nonzero()) and spikes.count_nonzero() < spikes.numel() / 2, "fires now and then"
    _assert_same(theirs, ours, x, tol)


@pytest.mark.parametrize("case", ["scalar", "truncated_per_channel", "learned"])
def test_one_step(case: str) -> None:
    theirs, ours = _pair(CASES[case][0], F64)
    _assert_same(theirs, ours, torch.randn(1, 5, C, dtype=F64), 1e-12)


@pytest.mark.parametrize("window", [1, 11, 12, 13])
def test_truncation_around_the_sequence_length(window: int) -> None:
    """K = 1 (the input alone), K = T - 1 (only the first input leaves the window, at the last step), K >= T."""
    theirs, ours = _pair({"beta": torch.tensor([0.5, 0.8, 0.95, 0.99]), "kernel_truncation_steps": window}, F64)
    _assert_same(theirs, ours, torch.randn(12, 2, C, dtype=F64), 1e-12)


@pytest.mark.parametrize("case", ["learned", "mem_only", "truncated"])
def test_linear_leaky_matches_snntorch(case: str) -> None:
    theirs, ours = _pair(CASES[case][0], F64, linear=6)
    assert ours.linear.weight.equal(theirs.linear.weight)
    x = torch.randn(25, 3, 6, generator=torch.Generator().manual_seed(2), dtype=F64)
    _assert_same(theirs, ours, x, 1e-10)
    torch.testing.assert_close(ours.mem, theirs.mem, rtol=1e-10, atol=1e-10, msg="self.mem after the call")


@pytest.mark.parametrize("window", [None, 1000], ids=["whole", "truncated"])
def test_long_sequence_float32(window: int | None) -> None:
    """T = 4096 with beta = 0.999 (tau about 1000 steps): ours in float32 against snnTorch in float64 within
    2e-5 of the membrane's largest magnitude (snnTorch's own float32 convolution is off by about the same, 1e-5
    of it); the truncated scan subtracts each input again K steps later, which this bounds too."""
    x = torch.randn(4096, 2, C, generator=torch.Generator().manual_seed(3))
    options = {"beta": 0.999, "kernel_truncation_steps": window}
    reference = snn.StateLeaky(torch.tensor(0.999, dtype=F64), C, kernel_truncation_steps=window)
    with torch.no_grad():
        expected = reference(x.double())[1]
        mem = StateLeaky(channels=C, **options)(x)[1]
    assert mem.dtype == torch.float32
    assert (mem.double() - expected).abs().max() <= 2e-5 * expected.abs().max()


@pytest.mark.parametrize("dtype, tol", [(torch.float16, 2e-3), (torch.bfloat16, 1e-2)], ids=["float16", "bfloat16"])
@pytest.mark.parametrize("window", [None, 40], ids=["whole", "truncated"])
def test_half_precision_input(dtype: torch.dtype, tol: float, window: int | None) -> None:
    """A half-precision input keeps its dtype; the scan runs in float32 (the decay too), so ``mem`` is snnTorch's
    float32 one of the rounded input, within ``tol`` of its largest magnitude."""
    x = torch.randn(300, 2, C, generator=torch.Generator().manual_seed(7)).to(dtype)
    expected = snn.StateLeaky(0.95, C, kernel_truncation_steps=window)(x.float())[1]
    mem = StateLeaky(0.95, C, kernel_truncation_steps=window)(x)[1]
    assert mem.dtype == dtype
    assert (mem.float() - expected).abs().max() <= tol * expected.abs().max()


def test_state_dicts_load_both_ways() -> None:
    options = CASES["learned"][0]
    pairs = [
        (StateLeaky, snn.StateLeaky, {"channels": C}),
        (LinearLeaky, snn.LinearLeaky, {"in_features": 3, "out_features": C}),
    ]
    for ours_cls, theirs_cls, extra in pairs:
        theirs = theirs_cls(**extra, **copy.deepcopy(options))
        ours = ours_cls(**extra, **copy.deepcopy(options))
        with torch.no_grad():
            theirs.tau.mul_(1.5)
            theirs.threshold.add_(0.25)
        ours.load_state_dict(theirs.state_dict(), strict=True)
        assert ours.tau.equal(theirs.tau) and ours.beta.equal(theirs.beta)
        back = theirs_cls(**extra, **copy.deepcopy(options))
        back.load_state_dict(ours.state_dict(), strict=True)
        for key, value in theirs.state_dict().items():
            assert back.state_dict()[key].equal(value), key
        assert isinstance(ours, theirs_cls) and isinstance(ours.tau, nn.Parameter)


class _Net(nn.Module):
    def __init__(self, ours: bool = False) -> None:
        super().__init__()
        linear, state = (LinearLeaky, StateLeaky) if ours else (snn.LinearLeaky, snn.StateLeaky)
        self.lif1 = linear(torch.tensor([0.6, 0.7, 0.8, 0.9, 0.95]), 3, 5, learn_beta=True, output=False)
        self.fc = nn.Linear(5, C)
        self.lif2 = state(0.9, C, learn_threshold=True, kernel_truncation_steps=6, graded_spikes_factor=0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lif2(self.fc(self.lif1(x)))


def test_from_and_to_snntorch() -> None:
    torch.manual_seed(4)
    net = _Net().double()
    ours = from_snntorch(net)
    assert type(ours.lif1) is LinearLeaky and type(ours.lif2) is StateLeaky and type(ours.fc) is nn.Linear
    assert ours.lif1.tau.dtype == F64 and isinstance(ours.lif1.tau, nn.Parameter)
    assert ours.lif2.kernel_truncation_steps == 6 and ours.lif1.output is False
    x = torch.randn(20, 2, 3, dtype=F64)
    for a, b in zip(net(x), ours(x), strict=True):  # snnTorch's spikes are float32, ours keep the input's dtype
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12, check_dtype=False)
    back = to_snntorch(ours)
    assert type(back.lif1) is snn.LinearLeaky and type(back.lif2) is snn.StateLeaky
    net.load_state_dict(back.state_dict(), strict=True)
    assert back.lif2.graded_spikes_factor.item() == 0.5 and isinstance(back.lif2.threshold, nn.Parameter)


def test_training_steps_equal_snntorch() -> None:
    torch.manual_seed(5)
    theirs = _Net().double()
    ours = from_snntorch(theirs)
    x = torch.randn(16, 4, 3, dtype=F64)
    target = torch.rand(16, 4, C, dtype=F64)
    for net in (theirs, ours):
        optimizer = torch.optim.Adam(net.parameters(), lr=0.05)
        for _ in range(4):
            spk, mem = net(x)
            loss = ((mem - target) ** 2).mean() + spk.mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    trained = dict(ours.named_parameters())
    for name, value in theirs.named_parameters():
        torch.testing.assert_close(trained[name], value, rtol=1e-9, atol=1e-9, msg=lambda m, name=name: f"{name}: {m}")


def test_snntorch_docstring_examples() -> None:
    """snnTorch's own examples (the StateLeaky and LinearLeaky docstrings), with ours in place of its class."""
    torch.manual_seed(6)
    T, B, C_, Fin, Fout = 16, 2, 4, 8, 4  # noqa: N806
    x = torch.randn(T, B, C_)
    theirs = snn.StateLeaky(beta=0.9, channels=C_, output=True, kernel_truncation_steps=8)
    spk, mem = StateLeaky(beta=0.9, channels=C_, output=True, kernel_truncation_steps=8)(x)
    assert spk.shape == mem.shape == (T, B, C_)
    torch.testing.assert_close(mem, theirs(x)[1], rtol=1e-5, atol=1e-5)
    x = torch.randn(T, B, Fin)
    theirs = snn.LinearLeaky(beta=0.9, in_features=Fin, out_features=Fout, output=True)
    ours = LinearLeaky(beta=0.9, in_features=Fin, out_features=Fout, output=True)
    ours.load_state_dict(theirs.state_dict())
    spk, mem = ours(x)
    torch.testing.assert_close(mem, theirs(x)[1], rtol=1e-5, atol=1e-5)


def test_spike_grad_reassigned_is_used() -> None:
    """snnTorch reads ``spike_grad`` at each call: so does the skin."""
    theirs, ours = _pair({"beta": 0.9}, F64)
    for neuron in (theirs, ours):
        neuron.spike_grad = snntorch.surrogate.sigmoid(slope=3)
    _assert_same(theirs, ours, 0.3 * torch.randn(12, 2, C, dtype=F64), 1e-10)


def test_without_spikes_a_spike_grad_is_only_warned_of() -> None:
    """With ``output=False`` snnTorch warns that spike settings are unused and never calls ``spike_grad``: the skin
    too, whatever the callable; it is checked where spikes are asked for later."""
    x = torch.randn(8, 2, C, dtype=F64)
    made = []
    for cls in (snntorch.StateLeaky, StateLeaky):
        with pytest.warns(UserWarning, match="spike-related settings are unused"):
            made.append(cls(beta=0.9, channels=C, output=False, spike_grad=lambda v: v).double())
    torch.testing.assert_close(made[1](x), made[0](x), rtol=1e-12, atol=1e-12)
    made[1].output = True
    with pytest.raises(TypeError, match="spike_grad"):
        made[1](x)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"beta": float("nan")}, ValueError, "beta"),
        ({"beta": 1.5}, ValueError, "beta must be in"),
        ({"beta": torch.tensor([0.5, -0.1, 0.5, 0.5])}, ValueError, "beta must be in"),
        ({"beta": torch.tensor([1, 0, 1, 1])}, TypeError, "beta"),
        ({"beta": 0.9, "channels": 0}, ValueError, "channels"),
        ({"beta": 0.9, "channels": 2.5}, TypeError, "channels"),
        ({"beta": 0.9, "kernel_truncation_steps": 0}, ValueError, "kernel_truncation_steps"),
        ({"beta": 0.9, "kernel_truncation_steps": 2.0}, TypeError, "kernel_truncation_steps"),
        ({"beta": 0.9, "threshold": float("inf")}, ValueError, "threshold"),
        ({"beta": 0.9, "graded_spikes_factor": float("nan")}, ValueError, "graded_spikes_factor"),
        ({"beta": 0.9, "learn_beta": 1}, TypeError, "learn_beta"),
        ({"beta": 0.9, "spike_grad": 3}, TypeError, "spike_grad"),
        ({"beta": 0.9, "state_quant": 4}, TypeError, "state_quant"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        StateLeaky(**{"channels": C, **kwargs})


@pytest.mark.parametrize(
    "x, error, match",
    [
        (torch.randn(5, C), ValueError, r"\[T, B, C\] \(3 dims\)"),
        (torch.randn(5, 2, C, 1), ValueError, "3 dims"),
        (torch.randn(0, 2, C), ValueError, "T = 0"),
        (torch.randn(5, 2, C + 1), ValueError, f"{C} features"),
        (torch.ones(5, 2, C, dtype=torch.int64), TypeError, "dtype"),
        (torch.full((5, 2, C), float("nan")), ValueError, "NaN"),
        ([[0.0] * C], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input(x: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        StateLeaky(torch.linspace(0.5, 0.9, C), C)(x)


def test_bad_linear_input() -> None:
    neuron = LinearLeaky(0.9, 3, C)
    with pytest.raises(ValueError, match="3 features"):
        neuron(torch.randn(5, 2, C))
    with pytest.raises(ValueError, match="out_features"):
        LinearLeaky(0.9, 3, 0)


def test_any_channel_count_with_one_beta() -> None:
    """snnTorch broadcasts one ``beta`` to the input's channels, whatever ``channels`` said: so does the skin."""
    theirs, ours = _pair({"beta": 0.8}, F64)
    _assert_same(theirs, ours, torch.randn(6, 2, 7, dtype=F64), 1e-12)


def test_snntorch_utils_reset_takes_them() -> None:
    """snnTorch's ``utils.reset`` (which looks for ``snn.LinearLeaky`` among a network's children) runs on them."""
    import snntorch.utils

    net = nn.Sequential(LinearLeaky(0.9, 3, C), StateLeaky(0.9, C))
    snntorch.utils.reset(net)
    spk, mem = net[1](net[0](torch.randn(5, 2, 3))[1])
    assert spk.shape == mem.shape == (5, 2, C)


def test_public_path() -> None:
    assert adapter.StateLeaky is StateLeaky and "LinearLeaky" in adapter.__all__


class _Tutorial8(nn.Module):
    """snnTorch tutorial 8's network, smaller: ``Linear -> StateLeaky(beta=0.95, channels=1) -> Linear ->
    StateLeaky(...)``, one ``beta`` for a layer of many channels, the loss on every step's membrane."""

    def __init__(self, neuron: type[nn.Module], inputs: int, hidden: int = 32) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(inputs, hidden), nn.Linear(hidden, 10)
        self.lif1, self.lif2 = neuron(beta=0.95, channels=1), neuron(beta=0.95, channels=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        spk1, _ = self.lif1(self.fc1(x))
        return self.lif2(self.fc2(spk1))


@pytest.mark.slow
def test_tutorial_8_network_trains_as_with_snn_stateleaky() -> None:
    """Tutorial 8's training loop (static images repeated over 5 steps, cross-entropy on each step's membrane, Adam)
    on the built-in digits: losses, accuracies and trained weights are snnTorch's."""
    tasks = pytest.importorskip("snn_parallel.tasks")
    data = tasks.SequentialDigits("train", "static", repeat=5)
    torch.manual_seed(8)
    theirs = _Tutorial8(snn.StateLeaky, 64)
    ours = copy.deepcopy(theirs)
    ours.lif1, ours.lif2 = StateLeaky(beta=0.95, channels=1), StateLeaky(beta=0.95, channels=1)
    history = []
    for net in (theirs, ours):
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-3)
        losses = []
        for batch in range(6):
            x = data.inputs[batch * 32 : (batch + 1) * 32].transpose(0, 1)  # [T, B, 64]
            y = data.targets[batch * 32 : (batch + 1) * 32]
            spk, mem = net(x)
            loss = sum(nn.functional.cross_entropy(mem_t, y) for mem_t in mem)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append((loss.item(), (spk.sum(0).argmax(1) == y).float().mean().item()))
        history.append(losses)
    assert history[1][-1][0] < history[1][0][0]  # it learns
    for (loss_t, acc_t), (loss_o, acc_o) in zip(*history, strict=True):
        assert loss_o == pytest.approx(loss_t, rel=1e-4) and acc_o == acc_t
    trained = dict(ours.named_parameters())
    for name, value in theirs.named_parameters():
        torch.testing.assert_close(trained[name], value, rtol=1e-4, atol=1e-5)


def test_filters_tutorial_cascade_is_the_exponential_and_its_self_convolution() -> None:
    """snnTorch's StateLeaky filters tutorial: two ``output=False`` layers in cascade smooth a signal; an impulse
    gives :math:`\\rho^k` after one and :math:`(k+1)\\rho^k` after two,
    :math:`\\rho = e^{-1/\\tau} \\approx e^{-(1 - \\beta)}`, and a noisy signal what snnTorch's layers give, over
    2000 steps."""
    steps, beta = 2000, 0.9
    layers = [StateLeaky(beta=beta, channels=1, output=False).double() for _ in range(2)]
    impulse = torch.zeros(steps, 1, 1, dtype=F64)
    impulse[0] = 1.0
    k = torch.arange(steps, dtype=F64).view(steps, 1, 1)
    rho = torch.exp(-1 / layers[0].tau)  # tau = 1 / (1 - beta), from beta in float32 as snnTorch builds it
    once = layers[0](impulse)
    torch.testing.assert_close(once, rho**k, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(layers[1](once), (k + 1) * rho**k, rtol=1e-9, atol=1e-12)
    noisy = 0.1 * torch.randn(steps, 1, 1)
    theirs = [snn.StateLeaky(beta=beta, channels=1, output=False) for _ in range(2)]
    torch.testing.assert_close(
        layers[1](layers[0](noisy.double())).float(), theirs[1](theirs[0](noisy)), rtol=1e-4, atol=1e-5
    )
