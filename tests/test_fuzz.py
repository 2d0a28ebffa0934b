"""Fuzzing the public entry points of the ops and the neurons with random shapes, dtypes and bad values.

Each case draws an entry point, a shape, a dtype and one spoiled argument (a NaN or inf, a wrong
dtype, shape, rank or device, an empty sequence, a non-tensor, a bad constant, a bad state) or
none. The call must then either raise a ``TypeError`` or ``ValueError`` whose message names the
spoiled argument, or, with nothing spoiled, return finite outputs of the input's dtype (the
documented exception: ``linear_scan`` returns half precision as float32) that equal the
reference: the op's step-by-step reference, and for a neuron ``T`` calls of its ``step`` (and two
chained ``forward`` calls). Equality is checked in float64 (to 1e-9) and, for the ops without a
threshold, in float32; spikes in lower precisions are checked for finiteness, shape and dtype
only, as a threshold crossing may round either way in the two computations.

Hypothesis runs a fixed number of derandomized examples (the suite stays fast and repeatable);
``pytest tests/test_fuzz.py`` prints the cases tried and the errors by kind;
``SNN_FUZZ_EXAMPLES=5000`` runs more examples per test than the suite's 500.
"""

from __future__ import annotations

import collections
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import snn_parallel as sp  # noqa: E402
from snn_parallel import ops  # noqa: E402
from snn_parallel import surrogate as sg  # noqa: E402
from snn_parallel.neurons import PSPFilter  # noqa: E402

FLOATS = (torch.float64, torch.float32, torch.float16, torch.bfloat16)
#: cases tried and outcomes, per family ("ops", "neurons"): printed at the end of the module
COUNTS: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
SETTINGS = settings(
    max_examples=int(os.environ.get("SNN_FUZZ_EXAMPLES", 500)),
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module", autouse=True)
def _report(request):
    yield
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line("")
        for family, counts in sorted(COUNTS.items()):
            other = counts["tried"] - counts["ok"] - counts["TypeError"] - counts["ValueError"]
            reporter.write_line(
                f"fuzz {family}: {counts['tried']} cases tried: {counts['ok']} returned the reference, "
                f"{counts['TypeError']} TypeError, {counts['ValueError']} ValueError"
                + (f", {other} not refused" if other else "")
            )


def _names(message: str, name: str) -> bool:
    """Whether ``message`` names ``name`` as a word (``x`` in ``"... to match x"``, not in ``"expected"``)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?![\w])", message) is not None


def _call(family: str, run: Callable[[], Any], spoiled: str | None) -> Any:
    """Run ``run``; with ``spoiled``, it must raise a TypeError/ValueError naming it; returns the outputs."""
    COUNTS[family]["tried"] += 1
    try:
        out = run()
    except (TypeError, ValueError) as error:
        COUNTS[family]["TypeError" if isinstance(error, TypeError) else "ValueError"] += 1
        assert spoiled is not None, f"a valid call was refused: {type(error).__name__}: {error}"
        assert _names(str(error), spoiled), f"the error does not name {spoiled!r}: {type(error).__name__}: {error}"
        return None
    assert spoiled is None, f"spoiled {spoiled!r} was accepted silently"
    COUNTS[family]["ok"] += 1
    return out


def _tensors(outputs: Any) -> list[torch.Tensor]:
    items = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
    found = []
    for item in items:
        if isinstance(item, torch.Tensor):
            found.append(item)
        elif isinstance(item, tuple):  # a neuron's state
            found += _tensors(item)
    return found


def _assert_finite(outputs: Any) -> None:
    for tensor in _tensors(outputs):
        assert bool(torch.isfinite(tensor).all()), "a valid call returned NaN or inf"


def _assert_close(got: Any, want: Any, tolerance: float) -> None:
    for a, b in zip(_tensors(got), _tensors(want), strict=True):
        torch.testing.assert_close(a, b.to(a.dtype), atol=tolerance, rtol=tolerance)


# -- spoiling one argument ------------------------------------------------------------------------------
def _spoil_tensor(value: torch.Tensor, how: str, *, sequence: bool) -> Any:
    if how in ("nan", "inf"):
        value = value.clone()
        value.view(-1)[value.numel() // 2] = math.nan if how == "nan" else -math.inf
        return value
    if how == "int":
        return value.to(torch.int64)
    if how == "complex":
        return value.to(torch.complex64)
    if how == "rank":  # a sequence without its time axis structure; a state or per-channel tensor with a bad shape
        return value.reshape(-1) if sequence else torch.zeros(value.shape[0] + 1, *value.shape[1:], dtype=value.dtype)
    if how == "empty":
        return value[:0]
    if how == "meta":
        return value.to("meta")
    if how == "list":
        return value.tolist()
    raise AssertionError(how)


#: bad values of a scalar argument, by the argument's domain
BAD_CONSTANTS = {
    "real": [math.nan, math.inf, -math.inf, "1", None, True],
    "positive": [math.nan, math.inf, 0.0, -1.0, "1", None, True],
    "at_least_one": [math.nan, math.inf, 0.5, -3.0, "3", None, False],
    "bool": [1, 0.0, "yes", None],
    "positive_int": [0, -2, 2.5, True, "3"],
    "surrogate": ["atan", None, 1.0],
    "backend": ["gpu", None, 3],
}


# -- the ops ---------------------------------------------------------------------------------------------
@dataclass
class OpCase:
    """An op's valid arguments for one draw, what may be spoiled, and its reference."""

    args: dict[str, Any]
    run: Callable[[dict[str, Any]], tuple]
    reference: Callable[[dict[str, Any]], tuple]
    sequence: str  # the time-major input; T = 0 spoils it
    constants: dict[str, str] = field(default_factory=dict)  # scalar arguments and their domain
    complex_ok: tuple[str, ...] = ()  # tensors that may be complex
    spiking: bool = True  # outputs depend on a threshold
    backend: bool = True  # the op takes ``backend`` ("auto" here, a bad one spoils it)

    def __post_init__(self) -> None:
        if self.backend:
            self.args["backend"] = "auto"
            self.constants["backend"] = "backend"

    @property
    def tensors(self) -> tuple[str, ...]:
        """The tensor arguments, each of which may be spoiled."""
        return tuple(name for name, value in self.args.items() if isinstance(value, torch.Tensor))


def _with_the_op_arguments(reference: Callable[..., tuple]) -> Callable[[dict[str, Any]], tuple]:
    """The case's reference for a step-by-step reference that takes the op's own arguments (but ``backend``)."""
    return lambda a: reference(**{name: value for name, value in a.items() if name != "backend"})


def _channel(shape: tuple[int, ...], dims: int) -> tuple[int, ...]:
    """A per-channel shape ``[C, 1, ...]`` that broadcasts over ``[B, C, *spatial]``."""
    return (shape[1],) + (1,) * (dims - 2)


def _scan_case(steps, shape, dtype, rand) -> OpCase:
    args = {
        "a": rand(_channel(shape, len(shape))).abs() % 1,
        "b": rand((steps, *shape)),
        "h0": rand(shape),
        "chunk": 2,
        "log_decay": False,
    }
    return OpCase(
        args,
        lambda a: ops.linear_scan(**a),
        lambda a: ops.linear_scan_reference(a["a"], a["b"], a["h0"]),
        "b",
        {"chunk": "positive_int", "log_decay": "bool"},
        complex_ok=("a", "b", "h0"),
        spiking=False,
    )


def _dsn_case(steps, shape, dtype, rand) -> OpCase:
    taps = 3
    args = {
        "x": rand((steps, *shape)),
        "history": rand((taps - 1, *shape)),
        "weight": rand((taps, *_channel(shape, len(shape)))),
        "bias": rand(_channel(shape, len(shape))),
        "tau": 0.5,
        "h0": rand(shape),
        "spike_fn": sg.ATan(),
        "shift": 1.0,
    }

    def reference(a):
        h, last = ops.dsn_membrane_reference(a["x"], a["history"], a["weight"], a["bias"], a["tau"], a["h0"])
        return a["spike_fn"].heaviside(h - a["shift"]), h, last

    return OpCase(
        args,
        lambda a: ops.dsn_membrane(**a),
        reference,
        "x",
        {"tau": "positive", "shift": "real", "spike_fn": "surrogate"},
    )


def _linear_fire_case(steps, shape, dtype, rand) -> OpCase:
    channel = _channel(shape, len(shape))
    args = {
        "x": rand((steps, *shape)),
        "decay": rand(channel).abs() % 1,
        "scale": rand(channel),
        "h0": rand(shape),
        "bias0": rand(shape).abs(),
        "spike_fn": sg.Sigmoid(),
        "v_threshold": 1.0,
        "reset_decay": rand(channel).abs() % 1,
    }

    return OpCase(
        args,
        lambda a: ops.linear_fire(**a),
        _with_the_op_arguments(ops.linear_fire_reference),
        "x",
        {"v_threshold": "real", "spike_fn": "surrogate"},
    )


def _ltc_case(steps, shape, dtype, rand) -> OpCase:
    sequence = (steps, *shape)
    args = {
        "current": rand(sequence),
        "rate": torch.sigmoid(rand(sequence)),
        "retention": torch.sigmoid(rand(sequence)),
        "u0": rand(shape),
        "s0": (rand(shape) > 0).to(dtype),
        "b_init": rand(shape).abs(),
        "b0": 0.1,
        "beta_a": 1.8,
        "surrogate": sg.MultiGaussian(),
    }

    return OpCase(
        args,
        lambda a: ops.ltc_scan(**a),
        _with_the_op_arguments(ops.ltc_scan_reference),
        "current",
        {"b0": "real", "beta_a": "real", "surrogate": "surrogate"},
    )


def _tsslbp_case(steps, shape, dtype, rand) -> OpCase:
    from snn_parallel.ops.tssl import tssl_forward_reference

    args = {
        "current": 2 * rand((steps, *shape)),
        "u0": rand(shape),
        "a0": rand(shape).abs(),
        "v_threshold": 1.0,
        "tau_m": 5.0,
        "tau_s": 3.0,
        "inclusive": False,
        "dt_du_at_spikes": True,
    }

    def reference(a):
        psp, spikes, membrane, _, u_last, a_last = tssl_forward_reference(
            a["current"], a["u0"], a["a0"], a["v_threshold"], a["tau_m"], a["tau_s"], a["inclusive"]
        )
        return psp, spikes, membrane, u_last, a_last

    return OpCase(
        args,
        lambda a: ops.tsslbp(**a),
        reference,
        "current",
        {
            "v_threshold": "real",
            "tau_m": "at_least_one",
            "tau_s": "at_least_one",
            "inclusive": "bool",
            "dt_du_at_spikes": "bool",
        },
    )


def _psp_case(steps, shape, dtype, rand) -> OpCase:
    args = {"x": rand((steps, *shape)), "tau_s": 3.0, "a0": rand(shape)}

    def reference(a):
        decay = torch.full((), 1 - 1 / a["tau_s"], dtype=a["x"].dtype)
        return ops.linear_scan_reference(decay, a["x"] / a["tau_s"], a["a0"])

    return OpCase(
        args, lambda a: ops.psp_filter(**a), reference, "x", {"tau_s": "at_least_one"}, spiking=False, backend=False
    )


OPS = {
    "linear_scan": _scan_case,
    "dsn_membrane": _dsn_case,
    "linear_fire": _linear_fire_case,
    "ltc_scan": _ltc_case,
    "tsslbp": _tsslbp_case,
    "psp_filter": _psp_case,
}
TENSOR_SPOILS = ("nan", "inf", "int", "complex", "rank", "empty", "meta", "list")


@st.composite
def _shapes(draw, max_spatial: int | None = 2) -> tuple[int, tuple[int, ...]]:
    steps = draw(st.integers(1, 5))
    spatial = draw(st.lists(st.integers(1, 3), max_size=2 if max_spatial is None else max_spatial))
    return steps, (draw(st.integers(1, 3)), draw(st.integers(1, 4)), *spatial)


def _random(dtype: torch.dtype, seed: int) -> Callable[[tuple[int, ...]], torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return lambda shape: torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype)


@SETTINGS
@given(st.data())
def test_fuzz_ops(data):
    name = data.draw(st.sampled_from(sorted(OPS)), label="op")
    steps, shape = data.draw(_shapes(), label="T, [B, C, *spatial]")
    dtype = data.draw(st.sampled_from(FLOATS), label="dtype")
    case = OPS[name](steps, shape, dtype, _random(dtype, data.draw(st.integers(0, 2**16), label="seed")))
    spoil = data.draw(st.sampled_from(("none", "tensor", "constant")), label="spoil")
    args, spoiled = dict(case.args), None
    if spoil == "tensor":
        spoiled = data.draw(st.sampled_from(case.tensors), label="tensor")
        hows = [
            h
            for h in TENSOR_SPOILS
            if not (h == "complex" and spoiled in case.complex_ok) and (h != "empty" or spoiled == case.sequence)
        ]
        how = data.draw(st.sampled_from(hows), label="how")
        args[spoiled] = _spoil_tensor(args[spoiled], how, sequence=spoiled == case.sequence)
    elif spoil == "constant":
        spoiled = data.draw(st.sampled_from(sorted(case.constants)), label="constant")
        args[spoiled] = data.draw(st.sampled_from(BAD_CONSTANTS[case.constants[spoiled]]), label="value")
    out = _call("ops", lambda: case.run(args), spoiled)
    if out is None:
        return
    _assert_finite(out)
    real = [t for t in _tensors(out) if not t.is_complex()]
    wanted = torch.float32 if name == "linear_scan" and dtype in (torch.float16, torch.bfloat16) else dtype
    assert all(t.dtype == wanted for t in real), [t.dtype for t in real]
    assert out[0].shape == args[case.sequence].shape
    if dtype == torch.float64:
        _assert_close(out, case.reference(args), 1e-9)
    elif not case.spiking:  # no threshold to round across: close to the float64 reference
        wide = {k: v.double() if isinstance(v, torch.Tensor) else v for k, v in args.items()}
        _assert_close(out, case.reference(wide), 1e-5 if dtype == torch.float32 else 3e-2)


# -- the neurons: forward and step, inputs and states ---------------------------------------------------
NEURONS: dict[str, Callable[[int], torch.nn.Module]] = {
    "DynamicDecay": lambda n: sp.DynamicDecay(n),
    "DynamicDecay-integer": lambda n: sp.DynamicDecay(n, spike_mode="integer"),
    "PRF": lambda n: sp.PRF(n, learn_decay=True),
    "PRF-reset": lambda n: sp.PRF(n, reset=True),
    "DecoupledLIF": lambda n: sp.DecoupledLIF(n, learn_decay=True),
    "SynapticLIF": lambda n: sp.SynapticLIF(n, learn_decay=True),
    "LTC": lambda n: sp.LTC(n),
    "LTC-parallel": lambda n: sp.LTC(n, mode="parallel"),
    "BRF": lambda n: sp.BRF(n),
    "SEAdLIF": lambda n: sp.SEAdLIF(n),
    "PSPLIF": lambda n: sp.PSPLIF(n),
    "PSPLIF-surrogate": lambda n: sp.PSPLIF(n, gradient="surrogate"),
    "PSPFilter": lambda n: PSPFilter(n),
}
INPUT_SPOILS = (
    "nan",
    "inf",
    "int",
    "complex",
    "other_float",
    "rank",
    "features",
    "empty",
    "meta",
    "list",
    "none",
    "str",
)
STATE_SPOILS = ("tuple", "field_shape", "field_nan", "field_dtype", "field_meta", "field_list")


def _spoil_input(x: torch.Tensor, how: str, sequence: bool) -> Any:
    if how in ("nan", "inf", "int", "complex", "meta", "list"):
        return _spoil_tensor(x, how, sequence=True)
    if how == "other_float":
        return x.to(torch.float64 if x.dtype != torch.float64 else torch.float32)
    if how == "rank":
        return x.reshape(-1) if sequence else x.reshape(-1)[: x.shape[0]]
    if how == "features":
        feature_dim = 2 if sequence else 1
        return torch.cat([x, x.narrow(feature_dim, 0, 1)], feature_dim)
    if how == "empty":
        return x[:0]
    return {"none": None, "str": "x"}[how]


def _spoil_state(state: tuple, how: str) -> tuple[Any, str]:
    """The spoiled state and the name its error must carry."""
    if how == "tuple":
        return tuple(state), "state"
    index = len(state) // 2
    name = f"state.{state._fields[index]}"
    value = state[index]
    if how == "field_shape":
        value = torch.zeros(value.shape[0] + 1, *value.shape[1:], dtype=value.dtype)
    elif how == "field_nan":
        value = value.clone()
        value.view(-1)[0] = math.nan
    elif how == "field_dtype":
        value = value.to(torch.int64)
    elif how == "field_meta":
        value = value.to("meta")
    else:
        value = value.tolist()
    return state._replace(**{state._fields[index]: value}), name


@SETTINGS
@given(st.data())
def test_fuzz_neurons(data):
    name = data.draw(st.sampled_from(sorted(NEURONS)), label="neuron")
    dtype = data.draw(st.sampled_from(FLOATS), label="dtype")
    steps, shape = data.draw(_shapes(), label="T, [B, C, *spatial]")
    torch.manual_seed(data.draw(st.integers(0, 2**16), label="seed"))
    neuron = NEURONS[name](shape[1]).to(dtype)
    if neuron.max_spatial_dims is not None:
        shape = shape[: 2 + neuron.max_spatial_dims]
    x = (2 * torch.randn(steps, *shape, dtype=torch.float64)).to(dtype)
    entry = data.draw(st.sampled_from(("forward", "step")), label="entry")
    spoil = data.draw(st.sampled_from(("none", "input", "state")), label="spoil")
    state, spoiled = None, None
    x_in = x if entry == "forward" else x[0]
    if spoil == "input":
        # a neuron without parameters (PSPFilter) takes any float dtype on any device
        free = next(iter([*neuron.parameters(), *neuron.buffers()]), None) is None
        hows = [
            h
            for h in INPUT_SPOILS
            if (h != "empty" or entry == "forward") and not (free and h in ("other_float", "meta"))
        ]
        how = data.draw(st.sampled_from(hows), label="how")
        x_in, spoiled = _spoil_input(x_in, how, entry == "forward"), "x_seq" if entry == "forward" else "x_t"
    elif spoil == "state":
        _, state = neuron(x)
        state, spoiled = _spoil_state(state, data.draw(st.sampled_from(STATE_SPOILS), label="how"))
    run = (lambda: neuron(x_in, state)) if entry == "forward" else (lambda: neuron.step(x_in, state))
    out = _call("neurons", run, spoiled)
    if out is None:
        return
    _assert_finite(out)
    assert all(t.dtype == dtype for t in _tensors(out) if not t.is_complex())
    assert out[0].shape == x_in.shape
    if entry == "step" or dtype != torch.float64:
        return
    # the reference: T calls of step; and two chained forward calls equal one
    stepped, carried = [], None
    for x_t in x.unbind(0):
        spike, carried = neuron.step(x_t, carried)
        stepped.append(spike)
    _assert_close((out[0], out[1]), (torch.stack(stepped), carried), 1e-9)
    if steps > 1:
        first, middle = neuron(x[:1])
        second, last = neuron(x[1:], middle)
        _assert_close((torch.cat([first, second]), last), (out[0], out[1]), 1e-9)


@pytest.mark.filterwarnings("ignore:ComplexHalf support is experimental")
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_prf_in_half_precision(dtype):
    neuron = sp.PRF(3).to(dtype)
    x = torch.randn(4, 2, 3).to(dtype)
    try:
        spikes, _ = neuron(x)
    except (TypeError, ValueError) as error:  # a clear refusal that names the dtype is fine too
        assert "dtype" in str(error) or "float16" in str(error) or "bfloat16" in str(error)
        return
    assert spikes.dtype == dtype and bool(torch.isfinite(spikes).all())


# -- the neurons' constants -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, name",
    [
        (lambda: sp.DynamicDecay(3, v_threshold=math.nan), "v_threshold"),
        (lambda: sp.DynamicDecay(3, v_threshold="1"), "v_threshold"),
        (lambda: sp.PRF(3, v_threshold=math.inf), "v_threshold"),
        (lambda: sp.PRF(3, fr_scale=math.inf), "fr_scale"),
        (lambda: sp.PRF(3, reset="yes"), "reset"),
        (lambda: sp.PRF(3, dt_range=(1,)), "dt_range"),
        (lambda: sp.DecoupledLIF(3, v_threshold=math.nan), "v_threshold"),
        (lambda: sp.DecoupledLIF(3, tau=None), "tau"),
        (lambda: sp.LTC(3, b0=math.nan), "b0"),
        (lambda: sp.LTC(3, beta_a=math.inf), "beta_a"),
        (lambda: sp.BRF(3, v_threshold=math.nan), "v_threshold"),
        (lambda: sp.SEAdLIF(3, adapt_coeff=math.nan), "adapt_coeff"),
        (lambda: sp.PSPLIF(3, tau_s=math.inf), "tau_s"),
        (lambda: PSPFilter(3, tau_s=math.inf), "tau_s"),
        (lambda: sp.PSPLIF(3, v_threshold=math.nan), "v_threshold"),
        (lambda: sp.DynamicDecay(True), "features"),
        (lambda: sp.DynamicDecay(3, surrogate=sg.ATan), "surrogate"),
    ],
)
def test_neuron_constants_are_refused_naming_them(build, name):
    COUNTS["neuron constants"]["tried"] += 1
    with pytest.raises((TypeError, ValueError)) as caught:
        build()
    COUNTS["neuron constants"][type(caught.value).__name__] += 1
    assert _names(str(caught.value), name), str(caught.value)
