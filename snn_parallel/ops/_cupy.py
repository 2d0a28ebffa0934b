"""CuPy launch path of the CUDA kernels in :mod:`snn_parallel.ops.kernels`.

Each kernel file is compiled by NVRTC through ``cupy.RawModule`` once per (file, storage dtype,
device), with ``common.cuh`` pasted in place of its ``#include`` (so CuPy's on-disk cache is keyed
by the full text), and kept for the life of the process. :func:`launch` runs a kernel on PyTorch's
current CUDA stream: tensors are shared zero-copy by passing their ``data_ptr()`` (the caller
makes them contiguous), scalars are packed by the kernel's entry in
:data:`~snn_parallel.ops.kernels.ABI`, and nothing waits for the device, so the calls can be
captured in a CUDA graph.

CuPy itself is imported only inside these functions: importing this module (and so
``import snn_parallel``) never needs CuPy or a GPU.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch

from .kernels import ABI, HEADER_FILES, source

#: storage dtype -> the ``SNN_DTYPE`` the kernels are compiled with
KERNEL_DTYPES: dict[torch.dtype, str] = {torch.float32: "float", torch.float16: "__half", torch.bfloat16: "__nv_bfloat16"}
#: threads per block of every launch
THREADS = 256
#: grid cap; the kernels' grid-stride loops cover any remaining items
MAX_BLOCKS = 65535

_PACK = {"L": np.int64, "I": np.int32, "F": np.float32}


def kernel_source(name: str) -> str:
    """The text NVRTC compiles for kernel file ``name``: the file with its headers pasted in."""
    text = source(name)
    for header in HEADER_FILES:
        text = text.replace(f'#include "{header}"', source(header))
    return text


def compile_options(dtype: torch.dtype) -> tuple[str, ...]:
    """NVRTC options for the ``dtype`` build (``dtype`` one of :data:`KERNEL_DTYPES`)."""
    return ("-std=c++17", f"-DSNN_DTYPE={KERNEL_DTYPES[dtype]}")


@functools.cache
def _module(name: str, dtype: torch.dtype, device: int) -> Any:
    """The compiled and loaded ``cupy.RawModule`` of kernel file ``name`` on CUDA device ``device``."""
    import cupy

    with cupy.cuda.Device(device):
        module = cupy.RawModule(code=kernel_source(name), options=compile_options(dtype), backend="nvrtc")
        module.compile()
    return module


@functools.cache
def _function(name: str, kernel: str, dtype: torch.dtype, device: int) -> Any:
    return _module(name, dtype, device).get_function(kernel)


@functools.cache
def unavailable_reason(device: int) -> str | None:
    """``None`` when CuPy imports and can compile and load a kernel on CUDA device ``device``,
    else why not (checked once per device)."""
    try:
        import cupy  # noqa: F401
    except Exception as exc:  # ImportError, or a broken install failing in any way
        return f"CuPy does not import ({type(exc).__name__}: {exc}); install snn-parallel[cuda12] or [cuda13]"
    try:
        _module("scan.cu", torch.float32, device)
    except Exception as exc:  # no driver, NVRTC missing, ...: report it, the torch path still works
        return f"CuPy cannot compile or load a kernel on cuda:{device} ({type(exc).__name__}: {exc})"
    return None


def _pack(kind: str, value: Any) -> Any:
    if kind == "P":
        if value is None:
            return np.uint64(0)
        if not value.is_contiguous():
            raise ValueError("kernel tensor arguments must be contiguous")
        return np.uint64(value.data_ptr())
    return _PACK[kind](value)


@torch.compiler.disable
def launch(name: str, kernel: str, dtype: torch.dtype, items: int, *args: Any) -> None:
    """Run ``kernel`` of file ``name`` (``dtype`` build) over ``items`` work items on the current stream.

    ``args`` follow the kernel's :data:`~snn_parallel.ops.kernels.ABI` entry: contiguous CUDA
    tensors (or ``None`` for a null pointer) for ``P``, Python numbers for the rest. The device is
    that of the first tensor argument. ``torch.compile`` does not trace into a launch (it runs it
    eagerly, with a graph break).
    """
    import cupy

    kinds = ABI[name][kernel]
    if len(args) != len(kinds):
        raise TypeError(f"{kernel} takes {len(kinds)} arguments, got {len(args)}")
    device = next(a for a in args if isinstance(a, torch.Tensor)).device
    index = torch.cuda.current_device() if device.index is None else device.index
    function = _function(name, kernel, dtype, index)
    blocks = max(1, min(math.ceil(items / THREADS), MAX_BLOCKS))
    with cupy.cuda.Device(index), _stream(cupy, torch.cuda.current_stream(index)):
        function((blocks,), (THREADS,), tuple(_pack(k, a) for k, a in zip(kinds, args)))


def _stream(cupy: Any, stream: torch.cuda.Stream) -> Any:
    """A CuPy view of the torch stream ``stream`` (``Stream.from_external`` from CuPy 14, else ``ExternalStream``)."""
    if hasattr(cupy.cuda.Stream, "from_external"):
        return cupy.cuda.Stream.from_external(stream)
    return cupy.cuda.ExternalStream(stream.cuda_stream, stream.device.index)


def arg(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``tensor`` as a contiguous ``dtype`` kernel argument (no copy when it already is one)."""
    return tensor.to(dtype).contiguous()
