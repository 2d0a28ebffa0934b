"""The ops' shared CUDA machinery: the headers the kernels include, the CuPy launcher, and the launch
configuration of the time-chunked scans.

Each op folder holds its own ``.cu`` file, declared in the op's ``cupy.py`` as a :class:`KernelFile`
together with the compile-time constants it needs. There is one copy of every fact:

- **signatures**: the entry points and their parameter kinds are read from the file's
  ``extern "C" __global__`` declarations (:attr:`KernelFile.signatures`), and the launcher packs
  arguments by them;
- **constants**: a constant that Python also needs (a checkpoint interval, a tap limit, a clamp) is
  defined in Python and passed to the compiler as ``-D`` (:meth:`KernelFile.options`); the source
  stops with ``#error`` when one is missing;
- **variants**: a file whose kernels serve several state types (real and complex, :data:`REAL_AND_COMPLEX`)
  declares its entry points once, as ``SNN_ENTRY(name)``, and is built once per variant with that variant's
  constants; ``SNN_ENTRY(name)`` is the entry point ``name_<variant>`` of each build.

A file is compiled by NVRTC through ``cupy.RawModule`` once per (file, variant, storage dtype, device), with
``common.cuh`` pasted in place of its ``#include`` (so CuPy's on-disk cache is keyed by the full text),
and kept for the life of the process. :meth:`KernelFile.launch` runs a kernel on PyTorch's current CUDA
stream: tensors are shared zero-copy by passing their ``data_ptr()`` (contiguous, or laid out as the
kernel's stride arguments say), and nothing waits for the device, so the calls can be captured in a
CUDA graph. Each op's launchers are custom ops (:func:`kernel_op`) with fake implementations, so
``torch.compile`` traces through them. Storage dtypes are compiled as ``SNN_DTYPE`` = ``float``, ``__half`` or
``__nv_bfloat16``; all arithmetic accumulates in float32, complex values are float32 pairs (``float2``, complex64).

CuPy itself is imported only inside these functions: importing this module (and so
``import snn_parallel``) never needs CuPy or a GPU.
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import re
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import numpy as np
import torch

from ...surrogate import (
    ATan,
    DoubleGaussian,
    FastSigmoid,
    IntegerSpike,
    MultiGaussian,
    Rect,
    Sigmoid,
    Surrogate,
    _SpikingJellyAlpha,
)

__all__ = [
    "HEADERS",
    "SEGMENT",
    "KERNEL_DTYPES",
    "REAL_AND_COMPLEX",
    "SPIKE_KINDS",
    "KernelFile",
    "arg",
    "chunking",
    "grad_strides",
    "kernel_files",
    "kernel_op",
    "spike_code",
    "unavailable_reason",
    "workspace",
]

#: The headers the kernel sources include (this folder): the shared definitions, and the time-chunked scan driver.
HEADERS = ("common.cuh", "chunked.cuh")
#: Geometry of the time-chunked scans (``chunked.cuh``, passed as ``-DSNN_WARPS``/``-DSNN_STEPS``): a block of
#: ``CHUNK_WARPS`` warps covers 32 lanes x ``CHUNK_WARPS * CHUNK_STEPS`` steps, each thread ``CHUNK_STEPS`` steps
#: (the loads in flight per thread). The environment variables ``SNN_PARALLEL_CHUNK_WARPS`` and
#: ``SNN_PARALLEL_CHUNK_STEPS`` override them (for tuning on a device; read at import).
CHUNK_WARPS = int(os.environ.get("SNN_PARALLEL_CHUNK_WARPS", "8"))
CHUNK_STEPS = int(os.environ.get("SNN_PARALLEL_CHUNK_STEPS", "8"))
#: steps per segment of the time-chunked scans
SEGMENT = CHUNK_WARPS * CHUNK_STEPS
#: storage dtype -> the ``SNN_DTYPE`` the kernels are compiled with
KERNEL_DTYPES: dict[torch.dtype, str] = {
    torch.float32: "float",
    torch.float16: "__half",
    torch.bfloat16: "__nv_bfloat16",
}
#: The variants of a file built for a real (float32) and a complex (complex64, ``float2``) state: ``SNN_COMPLEX``.
REAL_AND_COMPLEX: dict[str, dict[str, int]] = {"real": {"SNN_COMPLEX": 0}, "complex": {"SNN_COMPLEX": 1}}
#: threads per block of the one-thread-per-item launches (:meth:`KernelFile.launch_items`)
THREADS = 256
#: grid cap of those launches; their grid-stride loops cover any remaining items
MAX_BLOCKS = 65535

#: Spike-function kind ids of ``common.cuh`` (passed as ``-DSNN_KIND_<NAME>``), by surrogate class
#: (exact classes: a subclass may change the derivative, so it has no kernel).
SPIKE_KINDS: dict[type[Surrogate], int] = {
    ATan: 0,
    Sigmoid: 1,
    Rect: 2,
    MultiGaussian: 3,
    DoubleGaussian: 3,
    IntegerSpike: 4,
    FastSigmoid: 5,
}
_KIND_MACROS = {
    "SNN_KIND_ATAN": 0,
    "SNN_KIND_SIGMOID": 1,
    "SNN_KIND_RECT": 2,
    "SNN_KIND_GAUSSIANS": 3,
    "SNN_KIND_INTEGER": 4,
    "SNN_KIND_FAST_SIGMOID": 5,
}
#: Events the kernels count with ``SNN_COUNT(SNN_EVENT_<NAME>)`` (a no-op on the GPU; the CPU test harness
#: counts them): a look-back that found its predecessor not yet published and waited, that stepped over a
#: predecessor's aggregate, that stopped at a predecessor's inclusive state.
EVENTS = {"LOOKBACK_WAIT": 0, "LOOKBACK_AGGREGATE": 1, "LOOKBACK_INCLUSIVE": 2}

# Parameter kinds: P pointer, L long long, I int, F float.
_KINDS = {"long long": "L", "int": "I", "float": "F"}
_PACK = {"L": np.int64, "I": np.int32, "F": np.float32}
_ENTRY = re.compile(
    r'extern\s+"C"\s+__global__\s+void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?'
    r"(?:SNN_ENTRY\s*\(\s*(\w+)\s*\)|(\w+))\s*\(([^)]*)\)"
)

_registry: dict[str, KernelFile] = {}


def _macro_value(value: int | float) -> str:
    """A C literal for ``value``: ints as they are, floats as ``float`` literals, in parentheses."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"kernel constants are ints or floats, got {value!r}")
    return f"({value})" if isinstance(value, int) else f"({float(value)!r}f)"


def _parameter_kind(declaration: str, kernel: str) -> str:
    """``P``, ``L``, ``I`` or ``F`` for one parameter declaration of an entry point."""
    if "*" in declaration:
        return "P"
    type_name = " ".join(declaration.replace("const", " ").split()[:-1])
    if type_name not in _KINDS:
        raise ValueError(
            f"{kernel}: parameter {declaration.strip()!r} has no launcher kind (pointers, long long, int, float)"
        )
    return _KINDS[type_name]


class KernelFile:
    """One op's CUDA source file.

    Args:
        package: the op's package (``__package__`` of its ``cupy.py``); the file sits in its folder.
        name: the file name, e.g. ``"scan.cu"``.
        defines: compile-time constants the source needs, passed as ``-D<NAME>=<value>``.
        variants: for a file built several times (entry points declared ``SNN_ENTRY(name)``), each build's name and
            its own constants, e.g. :data:`REAL_AND_COMPLEX`; each build also gets ``-DSNN_VARIANT=<name>``.
    """

    def __init__(
        self,
        package: str,
        name: str,
        defines: Mapping[str, int | float] | None = None,
        variants: Mapping[str, Mapping[str, int | float]] | None = None,
    ) -> None:
        self.package, self.name = package, name
        self.defines = dict(defines or {})
        self.variants = {variant: dict(constants) for variant, constants in (variants or {}).items()}
        if name in _registry and _registry[name].package != package:
            raise ValueError(f"kernel file {name!r} is declared by {_registry[name].package} already")
        _registry[name] = self

    def __repr__(self) -> str:
        return f"KernelFile({self.package!r}, {self.name!r})"

    def source(self) -> str:
        """The text of the ``.cu`` file."""
        return resources.files(self.package).joinpath(self.name).read_text(encoding="utf-8")

    def text(self) -> str:
        """What NVRTC compiles: the file with the headers it includes pasted in place (each once)."""
        return _paste(self.source(), set())

    def builds(self) -> list[str | None]:
        """The file's variants (:attr:`variants`), or ``[None]``: it is built once."""
        return list(self.variants) or [None]

    def variant_macros(self, variant: str | None) -> dict[str, str]:
        """The macros of the build ``variant`` alone (none for ``None``): ``SNN_VARIANT`` and its constants."""
        if variant is None:
            return {}
        return {"SNN_VARIANT": variant, **{k: _macro_value(v) for k, v in self.variants[variant].items()}}

    def macros(self) -> dict[str, str]:
        """``-D`` macros of every build besides ``SNN_DTYPE``: the spike kinds, the event ids and this file's
        constants, as C literals."""
        shared = {
            **_KIND_MACROS,
            **{f"SNN_EVENT_{name}": i for name, i in EVENTS.items()},
            "SNN_WARPS": CHUNK_WARPS,
            "SNN_STEPS": CHUNK_STEPS,
        }
        return {k: _macro_value(v) for k, v in {**shared, **self.defines}.items()}

    def options(self, dtype: torch.dtype, variant: str | None = None) -> tuple[str, ...]:
        """Compiler options of the ``dtype`` build (``dtype`` one of :data:`KERNEL_DTYPES`) of ``variant`` (one of
        :meth:`builds`)."""
        macros = {**self.macros(), **self.variant_macros(variant)}
        return ("-std=c++17", f"-DSNN_DTYPE={KERNEL_DTYPES[dtype]}", *(f"-D{k}={v}" for k, v in macros.items()))

    def build_signatures(self, variant: str | None) -> dict[str, str]:
        """Entry point -> parameter kinds of the build ``variant``, read from the file's declarations (see
        :func:`signatures`)."""
        entries = signatures(self.source(), variant)
        if not entries:
            raise ValueError(f'{self.name} declares no extern "C" __global__ entry point')
        return entries

    @functools.cached_property
    def signatures(self) -> dict[str, str]:
        """Entry point -> parameter kinds, of every build."""
        return {kernel: kinds for variant in self.builds() for kernel, kinds in self.build_signatures(variant).items()}

    def variant_of(self, kernel: str) -> str | None:
        """The build (one of :meth:`builds`) that declares ``kernel``."""
        return next(variant for variant in self.builds() if kernel in self.build_signatures(variant))

    def launch(
        self, kernel: str, dtype: torch.dtype, grid: tuple[int, ...], block: tuple[int, ...], *args: Any
    ) -> None:
        """Run ``kernel`` (``dtype`` build) on the current stream of the first tensor argument's device.

        ``args`` follow :attr:`signatures`: CUDA tensors (or ``None`` for a null pointer) for ``P``,
        Python numbers for the rest.
        """
        _launch(self, kernel, dtype, grid, block, args)

    def launch_items(self, kernel: str, dtype: torch.dtype, items: int, *args: Any) -> None:
        """:meth:`launch` with :data:`THREADS` threads a block over ``items`` work items (a 1-D grid-stride kernel)."""
        self.launch(kernel, dtype, (max(1, min(math.ceil(items / THREADS), MAX_BLOCKS)),), (THREADS,), *args)


def signatures(source: str, variant: str | None = None) -> dict[str, str]:
    """Entry point -> parameter kinds (``P`` pointer, ``L`` long long, ``I`` int, ``F`` float), in order, of
    the ``extern "C" __global__`` declarations in CUDA ``source``, built as ``variant`` (``SNN_ENTRY(name)`` is
    ``name_<variant>``)."""
    entries = {}
    for match in _ENTRY.finditer(source):
        per_variant, kernel, params = match.groups()
        if per_variant is not None:
            if variant is None:
                raise ValueError(f"SNN_ENTRY({per_variant}) in a file built without variants")
            kernel = f"{per_variant}_{variant}"
        entries[kernel] = "".join(_parameter_kind(p, kernel) for p in params.split(",") if p.strip())
    return entries


#: Launch configuration of the time-chunked scans: a block covers 32 lanes and, per segment, :data:`SEGMENT`
#: steps. From this many lane tiles a multiprocessor on, each block walks the whole sequence of its tile, so no
#: block waits for another; below, each block takes one segment and the state passes across blocks by a
#: decoupled look-back (``chunked.cuh``), whose status flags are one memset per call.
ONE_PASS_TILES_PER_SM = 4


@functools.cache
def chunking(steps: int, lanes: int, processors: int, segments_per_block: int | None = None) -> tuple[int, int, int]:
    """``(segments per block G, blocks along time, lane tiles)`` of a launch over ``[steps, lanes]`` on a device
    with ``processors`` multiprocessors (``segments_per_block`` forces G)."""
    segments, tiles = math.ceil(steps / SEGMENT), math.ceil(lanes / 32)
    if segments_per_block is None:
        segments_per_block = segments if tiles >= ONE_PASS_TILES_PER_SM * processors else 1
    per_block = max(1, min(segments_per_block, segments))
    return per_block, math.ceil(segments / per_block), tiles


def processors(device: torch.device) -> int:
    """Multiprocessors of CUDA ``device``."""
    return torch.cuda.get_device_properties(device).multi_processor_count


def workspace(
    steps: int,
    lanes: int,
    like: torch.Tensor,
    state_floats: int,
    segments_per_block: int | None = None,
    *,
    decay_floats: int | None = None,
):
    """``(grid, G, flags, agg_d, agg_b, inclusive)``: the launch's grid size, segments per block and look-back
    buffers (``None`` when no block waits for another) for states of ``state_floats`` float32 each (with their
    padding) and decays of ``decay_floats`` (default: as many; a matrix map's ``R * R``), on ``like``'s device."""
    per_block, groups, tiles = chunking(steps, lanes, processors(like.device), segments_per_block)
    if groups == 1:
        return tiles, per_block, None, None, None, None
    flags = torch.zeros(groups * tiles + 1, dtype=torch.int32, device=like.device)
    agg_d = torch.empty(groups, lanes, decay_floats or state_floats, device=like.device)
    agg_b, inclusive = (torch.empty(groups, lanes, state_floats, device=like.device) for _ in range(2))
    return groups * tiles, per_block, flags, agg_d, agg_b, inclusive


def header_source(name: str = "common.cuh") -> str:
    """The text of the header ``name`` (one of :data:`HEADERS`)."""
    if name not in HEADERS:
        raise ValueError(f"unknown header {name!r}; the kernels include {HEADERS}")
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def _paste(text: str, seen: set[str]) -> str:
    """``text`` with each ``#include "<header>"`` replaced by the header (recursively, once each, as
    ``#pragma once`` would)."""

    def header(match: re.Match) -> str:
        name = match.group(1)
        if name in seen:
            return ""
        seen.add(name)
        return _paste(header_source(name).replace("#pragma once\n", ""), seen)

    return re.sub(r'^#include "([\w.]+)"$', header, text, flags=re.M)


def kernel_files() -> dict[str, KernelFile]:
    """Every op's kernel file, by file name."""
    from .. import dsn, linear_fire, ltc, scan, tssl  # noqa: F401  (each declares its file on import)

    return dict(_registry)


@functools.cache
def _module(file: KernelFile, dtype: torch.dtype, device: int, variant: str | None = None) -> Any:
    """The compiled and loaded ``cupy.RawModule`` of ``file`` (build ``variant``) on CUDA device ``device``."""
    import cupy

    with cupy.cuda.Device(device):
        module = cupy.RawModule(code=file.text(), options=file.options(dtype, variant), backend="nvrtc")
        module.compile()
    return module


@functools.cache
def _function(file: KernelFile, kernel: str, dtype: torch.dtype, device: int) -> Any:
    return _module(file, dtype, device, file.variant_of(kernel)).get_function(kernel)


@functools.cache
def unavailable_reason(device: int) -> str | None:
    """``None`` when CuPy imports and can compile and load a kernel on CUDA device ``device``,
    else why not (checked once per device)."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install failing in any way
        return f"CuPy does not import ({type(exc).__name__}: {exc}); install snn-parallel[cuda12] or [cuda13]"
    try:
        scan = kernel_files()["scan.cu"]
        _module(scan, torch.float32, device, scan.builds()[0])
    except Exception as exc:  # no driver, NVRTC missing, ...: report it, the torch path still works
        return f"CuPy cannot compile or load a kernel on cuda:{device} ({type(exc).__name__}: {exc})"
    return None


def _pack(kind: str, value: Any) -> Any:
    if kind == "P":
        return np.uint64(0 if value is None else value.data_ptr())
    return _PACK[kind](value)


def _launch(
    file: KernelFile,
    kernel: str,
    dtype: torch.dtype,
    grid: tuple[int, ...],
    block: tuple[int, ...],
    args: tuple[Any, ...],
) -> None:
    import cupy

    kinds = file.signatures[kernel]
    if len(args) != len(kinds):
        raise TypeError(f"{kernel} takes {len(kinds)} arguments, got {len(args)}")
    device = next(a for a in args if isinstance(a, torch.Tensor)).device
    index = torch.cuda.current_device() if device.index is None else device.index
    function = _function(file, kernel, dtype, index)
    with cupy.cuda.Device(index), _stream(cupy, torch.cuda.current_stream(index)):
        function(tuple(grid), tuple(block), tuple(_pack(k, a) for k, a in zip(kinds, args, strict=True)))


def _stream(cupy: Any, stream: torch.cuda.Stream) -> Any:
    """A CuPy view of the torch stream ``stream`` (``Stream.from_external`` from CuPy 14, else ``ExternalStream``)."""
    if hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, stream.device.index)


def kernel_op(name: str, fake: Callable[..., Any], schema: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register a launcher as the custom op ``snn_parallel::<name>`` (``torch.library.custom_op``, no input mutated)
    with ``fake`` as its fake (meta) implementation, which allocates outputs of the right shapes and dtypes, so that
    ``torch.compile`` traces through the kernels instead of breaking its graph. ``fake`` gets the launcher's
    arguments by name (defaults filled in), so it names only those it reads and takes the rest as ``**_``. The op's
    schema is ``schema``, torch's schema text (``"(Tensor x, float[] params, int? n=None) -> Tensor"``), so that the
    launchers need no annotations (which torch 2.4 cannot read from ``from __future__ import annotations``
    modules)."""

    def register(launcher: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(launcher)

        def fake_by_name(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            return fake(**bound.arguments)

        op = torch.library.custom_op(f"snn_parallel::{name}", mutates_args=(), schema=schema)(launcher)
        op.register_fake(fake_by_name)
        return op

    return register


def arg(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` as a contiguous ``dtype`` kernel argument (no copy when it already is one)."""
    return tensor.to(dtype).contiguous()


def grad_strides(grad: torch.Tensor | None) -> tuple[int, int]:
    """The ``(time, lane)`` strides a kernel reads a ``[T, N]`` gradient with (``(0, 0)`` for an absent one)."""
    return (0, 0) if grad is None else grad.stride()


def spike_code(spike_fn: Surrogate) -> tuple[int, tuple[float, float, float, float], int] | None:
    """``(kind, (p0, p1, p2, p3), inclusive)`` of ``spike_fn`` for the kernels (its parameters as they are now),
    or ``None`` when no kernel implements it (a wrapped framework surrogate, or a subclass of ours)."""
    # ours standing for a SpikingJelly object (:func:`snn_parallel.surrogate.resolve`) runs the class it computes
    computed = spike_fn.ours if isinstance(spike_fn, _SpikingJellyAlpha) else type(spike_fn)
    kind = SPIKE_KINDS.get(computed)
    if kind is None:
        return None
    values = [float(v) for v in spike_fn.params.values()]
    return kind, (*values, *[0.0] * (4 - len(values))), int(spike_fn.inclusive)
