r"""HYPR: hybrid propagation (Baronig et al., arXiv 2506.14464), for any neuron with a pure ``step``.

For a layer with per-neuron state :math:`s` (``d`` numbers per neuron, plus its spike
:math:`z`, together :math:`\hat s`), input current :math:`I_t = W x_t + b` (with
:math:`x_t = [x_t; z_{t-1}]` for recurrent weights) and neuron parameters :math:`\theta`:

.. math::

    A_t = \frac{\partial \hat s_t}{\partial \hat s_{t-1}}, \quad
    D_t = \frac{\partial \hat s_t}{\partial I_t}, \quad
    G_t = \frac{\partial \hat s_t}{\partial \theta}, \qquad
    e_t = A_t e_{t-1} + D_t x_t^\top \ \text{(per synapse and sample)}.

The learning signal :math:`\ell_t = \partial L / \partial z_t` comes from spatial backprop
only (layer to layer inside step :math:`t`), and :math:`\nabla W = \sum_t \ell_t e_t`. HYPR
computes this per sub-sequence of :math:`\lambda` steps:

1. **S-stage**: run the :math:`\lambda` steps sequentially without a graph, keeping the states;
2. **P-stage**: evaluate all :math:`\lambda` Jacobians at once (forward-mode AD of the neuron's
   own ``step``, batched over time, batch and neurons), get :math:`\ell_t` for all steps with
   one batched spatial backward, then, with an associative scan over time,

   .. math::

       q_t = \ell_t + q_{t+1} A_{t+1}, \qquad
       \nabla W \mathrel{+}= q_0 e_0 + \textstyle\sum_t (q_t D_t)\, x_t^\top, \qquad
       e_\lambda = \Phi_{\lambda:1} e_0 + \textstyle\sum_t \Phi_{\lambda:t+1} D_t x_t^\top

   with :math:`\Phi_{\lambda:t+1} = A_\lambda \cdots A_{t+1}` and :math:`q_0 = q_1 A_1`; the
   weight gradient is one outer-product matmul, and only :math:`e_\lambda` is carried on.

The gradient does not depend on :math:`\lambda`, which trades memory
(:math:`O(\lambda B N d^2)` for the Jacobians, :math:`O(B N M d)` for the eligibilities,
independent of :math:`T`) against parallelism. For one feed-forward layer it equals BPTT;
deeper and recurrent networks get the e-prop approximation (temporal paths through other
neurons are dropped). The optimizer steps once per sequence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.func import functional_call, jvp, vmap

from ..neurons.base import ParallelNeuron
from .network import CoreNeuron, NeuronLayer, RecurrentLayer, SequenceDropout, StatelessLayer, UnsupportedModule
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


class _Step(nn.Module):
    """Calls the core neuron's unchecked ``_step`` so ``functional_call`` can swap its parameters."""

    def __init__(self, core: ParallelNeuron) -> None:
        super().__init__()
        self.core = core

    def forward(self, current: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, NamedTuple]:
        return self.core._step(current, state)


@dataclass
class _Layer:
    """One synapse + neuron block of the network, with its carried HYPR state."""

    synapse: nn.Linear
    core: ParallelNeuron
    recurrent: bool
    path: str
    stepper: _Step = field(init=False)
    state: NamedTuple | None = None
    last: torch.Tensor | None = None  # z_{t-1}, recurrent layers
    elig_w: torch.Tensor | None = None  # [B, N, D, M + 1]: weights and bias
    elig_p: torch.Tensor | None = None  # [B, N, D, P]: neuron parameters

    def __post_init__(self) -> None:
        self.stepper = _Step(self.core)

    @property
    def neuron_params(self) -> list[tuple[str, nn.Parameter]]:
        return [(n, p) for n, p in self.core.named_parameters() if p.requires_grad]


class HYPRTrainer(Trainer):
    r"""Hybrid propagation: sequential forward, parallel gradients per sub-sequence of ``chunk`` steps.

    Args:
        chunk: :math:`\lambda`, steps per sub-sequence (``None``: the whole sequence). Only
            memory and parallelism depend on it, not the gradient.
        **options: the shared :class:`~snn_parallel.learners.TrainerOptions` (``clip_grad_norm``:
            e.g. 1 as in the HYPR configurations).

    The network must be ``[parameter-free layers] -> (Linear -> neuron | RecurrentBlock)+ ->
    readout``: neurons from :mod:`snn_parallel.neurons` (or their adapters) whose state
    evolves per neuron (``channelwise``; LTC's gates mix neurons, so it is refused) and whose
    parameters are per neuron (first dim = features). The readout layers after the last neuron
    are differentiated directly. Loss and prediction as :class:`~snn_parallel.learners.Trainer`;
    HYPR's configurations use ``StepLoss("ce", (n, None))``, a per-step loss after ``n`` steps.
    """

    rule = "hypr"

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, *, chunk: int | None = None, **options: Any) -> None:
        super().__init__(model, optimizer, **options)
        if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
            raise ValueError(f"chunk must be a positive int or None, got {chunk!r}")
        self.chunk = chunk
        self.plan = self._plan()

    # -- structure ------------------------------------------------------------------------
    def _plan(self) -> list[StatelessLayer | _Layer]:
        """The layers as HYPR runs them: parameter-free glue, blocks, then the readout."""
        layers, plan = self.network.layers, []
        for layer in layers:
            if isinstance(layer, StatelessLayer) and isinstance(layer.module, (nn.Dropout, SequenceDropout)) and layer.module.p > 0:
                raise UnsupportedModule(f"{layer.path} ({type(layer.module).__name__}): HYPR recomputes each step in its P-stage, so layers must be deterministic")
        last_neuron = max(i for i, layer in enumerate(layers) if not isinstance(layer, StatelessLayer))
        i = 0
        while i < len(layers):
            layer = layers[i]
            if isinstance(layer, StatelessLayer):
                is_block = isinstance(layer.module, nn.Linear) and i + 1 < len(layers) and isinstance(layers[i + 1], NeuronLayer)
                if is_block:
                    plan.append(_Layer(layer.module, self._core(layers[i + 1]), False, layers[i + 1].path))
                    i += 2
                    continue
                if i < last_neuron and any(p.requires_grad for p in layer.module.parameters()):
                    raise UnsupportedModule(
                        f"{layer.path} ({type(layer.module).__name__}): below the last neuron HYPR needs Linear synapses "
                        "feeding neurons directly (a parameterised layer in between has no eligibility)"
                    )
                plan.append(layer)
            elif isinstance(layer, RecurrentLayer):
                if layer.output != "spikes":
                    raise UnsupportedModule(f"{layer.path}: HYPR's learning signals flow through spikes; use RecurrentBlock(output='spikes')")
                plan.append(_Layer(layer.synapse, self._core(layer), True, layer.path))
            else:
                raise UnsupportedModule(f"{layer.path}: HYPR needs a Linear synapse right before each neuron")
            i += 1
        return plan

    @staticmethod
    def _core(layer: NeuronLayer | RecurrentLayer) -> ParallelNeuron:
        if not isinstance(layer.driver, CoreNeuron):
            raise UnsupportedModule(
                f"{layer.path} ({type(layer.driver.module).__name__}): HYPR takes Jacobians of a neuron's pure step "
                "function; use an snn_parallel neuron (or its adapter), not a SpikingJelly node"
            )
        core = layer.driver.core
        if not core.channelwise:
            raise UnsupportedModule(
                f"{layer.path} ({type(core).__name__}): its state mixes neurons, but HYPR needs per-neuron dynamics"
            )
        for name, param in core.named_parameters():
            if param.requires_grad and (param.dim() == 0 or param.shape[0] != core.features):
                raise UnsupportedModule(
                    f"{layer.path}: parameter {name!r} of shape {list(param.shape)} is not per neuron "
                    f"(first dim {core.features}); HYPR needs per-neuron parameters"
                )
        return core

    def _blocks(self) -> list[_Layer]:
        return [step for step in self.plan if isinstance(step, _Layer)]

    def _head_params(self) -> list[nn.Parameter]:
        """Parameters after the last neuron: the readout, differentiated directly."""
        last = max(i for i, step in enumerate(self.plan) if isinstance(step, _Layer))
        return [p for step in self.plan[last + 1 :] for p in step.module.parameters() if p.requires_grad]

    # -- one batch ------------------------------------------------------------------------
    def train_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
        steps, batch = x.shape[:2]
        chunk = self.chunk or steps
        for block in self._blocks():
            block.state, block.last, block.elig_w, block.elig_p = None, None, None, None
        grads: dict[nn.Parameter, torch.Tensor] = {}
        outputs = None
        for start in range(0, steps, chunk):
            outputs = self.record(outputs, self._chunk(x[start : start + chunk], target, start, steps, grads), start, steps)
        for param, grad in grads.items():
            param.grad = grad if param.grad is None else param.grad + grad
        self.optimizer_step()
        return float(self.loss.sequence_loss(outputs, target)), outputs

    def _chunk(self, xs: torch.Tensor, target: torch.Tensor, start: int, steps: int, grads: dict) -> torch.Tensor:
        length, batch = xs.shape[:2]
        blocks = self._blocks()
        # S-stage: sequential, no graph; keep each block's presynaptic input and entering state
        pre = {id(b): [] for b in blocks}
        entering = {id(b): [] for b in blocks}
        outputs = []
        with torch.no_grad():
            for x_t in xs.unbind(0):
                h = x_t
                for step in self.plan:
                    if isinstance(step, StatelessLayer):
                        h = step.step(h)
                        continue
                    if step.state is None:
                        step.state = step.core.init_state(h.new_zeros(batch, step.core.features))
                        step.last = h.new_zeros(batch, step.core.features)
                    presyn = torch.cat([h, step.last], -1) if step.recurrent else h
                    pre[id(step)].append(presyn)
                    entering[id(step)].append(step.state)
                    h, step.state = step.stepper(step.synapse(presyn), step.state)
                    step.last = h
                outputs.append(h)
        # P-stage: all steps of the chunk at once; spatial backward gives the learning signals
        spikes, currents, flat_states = [], [], []
        h = xs.flatten(0, 1)
        for step in self.plan:
            if isinstance(step, StatelessLayer):
                h = step.module(h)
                continue
            if step.recurrent:  # [x_t; z_{t-1}] with z_{t-1} from the S-stage (no temporal path)
                recorded = torch.stack(pre[id(step)]).flatten(0, 1)
                presyn = torch.cat([h, recorded[:, h.shape[-1] :]], -1)
            else:
                presyn = h
            state = _stack_states(entering[id(step)])
            current = step.synapse(presyn)
            z, _ = step.stepper(current, state)
            spikes.append(z)
            currents.append(current.detach())
            flat_states.append(state)
            h = z
        loss = self.loss.sequence_loss(h.unflatten(0, (length, batch)), target, offset=start, num_steps=steps)
        head = self._head_params()
        if loss is None:
            signals = [torch.zeros_like(z) for z in spikes]
        else:
            found = torch.autograd.grad(loss, spikes + head, allow_unused=True)
            signals = [torch.zeros_like(z) if g is None else g for z, g in zip(spikes, found[: len(spikes)])]
            for param, g in zip(head, found[len(spikes) :]):
                if g is not None:
                    grads[param] = grads.get(param, 0) + g
        for block, signal, current, state in zip(blocks, signals, currents, flat_states):
            presyn = torch.stack(pre[id(block)]).flatten(0, 1)
            self._accumulate(block, signal, current, state, presyn, length, batch, grads)
        return torch.stack(outputs)

    def _accumulate(self, block: _Layer, signal, current, state, presyn, length: int, batch: int, grads: dict) -> None:
        """Gradient of this chunk for one block, and its eligibilities carried to the chunk's end."""
        jac_state, jac_current, jac_params = _jacobians(block, current, state)
        dim = jac_state.shape[-1]
        unflat = lambda t: t.unflatten(0, (length, batch))  # noqa: E731
        a, d, g = unflat(jac_state), unflat(jac_current), unflat(jac_params)
        ell = torch.zeros_like(d)
        ell[..., -1] = unflat(signal)
        q, suffix = suffix_scan(a, ell)
        first_a = a[0]
        q0 = torch.einsum("bni,bnij->bnj", q[0], first_a)
        phi = suffix[0] @ first_a  # A_L ... A_1
        ones = presyn.new_ones(*presyn.shape[:-1], 1)
        x_aug = unflat(torch.cat([presyn, ones], -1)) if block.synapse.bias is not None else unflat(presyn)
        features, inputs = d.shape[2], x_aug.shape[-1]
        if block.elig_w is None:
            block.elig_w = d.new_zeros(batch, features, dim, inputs)
            block.elig_p = d.new_zeros(batch, features, dim, g.shape[-1])
        delta = (q * d).sum(-1)  # q_t . D_t, [L, B, N]
        grad_w = torch.einsum("tbn,tbm->nm", delta, x_aug) + torch.einsum("bni,bnim->nm", q0, block.elig_w)
        grad_p = torch.einsum("tbni,tbnip->np", q, g) + torch.einsum("bni,bnip->np", q0, block.elig_p)
        carried = torch.einsum("tbnij,tbnj->tbni", suffix, d)
        block.elig_w = phi @ block.elig_w + torch.einsum("tbni,tbm->bnim", carried, x_aug)
        block.elig_p = phi @ block.elig_p + torch.einsum("tbnij,tbnjp->bnip", suffix, g)
        weight = block.synapse.weight
        grads[weight] = grads.get(weight, 0) + grad_w[:, : weight.shape[1]]
        if block.synapse.bias is not None:
            grads[block.synapse.bias] = grads.get(block.synapse.bias, 0) + grad_w[:, -1]
        offset = 0
        for _, param in block.neuron_params:
            width = math.prod(param.shape[1:])
            grads[param] = grads.get(param, 0) + grad_p[:, offset : offset + width].reshape(param.shape)
            offset += width


def _stack_states(states: list[NamedTuple]) -> NamedTuple:
    """Stack per-step states ``[..., B, N]`` into one state batched over (time, batch)."""
    fields = []
    for values in zip(*states):
        axis = values[0].dim() - 2
        fields.append(torch.stack(values, axis).flatten(axis, axis + 1))
    return type(states[0])(*fields)


def _jacobians(block: _Layer, current: torch.Tensor, state: NamedTuple) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""Per-neuron :math:`A` ``[B', N, D, D]``, :math:`D` ``[B', N, D]`` and :math:`G` ``[B', N, D, P]``.

    Neurons evolve independently, so one forward-mode tangent that is 1 in the same component
    for every neuron gives that component's column for all neurons at once; ``vmap`` runs the
    ``d + 1 + P`` tangents together.
    """
    names = [f"core.{n}" for n, _ in block.neuron_params]
    params = [p.detach() for _, p in block.neuron_params]
    fields = [f.detach() for f in state]
    sizes = [f.numel() // (f.shape[-2] * f.shape[-1]) for f in fields]
    widths = [math.prod(p.shape[1:]) for p in params]
    d, p_total = sum(sizes), sum(widths)
    count = d + 1 + p_total

    # direction k is 1 in one per-neuron component for every neuron: state components first,
    # then the current, then the parameter columns
    state_tangents, offset = [], 0
    for f, size in zip(fields, sizes):
        tangent = f.new_zeros(count, size, f.numel() // size)
        tangent[torch.arange(offset, offset + size), torch.arange(size)] = 1
        state_tangents.append(tangent.reshape(count, *f.shape))
        offset += size
    current_tangent = current.new_zeros(count, *current.shape)
    current_tangent[d] = 1
    param_tangents, offset = [], d + 1
    for p, width in zip(params, widths):
        tangent = p.new_zeros(count, p.shape[0], width)
        tangent[torch.arange(offset, offset + width), :, torch.arange(width)] = 1
        param_tangents.append(tangent.reshape(count, *p.shape))
        offset += width

    def run(cur: torch.Tensor, st: tuple[torch.Tensor, ...], ps: tuple[torch.Tensor, ...]):
        spike, new_state = functional_call(block.stepper, dict(zip(names, ps)), (cur, type(state)(*st)))
        return (*new_state, spike)

    def directional(t_cur, t_state, t_params):
        return jvp(run, (current, tuple(fields), tuple(params)), (t_cur, tuple(t_state), tuple(t_params)))[1]

    out = vmap(directional)(current_tangent, state_tangents, param_tangents)
    # [count, ...] per output -> [B', N, D, count]
    jac = torch.cat([_components_batched(o) for o in out], dim=2)
    a = torch.cat([jac[..., :d], jac.new_zeros(*jac.shape[:-1], 1)], -1)  # z_{t-1} is not an input of the step
    return a, jac[..., d], jac[..., d + 1 :]


def _components_batched(value: torch.Tensor) -> torch.Tensor:
    """``[count, ..., B, N]`` -> ``[B, N, c, count]``."""
    count = value.shape[0]
    return value.reshape(count, -1, *value.shape[-2:]).permute(2, 3, 1, 0)
