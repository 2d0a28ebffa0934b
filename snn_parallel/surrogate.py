r"""Surrogate gradients: one internal form for ours, snnTorch's and SpikingJelly's.

A surrogate is a spike function :math:`S = \Theta(x)` whose backward pass uses a smooth
derivative :math:`g'(x)` in place of the Dirac delta. Every neuron resolves what the user
passes (``None``, a name, one of the classes below, an snnTorch ``spike_grad`` callable, a
SpikingJelly surrogate object) once, at construction, through :func:`resolve`.

**Firing convention.** SpikingJelly fires on :math:`x \ge 0`, snnTorch on :math:`x > 0`.
Our surrogates fire on :math:`x \ge 0` by default (``inclusive=True``); pass
``inclusive=False`` for the snnTorch rule. A wrapped foreign surrogate keeps its own rule,
which :func:`resolve` reads off by evaluating it at zero.

Built-in derivatives (:class:`ATan`, :class:`Sigmoid` and :class:`Rect` integrate to 1;
the multi-Gaussians to :math:`\gamma(1 - h)`):

- :class:`ATan` (``alpha=2``): :math:`g'(x) = \frac{\alpha/2}{1 + (\pi \alpha x / 2)^2}`
- :class:`Sigmoid` (``alpha=4``): :math:`g'(x) = \alpha\,\sigma(\alpha x)(1-\sigma(\alpha x))`
- :class:`Rect` (``width=1``): :math:`g'(x) = \frac{1}{w}\,[|x| < w/2]` (straight-through box)
- :class:`MultiGaussian` (LTC-SNN, ``sigma=0.3``) and :class:`DoubleGaussian` (HYPR,
  ``sigma=0.5``): :math:`g'(x) = \gamma\,[(1+h)\,N(x; 0, \sigma) - h\,N(x; \sigma, s\sigma)
  - h\,N(x; -\sigma, s\sigma)]` with ``height`` :math:`h = 0.15`, ``scale`` :math:`s = 6`,
  ``gamma`` :math:`\gamma = 0.5`.
- :class:`CenteredDoubleGaussian` (BRF and HYPR's ``double_gaussian``, ``sigma=0.5``): the same
  with both wide Gaussians centred at zero, :math:`g'(x) = \gamma\,[(1+h)\,N(x; 0, \sigma)
  - 2h\,N(x; 0, s\sigma)]`.
- :class:`Slayer` (SLAYER, as in SE-adLIF and HYPR, ``alpha=5``, ``scale=0.2``):
  :math:`g'(x) = \tfrac{c\,\alpha}{2}\,e^{-\alpha |x|}`, which integrates to the scale :math:`c`.
- :class:`FastSigmoid` (SuperSpike, snnTorch's ``fast_sigmoid``, ``slope=25``):
  :math:`g'(x) = \frac{1}{(k|x| + 1)^2}`, which integrates to :math:`2/k`.

**Framework surrogates that are ours.** SpikingJelly's ``ATan(alpha)``, ``Sigmoid(alpha)`` and (2.0)
``Rect(alpha)`` objects and snnTorch's ``atan(alpha)``, ``sigmoid(slope)`` and ``fast_sigmoid(slope)``
callables compute :class:`ATan`, :class:`Sigmoid`, :class:`Rect` (width :math:`1/\alpha`) and
:class:`FastSigmoid`: :func:`resolve`
turns them into ours (so the CUDA kernels run them), each keeping the framework object as
:attr:`Surrogate.source` and reading a SpikingJelly object's ``alpha`` at each use (tuning it
after construction acts). It does so only after the object is recognised (its exact class in
its spiking mode, or the snnTorch factory's own closure) and its spikes and derivative equal ours
on a float64 grid; anything else (a subclass, a custom callable) is wrapped as
:class:`ForeignSurrogate`. Where the two differ in floating point, ours is the better behaved:
snnTorch's ``sigmoid`` backward computes :math:`k e^{-kx} / (e^{-kx} + 1)^2`, which is NaN
where :math:`e^{-kx}` overflows (:math:`kx < -88` in float32), ours the same derivative through
:math:`\sigma(kx)`, finite everywhere. :func:`spikingjelly_equivalent` maps ours back to SpikingJelly's class
and ``alpha``, from the same classes.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch

from ._validation import check_bool, check_float, check_int, check_positive

__all__ = [
    "Surrogate",
    "ATan",
    "Sigmoid",
    "Rect",
    "MultiGaussian",
    "DoubleGaussian",
    "CenteredDoubleGaussian",
    "Slayer",
    "FastSigmoid",
    "ForeignSurrogate",
    "ForeignTape",
    "resolve",
    "IntegerSpike",
]


def _spike_backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
    (x,) = ctx.saved_tensors
    return grad * ctx.surrogate.derivative(x), None


class _Spike(torch.autograd.Function):
    """Heaviside forward, ``surrogate.derivative`` backward: eager and compiled code. In the
    ``forward(ctx, ...)`` form, which autograd applies without binding the arguments to
    ``forward``'s signature at every call (more than the Heaviside step itself costs in a step
    loop)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.surrogate = surrogate
        return surrogate.heaviside(x)

    backward = staticmethod(_spike_backward)


class _SpikeFunction(torch.autograd.Function):
    """:class:`_Spike` with a forward-mode derivative and a ``vmap`` rule, for ``torch.func``
    transforms and forward-mode AD (dynamo cannot trace a custom ``jvp``, so compiled code
    uses :class:`_Spike`)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x: torch.Tensor, surrogate: Surrogate) -> torch.Tensor:
        return surrogate.heaviside(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple, output: torch.Tensor) -> None:
        x, surrogate = inputs
        ctx.save_for_backward(x)
        ctx.save_for_forward(x)
        ctx.surrogate = surrogate

    backward = staticmethod(_spike_backward)

    @staticmethod
    def jvp(ctx: Any, x_tangent: torch.Tensor, _: None) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        return x_tangent * ctx.surrogate.derivative(x)


def _forward_mode_or_transformed() -> bool:
    """Whether a spike must carry a forward-mode derivative and a ``vmap`` rule: under a
    ``torch.func`` transform or within ``torch.autograd.forward_ad.dual_level()``."""
    return torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0


class Surrogate:
    """Base class: a spike function forward (the Heaviside step, for all but
    :class:`IntegerSpike`) with the derivative :meth:`derivative` backward.

    Subclasses implement :meth:`derivative`. ``inclusive`` selects the firing rule:
    ``True`` fires on ``x >= 0`` (SpikingJelly), ``False`` on ``x > 0`` (snnTorch).
    The parameters are checked when a surrogate is built: a wrong type raises ``TypeError``,
    a value that would flip, zero or poison the derivative (a negative or zero sharpness, NaN,
    inf) ``ValueError``, naming the parameter.
    """

    name: str = "surrogate"
    #: the framework's surrogate this one was resolved from (a SpikingJelly object, an snnTorch callable),
    #: which the framework skins give back as theirs; ``None`` for one of ours built directly
    source: object = None

    def __init__(self, *, inclusive: bool = True, **params: float) -> None:
        self.inclusive = check_bool(inclusive, "inclusive")
        self._names = tuple(params)
        for key, value in params.items():
            setattr(self, key, value)

    def heaviside(self, x: torch.Tensor) -> torch.Tensor:
        """The forward spike function :math:`\\Theta(x)` under this surrogate's firing rule."""
        return (x >= 0).to(x.dtype) if self.inclusive else (x > 0).to(x.dtype)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        """The surrogate derivative :math:`g'(x)`, elementwise."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Spikes of ``x`` (``x`` is membrane minus threshold) with the surrogate backward."""
        if not torch.compiler.is_compiling() and _forward_mode_or_transformed():
            return _SpikeFunction.apply(x, self)
        return _Spike.apply(x, self)

    @property
    def params(self) -> dict[str, float]:
        """The derivative's parameters by name, as they are now (the kernels read them at each call)."""
        return {key: getattr(self, key) for key in self._names}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        return f"{type(self).__name__}({args}{', ' if args else ''}inclusive={self.inclusive})"


class ATan(Surrogate):
    r"""Arc-tangent surrogate, :math:`g'(x) = \frac{\alpha/2}{1 + (\pi\alpha x/2)^2}` (SpikingJelly's ``ATan``)."""

    name = "atan"

    def __init__(self, alpha: float = 2.0, *, inclusive: bool = True) -> None:
        super().__init__(inclusive=inclusive, alpha=check_positive(alpha, "alpha"))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.alpha / 2) / (1 + (math.pi / 2 * self.alpha * x).square())


class Sigmoid(Surrogate):
    r"""Sigmoid surrogate, :math:`g'(x) = \alpha\,\sigma(\alpha x)(1 - \sigma(\alpha x))`."""

    name = "sigmoid"

    def __init__(self, alpha: float = 4.0, *, inclusive: bool = True) -> None:
        super().__init__(inclusive=inclusive, alpha=check_positive(alpha, "alpha"))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(self.alpha * x)
        return self.alpha * s * (1 - s)


class Rect(Surrogate):
    r"""Rectangular (straight-through) surrogate, :math:`g'(x) = \frac{1}{w}[|x| < w/2]`."""

    name = "rect"

    def __init__(self, width: float = 1.0, *, inclusive: bool = True) -> None:
        super().__init__(inclusive=inclusive, width=check_positive(width, "width"))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (x.abs() < self.width / 2).to(x.dtype) / self.width


def _gaussian(x: torch.Tensor, mu: float, sigma: float) -> torch.Tensor:
    return torch.exp(-((x - mu) ** 2) / (2 * sigma**2)) / (math.sqrt(2 * math.pi) * sigma)


class MultiGaussian(Surrogate):
    r"""Multi-Gaussian surrogate of LTC-SNN (Yin et al.):

    .. math:: g'(x) = \gamma\,[(1+h)N(x;0,\sigma) - hN(x;\sigma,s\sigma) - hN(x;-\sigma,s\sigma)]

    with :math:`\sigma = 0.3`, :math:`s = 6`, :math:`h = 0.15`, :math:`\gamma = 0.5`.
    """

    name = "multi_gaussian"

    def __init__(
        self,
        sigma: float = 0.3,
        scale: float = 6.0,
        height: float = 0.15,
        gamma: float = 0.5,
        *,
        inclusive: bool = True,
    ) -> None:
        super().__init__(
            inclusive=inclusive,
            sigma=check_positive(sigma, "sigma"),
            scale=check_positive(scale, "scale"),
            height=check_float(height, "height", minimum=0.0),
            gamma=check_positive(gamma, "gamma"),
        )

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s, h = self.sigma, self.height
        wide = self.scale * s
        return self.gamma * ((1 + h) * _gaussian(x, 0.0, s) - h * _gaussian(x, s, wide) - h * _gaussian(x, -s, wide))


class DoubleGaussian(MultiGaussian):
    """A wider multi-Gaussian: :class:`MultiGaussian` with ``sigma=0.5`` (p = 0.15, scale 6, γ = 0.5),
    its side Gaussians off centre. HYPR's own double Gaussian is centred: :class:`CenteredDoubleGaussian`."""

    name = "double_gaussian"

    def __init__(self, sigma: float = 0.5, *rest: float, **options: Any) -> None:
        super().__init__(sigma, *rest, **options)  # the other parameters as in MultiGaussian


class CenteredDoubleGaussian(MultiGaussian):
    r"""Double Gaussian of the BRF neuron (Higuchi et al., ``StepDoubleGaussianGrad``) and of
    HYPR's ``surrogate_gradient: double_gaussian``: both wide Gaussians centred at zero,

    .. math:: g'(x) = \gamma\,[(1+h)N(x;0,\sigma) - 2hN(x;0,s\sigma)]

    with :math:`\sigma = 0.5`, :math:`s = 6`, :math:`h = 0.15`, :math:`\gamma = 0.5`
    (:class:`DoubleGaussian` centres the wide Gaussians at :math:`\pm\sigma` instead).
    """

    name = "centered_double_gaussian"

    def __init__(self, sigma: float = 0.5, *rest: float, **options: Any) -> None:
        super().__init__(sigma, *rest, **options)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        s, h = self.sigma, self.height
        wide = self.scale * s
        return self.gamma * ((1 + h) * _gaussian(x, 0.0, s) - 2 * h * _gaussian(x, 0.0, wide))


class Slayer(Surrogate):
    r"""SLAYER's exponential surrogate as written in SE-adLIF and HYPR (``spike_slayer_FGI``):

    .. math:: g'(x) = \frac{c\,\alpha}{2}\,e^{-\alpha |x|}

    with sharpness :math:`\alpha` and ``scale`` :math:`c` (its integral). HYPR's SE-adLIF
    uses :math:`\alpha = 5, c = 0.2`; its BRF ``"slayer"`` option :math:`\alpha = 5, c = 0.4`.
    """

    name = "slayer"

    def __init__(self, alpha: float = 5.0, scale: float = 0.2, *, inclusive: bool = True) -> None:
        super().__init__(
            inclusive=inclusive, alpha=check_positive(alpha, "alpha"), scale=check_positive(scale, "scale")
        )

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return (self.scale * self.alpha / 2) * torch.exp(-self.alpha * x.abs())


class FastSigmoid(Surrogate):
    r"""Fast-sigmoid surrogate of SuperSpike (Zenke & Ganguli), snnTorch's ``fast_sigmoid``:

    .. math:: g'(x) = \frac{1}{(k\,|x| + 1)^2}

    the derivative of :math:`\frac{x}{1 + k|x|}`, with slope :math:`k` (``slope=25``, snnTorch's
    default); it integrates to :math:`2/k`.
    """

    name = "fast_sigmoid"

    def __init__(self, slope: float = 25.0, *, inclusive: bool = True) -> None:
        super().__init__(inclusive=inclusive, slope=check_positive(slope, "slope"))

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return 1 / (self.slope * x.abs() + 1).square()


class _SpikingJellyAlpha(Surrogate):
    """One of ours standing for a SpikingJelly surrogate object (:attr:`source`), whose ``alpha`` it reads at
    each use: tuning the object's ``alpha`` after a node is built changes the gradient, as on SpikingJelly's
    own nodes. Placed before the class of ours it computes, e.g. ``(_SpikingJellyAlpha, ATan)``, which it names
    as :attr:`ours`, with the SpikingJelly class's name; :meth:`alpha_of` maps back, from ours to SpikingJelly's
    ``alpha`` (:func:`spikingjelly_equivalent`)."""

    #: the SpikingJelly class it stands for, by its name in ``spikingjelly.activation_based.surrogate``
    spikingjelly_name: ClassVar[str]
    #: the class of ours it computes
    ours: ClassVar[type[Surrogate]]

    def __init__(self, source: object, *, inclusive: bool) -> None:
        Surrogate.__init__(self, inclusive=inclusive)
        self._names = ("alpha",)
        self.source = source

    @property
    def alpha(self) -> float:
        return self.source.alpha

    @staticmethod
    def alpha_of(surrogate: Surrogate) -> float:
        """SpikingJelly's ``alpha`` for ``surrogate``, one of :attr:`ours`: its own ``alpha``."""
        return surrogate.alpha

    def __repr__(self) -> str:
        return f"{super().__repr__()} (reading {self.source!r})"


class _SpikingJellyATan(_SpikingJellyAlpha, ATan):
    """:class:`ATan` with SpikingJelly's ``ATan`` object's ``alpha``."""

    spikingjelly_name, ours = "ATan", ATan


class _SpikingJellySigmoid(_SpikingJellyAlpha, Sigmoid):
    """:class:`Sigmoid` with SpikingJelly's ``Sigmoid`` object's ``alpha``."""

    spikingjelly_name, ours = "Sigmoid", Sigmoid


class _SpikingJellyRect(_SpikingJellyAlpha, Rect):
    r""":class:`Rect` with SpikingJelly 2.0's ``Rect`` object's window: :math:`g'(x) = \alpha\,[|x| < 0.5/\alpha]` is
    ours of width :math:`w = 1/\alpha`."""

    spikingjelly_name, ours = "Rect", Rect

    def __init__(self, source: object, *, inclusive: bool) -> None:
        super().__init__(source, inclusive=inclusive)
        self._names = ("width",)

    @property
    def width(self) -> float:
        return 1 / self.source.alpha

    @staticmethod
    def alpha_of(surrogate: Surrogate) -> float:
        """SpikingJelly's ``alpha`` for our ``Rect``: :math:`1/w`."""
        return 1 / surrogate.width


class ForeignSurrogate(Surrogate):
    """A framework's surrogate (snnTorch ``spike_grad`` callable, SpikingJelly object) in our form.

    The forward pass is the framework's own function, so its firing rule and its backward
    are kept exactly; :meth:`derivative` is obtained from its autograd graph. That function
    has no forward-mode or ``vmap`` rule; under ``torch.func`` transforms the surrogate is
    called through a :class:`ForeignTape`, which gives it both.
    """

    name = "foreign"

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor], *, inclusive: bool) -> None:
        super().__init__(inclusive=inclusive)
        self.fn = fn

    @property
    def source(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The framework's function (:attr:`fn`)."""
        return self.fn

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        tape = None if torch.compiler.is_compiling() else _TAPE.get()  # dynamo cannot trace a ContextVar
        return self.fn(x) if tape is None else tape.spike(self, x)

    def heaviside(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.fn(x)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.evaluate(x)[1]

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(spikes, derivative)`` at ``x`` (detached), from one forward and one backward of the
        framework's function on plain tensors."""
        with torch.enable_grad():
            probe = x.detach().requires_grad_(True)
            spikes = self.fn(probe)
            (grad,) = torch.autograd.grad(spikes.sum(), probe)
        return spikes.detach(), grad

    def __repr__(self) -> str:
        return f"ForeignSurrogate({self.fn!r}, inclusive={self.inclusive})"


class _Given(Surrogate):
    """The Heaviside step under a firing rule, with a derivative known beforehand at the one input it
    is called on."""

    def __init__(self, derivative: torch.Tensor, *, inclusive: bool) -> None:
        super().__init__(inclusive=inclusive)
        self.given = derivative

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return self.given


class ForeignTape:
    r"""Foreign surrogates under ``torch.func`` transforms (``jvp``, ``vmap``), exactly.

    A framework's surrogate is a ``torch.autograd.Function`` without forward-mode or ``vmap``
    rule, and its derivative :math:`g'(x)` cannot be taken by autograd on the transforms'
    wrapped tensors. A function ``f`` that calls :class:`ForeignSurrogate` s is therefore run
    twice: once on plain tensors within :meth:`record`, where each call returns the framework's
    spikes and keeps :math:`g'(x)` from the framework's own backward; then under the transforms
    within :meth:`replay`, where the calls, in the same order and at the same values (the
    primal computation is the same), spike through our spike function, which has both rules,
    with the kept :math:`g'(x)`: its Jacobian-vector product is
    :math:`\dot x \odot g'(x)`, what the framework's backward gives, the surrogate being
    element-wise. A call within :meth:`replay` beyond those recorded raises
    :class:`ForeignTape.Missing` (so a caller can record only when ``f`` calls a foreign
    surrogate at all).
    """

    class Missing(RuntimeError):
        """A foreign surrogate was called under :meth:`ForeignTape.replay` with nothing recorded for it."""

    def __init__(self) -> None:
        self._derivatives: list[torch.Tensor] = []
        self._replaying = False
        self._at = 0

    def __len__(self) -> int:
        """How many calls were recorded."""
        return len(self._derivatives)

    @contextlib.contextmanager
    def record(self) -> Iterator[ForeignTape]:
        """Within it, foreign surrogates are evaluated on plain tensors and their derivatives kept
        (anything recorded before is dropped)."""
        self._derivatives, self._replaying = [], False
        with self._active():
            yield self

    @contextlib.contextmanager
    def replay(self) -> Iterator[ForeignTape]:
        """Within it, the foreign surrogates' calls, from the first, use the recorded derivatives."""
        self._replaying, self._at = True, 0
        with self._active():
            yield self

    @contextlib.contextmanager
    def _active(self) -> Iterator[None]:
        token = _TAPE.set(self)
        try:
            yield
        finally:
            _TAPE.reset(token)

    def spike(self, surrogate: ForeignSurrogate, x: torch.Tensor) -> torch.Tensor:
        """One call of ``surrogate`` on ``x``: recorded, or replayed through our spike function."""
        if self._replaying:
            if self._at == len(self._derivatives):
                raise ForeignTape.Missing(f"{surrogate!r} called with no derivative recorded for it")
            derivative = self._derivatives[self._at]
            if derivative.shape != x.shape:
                raise RuntimeError(
                    f"{surrogate!r}: the replayed call {self._at} takes shape {list(x.shape)}, the recorded one "
                    f"{list(derivative.shape)}; the function must call its surrogates in the same order each time"
                )
            self._at += 1
            return _SpikeFunction.apply(x, _Given(derivative, inclusive=surrogate.inclusive))
        spikes, derivative = surrogate.evaluate(x)
        spikes = spikes.to(x.dtype)
        if not torch.equal(spikes, Surrogate.heaviside(surrogate, x)):  # the rule, not the framework's function
            raise ValueError(
                f"{surrogate!r}: its forward pass is not the Heaviside step "
                f"({'x >= 0' if surrogate.inclusive else 'x > 0'}) at every input it was called on, so its "
                "forward-mode derivative cannot be given by its backward"
            )
        self._derivatives.append(derivative)
        return spikes


#: the tape foreign surrogates are called through, if any
_TAPE: contextvars.ContextVar[ForeignTape | None] = contextvars.ContextVar("snn_parallel_foreign_tape", default=None)


_BY_NAME: dict[str, type[Surrogate]] = {
    cls.name: cls
    for cls in (ATan, Sigmoid, Rect, MultiGaussian, DoubleGaussian, CenteredDoubleGaussian, Slayer, FastSigmoid)
}
_BY_NAME["straight_through"] = Rect

#: SpikingJelly's surrogate classes (``activation_based.surrogate``, 0.0.0.0.14 and 2.x) that compute ours, by name
_SPIKINGJELLY: dict[str, type[_SpikingJellyAlpha]] = {
    cls.spikingjelly_name: cls for cls in (_SpikingJellyATan, _SpikingJellySigmoid, _SpikingJellyRect)
}
#: snnTorch's surrogate factories whose closures compute ours: factory -> (our class, the closure's parameter)
_SNNTORCH: dict[str, tuple[type[Surrogate], str]] = {
    "atan": (ATan, "alpha"),
    "sigmoid": (Sigmoid, "slope"),
    "fast_sigmoid": (FastSigmoid, "slope"),
}
#: where :func:`_same_math` compares a framework's surrogate with ours, in units of 1/sharpness (ours are
#: functions of sharpness * x): 0, both sides of it, and out to where the derivatives are ~1e-3 of their peak
_PROBE = (0.0, 1e-6, 1e-3, 0.01, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0, 20.0, 30.0, 40.0)


def _candidate(obj: object) -> Callable[[bool], Surrogate] | None:
    """How to build the surrogate of ours that ``obj`` computes, given the firing rule, if ``obj`` is one of the
    framework surrogates listed above: its exact class or the factory's own closure (a subclass or a look-alike
    may compute something else), with the parameters read off it. Reads only frameworks already imported."""
    cls = type(obj)
    if cls.__module__ == "spikingjelly.activation_based.surrogate" and cls.__name__ in _SPIKINGJELLY:
        module = sys.modules.get(cls.__module__)
        if getattr(module, cls.__name__, None) is cls and obj.spiking is True:
            check_positive(obj.alpha, "alpha")
            return lambda inclusive: _SPIKINGJELLY[cls.__name__](obj, inclusive=inclusive)
    elif isinstance(obj, types.FunctionType) and obj.__module__ == "snntorch.surrogate":
        module = sys.modules.get("snntorch.surrogate")
        for factory, (ours, parameter) in _SNNTORCH.items():
            made = getattr(module, factory, None)
            if isinstance(made, types.FunctionType) and any(code is obj.__code__ for code in made.__code__.co_consts):
                value = obj.__closure__[obj.__code__.co_freevars.index(parameter)].cell_contents
                return lambda inclusive: ours(value, inclusive=inclusive)
    return None


def spikingjelly_equivalent(surrogate: Surrogate) -> tuple[str, float] | None:
    """The SpikingJelly surrogate that computes ``surrogate``, one of ours (exactly :class:`ATan`, :class:`Sigmoid`
    or :class:`Rect`; a subclass may compute otherwise): ``(its class's name in activation_based.surrogate, its
    alpha)``, the inverse of :func:`resolve`'s mapping (``Rect``'s ``alpha`` is :math:`1/w`); ``None`` for any other
    surrogate. The firing rule is the caller's to check (SpikingJelly's nodes fire on ``x >= 0``)."""
    for stand_in in _SPIKINGJELLY.values():
        if type(surrogate) is stand_in.ours:
            return stand_in.spikingjelly_name, stand_in.alpha_of(surrogate)
    return None


def _same_math(obj: Callable[[torch.Tensor], torch.Tensor], ours: Surrogate) -> bool:
    """Whether ``obj`` gives ``ours``'s spikes and derivative (through its own autograd) on a float64 grid."""
    (value,) = ours.params.values()
    sharpness = 1 / value if isinstance(ours, Rect) else value  # a window's width is the inverse of a sharpness
    t = torch.tensor(_PROBE, dtype=torch.float64)
    x = (torch.cat([-t.flip(0), t[1:]]) / float(sharpness)).requires_grad_()
    spikes = obj(x)
    if not isinstance(spikes, torch.Tensor) or spikes.shape != x.shape or not spikes.requires_grad:
        return False
    (grad,) = torch.autograd.grad(spikes.sum(), x)
    expected = ours.derivative(x.detach())
    return torch.equal(spikes.detach().to(x.dtype), ours.heaviside(x.detach())) and torch.allclose(
        grad, expected, rtol=1e-9, atol=1e-12 * float(expected.abs().max())
    )


def _as_ours(obj: Callable[[torch.Tensor], torch.Tensor]) -> Surrogate | None:
    """The surrogate of ours that framework surrogate ``obj`` computes, with ``obj`` as its :attr:`~Surrogate.source`,
    or ``None`` when ``obj`` is not one of those known or does not compute it (checked on a float64 grid)."""
    try:
        build = _candidate(obj)
        if build is None:
            return None
        with torch.no_grad():
            at_zero = obj(torch.zeros(1, dtype=torch.float64))
        ours = build(bool(at_zero.item() == 1.0))
        if not _same_math(obj, ours):
            return None
    except Exception:  # a foreign object may fail in any way here; it is then wrapped as it is
        return None
    if ours.source is None:
        ours.source = obj
    return ours


def _wrap_foreign(obj: Callable[[torch.Tensor], torch.Tensor], name: str) -> Surrogate:
    """One of ours for a framework surrogate that computes it, else the surrogate wrapped after checking it is a
    Heaviside step with a usable derivative."""
    with torch.inference_mode(False), torch.enable_grad():  # a neuron may be built under no_grad/inference_mode
        ours = _as_ours(obj)
        return ours if ours is not None else _probed(obj, name)


def _probed(obj: Callable[[torch.Tensor], torch.Tensor], name: str) -> ForeignSurrogate:
    probe = torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64, requires_grad=True)
    try:
        out = obj(probe)
    except Exception as exc:  # a foreign callable may fail in any way; name the argument
        raise TypeError(f"{name}: calling the surrogate on a tensor failed ({exc})") from exc
    if not isinstance(out, torch.Tensor) or out.shape != probe.shape:
        raise TypeError(f"{name}: the surrogate must map a tensor to a tensor of the same shape")
    values = out.detach().tolist()
    if values[0] != 0.0 or values[2] != 1.0 or values[1] not in (0.0, 1.0):
        raise TypeError(
            f"{name}: the surrogate's forward pass must be a Heaviside step, got {values} at (-0.5, 0, 0.5)"
        )
    if not out.requires_grad:
        raise TypeError(f"{name}: the surrogate has no derivative (its output does not require grad)")
    (grad,) = torch.autograd.grad(out.sum(), probe, allow_unused=True)
    if grad is None or not bool(torch.isfinite(grad).all()) or not bool((grad != 0).any()):
        raise TypeError(f"{name}: the surrogate has no usable derivative near the threshold (got {grad})")
    return ForeignSurrogate(obj, inclusive=values[1] == 1.0)


def resolve(surrogate: object = None, *, inclusive: bool = True, name: str = "surrogate") -> Surrogate:
    """Turn any accepted surrogate description into a :class:`Surrogate`.

    Args:
        surrogate: ``None`` (``ATan()``), a name (``"atan"``, ``"sigmoid"``, ``"rect"``,
            ``"straight_through"``, ``"multi_gaussian"``, ``"double_gaussian"``,
            ``"centered_double_gaussian"``, ``"slayer"``, ``"fast_sigmoid"``), a
            :class:`Surrogate`, a SpikingJelly surrogate object, or any callable that maps a
            tensor to Heaviside spikes with a surrogate backward (snnTorch ``spike_grad``). A
            framework surrogate that computes one of ours becomes ours (see the module
            docstring); any other is a :class:`ForeignSurrogate`.
        inclusive: firing rule for a surrogate built here from ``None`` or a name.
        name: the argument name used in error messages.

    Raises:
        TypeError: for an object that is not a surrogate, or one without a derivative.
        ValueError: for an unknown name.
    """
    if surrogate is None:
        return ATan(inclusive=inclusive)
    if isinstance(surrogate, Surrogate):
        return surrogate
    if isinstance(surrogate, str):
        try:
            return _BY_NAME[surrogate.lower()](inclusive=inclusive)
        except KeyError:
            raise ValueError(f"{name}: unknown surrogate {surrogate!r}; choose one of {sorted(_BY_NAME)}") from None
    if callable(surrogate):
        return _wrap_foreign(surrogate, name)
    raise TypeError(f"{name} must be a surrogate name, a Surrogate or a callable, got {type(surrogate).__name__}")


def check_surrogate(value: object, name: str) -> Surrogate:
    """``value`` if it is a :class:`Surrogate` (what the ops take: a neuron resolves its argument once, by
    :func:`resolve`), else ``TypeError`` naming the argument."""
    if not isinstance(value, Surrogate):
        raise TypeError(f"{name} must be a Surrogate (see snn_parallel.surrogate.resolve), got {type(value).__name__}")
    return value


class IntegerSpike(Surrogate):
    r"""Integer spikes :math:`S = \mathrm{clip}(\mathrm{round}(H), 0, N)` with a straight-through
    gradient inside :math:`[0, N]` (the "Rect" rule of integer-valued training, ILIF/DSN)."""

    name = "integer"

    def __init__(self, levels: int = 4) -> None:
        super().__init__(inclusive=True, levels=check_int(levels, "levels", minimum=1))

    def heaviside(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(torch.round(x), 0, self.levels)

    def derivative(self, x: torch.Tensor) -> torch.Tensor:
        return ((x >= 0) & (x <= self.levels)).to(x.dtype)
