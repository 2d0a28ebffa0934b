r"""BPTT, FPTT and OTTT as :class:`~snn_parallel.learners.Trainer` rules.

Memory per layer in the sequence length :math:`T` (activations kept for the backward):

============  ===========================  =================================================
rule          memory                       optimizer steps per sequence
============  ===========================  =================================================
BPTT          :math:`O(T)`                 1
FPTT (K)      :math:`O(T/K)` + 3 × params  K
OTTT          :math:`O(1)` + one trace     1 (``variant="A"``) or T (``variant="O"``)
              per synapse input (per
              synapse with
              ``trace="neuron"``)
============  ===========================  =================================================
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .._validation import check_bool, check_choice, check_float, check_int, check_positive
from .network import CoreDriver, Driver, Structure
from .trainer import Trainer

__all__ = ["BPTTTrainer", "FPTTTrainer", "OTTTTrainer"]

#: when FPTT's oracle table is read against the current batch's update of it
_ORACLE_ORDERS = ("read_first", "update_first")


class BPTTTrainer(Trainer):
    """Backpropagation through time: the whole sequence in one graph, one step per batch.

    The neurons run their parallel multi-step forward; this is the baseline the online
    rules are compared with.

    Args:
        batch_sum: back-propagate the loss summed over the batch instead of its mean (as
            TSSL-BP's reference training does; with ``clip_grad_norm`` this changes how often
            the clip acts). The reported loss is the per-sample mean either way.
        **options: the shared :class:`~snn_parallel.learners.TrainerOptions` (``loss``,
            ``progress``, ``clip_grad_norm``, ``weight_clamp``, ``batch_first``).
    """

    rule = "bptt"

    def __init__(
        self, model: nn.Module, optimizer: torch.optim.Optimizer, *, batch_sum: bool = False, **options: Any
    ) -> None:
        super().__init__(model, optimizer, **options)
        self.batch_sum = bool(batch_sum)

    def train_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
        self.network.reset()
        outputs = self.network.run(x)
        loss = self.loss.sequence_loss(outputs, target)
        (loss * x.shape[1] if self.batch_sum else loss).backward()
        self.optimizer_step()
        self.network.reset()
        return float(loss.detach()), outputs.detach()


class FPTTTrainer(Trainer):
    r"""Forward propagation through time (Kag & Saligrama 2021), as in the LTC-SNN code.

    Each sequence is cut into ``parts`` (K) parts; the state is detached at every part
    boundary, and after each part :math:`p` the optimizer steps on

    .. math::

        \ell_p + R(W), \qquad R(W) = -\langle \lambda, W \rangle + \tfrac{\alpha}{2}\lVert W - \bar W\rVert^2,

    followed by the post-update :math:`\lambda \leftarrow \lambda - \alpha(W - \bar W)`,
    :math:`\bar W \leftarrow (1-\beta)\bar W + \beta W - (\beta/\alpha)\lambda` for every
    parameter (:math:`\bar W` starts at :math:`W`, :math:`\lambda` at 0). At the end of each
    epoch :math:`W \leftarrow \bar W` (and, with ``reset_dual=True``, :math:`\lambda \leftarrow 0`).

    The part loss :math:`\ell_p` is the loss's share on the part's steps. For a terminal label
    (``loss`` on the last step with one target per sequence) every part :math:`p = 1..K` is
    trained on its last output :math:`o_p`, weighted :math:`w_p`; for classification with
    ``oracle=True`` a cross-entropy against :math:`\hat q_{y,p}` takes the rest:

    .. math::

        \ell_p = w_p\, L(o_p, y) + \big(1 - \tfrac{p}{K}\big)\,
        \mathrm{mean}\big(-\hat q_{y,p} \odot \log\mathrm{softmax}(o_p)\big).

    :math:`\hat q_{c,p}` is the softmax output at part :math:`p` of the latest misclassified
    training example of class :math:`c` (zeros until there is one). As in the reference code it
    is read before the current batch updates it (``oracle_order="read_first"``), so a batch's
    own mistakes first count at the next batch; ``"update_first"`` lets the batch update the
    table and then read it. During the first ``oracle_warmup`` epochs :math:`\hat q` is the
    uniform distribution (the table is still updated).

    ``part_weight="fraction"`` is :math:`w_p = p/K`, as the reference code's classification
    scripts weigh it; ``"adding"`` is :math:`w_p = p - 1 + 1/K`, as its adding-problem script
    writes it (``p + 1/PARTS`` with ``p`` from 0). The two differ in how strongly the loss
    weighs against the regulariser: on the adding problem at T = 200 only the latter learns
    within a few hundred iterations.

    Args:
        parts: K, from 1 (truncated BPTT over the whole sequence plus the regulariser) to T.
        alpha: :math:`\alpha`, the regulariser strength (the reference code: 0.1 on sequential
            MNIST, 0.5 on the adding problem). Under Adam its gradient acts as a friction on the
            weights' recent steps; on the built-in digits (20 to 25 epochs) 0.1 slowed training
            down and 0.01 scored higher at K = 1 to T on rows and on pixels up to K = T = 64
            (2 x 128 PRF; see the FPTT docs page).
        beta: :math:`\beta`, the running-average rate (0.5 in the reference code).
        oracle: use the oracle term for terminal classification labels.
        oracle_order: ``"read_first"`` (the reference code's order) or ``"update_first"``.
        oracle_warmup: epochs with a uniform :math:`\hat q` (the reference's image and gesture
            scripts: 9 or 19; its sequential-MNIST script: 0).
        reset_dual: set :math:`\lambda` to 0 at the end of each epoch, as the original FPTT code
            does (except on PTB); the LTC-SNN code keeps it (``False``).
        part_weight: ``"fraction"`` or ``"adding"``, the weight :math:`w_p` of a terminal label's part loss.
        **options: the shared :class:`~snn_parallel.learners.TrainerOptions`; ``clip_grad_norm``
            defaults to 1, as in the reference code.

    Memory: :math:`O(T/K)` activations plus :math:`W, \bar W, \lambda`.
    """

    rule = "fptt"
    defaults = {"clip_grad_norm": 1.0}

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        parts: int,
        alpha: float = 0.01,
        beta: float = 0.5,
        oracle: bool = True,
        oracle_order: str = "read_first",
        oracle_warmup: int = 0,
        reset_dual: bool = False,
        part_weight: str = "fraction",
        **options: Any,
    ) -> None:
        super().__init__(model, optimizer, **options)
        self.parts, self.alpha = check_int(parts, "parts", minimum=1), check_positive(alpha, "alpha")
        self.beta = check_float(beta, "beta", minimum=0.0, maximum=1.0, min_open=True)
        self.oracle, self.part_weight = (
            check_bool(oracle, "oracle"),
            check_choice(part_weight, "part_weight", ("fraction", "adding")),
        )
        self.oracle_order = check_choice(oracle_order, "oracle_order", _ORACLE_ORDERS)
        self.oracle_warmup = check_int(oracle_warmup, "oracle_warmup", minimum=0)
        self.reset_dual = check_bool(reset_dual, "reset_dual")
        self.running: dict[str, torch.Tensor] = {}  # W-bar
        self.dual: dict[str, torch.Tensor] = {}  # lambda
        self._track()
        self.estimates: torch.Tensor | None = None  # q-hat, [classes, parts, classes]

    def _track(self) -> None:
        r"""Start :math:`\bar W = W` and :math:`\lambda = 0` for the trained parameters not tracked yet
        (a lazy neuron's parameters exist from the first batch on)."""
        for name, param in self.model.named_parameters():
            if param.requires_grad and name not in self.running and not nn.parameter.is_lazy(param):
                self.running[name] = param.detach().clone()
                self.dual[name] = torch.zeros_like(param)

    def regularizer(self) -> torch.Tensor:
        r""":math:`R(W) = \sum_W -\langle\lambda, W\rangle + \frac{\alpha}{2}\lVert W - \bar W\rVert^2`."""
        total = None
        for name, param in self.model.named_parameters():
            if name not in self.running:
                continue
            term = -(param * self.dual[name]).sum() + 0.5 * self.alpha * (param - self.running[name]).square().sum()
            total = term if total is None else total + term
        return total

    @torch.no_grad()
    def _post_update(self) -> None:
        for name, param in self.model.named_parameters():
            if name not in self.running:
                continue
            self.dual[name].add_(param - self.running[name], alpha=-self.alpha)
            self.running[name].mul_(1 - self.beta).add_(self.beta * param - (self.beta / self.alpha) * self.dual[name])

    @torch.no_grad()
    def end_epoch(self) -> None:
        for name, param in self.model.named_parameters():
            if name in self.running:
                param.copy_(self.running[name])
                if self.reset_dual:
                    self.dual[name].zero_()

    def _terminal(self, target: torch.Tensor) -> bool:
        return self.loss.steps == "last" and target.dim() == self.loss.sequence_target_dims

    def _part_loss(
        self, out: torch.Tensor, target: torch.Tensor, part: int, start: int, steps: int, terminal: bool
    ) -> torch.Tensor | None:
        if not terminal:
            return self.loss.sequence_loss(out, target, offset=start, num_steps=steps)
        fraction = (part + 1) / self.parts
        weight = fraction if self.part_weight == "fraction" else part + 1 / self.parts
        last = out[-1]
        loss = weight * self.loss.term(last, target)
        if self.loss.kind == "ce" and self.oracle and part + 1 < self.parts:
            log_prob = F.log_softmax(last, dim=-1)
            prob = log_prob.detach().exp()
            if self.estimates is None:
                self.estimates = prob.new_zeros(prob.shape[-1], self.parts, prob.shape[-1])
            if self.oracle_order == "update_first":
                self._update_estimates(prob, target, part)
            if self.epoch < self.oracle_warmup:
                oracle = torch.full_like(prob, 1 / prob.shape[-1])
            else:
                oracle = self.estimates[target, part]  # a copy: the update below does not change it
            if self.oracle_order == "read_first":
                self._update_estimates(prob, target, part)
            loss = loss + (1 - fraction) * torch.mean(-oracle * log_prob)
        return loss

    @torch.no_grad()
    def _update_estimates(self, prob: torch.Tensor, target: torch.Tensor, part: int) -> None:
        """:math:`\\hat q_{c,p}` <- the softmax of the first misclassified example of class ``c`` in the batch."""
        wrong = prob.argmax(-1) != target
        for cls in target[wrong].unique().tolist():
            first = torch.nonzero(wrong & (target == cls))[0, 0]
            self.estimates[cls, part] = prob[first]

    def train_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
        steps = x.shape[0]
        if self.parts > steps:
            raise ValueError(f"parts={self.parts} is more than the {steps} steps of x")
        terminal = self._terminal(target)
        self._track()
        self.network.reset()
        outputs, start = None, 0
        for part, x_part in enumerate(torch.tensor_split(x, self.parts)):
            out = self.network.run(x_part)
            outputs = self.record(outputs, out, start, steps)
            loss = self._part_loss(out, target, part, start, steps, terminal)
            if loss is not None:
                (loss + self.regularizer()).backward()
                self.optimizer_step()
                self._post_update()
            self.network.detach()
            start += x_part.shape[0]
        self.network.reset()
        return float(self.loss.sequence_loss(outputs, target)), outputs

    def rule_state(self) -> dict[str, Any]:
        return {"running": self.running, "dual": self.dual, "estimates": self.estimates}

    def load_rule_state(self, state: dict[str, Any]) -> None:
        self._track()
        for name in self.running:
            self.running[name].copy_(state["running"][name])
            self.dual[name].copy_(state["dual"][name])
        self.estimates = state["estimates"]


class OTTTTrainer(Trainer):
    r"""Online training through time (Xiao et al., NeurIPS 2022).

    The network runs one step at a time with its state detached after every step, so no
    temporal graph is kept. Every synapse (``Linear``, ``Conv1d/2d/3d`` and SpikingJelly's
    wrappers, wherever it sits in the model's graph; found with hooks on the synapse modules)
    sees the presynaptic trace :math:`\hat a_t = \lambda \hat a_{t-1} + s_t` of its input
    (no gradient): its output is :math:`W s_t` but its weight gradient is that of
    :math:`W \hat a_t`, the three-factor form :math:`\nabla W = \sum_t \delta_t \hat a_t^\top`
    with :math:`\delta_t` from spatial backprop at step :math:`t`. As in the official code and
    SpikingJelly's ``OTTTSequential``, this holds for every synapse after the first neuron,
    the readout included, while synapses fed by the raw input alone keep their instantaneous
    gradient; biases and other parameters (norms) keep theirs too. The loss is taken step by
    step (use ``loss="ce_all"`` for the paper's instantaneous loss; ``StepLoss("ce", "all",
    mse_weight=γ)`` adds its MSE term).

    The paper's trace is exact for one layer of LIF neurons whose decay is :math:`\lambda`.
    ``trace="neuron"`` extends that to any neuron whose membrane is linear in its input,
    :math:`h_t = \rho\, h_{t-1} + g\, c_t` per channel with :math:`\rho` real or complex (PRF
    resonates; :meth:`~snn_parallel.neurons.Neuron.linear_response`). Each ``Linear``
    synapse keeps one trace per synapse, filtered with its postsynaptic neuron's :math:`\rho_i`,

    .. math::

        e_{ij,t} = \rho_i\, e_{ij,t-1} + s_{j,t}, \qquad
        \nabla W_{ij} = \sum_t \delta_{i,t}\, \mathrm{Re}\, e_{ij,t},

    likewise for the bias (a synapse from a constant 1), and the neuron's own parameters get the
    eligibilities :math:`\partial h_t/\partial\rho = \rho\,\partial h_{t-1}/\partial\rho + h_{t-1}`
    and :math:`\partial h_t/\partial g = \rho\,\partial h_{t-1}/\partial g + c_t` (for our
    neurons, whose linear membrane is reset-free; SpikingJelly's nodes reset it, so their own
    parameters keep instantaneous gradients). The readout, which feeds the loss with no
    membrane after it, keeps its exact, instantaneous gradient. For a single layer every
    gradient then equals BPTT's (resets detached), at the cost of a ``[B, out, in]`` trace per
    synapse instead of ``[B, in]``; memory stays flat in :math:`T`. A learned threshold
    (``learn_threshold=True``) of a neuron that resets also acts on later steps through its threshold
    bias :math:`b_t`; from rest :math:`\partial b_t/\partial V_{th} = b_t/V_{th}`, which the neuron's
    state holds, so its gradient is BPTT's too (with ``variant="O"``, whose threshold moves every
    step, this is the usual online approximation). With ``DecoupledLIF(reset_delay=True)`` the threshold bias
    decays with a learned :math:`\beta` itself, :math:`b_{t+1} = \beta b_t + V_{th} s_t`; the trace carries
    that part of :math:`\beta`'s gradient as one more eligibility,
    :math:`\partial b_{t+1}/\partial\beta = \beta\,\partial b_t/\partial\beta + b_t`, so it is BPTT's too.

    A membrane of higher order in its input is a cascade of such stages
    (:meth:`~snn_parallel.neurons.Neuron.linear_stages`), :math:`h^{(k)}_t = \rho_k h^{(k)}_{t-1} + g_k h^{(k-1)}_t`
    from :math:`h^{(0)}_t = c_t`: ``SynapticLIF``'s current :math:`i_t = \alpha i_{t-1} + c_t` before its membrane
    :math:`u'_t = \beta u'_{t-1} + g\, i_t`. The trace then keeps one eligibility per stage and synapse, each
    filtering the one before,

    .. math::

        e^{(k)}_{ij,t} = \rho_{k,i}\, e^{(k)}_{ij,t-1} + e^{(k-1)}_{ij,t}, \quad e^{(0)}_{ij,t} = s_{j,t}, \qquad
        \nabla W_{ij} = \sum_t \delta_{i,t}\, \mathrm{Re}\, e^{(K)}_{ij,t},

    and the derivatives of every stage :math:`j \ge k` in :math:`\rho_k` and :math:`g_k` (the same cascade, fed
    :math:`h^{(k)}_{t-1}` and :math:`h^{(k-1)}_t` at stage :math:`k`): for one layer of ``SynapticLIF`` every
    gradient, :math:`\alpha`'s, :math:`\beta`'s and the threshold's included, is BPTT's, at two ``[B, out, in]``
    traces per synapse.

    Args:
        variant: ``"A"`` accumulates gradients over the sequence and steps once;
            ``"O"`` steps the optimizer after every step that carries a loss.
        trace: ``"presynaptic"`` (the paper's :math:`\hat a_t`, any synapse) or ``"neuron"``
            (the per-synapse traces above; ``Linear`` synapses directly followed by a neuron
            with a linear membrane: PRF, ``DecoupledLIF`` and ``SynapticLIF``, their adapters, and SpikingJelly's
            ``LIFNode`` and ``ParametricLIFNode``).
        trace_decay: :math:`\lambda` of the presynaptic trace (``1 - 1/tau``; default 0.5,
            the paper's tau = 2).
        trace_input: also route the gradient of the synapses fed by the raw input through a
            trace of it (the paper feeds static images there unwrapped; sequence inputs need it).
        readout: how the synapses whose output reaches the model's output directly learn:
            ``"trace"`` (the official code's, the default with ``trace="presynaptic"``) or
            ``"instant"``, their exact per-step gradient :math:`\delta_t s_t^\top` (the default,
            and the only choice, with ``trace="neuron"``).
        **options: the shared :class:`~snn_parallel.learners.TrainerOptions`.

    Works with any model: snn_parallel neurons and adapters and SpikingJelly nodes such as
    ``LIFNode`` or ``OTTTLIFNode`` (the trainer keeps the traces, so SpikingJelly's
    ``OTTTSequential`` runs as a plain sequence).
    """

    rule = "ottt"

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        variant: str = "A",
        trace: str = "presynaptic",
        trace_decay: float | None = None,
        trace_input: bool = False,
        readout: str | None = None,
        **options: Any,
    ) -> None:
        super().__init__(model, optimizer, **options)
        check_choice(variant, "variant", ("A", "O"))  # 'A' accumulates, 'O' steps online
        check_choice(trace, "trace", ("presynaptic", "neuron"))
        if trace == "neuron" and trace_decay is not None:
            raise ValueError("trace_decay sets the presynaptic trace; trace='neuron' takes each neuron's own decay")
        if readout is not None:
            check_choice(readout, "readout", ("trace", "instant"))
        if trace == "neuron" and readout == "trace":
            raise ValueError(
                "trace='neuron' gives the readout its exact, instantaneous gradient; readout='trace' goes with "
                "trace='presynaptic'"
            )
        trace_decay = check_float(
            0.5 if trace_decay is None else trace_decay, "trace_decay", minimum=0.0, maximum=1.0, max_open=True
        )
        self.variant, self.trace, self.trace_decay = variant, trace, trace_decay
        self.trace_input = check_bool(trace_input, "trace_input")
        self.readout = readout or ("trace" if trace == "presynaptic" else "instant")
        self._traces: dict[tuple[str, int], torch.Tensor | _Eligibility] = {}
        self._calls: dict[str, int] = {}
        self._traced: dict[str, Driver | None] | None = None  # synapse path -> neuron it feeds (trace="neuron")
        self._planned_for: Structure | None = None

    def _plan(self, x: torch.Tensor) -> dict[str, Driver | None]:
        """The traced synapses, from the model's graph (probed on the first batch)."""
        structure = self.network.structure or self.network.probe(x[0])
        if self._traced is not None and self._planned_for is structure:
            return self._traced
        traced: dict[str, Driver | None] = {}
        for path, module in self.network.synapses:
            if path not in structure.calls or (path in structure.input_fed and not self.trace_input):
                continue
            if path in structure.readouts and self.readout == "instant":
                continue
            if self.trace == "presynaptic":
                traced[path] = None
                continue
            if not isinstance(module, nn.Linear):
                raise ValueError(
                    f"trace='neuron' needs Linear synapses; {path} is a {type(module).__name__} "
                    "(use trace='presynaptic')"
                )
            if path not in structure.feeds:
                raise ValueError(
                    f"trace='neuron' needs each traced synapse directly followed by its neuron; {path} is not"
                )
            driver = self.network.driver(self.model.get_submodule(structure.feeds[path]))
            if driver.linear_stages() is None:
                raise ValueError(
                    f"trace='neuron': the neuron after {path} ({type(driver.module).__name__}) has no membrane linear "
                    "in its input to build traces from (use trace='presynaptic')"
                )
            traced[path] = driver
        self._traced, self._planned_for = traced, structure
        return traced

    def _synapse(self, path: str, module: nn.Module, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if path not in self._traced:
            return out
        call = self._calls.get(path, 0)
        self._calls[path] = call + 1
        key = (path, call)  # a synapse called twice per step keeps a trace per call
        if self.trace == "neuron":
            return self._neuron_traced(key, module, x)
        previous = self._traces.get(key)
        trace = x.detach() if previous is None else self.trace_decay * previous + x.detach()
        self._traces[key] = trace
        # forward value W x, weight gradient through W a-hat, input gradient W^T delta to x
        through_trace = module.forward(x + (trace - x).detach())
        return through_trace + (out - through_trace).detach()

    def _neuron_traced(self, key: tuple[str, int], module: nn.Linear, x: torch.Tensor) -> torch.Tensor:
        driver = self._traced[key[0]]
        stages = driver.linear_stages()
        wide = torch.complex128 if x.dtype == torch.float64 else torch.complex64
        rhos = [rho.to(x.device, wide if rho.is_complex() else x.dtype) for rho, _ in stages]  # [out] or scalars
        gains = [gain.to(x.device, x.dtype) for _, gain in stages]
        decays, fixed = [rho.detach() for rho in rhos], [gain.detach() for gain in gains]
        scale = math.prod(fixed)  # how the current c_t reaches the last stage within the step
        old = self._traces.get(key)
        if old is None:
            old = self._at_rest(x, module.out_features, decays)
        # e^(k) = rho_k e^(k)_{t-1} + e^(k-1)_t from e^(0) = s_t, each stage on the previous one's new value
        weights, drive = [], x.detach().unsqueeze(-2)
        for decay, (re, im) in zip(decays, old.weights, strict=True):
            re, im = self._filter_synapses(decay, re, im, drive)
            weights.append((re, im))
            drive = re
        bias = self._cascade(decays, None, old.bias, 1)  # the bias: a synapse from a constant 1
        current = _TracedLinear.apply(x, module.weight, module.bias, weights[-1][0], bias[-1].real)
        drive = current.detach()
        membrane = self._cascade(decays, fixed, old.membrane, fixed[0] * drive)
        inputs = (drive, *membrane[:-1])  # h^(k-1)_t, what g_k scales
        # dh^(j)_t/d(rho_k, g_k) for the stages j >= k, fed by h^(k)_{t-1} and h^(k-1)_t at stage k
        d_rho = tuple(self._cascade(decays[k:], fixed[k:], old.d_rho[k], old.membrane[k]) for k in range(len(rhos)))
        d_gain = tuple(self._cascade(decays[k:], fixed[k:], old.d_gain[k], inputs[k]) for k in range(len(rhos)))
        pending = self._pending_resets(driver, rhos[-1])
        self._traces[key] = _Eligibility(
            tuple(weights),
            bias,
            membrane,
            d_rho,
            d_gain,
            old.d_reset if pending is None else decays[-1] * old.d_reset + pending,
        )
        if isinstance(driver, CoreDriver) and any(p.requires_grad for p in (*rhos, *gains)):
            # the neuron's own step gives the instantaneous part of dh^(K)_t/d(rho_k, g_k) (its state enters
            # detached); add the part carried from earlier steps, the same cascade with nothing new fed in at
            # this step, as a zero-valued term on the current
            carried = sum(
                (
                    (rhos[k] - decays[k]) * self._cascade(decays[k:], fixed[k:], old.d_rho[k], 0)[-1]
                    + (gains[k] - fixed[k]) * self._cascade(decays[k:], fixed[k:], old.d_gain[k], 0)[-1]
                ).real
                for k in range(len(rhos))
            )
            current = current + carried / scale
        threshold_term = self._carried_threshold(driver) if isinstance(driver, CoreDriver) else None
        if threshold_term is not None:
            current = current + threshold_term / scale
        if pending is not None:
            # the resets' part of dh_t/d(rho_K), -db_t/d(rho_K), as a zero-valued term on the current
            current = current - (rhos[-1] - decays[-1]) * old.d_reset / scale
        return current

    @staticmethod
    def _at_rest(x: torch.Tensor, out: int, decays: list[torch.Tensor]) -> _Eligibility:
        """The eligibilities before the first step: zeros (complex where a stage's decay is)."""
        dtype = x.dtype if not any(d.is_complex() for d in decays) else decays[-1].dtype
        zeros = x.new_zeros(*x.shape[:-1], out, dtype=dtype)
        synapses = x.new_zeros(()).expand(*zeros.shape, x.shape[-1])
        count = len(decays)
        per_parameter = tuple((zeros,) * (count - k) for k in range(count))
        return _Eligibility(
            tuple((synapses, synapses if d.is_complex() else None) for d in decays),
            (zeros,) * count,
            (zeros,) * count,
            per_parameter,
            per_parameter,
            zeros,
        )

    @staticmethod
    def _cascade(
        decays: list[torch.Tensor],
        gains: list[torch.Tensor] | None,
        old: tuple[torch.Tensor, ...],
        feed: torch.Tensor | float,
    ) -> tuple[torch.Tensor, ...]:
        r"""One step of a cascade of first-order filters, :math:`y_1 = \rho_1 y_{1,t-1} + f_t` and
        :math:`y_j = \rho_j y_{j,t-1} + g_j y_{j-1,t}` for the later stages (``gains=None``: all 1)."""
        chain: list[torch.Tensor] = []
        for j, (decay, previous) in enumerate(zip(decays, old, strict=True)):
            into = feed if j == 0 else chain[-1] if gains is None else gains[j] * chain[-1]
            chain.append(decay * previous + into)
        return tuple(chain)

    @staticmethod
    def _pending_resets(driver: Driver | None, rho: torch.Tensor) -> torch.Tensor | None:
        r"""The threshold bias :math:`b_t` (detached) of a neuron whose resets decay with its learned :math:`\rho`
        itself (``DecoupledLIF(reset_delay=True)``: :math:`b_{t+1} = \rho\, b_t + V_{th} s_t`), which the eligibility
        of the pending resets, :math:`\partial b_{t+1}/\partial\rho = \rho\,\partial b_t/\partial\rho + b_t`, takes in;
        ``None`` for any other neuron (their resets decay with a detached :math:`\rho`), for a constant :math:`\rho`,
        and at the first step (:math:`b_1 = 0`)."""
        if not (isinstance(driver, CoreDriver) and rho.requires_grad and driver.state is not None):
            return None
        core = driver.core
        if not (getattr(core, "reset_delay", False) and getattr(core, "soft_reset", False)):
            return None
        return driver.state.bias.detach()

    @staticmethod
    def _carried_threshold(driver: CoreDriver) -> torch.Tensor | None:
        r"""A zero-valued term on a resetting neuron's membrane whose gradient in its learned threshold is the part
        its reset carries, :math:`-\partial b_t/\partial V_{th}`: from rest the threshold bias is
        :math:`b_t = V_{th}\sum_{k<t} \rho^{t-k} s_k`, so :math:`\partial b_t/\partial V_{th} = b_t / V_{th}` (exact
        while the threshold is constant over the sequence, as with ``variant="A"``). ``None`` for any other
        neuron, and at the first step."""
        threshold, state = getattr(driver.core, "v_threshold", None), driver.state
        if not (isinstance(threshold, torch.Tensor) and threshold.requires_grad) or state is None:
            return None
        bias = getattr(state, "bias", None)
        if bias is None:
            return None
        fixed = threshold.detach()
        eligibility = torch.where(fixed != 0, bias.detach() / fixed, 0.0)  # db_t/dV, [..., C]
        return -(threshold - fixed) * eligibility

    @staticmethod
    def _filter_synapses(
        decay: torch.Tensor, re: torch.Tensor, im: torch.Tensor | None, drive: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        r""":math:`e \leftarrow \rho e + s` on the real and imaginary parts (``[..., out, in]``; ``im`` is
        ``None`` for a real :math:`\rho`), which is several times faster on a CPU than complex tensors."""
        if decay.dim():
            decay = decay.unsqueeze(-1)
        if im is None:
            return torch.addcmul(drive, decay, re), None
        a, b = decay.real, decay.imag
        return torch.addcmul(drive, a, re).addcmul_(b, im, value=-1), torch.addcmul(b * re, a, im)

    def train_batch(self, x: torch.Tensor, target: torch.Tensor) -> tuple[float, torch.Tensor]:
        steps = x.shape[0]
        self._plan(x)
        self.network.reset()
        self._traces.clear()
        outputs = None
        for t, x_t in enumerate(x.unbind(0)):
            self._calls.clear()
            out = self.network.step(x_t, synapse=self._synapse)
            outputs = self.record(outputs, out.unsqueeze(0), t, steps)
            loss = self.loss.sequence_loss(out.unsqueeze(0), target, offset=t, num_steps=steps)
            if loss is not None:
                loss.backward()
                if self.variant == "O":
                    self.optimizer_step()
            self.network.detach()
        if self.variant == "A":
            self.optimizer_step()
        self.network.reset()
        self._traces.clear()
        return float(self.loss.sequence_loss(outputs, target)), outputs


class _Eligibility(NamedTuple):
    """What ``OTTTTrainer(trace="neuron")`` carries per synapse layer, one entry per stage :math:`k` of its neuron's
    membrane (:meth:`~snn_parallel.neurons.Neuron.linear_stages`), each ``[..., out]`` unless noted."""

    #: (Re, Im) e^(k)_ij, each ``[..., out, in]`` (Im: ``None`` for a real rho_k)
    weights: tuple[tuple[torch.Tensor, torch.Tensor | None], ...]
    bias: tuple[torch.Tensor, ...]  #: e^(k)_i of the bias
    membrane: tuple[torch.Tensor, ...]  #: h^(k)_t, the reset-free stages
    d_rho: tuple[tuple[torch.Tensor, ...], ...]  #: d_rho[k][i] = dh^(k+i)_t / d rho_k
    d_gain: tuple[tuple[torch.Tensor, ...], ...]  #: d_gain[k][i] = dh^(k+i)_t / d g_k
    d_reset: torch.Tensor  #: db_t / d rho_K, the pending resets' (zero unless they decay with a learned rho_K)


class _TracedLinear(torch.autograd.Function):
    r""":math:`W x + b`, with the weight gradient :math:`\sum_b \delta_{b,i}\, e_{b,ij}` and the
    bias gradient :math:`\sum_b \delta_{b,i}\, e_{b,i}` of per-synapse traces, and the usual
    input gradient :math:`W^\top \delta`."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        weight_trace: torch.Tensor,
        bias_trace: torch.Tensor,
    ) -> torch.Tensor:
        ctx.save_for_backward(weight, weight_trace, bias_trace)
        ctx.has_bias = bias is not None
        return F.linear(x, weight, bias)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        weight, weight_trace, bias_trace = ctx.saved_tensors
        grad_x = grad @ weight if ctx.needs_input_grad[0] else None
        grad_weight = torch.einsum("...i,...ij->ij", grad, weight_trace) if ctx.needs_input_grad[1] else None
        grad_bias = None
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = (grad * bias_trace).reshape(-1, grad.shape[-1]).sum(0)
        return grad_x, grad_weight, grad_bias, None, None
