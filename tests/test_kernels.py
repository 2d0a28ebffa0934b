"""CUDA kernels of the multi-step ops, checked without a GPU.

Part A compiles every kernel file for every storage dtype with ``nvcc`` (skipped without it) and,
where CuPy is installed, with NVRTC exactly as the launcher does; both check the PTX entry points
against :data:`snn_parallel.ops.kernels.ABI` (names, parameter count and types).

Part B builds the float32 kernels for the CPU with ``g++`` and ``tests/kernel_harness/cuda_emu.h``
(a launch becomes a serial loop over (block, thread), exact for kernels without inter-thread
communication) and calls them through ``ctypes``: directly (scan, LTC, TSSL-BP), and through the ops'
CuPy path with its launcher redirected to the harness (every op, and the neurons), so that the
Python side of ``backend="cupy"`` runs too. Results and every gradient are compared with the
torch references. A few tests run the same comparisons on corrupted results or mutated kernel
sources to show that the checks bite.
"""

from __future__ import annotations

import ctypes
import math
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import snn_parallel as sp
import snn_parallel.ops.kernels as kernels
from snn_parallel.ops import _backend, _cupy, dsn_membrane, linear_fire, linear_scan, ltc_scan, tsslbp
from snn_parallel.ops.dsn import cupy as dsn_cupy
from snn_parallel.ops.linear_fire import cupy as linear_fire_cupy
from snn_parallel.ops.ltc import cupy as ltc_cupy
from snn_parallel.ops.scan import cupy as scan_cupy
from snn_parallel.ops.tssl import cupy as tssl_cupy
from snn_parallel.ops.tssl import reference as tssl_reference
from snn_parallel.ops.dsn.reference import dsn_membrane_reference
from snn_parallel.ops.kernels import ABI, KERNEL_FILES, spike_code
from snn_parallel.ops.linear_fire.reference import linear_fire_reference
from snn_parallel.ops.ltc.fused import ltc_backward, ltc_forward
from snn_parallel.ops.ltc.reference import ltc_scan_reference
from snn_parallel.ops.scan.reference import linear_scan_reference
from snn_parallel.ops.tssl.reference import tssl_backward_reference, tssl_forward_reference
from snn_parallel.surrogate import ATan, DoubleGaussian, ForeignSurrogate, IntegerSpike, MultiGaussian, Rect, Sigmoid, Surrogate

KERNELS_DIR = Path(kernels.__file__).parent
HARNESS_DIR = Path(__file__).parent / "kernel_harness"
DTYPES = ("float", "__half", "__nv_bfloat16")

_PTX_TYPE = {"P": "u64", "L": "u64", "I": "u32", "F": "f32"}
_CTYPE = {"P": ctypes.c_void_p, "L": ctypes.c_longlong, "I": ctypes.c_int, "F": ctypes.c_float}


def test_abi_table_covers_kernel_files():
    assert set(ABI) == set(KERNEL_FILES)
    for name in KERNEL_FILES + ("common.cuh",):
        assert kernels.source(name).strip()
    with pytest.raises(ValueError, match="unknown kernel file"):
        kernels.source("nope.cu")


@pytest.mark.parametrize(
    "name, macro, value",
    [("linear_fire.cu", "LF_CHUNK", kernels.LINEAR_FIRE_CHUNK), ("dsn.cu", "DSN_MAX_TAPS", kernels.DSN_MAX_TAPS)],
)
def test_python_constants_match_the_kernels(name, macro, value):
    assert re.search(rf"^#define {macro} (\d+)$", kernels.source(name), re.M).group(1) == str(value)


@pytest.mark.parametrize("name", ["DT_DU_MIN", "FALLBACK_WIDTH", "FALLBACK_CLAMP"])
def test_tssl_constants_match_the_reference(name):
    """tssl.cu's TSSL_<name> equals ops/tssl/reference.py's <name>."""
    match = re.search(rf"^#define TSSL_{name} (-?[\d.]+)f$", kernels.source("tssl.cu"), re.M)
    assert float(match.group(1)) == getattr(tssl_reference, name)


def test_spike_codes():
    assert spike_code(ATan(3.0, inclusive=False)) == (0, (3.0, 0.0, 0.0, 0.0), 0)
    assert spike_code(Sigmoid()) == (1, (4.0, 0.0, 0.0, 0.0), 1)
    assert spike_code(Rect(0.5)) == (2, (0.5, 0.0, 0.0, 0.0), 1)
    assert spike_code(MultiGaussian()) == (3, (0.3, 6.0, 0.15, 0.5), 1)
    assert spike_code(DoubleGaussian()) == (3, (0.5, 6.0, 0.15, 0.5), 1)
    assert spike_code(IntegerSpike(3)) == (4, (3.0, 0.0, 0.0, 0.0), 1)
    assert spike_code(ForeignSurrogate(torch.sign, inclusive=True)) is None

    class Custom(ATan):
        def derivative(self, x):
            return x

    assert spike_code(Custom()) is None  # a subclass may change the derivative


def test_cupy_source_pastes_the_header():
    text = _cupy.kernel_source("dsn.cu")
    assert "#include" not in text.replace("#include <cuda_fp16.h>", "").replace("#include <cuda_bf16.h>", "")
    assert kernels.source("common.cuh") in text and "dsn_bwd" in text
    assert _cupy.compile_options(torch.bfloat16) == ("-std=c++17", "-DSNN_DTYPE=__nv_bfloat16")


# =============================================================================================
# Part A: nvcc compiles every file for every dtype
# =============================================================================================

NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH: CUDA compile checks skipped")


def _nvcc(src: Path, dtype: str, workdir: Path, include: Path = KERNELS_DIR) -> tuple[int, str, str]:
    """``nvcc -c`` keeping the PTX; returns (returncode, stderr, ptx text)."""
    stem = f"{src.stem}.{dtype}"
    keep = workdir / stem
    keep.mkdir(parents=True, exist_ok=True)
    cmd = [
        NVCC, "-std=c++17", "-arch=sm_90", "-c", "-keep", "-keep-dir", str(keep),
        "-o", str(keep / f"{stem}.o"), f"-DSNN_DTYPE={dtype}", f"-I{include}", str(src),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    ptx_files = list(keep.glob("*.ptx"))
    ptx = ptx_files[0].read_text() if ptx_files else ""
    return proc.returncode, proc.stderr, ptx


@pytest.fixture(scope="module")
def nvcc_builds(tmp_path_factory):
    """Every (file, dtype) compiled once, two at a time."""
    workdir = tmp_path_factory.mktemp("nvcc")
    jobs = [(f, d) for f in KERNEL_FILES for d in DTYPES]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda job: _nvcc(KERNELS_DIR / job[0], job[1], workdir), jobs)
        return dict(zip(jobs, results))


def _ptx_entries(ptx: str) -> dict[str, list[str]]:
    """Entry name -> parameter types, from PTX text."""
    entries = {}
    for match in re.finditer(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S):
        entries[match.group(1)] = re.findall(r"\.param\s+\.(\w+)", match.group(2))
    return entries


@needs_nvcc
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", KERNEL_FILES)
def test_nvcc_compiles(nvcc_builds, name, dtype):
    returncode, stderr, ptx = nvcc_builds[(name, dtype)]
    assert returncode == 0, f"nvcc failed on {name} with SNN_DTYPE={dtype}:\n{stderr}"
    ours = [line for line in stderr.splitlines() if "warning" in line.lower() and ("kernels" in line or ".cu" in line)]
    assert not ours, f"nvcc warnings in {name} (SNN_DTYPE={dtype}):\n" + "\n".join(ours)
    entries = _ptx_entries(ptx)
    assert set(entries) == set(ABI[name]), f"entry points {sorted(entries)} != ABI {sorted(ABI[name])}"
    for kernel, kinds in ABI[name].items():
        assert entries[kernel] == [_PTX_TYPE[k] for k in kinds], f"{kernel}: PTX params {entries[kernel]}"


@needs_nvcc
def test_nvcc_check_catches_errors(tmp_path):
    """A type error in a kernel file fails the compile check (so the checks above can fail)."""
    broken = tmp_path / "broken.cu"
    broken.write_text(kernels.source("scan.cu") + '\nextern "C" __global__ void broken(scalar_t* x) { x = 1.0f; }\n')
    returncode, stderr, _ = _nvcc(broken, "float", tmp_path)
    assert returncode != 0 and "error" in stderr


def _nvrtc_ptx(name: str, dtype: torch.dtype) -> str:
    """PTX of kernel file ``name`` from NVRTC with the launcher's source and options, for sm_90
    (no device needed: the architecture is given)."""
    from cupy._core.core import assemble_cupy_compiler_options  # adds CuPy's and the toolkit's include dirs
    from cupy_backends.cuda.libs import nvrtc

    options = assemble_cupy_compiler_options(_cupy.compile_options(dtype) + ("-arch=compute_90",))
    program = nvrtc.createProgram(_cupy.kernel_source(name), name, (), ())
    try:
        nvrtc.compileProgram(program, options)
        ptx = nvrtc.getPTX(program)
    except nvrtc.NVRTCError:
        raise AssertionError(f"NVRTC failed on {name} ({dtype}):\n{nvrtc.getProgramLog(program)}") from None
    finally:
        nvrtc.destroyProgram(program)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@pytest.mark.parametrize("dtype", list(_cupy.KERNEL_DTYPES))
@pytest.mark.parametrize("name", KERNEL_FILES)
def test_nvrtc_compiles_the_launched_source(name, dtype):
    """The text and options that ``backend='cupy'`` compiles, through CuPy's NVRTC (needs CuPy, not a GPU)."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="CuPy not installed: NVRTC compile check skipped")
    entries = _ptx_entries(_nvrtc_ptx(name, dtype))
    assert set(entries) == set(ABI[name])
    for kernel, kinds in ABI[name].items():
        assert entries[kernel] == [_PTX_TYPE[k] for k in kinds], f"{kernel}: PTX params {entries[kernel]}"


# =============================================================================================
# Part B: the float32 kernels on the CPU (g++ + cuda_emu.h) against the torch references
# =============================================================================================

GXX = shutil.which("g++")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ not on PATH: CPU kernel emulation skipped")


def _build_emu(kernel_dir: Path, out: Path, *, strict: bool = True) -> ctypes.CDLL:
    cmd = [
        GXX, "-std=c++17", "-O2", "-shared", "-fPIC", "-Wall", "-Wextra", f"-I{kernel_dir}", f"-I{HARNESS_DIR}",
        "-include", "cuda_emu.h", "-x", "c++", str(HARNESS_DIR / "launch.cpp"), "-o", str(out),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"g++ failed:\n{proc.stderr}"
    assert not strict or "warning" not in proc.stderr, proc.stderr
    lib = ctypes.CDLL(str(out))
    for kernel, kinds in {k: v for table in ABI.values() for k, v in table.items()}.items():
        fn = getattr(lib, f"run_{kernel}")
        fn.argtypes = [ctypes.c_uint, ctypes.c_uint] + [_CTYPE[k] for k in kinds]
        fn.restype = None
    return lib


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    if GXX is None:
        pytest.skip("g++ not on PATH: CPU kernel emulation skipped")
    return _build_emu(KERNELS_DIR, tmp_path_factory.mktemp("emu") / "libsnn_kernels_emu.so")


def _mutated_emu(tmp_path: Path, name: str, old: str, new: str) -> ctypes.CDLL:
    """The harness built from a copy of the kernels with one source edit."""
    kdir = tmp_path / "kernels"
    shutil.copytree(KERNELS_DIR, kdir, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    text = (kdir / name).read_text()
    assert text.count(old) == 1, f"mutation target {old!r} not found once in {name}"
    (kdir / name).write_text(text.replace(old, new))
    return _build_emu(kdir, tmp_path / "libmutant.so", strict=False)  # a mutant may leave a parameter unused


def _ptr(t: torch.Tensor) -> ctypes.c_void_p:
    assert t.is_contiguous() and t.dtype in (torch.float32, torch.complex64)
    return ctypes.c_void_p(t.data_ptr())


def _blocks(items: int, block: int) -> int:
    return max(1, math.ceil(items / block))


# ---- scan -----------------------------------------------------------------------------------


def emu_scan(lib, a, b, h0, L, reverse, *, block=256, grid=None, corrupt_carry=False):
    """h from the three scan launches; a [T, N] or [N], b [T, N], h0 [N] (float32 or complex64)."""
    a, b, h0 = a.contiguous(), b.contiguous(), h0.contiguous()
    T, N = b.shape
    K = math.ceil(T / L)
    prefix = "c" if b.is_complex() else ""
    chunk_a, chunk_h, carry = (torch.empty(K, N, dtype=b.dtype) for _ in range(3))
    h = torch.empty_like(b)
    varying, rev = int(a.dim() == 2), int(reverse)
    g = grid or _blocks(K * N, block)
    getattr(lib, f"run_{prefix}scan_reduce")(g, block, _ptr(a), _ptr(b), _ptr(chunk_a), _ptr(chunk_h), T, N, L, varying, rev)
    getattr(lib, f"run_{prefix}scan_carry")(grid or _blocks(N, block), block, _ptr(chunk_a), _ptr(chunk_h), _ptr(h0), _ptr(carry), K, N, rev)
    if corrupt_carry:
        carry[K // 2, N // 2] += 1
    getattr(lib, f"run_{prefix}scan_apply")(g, block, _ptr(a), _ptr(b), _ptr(carry), _ptr(h), T, N, L, varying, rev)
    return h


def reverse_scan_reference(a, b, h0):
    """h_t = a_t h_{t+1} + b_t from h_T = h0."""
    h, out = h0, torch.empty_like(b)
    for t in range(b.shape[0] - 1, -1, -1):
        h = (a[t] if a.dim() == 2 else a) * h + b[t]
        out[t] = h
    return out


def _scan_inputs(T, N, varying, complex_, seed):
    gen = torch.Generator().manual_seed(seed)
    shape = (T, N) if varying else (N,)
    radius = 0.5 + 0.5 * torch.rand(shape, generator=gen)
    if complex_:
        angle = (2 * torch.rand(shape, generator=gen) - 1) * math.pi
        a = torch.polar(radius, angle)
        b = torch.randn(T, N, dtype=torch.complex64, generator=gen)
        h0 = torch.randn(N, dtype=torch.complex64, generator=gen)
    else:
        a = radius * torch.where(torch.rand(shape, generator=gen) < 0.2, -1.0, 1.0)
        b, h0 = torch.randn(T, N, generator=gen), torch.randn(N, generator=gen)
    return a, b, h0


def _assert_close(actual, expected, rtol=1e-5, atol=1e-5, what=""):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol, msg=lambda m: f"{what}: {m}")


def _chunks(T):
    return sorted({1, 3, 16, T})


SCAN_CASES = [(T, L) for T in (1, 2, 7, 64, 257) for L in _chunks(T)]


@needs_gxx
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("T,L", SCAN_CASES)
def test_scan_matches_reference(emu, T, L, complex_):
    for N in (1, 5, 33):
        for varying in (False, True):
            for reverse in (False, True):
                a, b, h0 = _scan_inputs(T, N, varying, complex_, seed=T * 1000 + N)
                expected = reverse_scan_reference(a, b, h0) if reverse else linear_scan_reference(a, b, h0)[0]
                got = emu_scan(emu, a, b, h0, L, reverse)
                _assert_close(got, expected, what=f"N={N} varying={varying} reverse={reverse}")


@needs_gxx
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
def test_scan_any_grid_covers_all_items(emu, complex_):
    """Grid-stride loops: a grid far smaller than the item count gives the same result."""
    a, b, h0 = _scan_inputs(50, 7, True, complex_, seed=1)
    expected = emu_scan(emu, a, b, h0, 4, False)
    for grid, block in ((1, 1), (2, 3), (5, 256)):
        torch.testing.assert_close(emu_scan(emu, a, b, h0, 4, False, block=block, grid=grid), expected, rtol=0, atol=0)


def emu_scan_backward(lib, decay, h, h0, grad_h, grad_last, L):
    """Gradients of (a, b, h0), composed exactly as ``_LinearScan.backward`` does, with the kernels."""
    varying = decay.dim() == 2
    d = grad_h.clone()
    d[-1] += grad_last
    g = torch.empty_like(d)
    g[-1] = d[-1]
    if d.shape[0] > 1:
        reverse_decay = (decay[1:] if varying else decay).conj().resolve_conj()
        g[:-1] = emu_scan(lib, reverse_decay, d[:-1], d[-1], L, reverse=True)
    grad_h0 = (decay[0] if varying else decay).conj() * g[0]
    if varying:
        grad_a = torch.cat([(g[0] * h0.conj())[None], g[1:] * h[:-1].conj()])
    else:
        grad_a = (g[1:] * h[:-1].conj()).sum(0) + g[0] * h0.conj()
    return grad_a, g, grad_h0


@needs_gxx
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("varying", [False, True], ids=["invariant", "varying"])
@pytest.mark.parametrize("T,L", [(1, 1), (7, 3), (64, 1), (64, 8), (64, 64), (257, 16)])
def test_scan_backward_matches_autograd(emu, T, L, varying, complex_):
    N = 5
    a, b, h0 = _scan_inputs(T, N, varying, complex_, seed=7 * T + L)
    gen = torch.Generator().manual_seed(T)
    grad_h = torch.randn(T, N, dtype=b.dtype, generator=gen)
    grad_last = torch.randn(N, dtype=b.dtype, generator=gen)
    leaves = [x.clone().requires_grad_(True) for x in (a, b, h0)]
    h_ref, last_ref = linear_scan_reference(*leaves)
    expected = torch.autograd.grad((h_ref, last_ref), leaves, (grad_h, grad_last))
    h = emu_scan(emu, a, b, h0, L, False)
    got = emu_scan_backward(emu, a, h, h0, grad_h, grad_last, L)
    for name, x, y in zip(("a", "b", "h0"), got, expected):
        _assert_close(x, y, rtol=1e-4, atol=1e-4, what=f"grad {name}")


@needs_gxx
def test_scan_check_bites_on_corrupted_carry(emu):
    """The same comparison fails when one carry is wrong; the chunk length does not matter."""
    a, b, h0 = _scan_inputs(64, 5, True, False, seed=3)
    expected = linear_scan_reference(a, b, h0)[0]
    for L in (1, 5, 64):
        _assert_close(emu_scan(emu, a, b, h0, L, False), expected)
    with pytest.raises(AssertionError):
        _assert_close(emu_scan(emu, a, b, h0, 8, False, corrupt_carry=True), expected)


@needs_gxx
def test_scan_check_bites_on_mutated_kernel(tmp_path):
    """A carry pass that walks the chunks forwards in reverse mode is caught."""
    lib = _mutated_emu(tmp_path, "scan.cu", "(reverse ? K - 1 - j : j) * N + n", "j * N + n")
    a, b, h0 = _scan_inputs(64, 5, True, False, seed=4)
    _assert_close(emu_scan(lib, a, b, h0, 8, False), linear_scan_reference(a, b, h0)[0])  # forward unaffected
    with pytest.raises(AssertionError):
        _assert_close(emu_scan(lib, a, b, h0, 8, True), reverse_scan_reference(a, b, h0))


# ---- LTC ------------------------------------------------------------------------------------

B0, BETA_A = 0.1, 1.8
SURROGATES = {cls.name: cls for cls in (ATan, Sigmoid, Rect, MultiGaussian, DoubleGaussian)}


def _discontinuities(spike_fn: Surrogate) -> list[float]:
    """Where ``spike_fn``'s forward or surrogate derivative jumps (inputs are kept away from these)."""
    if isinstance(spike_fn, IntegerSpike):
        return [k + 0.5 for k in range(spike_fn.levels)] + [0.0, float(spike_fn.levels)]
    return [0.0] + ([spike_fn.width / 2, -spike_fn.width / 2] if isinstance(spike_fn, Rect) else [])


def _clear_of(x: torch.Tensor, spike_fn: Surrogate, margin: float = 1e-4) -> bool:
    """Whether every value of ``x`` (the spike function's argument, float64) is ``margin`` away from a jump,
    so that float32 kernels take the same branch as the float64 reference."""
    return all(bool(((x - point).abs() > margin).all()) for point in _discontinuities(spike_fn))


def _spike_args(spike_fn: Surrogate) -> tuple:
    kind, params, inclusive = spike_code(spike_fn)
    return kind, *params, inclusive


def emu_ltc_fwd(lib, current, rate, retention, u0, s0, b_init, surrogate, *, block=256, b0=B0, beta_a=BETA_A):
    T, N = current.shape
    spikes, membrane, trace = (torch.empty(T, N) for _ in range(3))
    args = [_ptr(x.contiguous()) for x in (current, rate, retention, u0, s0, b_init, spikes, membrane, trace)]
    lib.run_ltc_fwd(_blocks(N, block), block, *args, b0, beta_a, *_spike_args(surrogate), T, N)
    return spikes, membrane, trace


def emu_ltc_bwd(lib, grads, inputs, outputs, surrogate, *, block=256):
    current = inputs[0]
    T, N = current.shape
    grad_seq = [torch.empty(T, N) for _ in range(3)]
    grad_state = [torch.empty(N) for _ in range(3)]
    ptrs = [_ptr(x.contiguous()) for x in (*grads, *inputs, *outputs, *grad_seq, *grad_state)]
    lib.run_ltc_bwd(_blocks(N, block), block, *ptrs, B0, BETA_A, *_spike_args(surrogate)[:-1], T, N)
    return (*grad_seq, *grad_state)


def _ltc_inputs(T, N, seed, surrogate):
    """Inputs whose float64 membranes stay clear of the threshold (and of the kinks of the rect
    surrogate), so float32 spikes are exact."""
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        current = 1.5 * torch.randn(T, N, generator=gen)
        rate = torch.sigmoid(torch.randn(T, N, generator=gen))
        retention = torch.sigmoid(torch.randn(T, N, generator=gen) + 1)
        u0 = 0.5 * torch.randn(N, generator=gen)
        s0 = (torch.rand(N, generator=gen) < 0.3).float()
        b_init = 0.5 * torch.rand(N, generator=gen)
        inputs = (current, rate, retention, u0, s0, b_init)
        with torch.no_grad():
            _, v, _, _, _ = ltc_scan_reference(*(x.double() for x in inputs), B0, BETA_A, surrogate)
            _, _, trace = ltc_forward(*(x.double() for x in inputs), B0, BETA_A, surrogate)
        if _clear_of(v - (B0 + BETA_A * trace), surrogate):
            return inputs
    raise RuntimeError("could not draw LTC inputs away from the threshold")


LTC_CASES = [(name, inclusive) for name in SURROGATES for inclusive in (True, False)]


@needs_gxx
@pytest.mark.parametrize("name,inclusive", LTC_CASES)
def test_ltc_forward_matches_reference(emu, name, inclusive):
    surrogate = SURROGATES[name](inclusive=inclusive)
    inputs = _ltc_inputs(40, 33, seed=len(name), surrogate=surrogate)
    spikes, membrane, trace = emu_ltc_fwd(emu, *inputs, surrogate)
    ref_spikes, ref_membrane, u_last, s_last, b_last = ltc_scan_reference(*inputs, B0, BETA_A, surrogate)
    assert torch.equal(spikes, ref_spikes), "spikes differ"
    assert 0 < spikes.mean() < 1
    _assert_close(membrane, ref_membrane, what="membrane")
    _assert_close(trace, ltc_forward(*inputs, B0, BETA_A, surrogate)[2], what="trace")
    _assert_close(membrane[-1] * (1 - spikes[-1]), u_last, what="u_last")
    _assert_close(trace[-1], b_last, what="b_last")
    assert torch.equal(spikes[-1], s_last)


@needs_gxx
@pytest.mark.parametrize("inclusive", [True, False])
def test_ltc_firing_rule_at_threshold(emu, inclusive):
    """v - theta == 0 exactly: fires only under the inclusive rule, as the reference does."""
    one, zero = torch.ones(1, 1), torch.zeros(1)
    inputs = (0.5 * one, one, 0.5 * one, zero, zero, zero)  # v = 0.5 = theta = b0
    surrogate = ATan(inclusive=inclusive)
    spikes, _, _ = emu_ltc_fwd(emu, *inputs, surrogate, b0=0.5)
    ref = ltc_scan_reference(*inputs, 0.5, BETA_A, surrogate)[0]
    assert spikes.item() == ref.item() == float(inclusive)


@needs_gxx
@pytest.mark.parametrize("name,inclusive", LTC_CASES)
def test_ltc_backward_matches_autograd(emu, name, inclusive):
    T, N = 40, 33
    surrogate = SURROGATES[name](inclusive=inclusive)
    inputs = _ltc_inputs(T, N, seed=len(name) + 1, surrogate=surrogate)
    gen = torch.Generator().manual_seed(11)
    grads = (torch.randn(T, N, generator=gen), torch.randn(T, N, generator=gen)) + tuple(
        torch.randn(N, generator=gen) for _ in range(3)
    )
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    expected = torch.autograd.grad(ltc_scan_reference(*leaves, B0, BETA_A, surrogate), leaves, grads)
    outputs = emu_ltc_fwd(emu, *inputs, surrogate)
    got = emu_ltc_bwd(emu, grads, inputs, outputs, surrogate)
    names = ("current", "rate", "retention", "u0", "s0", "b_init")
    scale = max(e.abs().max().item() for e in expected)
    for n, x, y in zip(names, got, expected):
        _assert_close(x, y, rtol=1e-5, atol=1e-5 * scale, what=f"grad {n}")
    # and the fused torch backward, which spells the same equations
    fused = ltc_backward(grads[0], grads[1], grads[2:], (*inputs, *outputs), B0, BETA_A, surrogate)
    for n, x, y in zip(names, got, fused):
        _assert_close(x, y, rtol=1e-5, atol=1e-6 * scale, what=f"fused grad {n}")


@needs_gxx
def test_ltc_check_bites_on_mutated_kernel(tmp_path):
    """Dropping the (1 - rho) factor of the spike-gradient carry is caught by the backward check."""
    lib = _mutated_emu(tmp_path, "ltc.cu", "carry_s = gb - carry_b;", "carry_s = gb;")
    surrogate = ATan()
    inputs = _ltc_inputs(20, 8, seed=5, surrogate=surrogate)
    grads = tuple(torch.ones_like(x) for x in inputs[:2]) + tuple(torch.ones(8) for _ in range(3))
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    expected = torch.autograd.grad(ltc_scan_reference(*leaves, B0, BETA_A, surrogate), leaves, grads)
    outputs = emu_ltc_fwd(lib, *inputs, surrogate)
    assert torch.equal(outputs[0], ltc_scan_reference(*inputs, B0, BETA_A, surrogate)[0])  # forward unaffected
    got = emu_ltc_bwd(lib, grads, inputs, outputs, surrogate)
    with pytest.raises(AssertionError):
        for x, y in zip(got, expected):
            _assert_close(x, y)


# ---- TSSL-BP ---------------------------------------------------------------------------------

TSSL = {"v_threshold": 1.0, "tau_m": 5.0, "tau_s": 3.0}


def emu_tssl_fwd(lib, current, u0, a0, inclusive, *, v_threshold=TSSL["v_threshold"], block=256, grid=None):
    """``(psp, spikes, membrane, delta_u, u_last, a_last)`` from ``tssl_fwd``; ``current`` [T, N] float32."""
    T, N = current.shape
    outputs = [torch.empty(T, N) for _ in range(4)] + [torch.empty(N) for _ in range(2)]
    ptrs = [_ptr(x) for x in (current, u0, a0, *outputs)]
    lib.run_tssl_fwd(grid or _blocks(N, block), block, *ptrs, v_threshold, TSSL["tau_m"], TSSL["tau_s"], int(inclusive), T, N)
    return tuple(outputs)


def emu_tssl_bwd(lib, grad_psp, psp, spikes, membrane, delta_u, *, v_threshold=TSSL["v_threshold"], at_spikes=True,
                 block=256, grid=None):
    """``grad_current`` from ``tssl_bwd``."""
    T, N = grad_psp.shape
    grad = torch.empty(T, N)
    ptrs = [_ptr(x) for x in (grad_psp, spikes, membrane, delta_u, psp, grad)]
    lib.run_tssl_bwd(grid or _blocks(N, block), block, *ptrs, v_threshold, TSSL["tau_m"], TSSL["tau_s"], int(at_spikes), T, N)
    return grad


def _tssl_inputs(T, N, seed, inclusive=False):
    """float32 ``(current [T, N], u0, a0)`` whose float64 membranes stay clear of the threshold (so float32
    spikes are exact) and whose neurons fire, stay silent (the fallback) and rise while quiet but recently active."""
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        current = 1.2 * torch.randn(T, N, generator=gen) + 0.4
        u0 = 0.9 * torch.rand(N, generator=gen)
        a0 = 0.5 * torch.rand(N, generator=gen)
        psp, spikes, membrane, delta_u, _, _ = tssl_forward_reference(*(x.double() for x in (current, u0, a0)), **TSSL, inclusive=inclusive)
        silent = psp < 1 / (4 * TSSL["tau_s"])
        branches = spikes.any() and silent.any() and (~silent & (spikes == 0) & (delta_u > 0)).any()
        if branches and ((membrane - TSSL["v_threshold"]).abs() > 1e-4).all():
            return current, u0, a0
    raise RuntimeError("could not draw TSSL-BP inputs that take every branch away from the threshold")


def _tssl_backward_expected(grad_psp, psp, spikes, membrane, delta_u, v_threshold=TSSL["v_threshold"], at_spikes=True):
    """The step-by-step reference backward in float64 on the kernel forward's (float32) results."""
    wide = (x.double() for x in (grad_psp, spikes, membrane, delta_u, psp))
    return tssl_backward_reference(*wide, v_threshold, TSSL["tau_m"], TSSL["tau_s"], at_spikes)


TSSL_NAMES = ("psp", "spikes", "membrane", "delta_u", "u_last", "a_last")


@needs_gxx
@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5, 10])
def test_tssl_forward_and_backward_match_reference(emu, T, inclusive):
    """Forward, and the backward of both revisions of dt/du (at spikes only, or wherever the membrane rose)."""
    current, u0, a0 = _tssl_inputs(T, 37, seed=T, inclusive=inclusive)
    got = emu_tssl_fwd(emu, current, u0, a0, inclusive)
    ref = tssl_forward_reference(current, u0, a0, **TSSL, inclusive=inclusive)
    assert torch.equal(got[1], ref[1]), "spikes differ"
    for name, x, y in zip(TSSL_NAMES, got, ref, strict=True):
        _assert_close(x, y, rtol=1e-6, atol=1e-6, what=name)
    grad_psp = torch.randn(T, 37, generator=torch.Generator().manual_seed(T))
    for at_spikes in (True, False):
        expected = _tssl_backward_expected(grad_psp, *got[:4], at_spikes=at_spikes)
        grad = emu_tssl_bwd(emu, grad_psp, *got[:4], at_spikes=at_spikes)
        _assert_close(grad.double(), expected, rtol=1e-5, atol=1e-5 * expected.abs().max().item(), what=f"grad current ({at_spikes=})")


@needs_gxx
@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("v_threshold", [1.0, -1.0])
def test_tssl_edge_cases_match_reference(emu, v_threshold, inclusive):
    """Lanes that spike on delta_u = +0 (dt/du clamps to -8) and on delta_u < 0 (dt/du = 0), on a tiny increment
    (clamped), reach the threshold exactly, and stay silent far below it (the fallback's clamp); with V_th = -1,
    a lane spikes on delta_u = -0 (-1/du = +inf, so dt/du = 0)."""
    current = torch.tensor([
        [0.5, 0.1, 0.2015, 1.0, -5.0, -0.0],
        [0.3, 0.0, 0.9, 0.0, -5.0, -0.0],
        [1.5, 2.0, 0.1, 1.0, 0.1, 1.2],
    ])  # fmt: skip
    u0 = torch.tensor([2.5, 3.0, 0.999, 0.0, 0.0, 0.0])
    a0 = torch.zeros(6)
    got = emu_tssl_fwd(emu, current, u0, a0, inclusive, v_threshold=v_threshold)
    ref = tssl_forward_reference(current, u0, a0, v_threshold, TSSL["tau_m"], TSSL["tau_s"], inclusive)
    assert torch.equal(got[1], ref[1]), "spikes differ"
    for name, x, y in zip(TSSL_NAMES, got, ref, strict=True):
        assert torch.equal(x, y), name
    if v_threshold == 1.0:
        assert got[1][0].tolist() == [1, 1, 1, float(inclusive), 0, 0]
        assert got[3][0, 0] == 0 and got[3][0, 1] < 0 and 0 < got[3][0, 2] < 1 / 8
    else:
        assert got[1][0, 5] == 1 and got[3][0, 5] == 0 and math.copysign(1, got[3][0, 5]) < 0
    grad_psp = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))
    for at_spikes in (True, False):
        expected = _tssl_backward_expected(grad_psp, *got[:4], v_threshold=v_threshold, at_spikes=at_spikes)
        grad = emu_tssl_bwd(emu, grad_psp, *got[:4], v_threshold=v_threshold, at_spikes=at_spikes)
        _assert_close(grad.double(), expected, rtol=1e-5, atol=1e-6, what=f"grad current ({at_spikes=})")


@needs_gxx
def test_tssl_any_grid_covers_all_items(emu):
    """Grid-stride loops: grids far smaller than the lane count give the same results."""
    current, u0, a0 = _tssl_inputs(10, 37, seed=3)
    grad_psp = torch.randn(10, 37, generator=torch.Generator().manual_seed(3))
    results = []
    for grid, block in ((None, 256), (1, 1), (2, 3), (5, 4)):
        forward = emu_tssl_fwd(emu, current, u0, a0, False, block=block, grid=grid)
        results.append((*forward, emu_tssl_bwd(emu, grad_psp, *forward[:4], block=block, grid=grid)))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert torch.equal(a, b)


# =============================================================================================
# Part B, continued: the ops' CuPy path on the CPU, its launcher redirected to the harness
# =============================================================================================

_CUPY_PATHS = (scan_cupy, linear_fire_cupy, dsn_cupy, ltc_cupy, tssl_cupy)


@pytest.fixture
def emulate_cupy(monkeypatch, emu):
    """``use(lib=emu, block=256, grid=None)``: run ``backend='cupy'`` on CPU float32 tensors through
    ``lib``; ``grid`` fixes the number of blocks; the scan chunks as on a GPU with 2 multiprocessors."""

    def use(lib=emu, *, block=256, grid=None):
        def launch(name, kernel, dtype, items, *args):
            assert dtype == torch.float32, "the harness builds the float32 kernels"
            kinds = ABI[name][kernel]
            assert len(args) == len(kinds), f"{kernel}: {len(args)} arguments for {len(kinds)} parameters"
            converted = []
            for kind, value in zip(kinds, args):
                if kind == "P" and value is not None:
                    assert isinstance(value, torch.Tensor) and value.device.type == "cpu" and value.is_contiguous()
                    assert value.dtype in (torch.float32, torch.complex64), f"{kernel}: {value.dtype} argument"
                    value = value.data_ptr()
                converted.append(value)
            getattr(lib, f"run_{kernel}")(grid or _blocks(items, block), block, *converted)

        for module in _CUPY_PATHS:
            monkeypatch.setattr(module, "launch", launch)
        monkeypatch.setattr(_backend, "_cupy_gap", lambda like, unsupported: unsupported())
        monkeypatch.setattr(scan_cupy, "_processors", lambda device: 2)

    return use


def _grads(outputs, inputs, seed=0):
    """Gradients of a random weighting of ``outputs`` (real or complex) with respect to ``inputs``."""
    gen = torch.Generator().manual_seed(seed)
    wide = [torch.complex128 if o.is_complex() else torch.float64 for o in outputs]
    weights = [torch.randn(o.shape, dtype=w, generator=gen).to(o.dtype) for o, w in zip(outputs, wide)]
    return torch.autograd.grad(outputs, inputs, weights)


def _compare(got, expected, names, rtol=2e-5):
    """``got`` (float32 path) against ``expected`` (float64 reference), relative to each tensor's size."""
    for name, x, y in zip(names, got, expected, strict=True):
        scale = y.abs().max().item() if y.numel() else 0.0
        _assert_close(x.to(y.dtype), y, rtol=rtol, atol=rtol * max(scale, 1e-3), what=name)


def _leaves(*tensors, dtype=None):
    return [t.detach().to(dtype or t.dtype).requires_grad_() for t in tensors]


# ---- scan through the CuPy path ---------------------------------------------------------------


@needs_gxx
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("varying", [False, True], ids=["invariant", "varying"])
@pytest.mark.parametrize("T,chunk", [(1, None), (2, 1), (33, 4), (33, None), (100, 7)])
def test_scan_cupy_path_matches_reference(emulate_cupy, T, chunk, varying, complex_):
    """linear_scan(backend='cupy'), forward and gradients, with chunk lengths that do and do not divide T
    (``None``: the GPU's choice, here for 2 multiprocessors)."""
    emulate_cupy()
    a, b, h0 = _scan_inputs(T, 6, varying, complex_, seed=T)
    a, b, h0 = a.reshape(*a.shape[:-1], 2, 3), b.reshape(T, 2, 3), h0.reshape(2, 3)
    if not varying:
        a = a[0]  # per-channel decay [3], broadcast over the batch
    if not complex_:
        a = a.abs()  # a log decay must be real and positive
    for log_decay in (False, True) if not complex_ else (False,):
        decay = a.log() if log_decay else a
        got_in, ref_in = _leaves(decay, b, h0), _leaves(decay, b, h0, dtype=torch.complex128 if complex_ else torch.float64)
        got = linear_scan(*got_in, log_decay=log_decay, chunk=chunk, backend="cupy")
        ref_a = ref_in[0].exp() if log_decay else ref_in[0]
        ref = linear_scan_reference(ref_a.expand_as(ref_in[1]) if varying else ref_a, *ref_in[1:])
        _compare(got, ref, ("h", "h_last"))
        _compare(_grads(got, got_in), _grads(ref, ref_in), ("grad a", "grad b", "grad h0"), rtol=1e-4)


def test_gpu_chunk():
    assert scan_cupy.gpu_chunk(1000, 132 * 256, 132) == 1000  # wide: one pass
    length = scan_cupy.gpu_chunk(65536, 256, 132)
    chunks = -(-65536 // length)
    assert abs(chunks * 256 / (132 * 1024) - 1) < 0.01  # narrow: (chunk, lane) items fill the device
    assert scan_cupy.gpu_chunk(3, 1, 132) == 1  # never more chunks than steps


# ---- linear_fire (PRF, decoupled LIF) ---------------------------------------------------------


def _fire_case(T, shape, complex_, reset, spike_fn, seed, v_threshold=0.5):
    """float32 inputs of linear_fire whose float64 membranes stay clear of the spike function's jumps."""
    C = shape[1]
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        decay = 0.5 + 0.45 * torch.rand(C, 1, 1, generator=gen)[: C, :, :].reshape(C, *[1] * (len(shape) - 2))
        h0 = torch.randn(shape, generator=gen)
        if complex_:
            decay = decay * torch.exp(1j * 2 * torch.rand(decay.shape, generator=gen))
            h0 = torch.complex(h0, torch.randn(shape, generator=gen))
        inputs = (
            torch.randn(T, *shape, generator=gen),
            decay,
            0.5 + torch.rand(decay.shape, generator=gen),
            h0,
            0.3 * torch.rand(shape, generator=gen),
        )
        rho = 0.3 + 0.6 * torch.rand(decay.shape, generator=gen) if reset else None
        with torch.no_grad():
            wide = [t.to(torch.complex128 if t.is_complex() else torch.float64) for t in inputs]
            _, m, _, _ = linear_fire_reference(*wide, spike_fn, v_threshold, None if rho is None else rho.double())
        if _clear_of(m - v_threshold, spike_fn):
            return inputs, rho
    raise RuntimeError("could not draw linear_fire inputs away from the threshold")


FIRE_SHAPES = [(3, 5), (2, 3, 2)]


@needs_gxx
@pytest.mark.parametrize("spike_name", ["atan", "rect", "multi_gaussian"])
@pytest.mark.parametrize("reset", [False, True], ids=["no_reset", "reset"])
@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("shape", FIRE_SHAPES, ids=["BxC", "BxCxS"])
@pytest.mark.parametrize("T", [1, 2, 31, 32, 33, 97])
def test_linear_fire_cupy_path_matches_reference(emulate_cupy, T, shape, complex_, reset, spike_name):
    """Spikes, membrane, final state, bias and the gradients of x, decay, scale and h0 (T around the checkpoint chunk)."""
    emulate_cupy()
    spike_fn = SURROGATES[spike_name](inclusive=T % 2 == 0)
    inputs, rho = _fire_case(T, shape, complex_, reset, spike_fn, seed=T + len(shape))
    bias0 = inputs[4]
    got_in = _leaves(*inputs[:4])
    ref_in = [t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_() for t in inputs[:4]]
    got = linear_fire(*got_in, bias0, spike_fn, 0.5, rho, backend="cupy")
    ref = linear_fire_reference(*ref_in, bias0.double(), spike_fn, 0.5, None if rho is None else rho.double())
    assert torch.equal(got[0], ref[0].float()), "spikes differ"
    assert got[2].dtype == (torch.complex64 if complex_ else torch.float32) and got[3].dtype == torch.float32
    _compare(got, ref, ("spikes", "membrane", "h_last", "bias_next"))
    names = ("grad x", "grad decay", "grad scale", "grad h0")
    _compare(_grads(got[:3], got_in), _grads(ref[:3], ref_in), names, rtol=1e-4)


@needs_gxx
def test_linear_fire_cupy_path_any_grid_and_non_contiguous_input(emulate_cupy):
    """Grid-stride loops: one block of 3 threads gives the results of a full grid; a transposed input works."""
    inputs, rho = _fire_case(40, (4, 3), True, True, ATan(), seed=1)
    x = inputs[0].transpose(1, 2).contiguous().transpose(1, 2)  # same values, non-contiguous
    assert not x.is_contiguous()
    results = []
    for grid, block in ((None, 256), (1, 3)):
        emulate_cupy(grid=grid, block=block)
        leaves = _leaves(x, *inputs[1:4])
        out = linear_fire(*leaves, inputs[4], ATan(), 0.5, rho, backend="cupy")
        results.append((*out, *_grads(out[:3], leaves)))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_gxx
def test_linear_fire_check_bites_on_mutated_kernel(tmp_path, emulate_cupy):
    """A backward that carries the filter gradient with a instead of conj(a) is caught (complex filters only)."""
    emulate_cupy(_mutated_emu(tmp_path, "linear_fire.cu", "carry = mul(back, g);", "carry = mul(a, g);"))
    for complex_ in (False, True):
        inputs, rho = _fire_case(20, (2, 3), complex_, False, ATan(), seed=2)
        got_in = _leaves(*inputs[:4])
        ref_in = [t.detach().to(torch.complex128 if t.is_complex() else torch.float64).requires_grad_() for t in inputs[:4]]
        got = linear_fire(*got_in, inputs[4], ATan(), 0.5, rho, backend="cupy")
        ref = linear_fire_reference(*ref_in, inputs[4].double(), ATan(), 0.5, rho)
        _compare(got, ref, ("spikes", "membrane", "h_last", "bias_next"))  # forward unaffected
        check = lambda: _compare(_grads(got[:3], got_in), _grads(ref[:3], ref_in), ("x", "decay", "scale", "h0"), rtol=1e-4)  # noqa: E731
        if complex_:
            with pytest.raises(AssertionError):
                check()
        else:
            check()


# ---- DSN ----------------------------------------------------------------------------------------


def _dsn_case(T, taps, shape, spike_fn, shift, seed, tau=0.25):
    """float32 DSN inputs whose float64 membranes stay clear of the spike function's jumps."""
    C = shape[1]
    for attempt in range(100):
        gen = torch.Generator().manual_seed(seed * 100 + attempt)
        spatial = [1] * (len(shape) - 2)
        inputs = (
            2 * torch.rand(T, *shape, generator=gen),
            2 * torch.rand(taps - 1, *shape, generator=gen),
            torch.randn(taps, C, *spatial, generator=gen) / taps**0.5,
            torch.randn(C, *spatial, generator=gen) + 1,
            2 * torch.rand(shape, generator=gen),
        )
        with torch.no_grad():
            h, _ = dsn_membrane_reference(*(t.double() for t in inputs[:4]), tau, inputs[4].double())
        if _clear_of(h - shift, spike_fn):
            return inputs
    raise RuntimeError("could not draw DSN inputs away from the threshold")


def _dsn_reference(x, history, weight, bias, h0, spike_fn, shift, tau=0.25):
    h, last = dsn_membrane_reference(x, history, weight, bias, tau, h0)
    return spike_fn(h - shift), h, last


@needs_gxx
@pytest.mark.parametrize("spike", ["binary", "integer"])
@pytest.mark.parametrize("shape", FIRE_SHAPES, ids=["BxC", "BxCxS"])
@pytest.mark.parametrize("taps", [1, 2, 4, kernels.DSN_MAX_TAPS])
@pytest.mark.parametrize("T", [1, 2, 3, 9, 50])
def test_dsn_cupy_path_matches_reference(emulate_cupy, T, taps, shape, spike):
    """Spikes, membrane and the gradients of x, history, weight, bias and h0, incl. T < k - 1."""
    emulate_cupy()
    spike_fn, shift = (IntegerSpike(3), 0.0) if spike == "integer" else (Sigmoid(inclusive=T % 2 == 1), 1.0)
    inputs = _dsn_case(T, taps, shape, spike_fn, shift, seed=T * 10 + taps)
    got_in, ref_in = _leaves(*inputs), _leaves(*inputs, dtype=torch.float64)
    got = dsn_membrane(*got_in[:4], 0.25, got_in[4], spike_fn, shift, backend="cupy")
    ref = _dsn_reference(*ref_in, spike_fn, shift)
    assert torch.equal(got[0], ref[0].float()), "spikes differ"
    _compare(got, ref, ("spikes", "h", "h_last"))
    names = ("grad x", "grad history", "grad weight", "grad bias", "grad h0")
    _compare(_grads(got, got_in), _grads(ref, ref_in), names, rtol=1e-4)


@needs_gxx
def test_dsn_cupy_path_any_grid(emulate_cupy):
    inputs = _dsn_case(30, 4, (3, 5), ATan(), 1.0, seed=3)
    results = []
    for grid, block in ((None, 256), (2, 4)):
        emulate_cupy(grid=grid, block=block)
        leaves = _leaves(*inputs)
        out = dsn_membrane(*leaves[:4], 0.25, leaves[4], ATan(), 1.0, backend="cupy")
        results.append((*out, *_grads(out, leaves)))
    for a, b in zip(*results):
        assert torch.equal(a, b)


@needs_gxx
def test_dsn_check_bites_on_mutated_kernel(tmp_path, emulate_cupy):
    """A backward whose direct input path uses alpha instead of 1 - alpha is caught; the forward is unaffected."""
    emulate_cupy(_mutated_emu(tmp_path, "dsn.cu", "pending[j] += g * (-expm1f(log_a));", "pending[j] += g * expf(log_a);"))
    inputs = _dsn_case(20, 4, (2, 3), ATan(), 1.0, seed=4)
    got_in, ref_in = _leaves(*inputs), _leaves(*inputs, dtype=torch.float64)
    got = dsn_membrane(*got_in[:4], 0.25, got_in[4], ATan(), 1.0, backend="cupy")
    ref = _dsn_reference(*ref_in, ATan(), 1.0)
    _compare(got, ref, ("spikes", "h", "h_last"))
    with pytest.raises(AssertionError, match="grad x"):
        _compare(_grads(got, got_in), _grads(ref, ref_in), ("grad x", "history", "weight", "bias", "h0"), rtol=1e-4)


def test_dsn_taps_beyond_the_kernel_fall_back_or_raise(emulate_cupy):
    inputs = _dsn_case(5, kernels.DSN_MAX_TAPS + 1, (2, 3), ATan(), 1.0, seed=5)
    emulate_cupy()
    auto = dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="auto")
    torch.testing.assert_close(auto[1], dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="torch")[1])
    with pytest.raises(RuntimeError, match=r"dsn_membrane: backend='cupy' cannot run: weight has 9 taps"):
        dsn_membrane(*inputs[:4], 0.25, inputs[4], ATan(), 1.0, backend="cupy")


# ---- LTC and the neurons through the CuPy path ---------------------------------------------------


@needs_gxx
@pytest.mark.parametrize("T", [1, 7, 40])
def test_ltc_cupy_path_matches_reference(emulate_cupy, T):
    emulate_cupy()
    surrogate = MultiGaussian(inclusive=False)
    flat = _ltc_inputs(T, 6, seed=T, surrogate=surrogate)
    inputs = [t.reshape(*t.shape[:-1], 2, 3) for t in flat]
    got_in, ref_in = _leaves(*inputs), _leaves(*inputs, dtype=torch.float64)
    got = ltc_scan(*got_in, B0, BETA_A, surrogate, backend="cupy")
    ref = ltc_scan_reference(*ref_in, B0, BETA_A, surrogate)
    assert torch.equal(got[0], ref[0].float())
    _compare(got, ref, ("spikes", "membrane", "u_last", "s_last", "b_last"))
    names = ("grad current", "grad rate", "grad retention", "grad u0", "grad s0", "grad b_init")
    _compare(_grads(got, got_in), _grads(ref, ref_in), names, rtol=1e-4)


# ---- TSSL-BP through the CuPy path ----------------------------------------------------------------


def _tsslbp_on_both_paths(current, u0, a0, inclusive=False, at_spikes=True):
    """backend -> ``(psp, spikes, membrane, u_last, a_last, grad of the current)`` for a random weighting of the PSP."""
    weights = torch.randn(current.shape, generator=torch.Generator().manual_seed(0))
    results = {}
    for backend in ("torch", "cupy"):
        x = current.detach().requires_grad_()
        out = tsslbp(x, u0, a0, **TSSL, inclusive=inclusive, dt_du_at_spikes=at_spikes, backend=backend)
        results[backend] = (*out, *torch.autograd.grad(out[0], x, weights))
    return results


def _compare_paths(results, names):
    for name, a, b in zip(names, results["torch"], results["cupy"]):
        assert b.shape == a.shape and b.dtype == a.dtype, name
        _assert_close(b, a, rtol=1e-5, atol=1e-6 * max(a.abs().max().item(), 1.0), what=name)


TSSLBP_NAMES = ("psp", "spikes", "membrane", "u_last", "a_last", "grad current")


@needs_gxx
@pytest.mark.parametrize("at_spikes", [True, False])
@pytest.mark.parametrize("inclusive", [False, True])
@pytest.mark.parametrize("T", [1, 2, 5, 10])
def test_tsslbp_cupy_path_matches_torch_path(emulate_cupy, T, inclusive, at_spikes):
    """tsslbp(backend='cupy') on a non-contiguous ``[T, B, C, S]`` current with a carried state: every output
    and the current's gradient (either revision of dt/du) equal the torch path's."""
    emulate_cupy()
    flat, u0, a0 = _tssl_inputs(T, 24, seed=T + 10, inclusive=inclusive)
    current = flat.view(T, 2, 4, 3).transpose(2, 3)
    assert not current.is_contiguous()
    u0, a0 = (t.view(2, 4, 3).transpose(1, 2) for t in (u0, a0))
    results = _tsslbp_on_both_paths(current, u0, a0, inclusive, at_spikes)
    assert torch.equal(results["cupy"][1], results["torch"][1]), "spikes differ"
    _compare_paths(results, TSSLBP_NAMES)


@needs_gxx
def test_tssl_check_bites_on_mutated_kernel(tmp_path, emulate_cupy):
    """A backward whose carried term skips the membrane leak on quiet steps is caught; the forward is unaffected."""
    emulate_cupy(_mutated_emu(tmp_path, "tssl.cu", "(1.0f - spike) * (1.0f - theta_m) * carry;", "(1.0f - spike) * carry;"))
    current, u0, a0 = _tssl_inputs(10, 24, seed=6)
    results = _tsslbp_on_both_paths(current, u0, a0)
    _compare_paths(results, TSSLBP_NAMES[:-1])
    with pytest.raises(AssertionError, match="grad current"):
        _compare_paths(results, TSSLBP_NAMES)


NEURONS = {
    "dsn": lambda: sp.DynamicDecay(4),
    "dsn_integer": lambda: sp.DynamicDecay(4, spike_mode="integer"),
    "prf": lambda: sp.PRF(4),
    "prf_reset": lambda: sp.PRF(4, reset=True, learn_decay=True),
    "lif": lambda: sp.DecoupledLIF(4, learn_decay=True),
    "ltc": lambda: sp.LTC(4, mode="parallel"),
    "psplif": lambda: sp.PSPLIF(4),
}


@needs_gxx
@pytest.mark.parametrize("name", NEURONS)
def test_neurons_on_the_cupy_path(emulate_cupy, name):
    """A neuron built with backend='cupy' gives the torch path's spikes, state and input and parameter
    gradients, also when the state is carried into a second call."""
    emulate_cupy()
    results = {}
    for backend in ("torch", "cupy"):
        torch.manual_seed(0)
        neuron = NEURONS[name]()
        neuron.ops_backend = backend
        x = (torch.rand(13, 2, 4) * 1.5).requires_grad_()
        spikes, state = neuron(x[:6])
        more, state = neuron(x[6:], state)
        loss = (spikes * torch.linspace(0, 1, 4)).sum() + more.sum() + sum(s.abs().sum() for s in state)
        grads = torch.autograd.grad(loss, [x, *neuron.parameters()])
        results[backend] = (spikes, more, *state, *grads)
    for a, b in zip(results["torch"], results["cupy"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


def test_cupy_backend_refuses_what_the_kernels_cannot_run(emulate_cupy):
    """Explicit 'cupy' names the op and the reason; 'auto' takes the torch path for the same inputs."""
    emulate_cupy()
    x = torch.rand(5, 2, 3, dtype=torch.float64)
    one = torch.ones(3, dtype=torch.float64)
    zeros = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(RuntimeError, match=r"linear_fire: backend='cupy' cannot run: x has dtype torch.float64"):
        linear_fire(x, one, one, zeros, zeros, ATan(), 1.0, backend="cupy")
    foreign = ForeignSurrogate(lambda v: ATan()(v), inclusive=True)
    with pytest.raises(RuntimeError, match=r"ltc_scan: backend='cupy' cannot run: the spike function .* has no kernel"):
        ltc_scan(x.float(), x.float(), x.float(), zeros.float(), zeros.float(), zeros.float(), 0.1, 1.8, foreign, backend="cupy")
    with pytest.raises(RuntimeError, match=r"linear_scan: backend='cupy' cannot run: the scan computes in torch.float64"):
        linear_scan(one, x, backend="cupy")
    out = linear_fire(x, one, one, zeros, zeros, ATan(), 1.0, backend="auto")
    assert out[1].dtype == torch.float64
    with pytest.raises(RuntimeError, match=r"tsslbp: backend='cupy' cannot run: current has dtype torch.float64"):
        tsslbp(x, backend="cupy")
    with pytest.raises(RuntimeError, match=r"tsslbp: backend='cupy' cannot run: current has dtype torch.float64"):
        sp.PSPLIF(3, backend="cupy")(x)
    assert tsslbp(x, backend="auto")[0].dtype == torch.float64
    assert sp.PSPLIF(3, gradient="surrogate", backend="cupy")(x)[0].dtype == torch.float64  # the step loop, in torch
