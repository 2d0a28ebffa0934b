"""Test support: the CUDA kernels of ``snn_parallel/ops/*/*.cu`` built for the CPU and called through ``ctypes``.

:func:`build` compiles the float32 build of every kernel file with ``g++`` and ``cuda_emu.h`` into shared
libraries: one with every file's first (or only) variant, one with the second variants, and so on (a file's
variants are separate builds of one source, :attr:`snn_parallel.ops._cuda.KernelFile.variants`). Their entry
points are generated from the kernels' own ``extern "C"`` declarations
(:meth:`snn_parallel.ops._cuda.KernelFile.build_signatures`): ``run_<kernel>(config, args)`` takes the launch
geometry and the arguments as ``cuLaunchKernel`` does (``args[i]`` points at parameter ``i``), so no
signature is written here. The compile-time constants are the ``-D`` options the launcher passes.

A launch runs each CUDA thread as a fiber with real barriers and warp shuffles, and the blocks on
``workers`` host threads in an order and interleaving drawn from ``seed`` (see ``cuda_emu.h``);
:meth:`Harness.counters` reads the events the kernels count with ``SNN_COUNT``.
"""

from __future__ import annotations

import ctypes
import math
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from pathlib import Path
from typing import Any

import torch

from snn_parallel.ops import _cuda

HARNESS_DIR = Path(__file__).parent
CUDA_DIR = Path(_cuda.__file__).parent
GXX = shutil.which("g++")
NVCC = shutil.which("nvcc")

_CTYPE = {"P": ctypes.c_void_p, "L": ctypes.c_longlong, "I": ctypes.c_int, "F": ctypes.c_float}
_POINTER_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.complex64, torch.int32)


#: what a launch's non-zero status means (``emu_error`` of cuda_emu.h)
ERRORS = {
    1: "a barrier was reached after some threads of the block had exited",
    2: "a warp barrier or shuffle without the whole warp",
    3: "a block ran past the timeout (a wait that never ends?)",
    4: "deadlock: every live thread of a block waits at a barrier the others never reach",
}


class EmuConfig(ctypes.Structure):
    _fields_ = [
        ("grid", ctypes.c_uint * 3),
        ("block", ctypes.c_uint * 3),
        ("workers", ctypes.c_uint),
        ("seed", ctypes.c_ulonglong),
        ("timeout_s", ctypes.c_double),
    ]


def _dims(dims: Sequence[int]) -> ctypes.Array:
    values = [int(d) for d in dims] + [1] * (3 - len(dims))
    assert len(values) == 3 and all(v >= 1 for v in values), dims
    return (ctypes.c_uint * 3)(*values)


class Harness:
    """The CPU build of the kernels: :meth:`launch` runs one kernel over a grid.

    ``workers`` (host threads) and ``seed`` (the schedule) apply to every launch; set them to vary the runs.
    """

    def __init__(self, libs: Sequence[tuple[ctypes.CDLL, dict[str, str]]]) -> None:
        self.libs = [lib for lib, _ in libs]
        self.signatures = {kernel: kinds for _, signatures in libs for kernel, kinds in signatures.items()}
        self.workers, self.seed, self.timeout_s = 1, 0, 60.0
        self._runs = {}
        for lib, signatures in libs:
            lib.emu_read_counters.argtypes = [ctypes.POINTER(ctypes.c_longlong)]
            lib.emu_read_counters.restype = None
            lib.emu_reset_counters.restype = None
            for kernel in signatures:
                fn = self._runs[kernel] = getattr(lib, f"run_{kernel}")
                fn.argtypes = [ctypes.POINTER(EmuConfig), ctypes.POINTER(ctypes.c_void_p)]
                fn.restype = ctypes.c_int

    def launch(self, kernel: str, grid: Sequence[int], block: Sequence[int], *args: Any) -> None:
        """``kernel<<<grid, block>>>(args...)``: CPU tensors (float32, complex64 or int32) or ``None`` for
        pointers, numbers for the rest, in the order of the kernel's declaration."""
        kinds = self.signatures[kernel]
        assert len(args) == len(kinds), f"{kernel}: {len(args)} arguments for {len(kinds)} parameters"
        values = []
        for kind, value in zip(kinds, args, strict=True):
            if kind == "P":
                if value is not None:
                    assert isinstance(value, torch.Tensor) and value.device.type == "cpu", f"{kernel}: {value!r}"
                    assert value.dtype in _POINTER_DTYPES, f"{kernel}: {value.dtype} argument"
                    value = value.data_ptr()
                values.append(ctypes.c_void_p(value))
            else:
                values.append(_CTYPE[kind](value))
        pointers = (ctypes.c_void_p * max(len(values), 1))(
            *[ctypes.cast(ctypes.pointer(v), ctypes.c_void_p) for v in values]
        )
        config = EmuConfig(_dims(grid), _dims(block), self.workers, self.seed, self.timeout_s)
        status = self._runs[kernel](ctypes.byref(config), pointers)
        if status:
            raise RuntimeError(f"{kernel}<<<{tuple(grid)}, {tuple(block)}>>>: {ERRORS.get(status, status)}")

    def counters(self) -> dict[str, int]:
        """The ``SNN_COUNT`` events since the last :meth:`reset_counters`, by name (summed over the libraries)."""
        totals = dict.fromkeys(_cuda.EVENTS, 0)
        for lib in self.libs:
            values = (ctypes.c_longlong * 16)()
            lib.emu_read_counters(values)
            totals = {name: totals[name] + values[i] for name, i in _cuda.EVENTS.items()}
        return {name.lower(): value for name, value in totals.items()}

    def reset_counters(self) -> None:
        for lib in self.libs:
            lib.emu_reset_counters()

    def launch_items(
        self, kernel: str, items: int, *args: Any, block: int = _cuda.THREADS, grid: int | None = None
    ) -> None:
        """A one-thread-per-item kernel over ``items`` (``grid`` blocks, default enough for one item each)."""
        self.launch(kernel, (grid or max(1, math.ceil(items / block)),), (block,), *args)


def source_path(file: _cuda.KernelFile) -> Path:
    """Where ``file`` is on disk."""
    return Path(str(resources.files(file.package).joinpath(file.name)))


def _defines() -> dict[str, str]:
    merged: dict[str, str] = {}
    for file in _cuda.kernel_files().values():
        for name, value in file.macros().items():
            assert merged.setdefault(name, value) == value, f"{name} is defined twice with different values"
    return merged


def build(
    out_dir: Path,
    *,
    mutation: tuple[str, str, str] | None = None,
    extra: Sequence[Path] = (),
    files: Sequence[str] | None = None,
    dtype: torch.dtype = torch.float32,
    strict: bool = True,
) -> Harness:
    """Build the harness library in ``out_dir``; ``mutation = (file, old, new)`` replaces the one occurrence of
    ``old`` in that kernel file or header first (a mutant, to show that a test bites); ``extra`` adds more ``.cu``
    files (test kernels); ``files`` builds only those kernel files (all by default); ``dtype`` is the storage
    dtype of the build (``SNN_DTYPE``)."""
    assert GXX is not None, "g++ is needed to build the kernel harness"
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {name: file for name, file in _cuda.kernel_files().items() if files is None or name in files}
    paths = {name: source_path(file) for name, file in files.items()}
    if mutation is not None:  # a kernel file or a header, copied with the edit into out_dir (searched first)
        name, old, new = mutation
        text = _cuda.header_source(name) if name in _cuda.HEADERS else files[name].source()
        assert text.count(old) == 1, f"mutation target {old!r} not found once in {name}"
        (out_dir / name).write_text(text.replace(old, new))
        if name in paths:
            paths[name] = out_dir / name
        else:  # a header: the others beside it, so that a header including it finds the mutant
            for header in set(_cuda.HEADERS) - {name}:
                (out_dir / header).write_text(_cuda.header_source(header))
    # one library per variant index: a file's variants are separate builds of the same definitions
    units = [[(Path(path), None) for path in extra]]
    for name, file in files.items():
        for index, variant in enumerate(file.builds()):
            if index == len(units):
                units.append([])
            units[index].append((name, variant))
    libs = [_build_unit(out_dir / f"unit{i}", unit, files, paths, dtype, strict) for i, unit in enumerate(units)]
    harness = Harness([lib for lib in libs if lib[1]])
    harness.dtype = dtype
    return harness


def _build_unit(
    out_dir: Path,
    unit: list[tuple[str | Path, str | None]],
    files: dict[str, _cuda.KernelFile],
    paths: dict[str, Path],
    dtype: torch.dtype,
    strict: bool,
) -> tuple[ctypes.CDLL, dict[str, str]]:
    """One shared library of ``unit``: kernel files by name with their build variant, or extra source paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    lines, signatures = [], {}
    for source, variant in unit:
        if isinstance(source, Path):  # an extra file
            signatures.update(_cuda.signatures(source.read_text()))
            lines.append(f'#include "{source}"')
            continue
        macros = files[source].variant_macros(variant)
        signatures.update(files[source].build_signatures(variant))
        lines += [*(f"#define {k} {v}" for k, v in macros.items()), f'#include "{paths[source]}"']
        lines += [f"#undef {k}" for k in macros]
    lines.append('#define EXPORT extern "C" __attribute__((visibility("default")))')
    for kernel in signatures:
        lines.append(f"EXPORT int run_{kernel}(const emu_config* c, void** a) {{ return emu_run(*c, {kernel}, a); }}")
    launcher = out_dir / "launch.cpp"
    launcher.write_text("\n".join(lines) + "\n")
    library = out_dir / "libsnn_kernels_emu.so"
    cmd = [
        GXX, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", f"-I{out_dir.parent}", f"-I{CUDA_DIR}",
        f"-I{HARNESS_DIR}", "-pthread", "-fvisibility=hidden", f"-DSNN_DTYPE={_cuda.KERNEL_DTYPES[dtype]}",
        "-include", "cuda_emu.h",
        *(f"-D{k}={v}" for k, v in _defines().items()), "-x", "c++", str(launcher),
        "-o", str(library),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"g++ failed:\n{proc.stderr}"
    assert not strict or "warning" not in proc.stderr, proc.stderr  # a mutant may leave a parameter unused
    return ctypes.CDLL(str(library)), signatures


def build_mutants(
    out_dir: Path, mutations: dict[str, tuple[str, str, str]], files: Sequence[str]
) -> dict[str, Harness]:
    """A harness of ``files`` for each mutation (see :func:`build`), built two at a time."""

    def one(item: tuple[int, tuple[str, tuple[str, str, str]]]) -> Harness:
        index, (_, mutation) = item
        return build(out_dir / f"mutant{index}", mutation=mutation, files=files, strict=False)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(mutations, pool.map(one, enumerate(mutations.items())), strict=True))
