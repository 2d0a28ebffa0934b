r"""HYPR: hybrid propagation (Baronig et al., arXiv 2506.14464), over any feed-forward graph.

Each neuron (one element of a neuron layer, with its state :math:`s`, ``d`` numbers, plus its
spike :math:`z`, together :math:`\hat s`) evolves by its own step from its input current
:math:`I_t`, which the model's stateless modules compute from the layers below (synapses,
norms, residual sums, ...) with parameters :math:`W`; the neuron has its own parameters
:math:`\theta`:

.. math::

    A_t = \frac{\partial \hat s_t}{\partial \hat s_{t-1}}, \quad
    D_t = \frac{\partial \hat s_t}{\partial I_t}, \quad
    G_t = \frac{\partial \hat s_t}{\partial \theta}, \qquad
    e_t = A_t e_{t-1} + D_t \frac{\partial I_t}{\partial W} \ \text{(per neuron and sample)}.

The learning signal :math:`\ell_t = \partial L / \partial z_t` comes from spatial backprop
only (through the model's graph inside step :math:`t`), and :math:`\nabla W = \sum_t \ell_t e_t`.
HYPR computes this per sub-sequence of :math:`\lambda` steps:

1. **S-stage**: run the :math:`\lambda` steps without a graph, keeping the states;
2. **P-stage**: run them again from the kept states, each neuron's step now a pure function
   of its (detached) state and its current; one backward through the model's graph gives
   :math:`\ell_t` for all steps; each neuron's :math:`\lambda` Jacobians are taken at once
   (forward-mode AD of our neurons' ``step``; reverse mode, element by element, for
   SpikingJelly's nodes), and an associative scan over time gives

   .. math::

       q_t = \ell_t + q_{t+1} A_{t+1}, \qquad
       \nabla W \mathrel{+}= q_0 e_0 + \textstyle\sum_t (q_t D_t) \frac{\partial I_t}{\partial W},

   with :math:`q_0 = q_1 A_1`. The second term is one more backward through the model's
   graph, with :math:`q_t D_t` as the gradient of each current and the neurons' outputs cut:
   for a convolution it is autograd's weight gradient, the eligibility correlated with the
   input patches. Only the eligibilities at the end of the sub-sequence,
   :math:`e_\lambda = \Phi_{\lambda:1} e_0 + \sum_t \Phi_{\lambda:t+1} D_t \partial I_t/\partial W`
   with :math:`\Phi_{\lambda:t+1} = A_\lambda \cdots A_{t+1}`, are carried on.

The gradient does not depend on :math:`\lambda`, which trades memory against parallelism: the
S- and P-stages hold :math:`\lambda` steps, the eligibilities :math:`O(B N M d)` (per sample,
neuron and incoming synapse; for a convolution, per output position and input patch),
independent of :math:`T`. For one feed-forward layer it equals BPTT; deeper and recurrent
networks get the e-prop approximation (temporal paths through other neurons are dropped).
The optimizer steps once per sequence.
"""

from __future__ import annotations

import contextlib
import math
import types
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, jvp, vmap

from .._validation import check_int
from ..neurons.base import Neuron
from ..surrogate import ForeignTape
from .network import CoreDriver, Driver, MemoryDriver, Network, RecurrentDriver, UnsupportedModule, is_online_node
from .trainer import Trainer

__all__ = ["HYPRTrainer", "suffix_scan"]


def suffix_scan(matrices: torch.Tensor, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Reverse affine scan over time with log-depth (Hillis-Steele) combines.

    For ``matrices`` :math:`M_t` ``[L, ..., D, D]`` and row-vector ``signals`` :math:`\ell_t`
    ``[L, ..., D]`` returns :math:`q_t = \ell_t + q_{t+1} M_{t+1}` (with :math:`q_L = \ell_L`)
    and the suffix products :math:`P_t = M_L M_{L-1} \cdots M_{t+1}` (:math:`P_L = I`).

    Segments are maps :math:`q \mapsto q X + y`; composing segment ``a`` then ``b`` gives
    :math:`(X_a X_b,\ y_a X_b + y_b)`, which is associative, so each of the
    :math:`\lceil\log_2 L\rceil` passes combines every element with the one ``offset`` away.
    """
    length = matrices.shape[0]
    eye = torch.eye(matrices.shape[-1], dtype=matrices.dtype, device=matrices.device).expand_as(matrices[:1])
    # reversed time: element k is step t = L - k with the matrix that follows it, M_{t+1} (I after the last)
    x = torch.cat([eye, matrices[1:].flip(0)])
    y = signals.flip(0)
    offset = 1
    while offset < length:
        x_prev, y_prev = x[:-offset], y[:-offset]
        y = torch.cat([y[:offset], torch.einsum("k...i,k...ij->k...j", y_prev, x[offset:]) + y[offset:]])
        x = torch.cat([x[:offset], x_prev @ x[offset:]])
        offset *= 2
    return y.flip(0), x.flip(0)


# -- the neurons' pure steps and their per-element Jacobians ------------------------------------------
class _Step(nn.Module):
    """Calls the core neuron's step hook, :meth:`~snn_parallel.neurons.Neuron.update` (pure, on checked
    inputs), so that ``functional_call`` can swap its parameters; returns ``(spike, new state)``."""

    def __init__(self, core: Neuron) -> None:
        super().__init__()
        self.core = core

    def forward(self, current: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, NamedTuple]:
        spike, _, new_state = self.core.update(current, state)
        return spike, new_state


def _entering_state(driver: Driver, saved: Any, current: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The neuron's state before a step, from what the driver held then (``saved``), detached."""
    if isinstance(driver, CoreDriver):
        state = saved if saved is not None else driver.core.init_state(current)
        return type(state)(*(s.detach() for s in state))
    if hasattr(driver.module, "materialize_states"):
        states = driver.module.materialize_states((current,), tuple(saved.values()), "s")
    else:  # SpikingJelly 0.0.0.0.14: a memory still at its float reset value is that value everywhere
        states = tuple(torch.full_like(current, s) if isinstance(s, float) else s for s in saved.values())
    return tuple(s.detach() for s in states)


def _cat_states(states: list, trailing: int) -> tuple:
    """Per-step states joined along their batch axis, the first of their last ``trailing`` dims (a
    field may have more leading dims, e.g. a history of inputs)."""
    fields = [torch.cat([s[i] for s in states], dim=f.dim() - trailing) for i, f in enumerate(states[0])]
    return type(states[0])(*fields) if hasattr(states[0], "_fields") else tuple(fields)


def _pure_step(driver: Driver, current: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, tuple]:
    """``(spike, new state)`` of one step, touching nothing the driver holds."""
    if isinstance(driver, CoreDriver):
        spike, _, new_state = driver.core.update(current, state)
        return spike, new_state
    module = driver.module
    if hasattr(module, "single_step_functional_forward"):
        outputs, new = module.single_step_functional_forward((current,), tuple(state))
        return outputs[0], tuple(new)
    # SpikingJelly 0.0.0.0.14 has no functional step: the node's own step on its memories set to
    # ``state``, which are put back after it
    memories = module._memories
    held = dict(memories)
    try:
        memories.update(zip(held, state, strict=True))
        spike = module.single_step_forward(current)
        return spike, tuple(memories[name] for name in held)
    finally:
        memories.update(held)


def _own_parameters(driver: Driver) -> list[tuple[str, nn.Parameter]]:
    module = driver.core if isinstance(driver, CoreDriver) else driver.module
    return [(name, p) for name, p in module.named_parameters() if p.requires_grad]


def _core_jacobians(
    driver: CoreDriver, current: torch.Tensor, state: NamedTuple
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per element :math:`A` ``[B', E, D, D]``, :math:`D` ``[B', E, D]`` and :math:`G` ``[B', E, D, P]``
    of one of our neurons, ``current`` ``[B', C, *spatial]`` with ``E`` elements per sample.

    Elements evolve independently, so one forward-mode tangent that is 1 in the same component
    for every element gives that component's column for all elements at once; ``vmap`` runs
    the ``d + 1 + P`` tangents together. A parameter ``[C, *rest]`` is per channel: its column
    ``j`` is 1 in entry ``j`` of every channel. A 0-d parameter, shared by the channels, enters as one copy per
    channel (its gradient is their sum).
    """
    stepper = _Step(driver.core)
    named = _own_parameters(driver)
    names = [f"core.{n}" for n, _ in named]
    params = [p.detach() if p.dim() else p.detach().expand(driver.core.features).clone() for _, p in named]
    fields = [f.detach() for f in state]
    sizes = [f.numel() // current.numel() for f in fields]
    widths = [math.prod(p.shape[1:]) for p in params]
    d, count = sum(sizes), sum(sizes) + 1 + sum(widths)

    # direction k is 1 in one per-element component for every element: state components first,
    # then the current, then the parameter columns
    state_tangents, offset = [], 0
    for f, size in zip(fields, sizes, strict=True):
        tangent = f.new_zeros(count, size, current.numel())
        tangent[torch.arange(offset, offset + size), torch.arange(size)] = 1
        state_tangents.append(tangent.reshape(count, *f.shape))
        offset += size
    current_tangent = current.new_zeros(count, *current.shape)
    current_tangent[d] = 1
    param_tangents, offset = [], d + 1
    for p, width in zip(params, widths, strict=True):
        tangent = p.new_zeros(count, p.shape[0], width)
        tangent[torch.arange(offset, offset + width), :, torch.arange(width)] = 1
        param_tangents.append(tangent.reshape(count, *p.shape))
        offset += width

    def run(cur: torch.Tensor, st: tuple[torch.Tensor, ...], ps: tuple[torch.Tensor, ...]):
        spike, new_state = functional_call(stepper, dict(zip(names, ps, strict=True)), (cur, type(state)(*st)))
        return (*new_state, spike)

    def directional(t_cur, t_state, t_params):
        return jvp(run, (current, tuple(fields), tuple(params)), (t_cur, tuple(t_state), tuple(t_params)))[1]

    # a framework's surrogate has no forward-mode rule: at its first call the step is run once on plain
    # tensors to take its derivatives from its own backward, then again under the transforms with them
    tape = ForeignTape()
    try:
        with tape.replay():
            out = vmap(directional)(current_tangent, state_tangents, param_tangents)
    except ForeignTape.Missing:
        with torch.no_grad(), tape.record():
            run(current, tuple(fields), tuple(params))
        with tape.replay():
            out = vmap(directional)(current_tangent, state_tangents, param_tangents)
    batch = current.shape[0]
    # [count, *extra, B', *element] per output -> [B', E, components, count]
    jac = torch.cat([o.reshape(count, -1, batch, current[0].numel()).permute(2, 3, 1, 0) for o in out], dim=2)
    a = torch.cat([jac[..., :d], jac.new_zeros(*jac.shape[:-1], 1)], -1)  # z_{t-1} is not an input of the step
    return a, jac[..., d], jac[..., d + 1 :]


def _memory_jacobians(
    driver: MemoryDriver, current: torch.Tensor, state: tuple
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The same for a SpikingJelly node, by reverse mode: its elements evolve independently, so the
    gradient of one output component summed over the elements is that component's row for every
    element; a (scalar) parameter is expanded to one copy per element first."""
    module, batch = driver.module, current.shape[0]
    inputs = [s.detach().requires_grad_() for s in state] + [current.detach().requires_grad_()]
    named = _own_parameters(driver)
    copies = [p.detach().expand_as(current).clone().requires_grad_() for _, p in named]
    saved = {name: module._parameters[name] for name, _ in named}
    try:
        for (name, _), copy in zip(named, copies, strict=True):
            module._parameters[name] = copy
        with torch.enable_grad():
            spike, new_state = _pure_step(driver, inputs[-1], tuple(inputs[:-1]))
            outputs = [*new_state, spike]
            rows = []
            for out in outputs:
                grads = torch.autograd.grad(out.sum(), inputs + copies, retain_graph=True, allow_unused=True)
                rows.append(
                    torch.stack([(torch.zeros_like(current) if g is None else g).reshape(batch, -1) for g in grads], -1)
                )
    finally:
        module._parameters.update(saved)
    jac = torch.stack(rows, dim=2)  # [B', E, D, inputs]
    d = len(state)
    a = torch.cat([jac[..., :d], jac.new_zeros(*jac.shape[:-1], 1)], -1)
    return a, jac[..., d], jac[..., d + 1 :]


class _Gates:
    """The neurons' outputs in the P-stage's graph: they pass gradients on (``open``: the learning
    signals) or cut them (the gradients of the parameters below each neuron)."""

    def __init__(self) -> None:
        self.open = True

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return _Gate.apply(z, self) if z.requires_grad else z


class _Gate(torch.autograd.Function):
    """The identity, whose backward passes the gradient while its :class:`_Gates` are open and zero
    otherwise. A walk of the graph stops at its nodes, known by their type: a node's Python object,
    and so its ``id``, may be built anew at each access."""

    @staticmethod
    def forward(ctx: Any, z: torch.Tensor, gates: _Gates) -> torch.Tensor:
        ctx.gates = gates
        return z.view_as(z)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return (grad if ctx.gates.open else torch.zeros_like(grad)), None


class _Norms:
    r"""The batch norms that normalise with their batch's statistics in the P-stage, per path and call:
    input, output and normalised input :math:`\hat x = (x - \mu_t)/\sigma_t` (detached). The
    statistics' gradient passes in the backward passes of the learning signals and the parameters'
    gradients; in those that build a graph (``create_graph``, where autograd runs with grad mode
    on), the local gains', it is cut unless ``exact``: the norm is then element-wise, with gain
    :math:`\gamma/\sigma_t`."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]] = {}
        # the statistics' hooks hold the switch alone, not the calls: through the graph, that would be a
        # cycle Python's collector cannot see
        self.switch = types.SimpleNamespace(exact=False)

    def statistic_hook(self) -> Callable[[torch.Tensor], torch.Tensor]:
        switch = self.switch
        return lambda grad: torch.zeros_like(grad) if torch.is_grad_enabled() and not switch.exact else grad


def _project(r: torch.Tensor, normalised: torch.Tensor, length: int) -> torch.Tensor:
    r"""The normalisation's backward without its :math:`1/\sigma_t`, per step and channel (means over
    the batch and positions): :math:`r - \overline{r} - \hat x\, \overline{\hat x r}`."""
    r, normalised = r.unflatten(0, (length, -1)), normalised.unflatten(0, (length, -1))
    dims = [1, *range(3, r.dim())]
    return (r - r.mean(dims, keepdim=True) - normalised * (normalised * r).mean(dims, keepdim=True)).flatten(0, 1)


@contextlib.contextmanager
def _frozen_batch_statistics(model: nn.Module, network: Network) -> Iterator[_Norms]:
    r"""Batch norms that normalise with their batch's statistics do so, in the P-stage, as in the
    S-stage (which also updates their running statistics): each step with the statistics
    :math:`\mu_t, \sigma_t^2` of its own batch (also when the steps run folded into one batch),
    and leave their running statistics alone. The gradient goes through :math:`\mu_t` and
    :math:`\sigma_t`; yields the :class:`_Norms` that record each call."""
    patched, norms = [], _Norms()
    for path, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and (module.training or module.running_mean is None):

            def forward(x: torch.Tensor, m: nn.Module = module, path: str = path) -> torch.Tensor:
                steps = network.folded_steps or 1
                grouped = x.unflatten(0, (steps, -1))
                dims = [1, *range(3, grouped.dim())]
                mean = grouped.mean(dims, keepdim=True)
                var = grouped.var(dims, unbiased=False, keepdim=True)
                if mean.requires_grad:
                    mean.register_hook(norms.statistic_hook())
                    var.register_hook(norms.statistic_hook())
                normalised = ((grouped - mean) / torch.sqrt(var + m.eps)).flatten(0, 1)
                y = normalised
                if m.weight is not None:
                    shape = (1, -1, *[1] * (x.dim() - 2))
                    y = y * m.weight.view(shape) + m.bias.view(shape)
                norms.calls.setdefault(path, []).append((x, y, normalised.detach()))
                return y

            patched.append((module, module.__dict__.get("forward")))
            module.__dict__["forward"] = forward
    try:
        yield norms
    finally:
        for module, previous in patched:
            if previous is None:
                del module.__dict__["forward"]
            else:
                module.__dict__["forward"] = previous


# -- the eligibilities carried from one sub-sequence to the next -------------------------------------
def _patches(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``[B, L, fan_in]``: the input each output position of a ``Linear`` (``L = 1``) or ``ConvNd``
    sees, in the order of ``weight.view(out, -1)``."""
    if isinstance(module, nn.Linear):
        return x.unsqueeze(1)
    dims = x.dim() - 2
    kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    if module.padding == "valid":
        padding = (0,) * dims
    elif module.padding == "same":
        padding = tuple(dl * (k - 1) // 2 for k, dl in zip(kernel, dilation, strict=True))
    else:
        padding = module.padding
    pads = []
    for k, dl, p in reversed(list(zip(kernel, dilation, padding, strict=True))):
        extra = dl * (k - 1) - 2 * p if module.padding == "same" else 0
        pads += [p, p + extra]
    x = F.pad(x, pads)
    for axis in range(dims):
        x = x.unfold(2 + axis, dilation[axis] * (kernel[axis] - 1) + 1, stride[axis])
    x = x[(..., *(slice(None, None, dl) for dl in dilation))] if any(dl > 1 for dl in dilation) else x
    # [B, C, L1..Ld, k1..kd] -> [B, L, C * k1 * ... * kd]
    order = [0, *range(2, 2 + dims), 1, *range(2 + dims, 2 + 2 * dims)]
    x = x.permute(order)
    return x.reshape(x.shape[0], math.prod(x.shape[1 : 1 + dims]), -1)


class _Feed(NamedTuple):
    """A parameter that feeds a neuron layer's current, and how its eligibility is kept."""

    param: nn.Parameter
    driver: Driver
    synapse: (
        str | None
    )  #: the synapse whose weight it is (``Linear``/``Conv``), or ``None`` for a per-channel parameter
    name: str
    norm: str | None  #: the batch norm in training the synapse's output goes straight into


def _graph_below(tensor: torch.Tensor) -> tuple[set[Any], set[int]]:
    """The graph nodes and the ids of the leaves ``tensor`` depends on without passing a neuron's output
    (a :class:`_Gate`); a walk of the graph, which unlike a gradient does not mistake a zero for a link.
    The nodes are returned, not their ids, so that they stay the objects ``grad_fn`` gives while held."""
    seen, found = set(), set()
    stack = [tensor.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or node in seen or isinstance(node, _Gate._backward_cls):
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        stack.extend(next_node for next_node, _ in node.next_functions)
    return seen, found


class HYPRTrainer(Trainer):
    r"""Hybrid propagation: sequential forward, parallel gradients per sub-sequence of ``chunk`` steps.

    Args:
        chunk: :math:`\lambda`, steps per sub-sequence (``None``: the whole sequence). Only
            memory and parallelism depend on it, not the gradient.
        **options: the shared :class:`~snn_parallel.learners.TrainerOptions` (``clip_grad_norm``:
            e.g. 1 as in the HYPR configurations).

    Any feed-forward model works: the learning signals are the model's own spatial backward at
    each step, so synapses, convolutions, norms, residual sums and custom stateless modules sit
    where the model puts them; recurrence comes through :class:`~snn_parallel.learners.RecurrentBlock`
    and SpikingJelly's ``LinearRecurrentContainer``. The neurons are ours (or their adapters)
    whose state evolves per neuron (``channelwise``; LTC's gates mix neurons, so it is refused)
    with per-channel parameters, or SpikingJelly's nodes (scalar parameters, e.g.
    ``ParametricLIFNode``'s). The layers after the last neuron (the readout) are differentiated
    directly. Batch norms in training normalise each step with its own batch's statistics
    :math:`\mu_t, \sigma_t^2` (the S-stage updates the running statistics with them, one
    update per step) and the gradient goes through them, as BPTT's through a per-step norm:
    with :math:`\mu_t, \sigma_t` as constants the weights below a norm would drift along the
    directions it removes (channel means of several standard deviations), which the running
    statistics then fail to reproduce in evaluation. The eligibilities carried from one
    sub-sequence to the next go through them too: they stay per sample, the statistics coupling
    the samples within a step only. For a synapse whose output :math:`y = W x` goes straight into
    the norm, the normalisation's backward
    :math:`g \mapsto (g - \overline{g} - \hat y\, \overline{\hat y g})/\sigma_t` (means over the
    batch and positions, per channel; :math:`\hat y` the normalised output) puts the projected patch
    :math:`\tilde x = x - \overline{x} - \hat y\, \overline{\hat y x}` in place of the input patch
    :math:`x`, per output channel; per-channel parameters below the norm get the statistics' share
    through their local gain (a bias right before the norm: 0). A norm in training reached
    otherwise is refused with ``chunk`` shorter than the sequence, naming it (norms in evaluation
    mode are constants, carried exactly). ``nn.Dropout``
    is refused, as the P-stage must recompute each step exactly (``SequenceDropout`` and
    SpikingJelly's ``layer.Dropout`` keep their masks).

    With ``chunk`` shorter than the sequence the eligibilities are carried from one
    sub-sequence to the next: per sample and neuron for every ``Linear``/``Conv`` weight (times
    the input patch) and every per-channel parameter (biases, norms' affine parameters) that
    feeds a neuron through element-wise operations (norms with fixed statistics, scaling,
    sums) or a batch norm in training right after the synapse; anything else feeding a neuron
    (a norm over channels, pooling between a synapse and its neuron) is refused then, naming it,
    and trains with ``chunk=None``.

    Loss and prediction as :class:`~snn_parallel.learners.Trainer`; HYPR's configurations use
    ``StepLoss("ce", (n, None))``, a per-step loss after ``n`` steps.
    """

    rule = "hypr"

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *, chunk: int | None = None, **options: Any
    ) -> None:
        super().__init__(model, optimizer, **options)
        self.chunk = None if chunk is None else check_int(chunk, "chunk", minimum=1)
        for path, module in model.named_modules():
            if isinstance(module, nn.Dropout) and module.p > 0:
                raise UnsupportedModule(
                    f"{path} ({type(module).__name__}): HYPR recomputes each step in its P-stage, so layers must be "
                    "deterministic (SequenceDropout keeps one mask per sequence)"
                )
        # lazy neurons are checked at the first batch, once they have their size
        self._unchecked = [
            part for part in self.network.parts if isinstance(part, CoreDriver) and part.core.has_uninitialized_params()
        ]
        for part in self.network.parts:
            if part not in self._unchecked:
                self._check_part(part)
        self._own = {id(p) for part in self.network.neurons for _, p in _own_parameters(part)}
        # with neurons alone as stateful parts (their entering states known), the P-stage runs all the
        # chunk's steps at once, folded into the batch; otherwise one step after the other
        self._fold = all(part.is_neuron and part.foldable for part in self.network.parts)
        self._feeds: list[_Feed] | None = None
        self._elig: dict[tuple[int, int], torch.Tensor] = {}

    @staticmethod
    def _check_part(part: Driver) -> None:
        if isinstance(part, RecurrentDriver) and part.module.output != "spikes":
            raise UnsupportedModule(
                f"{part.label}: HYPR's learning signals flow through spikes; use RecurrentBlock(output='spikes')"
            )
        if isinstance(part, CoreDriver):
            if part.returns_membrane:
                raise UnsupportedModule(
                    f"{part.label} passes on its membrane; HYPR's learning signals flow through "
                    "spikes (use init_hidden=True, output=False)"
                )
            core = part.core
            if not core.channelwise:
                raise UnsupportedModule(f"{part.label}: its state mixes neurons, but HYPR needs per-neuron dynamics")
            for name, param in core.named_parameters():
                if param.requires_grad and param.dim() and param.shape[0] != core.features:
                    raise UnsupportedModule(
                        f"{part.label}: parameter {name!r} of shape {list(param.shape)} is neither per neuron "
                        f"(first dim {core.features}) nor shared by all (0-d); HYPR needs one or the other"
                    )
            like = next(core.parameters(), None)
            probe = torch.zeros(
                1,
                core.features,
                dtype=like.dtype if like is not None else None,
                device=like.device if like is not None else None,
            )
            try:  # one step's Jacobians at rest: forward-mode AD must go through the spike function
                _core_jacobians(part, probe, core.init_state(probe))
            except RuntimeError as error:
                # torch names the missing rule: forward mode (an autograd.Function without jvp) or vmap. A framework's
                # surrogate passed as the neuron's surrogate is differentiated through its backward (a ForeignTape);
                # this is a spike function called otherwise (e.g. a Surrogate subclass with its own __call__)
                if "setup_context" not in str(error) and "vmap" not in str(error):
                    raise
                raise UnsupportedModule(
                    f"{part.label}: HYPR takes forward-mode Jacobians of the neuron's step (under torch.func.vmap), "
                    "but the step calls a torch.autograd.Function without forward-mode or vmap support "
                    f"({str(error).splitlines()[0]}); give the neuron's surrogate argument (surrogate=, "
                    "spike_grad= for an snnTorch skin, surrogate_function= for a SpikingJelly node) one of "
                    "snn_parallel.surrogate's, snnTorch's or SpikingJelly's surrogates, without overriding "
                    "Surrogate.__call__"
                ) from error
        elif isinstance(part, MemoryDriver) and is_online_node(part.module):
            raise UnsupportedModule(
                f"{part.label} detaches its membrane at every training step (online training), so the membrane's "
                "Jacobian that HYPR carries over time is cut; use neuron.LIFNode, or train it with OTTTTrainer"
            )
        elif isinstance(part, MemoryDriver) and part.is_neuron:
            for name, param in part.module.named_parameters():
                if param.requires_grad and param.numel() != 1:
                    raise UnsupportedModule(
                        f"{part.label}: parameter {name!r} of shape {list(param.shape)}; HYPR takes SpikingJelly nodes "
                        "with scalar parameters"
                    )
        elif isinstance(part, MemoryDriver):
            kind = type(part.module).__name__
            if "Dropout" not in kind and kind not in ("LinearRecurrentContainer", "ElementWiseRecurrentContainer"):
                raise UnsupportedModule(
                    f"{part.label} keeps a state of its own that is not a neuron's; HYPR's eligibilities follow "
                    "neurons only"
                )

    # -- one batch ------------------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
        steps = x.shape[0]
        if self.network.structure is None:
            self.network.probe(x[0])
        for part in self._unchecked:
            self._check_part(part)
        self._unchecked = []
        chunk = self.chunk or steps
        self.network.reset()
        self._elig.clear()
        grads: dict[nn.Parameter, torch.Tensor] = {}
        outputs = None
        for start in range(0, steps, chunk):
            out = self._chunk(x[start : start + chunk], target, start, steps, grads)
            outputs = self.record(outputs, out, start, steps)
        for param, grad in grads.items():
            param.grad = grad if param.grad is None else param.grad + grad
        self.optimizer_step()
        self.network.reset()
        self._elig.clear()
        return float(self.loss.sequence_loss(outputs, target)), outputs

    def _chunk(self, xs: torch.Tensor, target: torch.Tensor, start: int, steps: int, grads: dict) -> torch.Tensor:
        network, length = self.network, xs.shape[0]
        first, last = start == 0, start + length >= steps
        # S-stage: the steps in order, no graph; keep the state entering each
        snapshots, outputs = [], []
        with torch.no_grad(), network.stepping():
            for x_t in xs.unbind(0):
                snapshots.append(network.get_state())
                outputs.append(network.step(x_t))
            end = network.get_state()
        # P-stage: the steps again from their states, each neuron's step pure and its output gated
        p_outputs, records, io, gates, norms = self._replay(xs, snapshots, carry=not last)
        network.set_state(end)
        loss = self.loss.sequence_loss(p_outputs, target, offset=start, num_steps=steps)
        drivers = [n for n in network.neurons if records[id(n)][0]]
        spikes = [z for n in drivers for z in records[id(n)][2]]
        # the learning signals: spatial backprop through the neurons' steps
        signals = [None] * len(spikes)
        if loss is not None:
            signals = list(torch.autograd.grad(loss, spikes, retain_graph=True, allow_unused=True))
        cotangents, carried, at = [], [], 0
        for driver in drivers:
            currents, states, gated = records[id(driver)]
            ell = [
                torch.zeros_like(z) if g is None else g
                for z, g in zip(gated, signals[at : at + len(gated)], strict=True)
            ]
            at += len(gated)
            cotangents += self._neuron(driver, length, currents, states, ell, grads, last, carried)
        # the parameters below each neuron (and the readout's): one backward with the neurons' outputs cut
        gates.open = False
        outs = ([loss] if loss is not None else []) + [c for driver in drivers for c in records[id(driver)][0]]
        cots = ([torch.ones_like(loss)] if loss is not None else []) + cotangents
        keep = [(o, c) for o, c in zip(outs, cots, strict=True) if o.requires_grad]
        params = [p for p in self.parameters() if id(p) not in self._own]
        if keep and params:
            found = torch.autograd.grad(
                [o for o, _ in keep], params, [c for _, c in keep], retain_graph=not last, allow_unused=True
            )
            for param, grad in zip(params, found, strict=True):
                if grad is not None:
                    grads[param] = grads.get(param, 0) + grad
        if not (first and last):
            self._carry(records, io, norms, carried, grads, last)
        return torch.stack(outputs)

    def _replay(
        self, xs: torch.Tensor, snapshots: list, carry: bool
    ) -> tuple[torch.Tensor, dict, dict, _Gates, _Norms]:
        """The P-stage's forward: ``(outputs [L, B, K], records, synapse inputs and outputs, gates, norms)``, with
        ``records[id(neuron)]`` the lists of its currents, entering states and gated spikes (one entry
        per step, or one for all steps folded)."""
        network, length = self.network, xs.shape[0]
        index = {id(part): i for i, part in enumerate(network.parts)}
        records = {id(n): ([], [], []) for n in network.neurons}
        io: dict[str, list] = {}
        gates = _Gates()

        def neuron_step(driver: Driver, current: torch.Tensor) -> torch.Tensor:
            if network.folded_steps is None:
                state = _entering_state(driver, driver.get_state(), current)
            else:
                saved = [snapshot[index[id(driver)]] for snapshot in snapshots]
                steps = current.unflatten(0, (length, -1)).unbind(0)
                state = _cat_states(
                    [_entering_state(driver, s, c) for s, c in zip(saved, steps, strict=True)], current.dim()
                )
            spike, _ = _pure_step(driver, current, state)
            gated = gates(spike)
            for kept, value in zip(records[id(driver)], (current, state, gated), strict=True):
                kept.append(value)
            return gated

        def keep_io(path: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
            io.setdefault(path, []).append((x, out))
            return out

        network.neuron_override = neuron_step
        try:
            with (
                torch.enable_grad(),
                _frozen_batch_statistics(self.model, network) as norms,
                network.stepping(),
                network.intercept(keep_io if carry else None),
            ):
                if self._fold:
                    out = network.run(xs)
                else:
                    steps = []
                    for x_t, snapshot in zip(xs.unbind(0), snapshots, strict=True):
                        network.set_state(snapshot)
                        steps.append(network.step(x_t))
                    out = torch.stack(steps)
        finally:
            network.neuron_override = None
        return out, records, io, gates, norms

    def _neuron(
        self,
        driver: Driver,
        length: int,
        currents: list,
        states: list,
        ell: list,
        grads: dict,
        last: bool,
        carried: list,
    ) -> list[torch.Tensor]:
        """One neuron layer's chunk: Jacobians, the reverse scan, its own parameters' gradient and
        eligibility; returns the gradient of each recorded current, :math:`q_t D_t`."""
        current = torch.cat([c.detach() for c in currents])
        batch = current.shape[0] // length
        state = _cat_states(states, current.dim()) if len(states) > 1 else states[0]
        if isinstance(driver, CoreDriver):
            a, d, g = _core_jacobians(driver, current, state)
        else:
            a, d, g = _memory_jacobians(driver, current, state)
        unflat = lambda t: t.unflatten(0, (length, batch))  # noqa: E731
        a, d, g = unflat(a), unflat(d), unflat(g)
        ell_vec = torch.zeros_like(d)
        ell_vec[..., -1] = torch.cat(ell).reshape(length, batch, -1)
        q, suffix = suffix_scan(a, ell_vec)
        q0 = torch.einsum("bni,bnij->bnj", q[0], a[0])
        phi = suffix[0] @ a[0]  # A_L ... A_1
        # the neuron's own parameters
        named = _own_parameters(driver)
        if named:
            key = (id(driver), -1)
            grad_p = torch.einsum("tbni,tbnip->bnp", q, g)
            if key in self._elig:
                grad_p = grad_p + torch.einsum("bni,bnip->bnp", q0, self._elig[key])
            if not last:
                self._elig[key] = (phi @ self._elig[key] if key in self._elig else 0) + torch.einsum(
                    "tbnij,tbnjp->bnip", suffix, g
                )
            grad_p = grad_p.sum(0)  # [E, P]
            offset = 0
            for _, param in named:
                width = param.numel() if isinstance(driver, MemoryDriver) else math.prod(param.shape[1:])
                per_element = grad_p[:, offset : offset + width]
                if isinstance(driver, MemoryDriver) or param.dim() == 0:  # a scalar shared by every element
                    value = per_element.sum(0).reshape(param.shape)
                else:  # [C, *rest], elements channel-major
                    value = per_element.reshape(param.shape[0], -1, width).sum(1).reshape(param.shape)
                grads[param] = grads.get(param, 0) + value
                offset += width
        carried.append((driver, q0, phi, suffix, d))
        cotangent = (q * d).sum(-1).reshape(current.shape)
        return list(cotangent.split([c.shape[0] for c in currents]))

    # -- eligibilities of the parameters below each neuron, from one sub-sequence to the next --------
    def _carry(self, records: dict, io: dict, norms: _Norms, carried: list, grads: dict, last: bool) -> None:
        if not carried:
            return
        if self._feeds is None:
            self._feeds = self._find_feeds(records, io, norms, carried[0][3].shape[0])
        for driver, q0, phi, suffix, d in carried:
            currents = records[id(driver)][0]
            feeds = [feed for feed in self._feeds if feed.driver is driver]
            if not feeds:
                continue
            length, batch = suffix.shape[:2]
            local = self._local_gains(currents, feeds, io, norms, length) if not last else None
            # the D_t of each step carried to the chunk's end, [L, B, E, D]
            carried_d = torch.einsum("tbnij,tbnj->tbni", suffix, d)
            for index, feed in enumerate(feeds):
                key = (id(driver), id(feed.param))
                elig = self._elig.get(key)
                if elig is not None:  # q_0 e_0: what the earlier chunks' inputs contribute
                    grads[feed.param] = grads.get(feed.param, 0) + self._contract(feed, q0, elig)
                if last:
                    continue
                coefficient = carried_d * local[index].unsqueeze(-1)  # [L, B, E, D]
                if feed.synapse is None:
                    added = coefficient.sum(0)
                else:
                    module = self.model.get_submodule(feed.synapse)
                    patches = torch.cat([_patches(module, x.detach()) for x, _ in io[feed.synapse]]).unflatten(
                        0, (length, batch)
                    )
                    coefficient = coefficient.unflatten(2, (module.weight.shape[0], patches.shape[2]))
                    added = torch.einsum("tbopk,tbpf->bopkf", coefficient, patches)
                    if feed.norm is not None:  # through the statistics: the patches projected as in _project
                        normalised = torch.cat([n for _, _, n in norms.calls[feed.norm]]).reshape(coefficient.shape[:4])
                        count = batch * patches.shape[2]
                        mean = patches.sum((1, 2)) / count  # [L, F]
                        along = torch.einsum("tbop,tbpf->tof", normalised, patches) / count
                        added = (
                            added
                            - torch.einsum("tbopk,tf->bopkf", coefficient, mean)
                            - torch.einsum("tbopk,tof->bopkf", coefficient * normalised.unsqueeze(-1), along)
                        )
                    added = added.flatten(1, 2)
                if elig is not None:  # the earlier inputs' eligibility, carried through this chunk's steps
                    added = added + (phi @ elig.reshape(*phi.shape[:3], -1)).reshape(elig.shape)
                self._elig[key] = added

    @staticmethod
    def _contract(feed: _Feed, q0: torch.Tensor, elig: torch.Tensor) -> torch.Tensor:
        """:math:`q_0 e_0` for one parameter: summed over the batch, the state components and the
        elements of each output channel."""
        param = feed.param
        if feed.synapse is None:  # elig [B, E, D], one channel per entry of the parameter
            return torch.einsum("bni,bni->n", q0, elig).reshape(param.shape[0], -1).sum(1)
        out_channels = param.shape[0]
        total = torch.einsum("bni,bnif->nf", q0, elig)  # [E, F], E = out channels x positions
        return total.reshape(out_channels, -1, total.shape[-1]).sum(1).reshape(param.shape)

    def _find_feeds(self, records: dict, io: dict, norms: _Norms, length: int) -> list[_Feed]:
        """Which parameters feed which neuron layer's current (through the model's graph, the
        neurons' outputs cut), and whether HYPR can carry their eligibility."""
        weights = {id(module.weight): path for path, module in self.network.synapses}
        names = {id(p): name for name, p in self.model.named_parameters()}
        params = [p for p in self.parameters() if id(p) not in self._own]
        structure = self.network.structure
        feeds = []
        for driver in self.network.neurons:
            currents = [c for c in records[id(driver)][0] if c.requires_grad]
            if not currents or not params:
                continue
            _, reached = _graph_below(currents[0])
            channels = currents[0].shape[1] if currents[0].dim() > 1 else 1
            for param in params:
                if id(param) not in reached:
                    continue
                name = names[id(param)]
                synapse = weights.get(id(param))
                if synapse is not None:
                    module = self.model.get_submodule(synapse)
                    if (
                        structure.calls.get(synapse, 0) != 1
                        or getattr(module, "groups", 1) != 1
                        or (isinstance(module, nn.Linear) and io[synapse][0][0].dim() != 2)
                        or io[synapse][0][1].shape != currents[0].shape
                    ):
                        raise UnsupportedModule(
                            self._beyond(
                                synapse,
                                driver,
                                "must be called once per step, ungrouped, with the shape of the neuron layer's current",
                            )
                        )
                    x, y = io[synapse][0]
                    plain = (
                        F.linear(x, module.weight, module.bias)
                        if isinstance(module, nn.Linear)
                        else module._conv_forward(x, module.weight, module.bias)
                    )
                    if not torch.allclose(plain, y, rtol=1e-4, atol=1e-5):
                        raise UnsupportedModule(
                            self._beyond(
                                synapse,
                                driver,
                                "computes something other than its plain Linear/Conv output from its weight",
                            )
                        )
                    outputs = [out for _, out in io[synapse]]
                    norm = next(
                        (
                            path
                            for path, calls in norms.calls.items()
                            if len(calls) == len(outputs)
                            and all(entering is out for (entering, _, _), out in zip(calls, outputs, strict=True))
                        ),
                        None,
                    )
                elif param.dim() != 1 or param.shape[0] != channels:
                    raise UnsupportedModule(
                        self._beyond(name, driver, "is neither a synapse's weight nor one number per channel")
                    )
                else:
                    norm = None
                feeds.append(_Feed(param, driver, synapse, name, norm))
        # the path from each parameter to the current must be element-wise: check on random directions
        for driver in self.network.neurons:
            mine = [feed for feed in feeds if feed.driver is driver]
            if mine:
                self._local_gains(records[id(driver)][0], mine, io, norms, length, check=True)
        return feeds

    def _beyond(self, what: str, driver: Driver, why: str) -> str:
        return (
            f"{what} feeds {driver.label} but {why}: HYPR cannot carry its eligibility from one chunk to the next; "
            f"train with chunk=None (the whole sequence at once)"
        )

    def _local_gains(
        self, currents: list, feeds: list[_Feed], io: dict, norms: _Norms, length: int, check: bool = False
    ) -> list[torch.Tensor]:
        r"""For each feed, :math:`\partial I_t/\partial y_t` (a synapse's output) or
        :math:`\partial I_t/\partial \theta_{c}` (a per-channel parameter), one number per element and
        step, ``[L, B, E]``: the Jacobian times ones (a Jacobian-vector product from two backward
        passes). For a per-channel parameter it goes through the batch norms' statistics (a bias
        right before a norm gets 0); for a synapse's output the statistics are constants, the
        gain the diagonal, and a norm in training right after the synapse acts on the input
        patches in :meth:`_carry`: :math:`\partial I_t/\partial y_t\, r = g \odot P(r)` with
        :func:`_project`'s :math:`P`. With ``check`` (the first time), both are checked
        against the exact Jacobian (statistics included) on a random direction."""
        batch = sum(c.shape[0] for c in currents) // length
        gains = []
        for feed in feeds:
            ones = [torch.ones_like(c).requires_grad_() for c in currents]
            sources = [y for _, y in io[feed.synapse]] if feed.synapse is not None else [feed.param]

            def pullback(exact: bool) -> tuple[torch.Tensor, ...]:
                norms.switch.exact = exact
                try:
                    return torch.autograd.grad(currents, sources, ones, create_graph=True, retain_graph=True)  # noqa: B023 (called in this iteration)
                finally:
                    norms.switch.exact = False

            with torch.enable_grad():
                back = pullback(feed.synapse is None)
                directions = [torch.ones_like(s) for s in sources]
                gain = torch.autograd.grad(back, ones, directions, retain_graph=True, allow_unused=True)
                gain = [torch.zeros_like(c) if g is None else g for c, g in zip(currents, gain, strict=True)]
                if check:
                    probe = [torch.randn_like(s) for s in sources]
                    exact = back if feed.synapse is None else pullback(True)
                    moved = torch.autograd.grad(exact, ones, probe, retain_graph=True, allow_unused=True)
                    if feed.norm is not None:
                        normalised = torch.cat([n for _, _, n in norms.calls[feed.norm]])
                        probe = _project(torch.cat(probe), normalised, length).split([p.shape[0] for p in probe])
                    # a synapse's probe is one per step; a per-channel parameter's one for every step
                    probes = probe if feed.synapse is not None else probe * len(currents)
                    for c, g, m, r in zip(currents, gain, moved, probes, strict=True):
                        expected = g * (r if feed.synapse is not None else r.view(1, -1, *[1] * (c.dim() - 2)))
                        # to rounding: a projection's sums cancel, so its error scales with the largest entry
                        tolerance = 1e-6 + 1e-5 * float(expected.abs().max())
                        if not torch.allclose(
                            torch.zeros_like(c) if m is None else m, expected, rtol=1e-4, atol=tolerance
                        ):
                            raise UnsupportedModule(self._irregular(feed, currents, norms))
            gains.append(torch.cat([g.detach() for g in gain]).reshape(length, batch, -1))
        return gains

    def _irregular(self, feed: _Feed, currents: list, norms: _Norms) -> str:
        """Why a feed's path to its neuron is not one HYPR carries, naming the batch norms in training on
        it, if any."""
        nodes, _ = _graph_below(currents[0])
        between = [
            path
            for path, calls in norms.calls.items()
            if any(y.grad_fn in nodes and id(feed.param) in _graph_below(x)[1] for x, y, _ in calls)
        ]
        what = feed.synapse or feed.name
        if between:
            return (
                f"{what} feeds {feed.driver.label} through the batch norm {', '.join(between)} in training, "
                "other than straight from a Linear/Conv output: its per-step statistics couple the batch's samples "
                "and HYPR cannot carry the eligibility from one chunk to the next; train with chunk=None (the whole "
                "sequence at once) or with the norm in eval mode"
            )
        return self._beyond(what, feed.driver, "reaches it through more than element-wise operations")
