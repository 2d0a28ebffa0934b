"""Neurons: parallel forward == serial steps, carried state, gradients, and input checks."""

from __future__ import annotations

import copy
import math

import pytest
import torch

import snn_parallel as sp
from snn_parallel.neurons import (
    AdLIFState,
    BRFState,
    DecoupledLIFState,
    DSNState,
    LeakyIntegratorState,
    LTCState,
    PRFState,
    PSPFilter,
    SynapticLIFState,
)

# (name, factory, input scale) -- the scale puts each neuron in a regime where it spikes
CONFIGS = [
    ("dsn", lambda c: sp.DynamicDecay(c), 2.0),
    ("dsn-integer", lambda c: sp.DynamicDecay(c, spike_mode="integer", kernel_size=3), 3.0),
    ("dsn-k1", lambda c: sp.DynamicDecay(c, kernel_size=1), 2.0),
    ("prf", lambda c: sp.PRF(c, dt_range=(0.3, 1.0)), 3.0),
    ("prf-fft", lambda c: sp.PRF(c, dt_range=(0.3, 1.0), mode="fft"), 3.0),
    ("prf-reset", lambda c: sp.PRF(c, dt_range=(0.3, 1.0), reset=True, learn_decay=True), 3.0),
    ("lif", lambda c: sp.DecoupledLIF(c, learn_decay=True), 1.5),
    ("lif-strict", lambda c: sp.DecoupledLIF(c, surrogate=sp.surrogate.Sigmoid(inclusive=False)), 1.5),
    ("synaptic", lambda c: sp.SynapticLIF(c, learn_decay=True), 0.8),
    ("ltc", lambda c: sp.LTC(c), 2.0),
    ("ltc-parallel", lambda c: sp.LTC(c, mode="parallel"), 2.0),
    ("brf", lambda c: sp.BRF(c), 200.0),
    ("adlif", lambda c: sp.SEAdLIF(c), 10.0),
]
IDS = [c[0] for c in CONFIGS]
SPATIAL = [c for c in CONFIGS if c[1](1).max_spatial_dims is None]


def _run_steps(neuron, x_seq, state=None):
    spikes = []
    for x_t in x_seq.unbind(0):
        s, state = neuron.step(x_t, state)
        spikes.append(s)
    return torch.stack(spikes), state


@pytest.mark.parametrize("name,factory,scale", CONFIGS, ids=IDS)
@pytest.mark.parametrize("steps", [1, 2, 37])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_forward_equals_steps(name, factory, scale, steps, dtype):
    neuron = factory(5).to(dtype)
    x = torch.randn(steps, 3, 5, dtype=dtype) * scale
    spikes, state = neuron(x)
    step_spikes, step_state = _run_steps(neuron, x)
    assert spikes.shape == x.shape and spikes.dtype == dtype
    if dtype == torch.float64:
        assert torch.equal(spikes, step_spikes)
    else:  # rounding differs between the parallel and serial forms: allow a rare flip at threshold
        assert (spikes != step_spikes).float().mean() < 0.01
    for field, a, b in zip(state._fields, state, step_state, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"state.{field}")


@pytest.mark.parametrize("name,factory,scale", CONFIGS, ids=IDS)
@pytest.mark.parametrize("split", [1, 2, 20])
def test_chained_forward_equals_one_call(name, factory, scale, split):
    neuron = factory(4).double()
    x = torch.randn(41, 2, 4, dtype=torch.float64) * scale
    spikes, membrane, state = neuron(x, return_membrane=True)
    first, m1, mid = neuron(x[:split], return_membrane=True)
    second, m2, end = neuron(x[split:], mid, return_membrane=True)
    assert torch.equal(torch.cat([first, second]), spikes)
    torch.testing.assert_close(torch.cat([m1, m2]), membrane)
    for a, b in zip(state, end, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name,factory,scale", CONFIGS, ids=IDS)
def test_parallel_gradients_equal_step_loop_bptt(name, factory, scale):
    """Training through ``forward`` gives the gradients of BPTT through ``step``."""
    neuron = factory(4).double()
    x = (torch.randn(23, 3, 4, dtype=torch.float64) * scale).requires_grad_()
    weights = torch.randn(23, 3, 4, dtype=torch.float64)
    params = [p for p in neuron.parameters()]
    spikes, _ = neuron(x)
    grads = torch.autograd.grad((spikes * weights).sum(), [x, *params], allow_unused=True, materialize_grads=True)
    step_spikes, _ = _run_steps(neuron, x)
    ref = torch.autograd.grad((step_spikes * weights).sum(), [x, *params], allow_unused=True, materialize_grads=True)
    assert spikes.sum() > 0
    for g, r in zip(grads, ref, strict=True):
        torch.testing.assert_close(g, r)


@pytest.mark.parametrize("name,factory,scale", SPATIAL, ids=[c[0] for c in SPATIAL])
def test_feature_maps(name, factory, scale):
    """``[T, B, C, H, W]`` inputs: per-channel parameters broadcast over H and W."""
    neuron = factory(3).double()
    x = torch.randn(9, 2, 3, 4, 5, dtype=torch.float64) * scale
    spikes, state = neuron(x)
    step_spikes, _ = _run_steps(neuron, x)
    assert spikes.shape == x.shape
    assert torch.equal(spikes, step_spikes)
    # the same lanes laid out as a [T, B*H*W, C] batch give the same spikes
    flat, _ = neuron(x.permute(0, 1, 3, 4, 2).reshape(9, 40, 3))
    assert torch.equal(flat.view(9, 2, 4, 5, 3).permute(0, 1, 4, 2, 3), spikes)


def test_dsn_integer_spikes_are_clipped_rounded_membrane():
    neuron = sp.DynamicDecay(4, spike_mode="integer", levels=3).double()
    spikes, membrane, _ = neuron(torch.rand(20, 2, 4, dtype=torch.float64) * 8, return_membrane=True)
    assert torch.equal(spikes, membrane.round().clamp(0, 3))


def test_dsn_init_decay_sets_resting_decay():
    neuron = sp.DynamicDecay(3, init_decay=0.8, tau=0.25)
    with torch.no_grad():
        neuron.weight.zero_()
        _, membrane, _ = neuron(torch.ones(2, 1, 3), return_membrane=True)
    # H_0 = (1 - a) * 1, H_1 = a * H_0 + (1 - a)
    torch.testing.assert_close(membrane[0], torch.full((1, 3), 0.2))
    torch.testing.assert_close(membrane[1], torch.full((1, 3), 0.8 * 0.2 + 0.2))


def test_prf_resonates_at_theta():
    """A PRF channel with zero decay rotates by dt*theta per step (the two-state form)."""
    neuron = sp.PRF(1, tau=1e9).double()
    with torch.no_grad():
        neuron.log_dt.fill_(0.0)
        neuron.theta_log.fill_(torch.log(torch.tensor(0.5)).item())
    x = torch.zeros(8, 1, 1, dtype=torch.float64)
    x[0] = 1.0
    _, membrane, _ = neuron(x, return_membrane=True)
    expected = torch.cos(0.5 * torch.arange(8, dtype=torch.float64))
    torch.testing.assert_close(membrane.flatten(), expected, rtol=1e-6, atol=1e-8)


def test_ltc_parallel_mode_gates_see_input_only():
    neuron = sp.LTC(3, mode="parallel")
    assert neuron.rate_gate.in_features == 3
    assert sp.LTC(3).rate_gate.in_features == 6


@pytest.mark.parametrize(
    "neuron,state_type",
    [
        (sp.DynamicDecay(3), DSNState),
        (sp.PRF(3), PRFState),
        (sp.DecoupledLIF(3), DecoupledLIFState),
        (sp.SynapticLIF(3), SynapticLIFState),
        (sp.LTC(3), LTCState),
        (sp.BRF(3), BRFState),
        (sp.SEAdLIF(3), AdLIFState),
        (sp.LeakyIntegrator(3), LeakyIntegratorState),
    ],
)
def test_bad_inputs_raise_clear_errors(neuron, state_type):
    x = torch.randn(4, 2, 3)
    with pytest.raises(TypeError, match="x_seq must be a torch.Tensor"):
        neuron([[1.0]])
    with pytest.raises(TypeError, match="x_seq must have dtype"):
        neuron(torch.ones(4, 2, 3, dtype=torch.int64))
    with pytest.raises(ValueError, match=r"x_seq must be time-major"):
        neuron(torch.randn(2, 3))
    with pytest.raises(ValueError, match="x_seq must have 3 features"):
        neuron(torch.randn(4, 2, 5))
    with pytest.raises(ValueError, match="empty sequence"):
        neuron(torch.randn(0, 2, 3))
    with pytest.raises(ValueError, match="x_seq contains NaN"):
        neuron(torch.full((4, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="x_seq is on meta"):
        neuron(torch.randn(4, 2, 3, device="meta"))
    with pytest.raises(TypeError, match="x_seq must have dtype .* to match"):
        neuron(x.double())
    with pytest.raises(ValueError, match="x_t must have 3 features"):
        neuron.step(torch.randn(2, 4))
    with pytest.raises(ValueError, match="x_t must be one time step"):
        neuron.step(torch.randn(3))
    with pytest.raises(TypeError, match=f"state must be a {state_type.__name__}"):
        neuron(x, (torch.zeros(2, 3),))
    _, state = neuron(x)
    wrong = state._replace(**{state._fields[0]: torch.zeros(5, 3)})
    with pytest.raises(ValueError, match=f"state.{state._fields[0]} has shape"):
        neuron(x, wrong)
    with pytest.raises(ValueError, match=f"state.{state._fields[0]} contains NaN"):
        neuron(x, state._replace(**{state._fields[0]: torch.full_like(state[0], float("nan"))}))


def test_validation_switch_skips_only_the_value_check():
    neuron = sp.DecoupledLIF(3)
    nan = torch.full((4, 2, 3), float("nan"))
    with sp.validation(False):
        assert not sp.validation_enabled()
        neuron(nan)  # no data-dependent check
        with pytest.raises(ValueError, match="features"):
            neuron(torch.randn(4, 2, 5))
    assert sp.validation_enabled()
    with pytest.raises(ValueError, match="NaN"):
        neuron(nan)


def test_the_value_check_finds_one_bad_value_and_passes_sums_that_overflow():
    """The NaN/inf check reduces to one sum: a single NaN or inf anywhere, in any float dtype (and complex
    states), is caught, while finite values whose sum overflows (float16, float32) are not refused."""
    neuron = sp.DecoupledLIF(3)
    for dtype, big in ((torch.float16, 6e4), (torch.bfloat16, 3e38), (torch.float32, 3e38), (torch.float64, 1e308)):
        huge = torch.full((4, 2, 3), big, dtype=dtype)
        assert not torch.isfinite(huge.sum()) and torch.isfinite(huge).all()
        neuron.to(dtype)(huge)
        for bad in (float("nan"), float("inf"), -float("inf")):
            x = torch.zeros(4, 2, 3, dtype=dtype)
            x[3, 1, 2] = bad
            with pytest.raises(ValueError, match="x_seq contains NaN or infinite"):
                neuron(x)
    from snn_parallel._validation import check_tensor

    dtypes = (torch.complex64,)
    check_tensor(torch.tensor([1 + 2j, -3j]), "z", dtypes=dtypes)
    with pytest.raises(ValueError, match="z contains NaN"):
        check_tensor(torch.tensor([1 + 2j, complex(0.0, float("nan"))]), "z", dtypes=dtypes)


def test_ltc_rejects_feature_maps():
    with pytest.raises(ValueError, match="accepts \\[T, B, 3\\] sequences"):
        sp.LTC(3)(torch.randn(4, 2, 3, 5))


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: sp.DynamicDecay(0), "features must be a positive int"),
        (lambda: sp.DynamicDecay(3, kernel_size=0), "kernel_size"),
        (lambda: sp.DynamicDecay(3, tau=0), "tau must be positive"),
        (lambda: sp.DynamicDecay(3, init_decay=1.0), "init_decay"),
        (lambda: sp.DynamicDecay(3, spike_mode="ternary"), "spike_mode"),
        (lambda: sp.DynamicDecay(3, spike_mode="integer", levels=0), "levels"),
        (lambda: sp.PRF(3, dt_range=(0.1, 0.01)), "dt_range"),
        (lambda: sp.PRF(3, mode="conv"), "mode must be"),
        (lambda: sp.PRF(3, mode="fft", reset=True), "reset=True needs mode='scan'"),
        (lambda: sp.PRF(3, surrogate="nope"), "unknown surrogate"),
        (lambda: sp.DecoupledLIF(3, tau=1.0), "tau must be > 1"),
        (lambda: sp.LTC(3, mode="fast"), "mode must be"),
        (lambda: sp.LTC(3, surrogate=lambda x: (x > 0).float()), "no derivative"),
    ],
)
def test_bad_constructor_arguments(build, match):
    with pytest.raises((ValueError, TypeError), match=match):
        build()


# -- lazy feature count ------------------------------------------------------------------
LAZY = [
    ("dsn", lambda **k: sp.DynamicDecay(**k)),
    ("prf", lambda **k: sp.PRF(**k)),
    ("prf-learn", lambda **k: sp.PRF(learn_decay=True, **k)),
    ("lif", lambda **k: sp.DecoupledLIF(**k)),
    ("lif-learn", lambda **k: sp.DecoupledLIF(learn_decay=True, **k)),
    ("synaptic", lambda **k: sp.SynapticLIF(learn_decay=True, **k)),
    ("ltc", lambda **k: sp.LTC(**k)),
    ("ltc-parallel", lambda **k: sp.LTC(mode="parallel", learn_gate_temperature=True, **k)),
    ("brf", lambda **k: sp.BRF(**k)),
    ("adlif", lambda **k: sp.SEAdLIF(**k)),
    ("psplif", lambda **k: sp.PSPLIF(**k)),
    ("psp", lambda **k: PSPFilter(**k)),
    ("leaky-integrator", lambda **k: sp.LeakyIntegrator(**k)),
    ("leaky-integrator-frac", lambda **k: sp.LeakyIntegrator(interpolate_tau=True, **k)),
]
LAZY_IDS = [c[0] for c in LAZY]


@pytest.mark.parametrize("name,make", LAZY, ids=LAZY_IDS)
def test_lazy_feature_count_is_inferred_at_the_first_call(name, make):
    lazy = make()
    assert lazy.features is None and lazy.has_uninitialized_params()
    per_channel = [p for p in lazy.parameters() if p is not getattr(lazy, "gate_temperature", None)]
    assert all(isinstance(p, torch.nn.parameter.UninitializedParameter) for p in per_channel)
    x = torch.rand(6, 2, 5, dtype=torch.float64) * 2
    lazy.double()  # as for nn.LazyLinear, .to() before the first call sets the dtype it materialises in
    spikes, state = lazy(x)
    assert lazy.features == 5 and not lazy.has_uninitialized_params()
    assert all(p.shape[0] == 5 and p.dtype == torch.float64 for p in per_channel)
    eager = make(features=5).double()
    assert {k: v.shape for k, v in eager.state_dict().items()} == {k: v.shape for k, v in lazy.state_dict().items()}
    eager.load_state_dict(lazy.state_dict())
    assert torch.equal(eager(x)[0], spikes)
    with pytest.raises(ValueError, match="x_seq must have 5 features"):
        lazy(torch.rand(6, 2, 4, dtype=torch.float64))


@pytest.mark.parametrize("name,make", LAZY, ids=LAZY_IDS)
def test_lazy_neuron_loads_deepcopies_and_trains_like_lazy_linear(name, make):
    x = torch.rand(6, 2, 5) * 2
    trained = make(features=5)
    fresh = make()  # a state dict materialises a lazy neuron with the loaded feature count
    fresh.load_state_dict(trained.state_dict())
    assert fresh.features == (5 if trained.state_dict() else None)  # PSPLIF has no parameters: nothing to load
    assert all(
        torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), trained.state_dict().values(), strict=True)
    )
    lazy = make()
    twin = copy.deepcopy(lazy)  # uninitialised parameters deep-copy, as nn.LazyLinear's
    assert twin.features is None and twin.has_uninitialized_params()
    params = list(lazy.parameters())
    if params:  # an optimizer built before the first call steps the materialised parameters
        optimizer = torch.optim.SGD(params, lr=1.0)
        spikes, membrane, _ = lazy(x, return_membrane=True)
        before = [p.detach().clone() for p in lazy.parameters()]
        (spikes.sum() + membrane.sum()).backward()
        optimizer.step()
        assert any(not torch.equal(b, p) for b, p in zip(before, lazy.parameters(), strict=True))
    step_first = make()
    step_first.step(x[0])  # a step infers the count from dim 1
    assert step_first.features == 5


@pytest.mark.parametrize("name,make", LAZY, ids=LAZY_IDS)
def test_lazy_neuron_first_called_through_functional_call_keeps_working(name, make):
    """``torch.func.functional_call`` runs the module on the given tensors and puts its own back after the call, so
    a first call there loses the buffers that call built (a fixed decay's): every later call, in it or not, gives
    the spikes of the neuron built with its feature count, its state dict their shapes, and building them again
    draws nothing from the global random generator."""
    from torch.func import functional_call

    x = torch.rand(6, 2, 5) * 2
    torch.manual_seed(0)
    lazy = make()
    spikes = []
    for _ in range(2):
        rng = torch.get_rng_state()
        tensors = {**dict(lazy.named_parameters()), **dict(lazy.named_buffers())}
        spikes.append(functional_call(lazy, tensors, (x,))[0])
    assert torch.equal(torch.get_rng_state(), rng)  # the second call's
    torch.manual_seed(0)
    eager = make(features=5)
    assert {k: v.shape for k, v in lazy.state_dict().items()} == {k: v.shape for k, v in eager.state_dict().items()}
    for got in (*spikes, lazy(x)[0]):
        torch.testing.assert_close(got, eager(x)[0], rtol=0, atol=0)


def test_lazy_neuron_is_refused_by_ddp_until_a_dry_run(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        lazy = sp.PRF()
        with pytest.raises(RuntimeError, match="uninitialized parameters"):
            torch.nn.parallel.DistributedDataParallel(lazy)
        lazy(torch.rand(3, 2, 4))
        ddp = torch.nn.parallel.DistributedDataParallel(lazy)
        assert ddp(torch.rand(3, 2, 4))[0].shape == (3, 2, 4)
        del ddp  # its reducer before the group it holds (a group torn down first hung once at the reducer's end)
    finally:
        dist.destroy_process_group()


# -- constants ---------------------------------------------------------------------------
NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    "build,error,match",
    [
        *[
            (lambda cls=cls, v=v: cls(3, v_threshold=v), err, "v_threshold")
            for cls in (sp.DynamicDecay, sp.PRF, sp.DecoupledLIF, sp.SynapticLIF, sp.BRF, sp.SEAdLIF, sp.PSPLIF)
            for v, err in (
                (NAN, ValueError),
                (INF, ValueError),
                ("1.0", TypeError),
                (None, TypeError),
                (True, TypeError),
            )
        ],
        (lambda: sp.LTC(3, b0=NAN), ValueError, "b0 must be a finite number"),
        (lambda: sp.LTC(3, b0="0.1"), TypeError, "b0 must be a real number"),
        (lambda: sp.LTC(3, beta_a=INF), ValueError, "beta_a must be a finite number"),
        (lambda: sp.LTC(3, beta_a=-1.0), ValueError, "beta_a must be >= 0"),
        (lambda: sp.LTC(3, initial_membrane="random"), ValueError, "initial_membrane"),
        (lambda: sp.LTC(3, learn_gate_temperature="yes"), TypeError, "learn_gate_temperature"),
        (lambda: sp.SEAdLIF(3, adapt_coeff=NAN), ValueError, "adapt_coeff must be a finite number"),
        (lambda: sp.SEAdLIF(3, adapt_coeff=None), TypeError, "adapt_coeff"),
        (lambda: sp.PRF(3, fr_scale=INF), ValueError, "fr_scale must be a finite number"),
        (lambda: sp.PRF(3, fr_scale=0.0), ValueError, "fr_scale must be positive"),
        (lambda: sp.PRF(3, reset="yes"), TypeError, "reset must be a bool"),
        (lambda: sp.PRF(3, learn_decay=1), TypeError, "learn_decay must be a bool"),
        (lambda: sp.PRF(3, dt_range=(1,)), ValueError, "dt_range must be a pair"),
        (lambda: sp.PRF(3, dt_range="ab"), TypeError, "dt_range must be a pair"),
        (lambda: sp.PRF(3, dt_range=(0.1, INF)), ValueError, "dt_range must be a finite number"),
        (lambda: sp.PRF(3, tau=INF), ValueError, "tau must be a finite number"),
        (lambda: sp.PRF(3, mode=None), TypeError, "mode"),
        (lambda: sp.PSPLIF(3, tau_s=INF), ValueError, "tau_s must be a finite number"),
        (lambda: sp.PSPLIF(3, tau_m=NAN), ValueError, "tau_m must be a finite number"),
        (lambda: PSPFilter(3, tau_s=INF), ValueError, "tau_s must be a finite number"),
        (lambda: sp.DynamicDecay(3, tau=INF), ValueError, "tau must be a finite number"),
        (lambda: sp.DynamicDecay(3, init_decay=NAN), ValueError, "init_decay must be a finite number"),
        (lambda: sp.DynamicDecay(3, kernel_size=2.0), TypeError, "kernel_size must be an int"),
        (lambda: sp.DecoupledLIF(3, tau="2"), TypeError, "tau must be a real number"),
        (lambda: sp.BRF(3, dt=INF), ValueError, "dt must be a finite number"),
        (lambda: sp.DynamicDecay(2.5), TypeError, "features must be a positive int or None"),
        (lambda: sp.PRF(True), TypeError, "features must be a positive int or None"),
    ],
)
def test_constants_are_checked_naming_the_argument(build, error, match):
    with pytest.raises(error, match=match):
        build()


# -- dtypes ------------------------------------------------------------------------------
@pytest.mark.parametrize("name,make", LAZY, ids=LAZY_IDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_every_neuron_runs_in_half_precision(name, make, dtype):
    neuron = make(features=4).to(dtype)
    x = (torch.rand(7, 3, 4) * 3).to(dtype).requires_grad_()
    spikes, membrane, state = neuron(x, return_membrane=True)
    assert spikes.dtype == membrane.dtype == dtype and all(s.dtype == dtype for s in state)
    (spikes.float().sum() + membrane.float().sum()).backward()
    grads = [x.grad, *(p.grad for p in neuron.parameters() if p.grad is not None)]
    assert all(torch.isfinite(g.float()).all() for g in grads)
    again, _ = neuron(x.detach(), state)  # the state goes back in
    step, _ = neuron.step(x[0].detach(), state)
    assert again.dtype == step.dtype == dtype


@pytest.mark.parametrize("name,make", LAZY, ids=LAZY_IDS)
def test_every_neuron_trains_under_cpu_autocast(name, make):
    linear, neuron = torch.nn.Linear(4, 4), make()
    x = torch.rand(6, 3, 4) * 3
    with torch.autocast("cpu", dtype=torch.bfloat16):
        current = linear(x)
        assert current.dtype == torch.bfloat16
        spikes, membrane, state = neuron(current, return_membrane=True)
        # the dynamics run in the neuron's own dtype (float32), as autocast's cumsum does
        assert spikes.dtype == membrane.dtype == torch.float32
        more, _ = neuron(linear(x), state)  # the float32 state goes back in
    (spikes.sum() + membrane.sum() + more.sum()).backward()
    grads = [linear.weight.grad, *(p.grad for p in neuron.parameters())]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "make",
    [
        lambda s: sp.LTC(3, surrogate=s),
        lambda s: sp.SEAdLIF(3, surrogate=s),
        lambda s: sp.BRF(3, surrogate=s),
        lambda s: sp.DecoupledLIF(3, surrogate=s),
        lambda s: sp.DynamicDecay(3, surrogate=s),
    ],
    ids=["ltc", "adlif", "brf", "lif", "dsn"],
)
def test_foreign_surrogate_keeps_the_dtype(make):
    snntorch = pytest.importorskip("snntorch")
    import snntorch.surrogate  # noqa: F401, F811

    neuron = make(snntorch.surrogate.triangular()).double()  # stays foreign (fast_sigmoid() is ours)
    x = torch.rand(5, 2, 3, dtype=torch.float64) * 300
    spikes, state = neuron(x)
    assert spikes.dtype == torch.float64 and all(s.dtype == torch.float64 for s in state)
    step, state = neuron.step(x[0], state)  # the state goes back in
    assert step.dtype == torch.float64 and spikes.sum() > 0


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_psp_filter_keeps_half_precision(dtype):
    from snn_parallel.ops.tssl import psp_filter

    x = torch.rand(6, 2, 3).to(dtype)
    psp, last = psp_filter(x, 3.0)
    assert psp.dtype == last.dtype == dtype
    again, _ = psp_filter(x, 3.0, last)  # the state goes back in
    reference, _ = psp_filter(x.float(), 3.0)
    torch.testing.assert_close(psp.float(), reference, rtol=1e-2, atol=1e-2)
    assert again.dtype == dtype
    filtered, state = PSPFilter(3).to(dtype)(x)
    assert filtered.dtype == state.a.dtype == dtype


# -- torch.compile ----------------------------------------------------------------------
class _LinearNeuron(torch.nn.Module):
    def __init__(self, neuron: torch.nn.Module) -> None:
        super().__init__()
        self.linear, self.neuron = torch.nn.Linear(4, 4), neuron

    def forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        spikes, membrane, _ = self.neuron(self.linear(x_seq), return_membrane=True)
        return spikes + membrane


def test_dynamo_explain_counts_no_graph_break():
    torch._dynamo.reset()
    explained = torch._dynamo.explain(_LinearNeuron(sp.PRF(4)))(torch.rand(5, 2, 4))
    assert explained.graph_break_count == 0, [str(r.reason)[:200] for r in explained.break_reasons]


@pytest.mark.parametrize("name,make", LAZY, ids=LAZY_IDS)
def test_linear_neuron_network_compiles_without_graph_breaks(name, make):
    """``fullgraph=True`` raises at the first graph break; the compiled network gives the eager numbers."""
    torch._dynamo.reset()
    net = _LinearNeuron(make(features=4))
    x = torch.rand(5, 2, 4) * 3
    compiled = torch.compile(net, backend="aot_eager", fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, net(x), rtol=1e-6, atol=1e-6)
    assert sp.validation_enabled()  # the value check is back on after tracing
    with pytest.raises(ValueError, match="NaN"):
        net(torch.full((5, 2, 4), float("nan")))


@pytest.mark.parametrize("name,make", LAZY[:2], ids=LAZY_IDS[:2])
def test_a_lazy_neuron_under_fullgraph_says_what_to_do_and_the_advice_works(name, make):
    """The first call builds the per-channel parameters, which torch.compile cannot trace: with ``fullgraph=True``
    the error names the neuron and the fix; after one eager call the network compiles whole."""
    torch._dynamo.reset()
    net, x = _LinearNeuron(make()), torch.rand(5, 2, 4) * 3
    with pytest.raises(torch._dynamo.exc.Unsupported, match=r"builds its per-channel parameters .* features=C"):
        torch.compile(net, backend="aot_eager", fullgraph=True)(x)
    assert net.neuron.has_uninitialized_params()
    eager = net(x)
    torch.testing.assert_close(torch.compile(net, backend="aot_eager", fullgraph=True)(x), eager)


# -- LTC (paper mode) against its equations ----------------------------------------------------
def ltc_reference(x, rate_w, rate_b, ret_w, ret_b, state, spike_fn, b0=0.1, beta_a=1.8, temperature=(1.0, 1.0)):
    """LTC-SNN (Yin et al.) from the paper's equations, one step at a time:
    m_t = sig(W_m [I_t; u^_{t-1}] + c_m), rho_t = sig(W_rho [I_t; b_{t-1}] + c_rho),
    b_t = rho_t b_{t-1} + (1 - rho_t) s_{t-1}, theta_t = b0 + beta_a b_t,
    u_t = (1 - m_t) u^_{t-1} + m_t I_t, s_t = H(u_t - theta_t), u^_t = (1 - s_t) u_t."""
    u, s, b = state
    spikes, membranes = [], []
    for current in x.unbind(0):
        m = torch.sigmoid(temperature[0] * (torch.cat([current, u], -1) @ rate_w.T + rate_b))
        rho = torch.sigmoid(temperature[1] * (torch.cat([current, b], -1) @ ret_w.T + ret_b))
        b = rho * b + (1 - rho) * s
        v = (1 - m) * u + m * current
        s = spike_fn(v - (b0 + beta_a * b))
        u = (1 - s) * v
        spikes.append(s)
        membranes.append(v)
    return torch.stack(spikes), torch.stack(membranes), (u, s, b)


def _ltc_params(neuron):
    return neuron.rate_gate.weight, neuron.rate_gate.bias, neuron.retention_gate.weight, neuron.retention_gate.bias


def test_ltc_hand_derived_steps():
    """One neuron, zero gate weights except the rate gate's weight on the membrane, 2 ln 3: by hand,
    t=0: b = .5*.1 = .05, theta = .19, m = .5, u = .5 -> spike, u^ = 0;
    t=1: b = .5*.05 + .5 = .525, theta = 1.045, m = .5, u = .5 -> none, u^ = .5;
    t=2: b = .2625, theta = .5725, m = sig(2 ln 3 * .5) = .75, u = .25*.5 + .75*.2 = .275 -> none.
    A rate gate that read the last spike (0) instead of u^ would give m = .5 and u = .35."""
    neuron = sp.LTC(1).double()
    with torch.no_grad():
        for p in _ltc_params(neuron):
            p.zero_()
        neuron.rate_gate.weight[0, 1] = 2 * math.log(3)
    x = torch.tensor([1.0, 1.0, 0.2], dtype=torch.float64).view(3, 1, 1)
    spikes, membrane, state = neuron(x, return_membrane=True)
    assert spikes.flatten().tolist() == [1.0, 0.0, 0.0]
    torch.testing.assert_close(membrane.flatten(), torch.tensor([0.5, 0.5, 0.275], dtype=torch.float64))
    torch.testing.assert_close(state.b.flatten(), torch.tensor([0.2625], dtype=torch.float64))
    torch.testing.assert_close(state.u.flatten(), torch.tensor([0.275], dtype=torch.float64))


@pytest.mark.parametrize("temperature", [False, True])
def test_ltc_paper_mode_matches_its_equations_forward_and_gradients(temperature):
    """Spikes, membranes, state and every gradient against a plain autograd loop written from
    the equations (with the neuron's own surrogate as the spike function)."""
    neuron = sp.LTC(5, learn_gate_temperature=temperature).double()
    if temperature:
        with torch.no_grad():
            neuron.gate_temperature.copy_(torch.tensor([1.5, 0.7]))
    x = (torch.randn(30, 4, 5, dtype=torch.float64) * 1.5).requires_grad_()
    state = neuron.init_state(x[0])
    state = type(state)(
        torch.rand_like(state.u), (torch.rand_like(state.s) > 0.5).double(), state.b + 0.2 * torch.rand_like(state.b)
    )
    weights = torch.randn(30, 4, 5, dtype=torch.float64)
    spikes, membrane, end = neuron(x, state, return_membrane=True)
    params = [*_ltc_params(neuron), *([neuron.gate_temperature] if temperature else [])]
    loss = (spikes * weights).sum() + membrane.square().sum() + sum(v.sum() for v in end)
    grads = torch.autograd.grad(loss, [x, *params])
    temp = tuple(neuron.gate_temperature) if temperature else (1.0, 1.0)
    ref_spikes, ref_membrane, ref_end = ltc_reference(
        x, *_ltc_params(neuron), tuple(state), neuron.surrogate, temperature=temp
    )
    assert 0 < ref_spikes.mean() < 1
    assert torch.equal(spikes, ref_spikes)
    torch.testing.assert_close(membrane, ref_membrane, rtol=1e-12, atol=1e-12)
    for a, b in zip(end, ref_end, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    ref_loss = (ref_spikes * weights).sum() + ref_membrane.square().sum() + sum(v.sum() for v in ref_end)
    ref_grads = torch.autograd.grad(ref_loss, [x, *params])
    for g, r in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, rtol=1e-10, atol=1e-12)


def test_ltc_uniform_initial_membrane():
    neuron = sp.LTC(4, initial_membrane="uniform")
    first, second = neuron.init_state(torch.zeros(3, 4)), neuron.init_state(torch.zeros(3, 4))
    assert 0 <= first.u.min() and first.u.max() < 1 and not torch.equal(first.u, second.u)  # drawn afresh
    assert torch.equal(first.b, torch.full((3, 4), 0.1)) and not first.s.any()
    assert sp.LTC(4).init_state(torch.zeros(3, 4)).u.abs().sum() == 0


@pytest.mark.parametrize(
    "make, op",
    [
        (lambda: sp.PRF(3, backend="cupy"), "linear_fire"),
        (lambda: sp.DecoupledLIF(3, backend="cupy"), "linear_fire"),
        (lambda: sp.DynamicDecay(3, backend="cupy"), "dsn_membrane"),
        (lambda: sp.LTC(3, mode="parallel", backend="cupy"), "ltc_scan"),
        (lambda: sp.PSPLIF(3, backend="cupy"), "tsslbp"),
        (lambda: sp.LeakyIntegrator(3, backend="cupy"), "linear_scan"),
    ],
)
def test_a_cupy_neuron_that_cannot_run_names_itself_and_its_backend_argument(make, op):
    """``PRF(3, backend="cupy")`` on a CPU tensor raised ``linear_fire: backend='cupy' cannot run``,
    naming an op the caller never called."""
    neuron = make()
    name = type(neuron).__name__
    with pytest.raises(RuntimeError) as raised:
        neuron(torch.rand(4, 2, 3))
    assert str(raised.value) == (
        f"{name}(backend='cupy') cannot run the CuPy kernels of {op}: the inputs are on cpu; the CuPy kernels "
        f"need CUDA tensors; build the {name} with backend='torch' or 'auto'"
    )
