r"""HYPR's gradient as the official JAX code computes it, written from its equations, for the tests.

The official code (``IMLTUGraz/HYPR``: ``hypr/hypr_trainable_base.py``, ``hypr/hypr_helpers.py``,
``models/brf_jax.py``, ``models/adlif_jax.py``, ``models/li_jax.py``) trains a layer of BRF or
SE-adLIF neurons (optionally recurrent) under a leaky-integrator readout. Each layer keeps the
per-neuron eligibilities of its state :math:`s` (the spike :math:`z` dropped from it),

.. math::

    e_t = A_t e_{t-1} + D_t \otimes x_t, \qquad \nabla W = \sum_t \ell_t\, e_t, \qquad
    \ell_t = \frac{\partial L}{\partial z_t}\, c_t,

with :math:`A_t = \partial s_t/\partial s_{t-1}`, :math:`D_t = \partial s_t/\partial I_t` and
:math:`c_t` the spike's derivative that the neuron's step returns beside the spike; the learning
signal :math:`\partial L/\partial z_t` is the layer above's own step (spatial only). It departs
from the exact per-neuron Jacobians (which :class:`~snn_parallel.learners.HYPRTrainer` takes) in
three places, each a switch of :func:`official_hypr_gradients`:

1. ``late_spike_derivative`` (BRF): :math:`z_t = \Theta(u_t - \vartheta - q_{t-1})` depends on
   the refractory trace entering the step, but :math:`c_t = f'\,(1, 0, -1)` over :math:`(u, v, q)`
   is applied to the eligibility of the state after it, :math:`e^q_t` instead of
   :math:`e^q_{t-1}`: the threshold's part of the spike derivative comes one step late.
2. ``drop_previous_spike`` (SE-adLIF): :math:`A_t` is taken with the previous spike
   :math:`z_{t-1}` held fixed, so the paths :math:`u_{t-1} \to z_{t-1} \to (u_t, w_t)` (the reset
   :math:`(1 - z_{t-1})` and the spike-triggered adaptation :math:`b\, z_{t-1}`) are dropped.
3. ``current_spike_recurrence`` (recurrent layers): the Jacobians are taken at the current
   :math:`W_{in} x_t + W_{rec} z_t + b` and the recurrent weights' presynaptic input is
   :math:`z_t`, where the forward used :math:`z_{t-1}`.

With every switch off this is the exact per-neuron computation (e-prop with full Jacobians and
the readout's learning signal of its own step), which the tests check against ``HYPRTrainer``.
The computation runs forward in time (eligibilities carried step by step): HYPR's gradient does
not depend on how the sequence is cut into sub-sequences, so the whole sequence is one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.func import jacfwd, vmap

from snn_parallel.learners import RecurrentBlock
from snn_parallel.neurons import BRF, LeakyIntegrator, SEAdLIF

#: the official step functions' state components (the spike is not part of BRF's state)
_FIELDS = {BRF: ("u", "v", "q"), SEAdLIF: ("u", "w", "z")}


def hypr_network(
    kind: str, recurrent: bool, inputs: int, hidden: int, classes: int, gain: float, seed: int
) -> nn.Sequential:
    """The HYPR configurations' network in float64: a layer of ``kind`` (``"BRF"``, the sMNIST ranges, or
    ``"SEAdLIF"``), feed-forward or a :class:`RecurrentBlock`, under ``Linear -> LeakyIntegrator`` (tau in
    [15, 25]); Glorot-uniform synapses, the hidden one scaled by ``gain`` (so that the layer fires)."""
    torch.manual_seed(seed)
    neuron = BRF(hidden, omega_range=(15.0, 50.0), b_offset_range=(0.1, 1.0)) if kind == "BRF" else SEAdLIF(hidden)
    readout = nn.Linear(hidden, classes)
    if recurrent:
        model = nn.Sequential(RecurrentBlock(inputs, neuron), readout, LeakyIntegrator(classes))
        synapse = model[0].synapse  # over [x_t; z_{t-1}]: the reference's fan-in of a recurrent layer
    else:
        synapse = nn.Linear(inputs, hidden)
        model = nn.Sequential(synapse, neuron, readout, LeakyIntegrator(classes))
    nn.init.xavier_uniform_(synapse.weight, gain=gain)
    nn.init.xavier_uniform_(readout.weight)
    return model.double()


def brf_element(neuron: BRF) -> Callable:
    r"""One BRF neuron's step, ``(θ = (ω', b'), s = (u, v, q), I) -> (s', z, c)``, from ``models/brf_jax.py``."""
    dt, threshold, spike = neuron.dt, neuron.v_threshold, neuron.surrogate

    def step(theta: torch.Tensor, s: torch.Tensor, current: torch.Tensor):
        omega, b_offset = theta[0].abs(), theta[1].abs()
        u, v, q = s
        p = (-1 + torch.sqrt(1 - (dt * omega) ** 2)) / dt
        b = p - b_offset - q
        u_new = u + dt * (b * u - omega * v + current)
        v_new = v + dt * (omega * u + b * v)
        argument = u_new - threshold - q
        z = spike(argument)
        derivative = spike.derivative(argument.detach())
        # the official step's d z / d s over (u, v, q): +f' for u, -f' for the trace
        c = torch.stack([derivative, torch.zeros_like(derivative), -derivative])
        return torch.stack([u_new, v_new, 0.9 * q + z]), z, c

    return step


def adlif_element(neuron: SEAdLIF) -> Callable:
    r"""One SE-adLIF neuron's step, ``(θ = (r_u, r_w, a, b), s = (u, w, z), I) -> (s', z', c)``, from
    ``models/adlif_jax.py`` (HYPR's variant: reset and adaptation through the previous spike)."""
    (u_lo, u_hi), (w_lo, w_hi) = neuron.tau_u_range, neuron.tau_w_range
    threshold, coefficient, spike = neuron.v_threshold, neuron.adapt_coeff, neuron.surrogate

    def step(theta: torch.Tensor, s: torch.Tensor, current: torch.Tensor):
        alpha = torch.exp(-1 / (u_lo + (u_hi - u_lo) * theta[0]))
        beta = torch.exp(-1 / (w_lo + (w_hi - w_lo) * theta[1]))
        u, w, z = s
        u_new = alpha * u * (1 - z) + (1 - alpha) * (current - w)
        argument = u_new - threshold
        z_new = spike(argument)
        w_new = beta * w + (1 - beta) * coefficient * (theta[2] * u_new * (1 - z_new) + theta[3] * z)
        derivative = spike.derivative(argument.detach())
        c = torch.stack([derivative, torch.zeros_like(derivative), torch.zeros_like(derivative)])
        return torch.stack([u_new, w_new, z_new]), z_new, c

    return step


def _layers(model: nn.Sequential) -> tuple[str, nn.Linear, nn.Module, bool, str, nn.Linear, str, LeakyIntegrator]:
    """``(synapse path, synapse, neuron path, neuron, recurrent, readout synapse path, its Linear, readout path,
    readout)`` of ``Sequential(Linear, neuron, Linear, LeakyIntegrator)`` or ``Sequential(RecurrentBlock, Linear,
    LeakyIntegrator)``."""
    if isinstance(model[0], RecurrentBlock):
        block, out, readout = model
        return "0.synapse", block.synapse, "0.neuron", block.neuron, True, "1", out, "2", readout
    synapse, neuron, out, readout = model
    return "0", synapse, "1", neuron, False, "2", out, "3", readout


def official_hypr_gradients(
    model: nn.Sequential,
    x: torch.Tensor,
    loss: Callable[[torch.Tensor], torch.Tensor],
    *,
    late_spike_derivative: bool = False,
    drop_previous_spike: bool = False,
    current_spike_recurrence: bool = False,
) -> dict[str, torch.Tensor]:
    """The gradient of ``loss(y)`` (``y`` the readout's outputs ``[T, B, K]``) for every parameter of
    ``model`` (see :func:`_layers`), the official way with the departures switched on (module doc)."""
    syn_path, synapse, neuron_path, neuron, recurrent, out_path, out, readout_path, readout = _layers(model)
    element = brf_element(neuron) if isinstance(neuron, BRF) else adlif_element(neuron)
    names = [n for n, _ in neuron.named_parameters()]
    theta = torch.stack([p.detach() for _, p in neuron.named_parameters()], dim=1)  # [N, P]
    weight, bias = synapse.weight.detach(), synapse.bias.detach()
    steps, batch = x.shape[:2]
    features = neuron.features

    # the forward (the S-stage): the official forward feeds the previous spike back
    state = x.new_zeros(batch, features, 3)
    z = x.new_zeros(batch, features)
    pres, currents, states, spikes, derivatives = [], [], [], [], []
    run = vmap(vmap(element, in_dims=(0, 0, 0)), in_dims=(None, 0, 0))  # over neurons, then the batch
    with torch.no_grad():
        for x_t in x.unbind(0):
            pre = torch.cat([x_t, z], -1) if recurrent else x_t
            current = pre @ weight.T + bias
            pres.append(pre)
            currents.append(current)
            states.append(state)
            state, z, c = run(theta, state, current)
            spikes.append(z)
            derivatives.append(c)

    # the readout (the same in the official code and ours: exact for its own parameters), and the learning
    # signal it passes down, through its own step: dL/dz_t = (dL/dy_t (1 - alpha)) W_out
    y, _ = readout(out(torch.stack(spikes)))
    readout_params = [(f"{out_path}.{n}", p) for n, p in out.named_parameters()]
    readout_params += [(f"{readout_path}.{n}", p) for n, p in readout.named_parameters()]
    readout_grads = torch.autograd.grad(loss(y), [p for _, p in readout_params])
    grads = dict(zip((n for n, _ in readout_params), readout_grads, strict=True))
    y = y.detach().requires_grad_()
    delta = torch.autograd.grad(loss(y), y)[0]
    signal = (delta * readout.linear_response()[1].detach()) @ out.weight.detach()  # [T, B, N]

    # the hidden layer: per-neuron Jacobians of the step, eligibilities carried forward
    jacobians = vmap(vmap(jacfwd(element, argnums=(0, 1, 2)), in_dims=(0, 0, 0)), in_dims=(None, 0, 0))
    z_column = _FIELDS[type(neuron)].index("z") if "z" in _FIELDS[type(neuron)] else None
    fan_in = pres[0].shape[-1] + 1  # the synapse's inputs and its bias
    e_w = x.new_zeros(batch, features, 3, fan_in)
    e_theta = x.new_zeros(batch, features, 3, theta.shape[1])
    grad_w = x.new_zeros(features, fan_in)
    grad_theta = x.new_zeros(features, theta.shape[1])
    for t in range(steps):
        pre = torch.cat([pres[t], pres[t].new_ones(batch, 1)], -1)
        current = currents[t]
        if recurrent and current_spike_recurrence:  # the current spike in place of the previous one
            pre = torch.cat([pres[t][:, :-features], spikes[t], pres[t].new_ones(batch, 1)], -1)
            current = pre @ torch.cat([weight, bias[:, None]], 1).T
        (ds_theta, ds_s, ds_i), (dz_theta, dz_s, dz_i), _ = jacobians(theta, states[t], current)
        if drop_previous_spike and z_column is not None:  # A_t with z_{t-1} held fixed
            ds_s, dz_s = ds_s.clone(), dz_s.clone()
            ds_s[..., z_column] = 0
            dz_s[..., z_column] = 0
        input_w = ds_i[..., None] * pre[:, None, None, :]  # D_t x_t, [B, N, 3, fan_in]
        new_e_w = ds_s @ e_w + input_w
        new_e_theta = ds_s @ e_theta + ds_theta
        if late_spike_derivative:  # c_t on the state after the step
            dz_w = torch.einsum("bnk,bnkf->bnf", derivatives[t], new_e_w)
            dz_theta_total = torch.einsum("bnk,bnkp->bnp", derivatives[t], new_e_theta)
        else:  # z_t from the state entering the step and the current
            dz_w = torch.einsum("bnk,bnkf->bnf", dz_s, e_w) + dz_i[..., None] * pre[:, None, :]
            dz_theta_total = torch.einsum("bnk,bnkp->bnp", dz_s, e_theta) + dz_theta
        grad_w += torch.einsum("bn,bnf->nf", signal[t], dz_w)
        grad_theta += torch.einsum("bn,bnp->np", signal[t], dz_theta_total)
        e_w, e_theta = new_e_w, new_e_theta
    grads[f"{syn_path}.weight"] = grad_w[:, :-1]
    grads[f"{syn_path}.bias"] = grad_w[:, -1]
    for index, name in enumerate(names):
        grads[f"{neuron_path}.{name}"] = grad_theta[:, index]
    return grads
