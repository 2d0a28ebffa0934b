"""CUDA kernels of the multi-step ops, checked without a GPU.

Part A compiles every kernel file for every storage dtype with ``nvcc`` (skipped without it) and
checks the PTX entry points against the ABI table below (names, parameter count and types).

Part B builds the float32 kernels for the CPU with ``g++`` and ``tests/kernel_harness/cuda_emu.h``
(a launch becomes a serial loop over (block, thread), exact for kernels without inter-thread
communication), calls them through ``ctypes`` and compares with the torch references. A few
tests run the same comparisons on corrupted results or mutated kernel sources to show that the
checks bite.
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

import snn_parallel.ops.kernels as kernels
from snn_parallel.ops.kernels import KERNEL_FILES
from snn_parallel.ops.ltc.fused import ltc_backward, ltc_forward
from snn_parallel.ops.ltc.reference import ltc_scan_reference
from snn_parallel.ops.scan.reference import linear_scan_reference
from snn_parallel.surrogate import ATan, DoubleGaussian, MultiGaussian, Rect, Sigmoid, Surrogate

KERNELS_DIR = Path(kernels.__file__).parent
HARNESS_DIR = Path(__file__).parent / "kernel_harness"
DTYPES = ("float", "__half", "__nv_bfloat16")

# ---- the ABI (snn_parallel/ops/kernels/__init__.py): kernel -> parameter kinds --------------------------------
# P pointer, L long long, I int, F float.
_SCAN = "PPPPLLLII"
_CARRY = "PPPPLLI"
ABI = {
    "scan.cu": {
        "scan_reduce": _SCAN,
        "scan_carry": _CARRY,
        "scan_apply": _SCAN,
        "cscan_reduce": _SCAN,
        "cscan_carry": _CARRY,
        "cscan_apply": _SCAN,
    },
    "ltc.cu": {
        "ltc_fwd": "P" * 9 + "FFILL",
        "ltc_bwd": "P" * 20 + "IPFFLL",
    },
}
_PTX_TYPE = {"P": "u64", "L": "u64", "I": "u32", "F": "f32"}
_CTYPE = {"P": ctypes.c_void_p, "L": ctypes.c_longlong, "I": ctypes.c_int, "F": ctypes.c_float}


def test_abi_table_covers_kernel_files():
    assert set(ABI) == set(KERNEL_FILES)
    for name in KERNEL_FILES + ("common.cuh",):
        assert kernels.source(name).strip()
    with pytest.raises(ValueError, match="unknown kernel file"):
        kernels.source("nope.cu")


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
SURROGATES = {
    "atan": (ATan, 0),
    "sigmoid": (Sigmoid, 1),
    "rect": (Rect, 2),
    "multi_gaussian": (MultiGaussian, 3),
    "double_gaussian": (DoubleGaussian, 3),
}


def _kind_params(surrogate: Surrogate) -> tuple[int, torch.Tensor]:
    kind = SURROGATES[surrogate.name][1]
    values = list(surrogate.params.values())
    return kind, torch.tensor(values + [0.0] * (4 - len(values)), dtype=torch.float32)


def emu_ltc_fwd(lib, current, rate, retention, u0, s0, b_init, inclusive, *, block=256, b0=B0, beta_a=BETA_A):
    T, N = current.shape
    spikes, membrane, trace = (torch.empty(T, N) for _ in range(3))
    args = [_ptr(x.contiguous()) for x in (current, rate, retention, u0, s0, b_init, spikes, membrane, trace)]
    lib.run_ltc_fwd(_blocks(N, block), block, *args, b0, beta_a, int(inclusive), T, N)
    return spikes, membrane, trace


def emu_ltc_bwd(lib, grads, inputs, outputs, surrogate, *, block=256):
    current = inputs[0]
    T, N = current.shape
    kind, params = _kind_params(surrogate)
    grad_seq = [torch.empty(T, N) for _ in range(3)]
    grad_state = [torch.empty(N) for _ in range(3)]
    ptrs = [_ptr(x.contiguous()) for x in (*grads, *inputs, *outputs, *grad_seq, *grad_state)]
    lib.run_ltc_bwd(_blocks(N, block), block, *ptrs, kind, _ptr(params), B0, BETA_A, T, N)
    return (*grad_seq, *grad_state)


def _ltc_inputs(T, N, seed, surrogate, margin=1e-4):
    """Inputs whose float64 membranes stay ``margin`` away from the threshold (and from the
    kinks of the rect surrogate), so float32 spikes are exact."""
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
        x = v - (B0 + BETA_A * trace)
        kinks = [0.0] + ([surrogate.width / 2, -surrogate.width / 2] if surrogate.name == "rect" else [])
        if all(bool(((x - k).abs() > margin).all()) for k in kinks):
            return inputs
    raise RuntimeError("could not draw LTC inputs away from the threshold")


LTC_CASES = [(name, inclusive) for name in SURROGATES for inclusive in (True, False)]


@needs_gxx
@pytest.mark.parametrize("name,inclusive", LTC_CASES)
def test_ltc_forward_matches_reference(emu, name, inclusive):
    surrogate = SURROGATES[name][0](inclusive=inclusive)
    inputs = _ltc_inputs(40, 33, seed=len(name), surrogate=surrogate)
    spikes, membrane, trace = emu_ltc_fwd(emu, *inputs, inclusive)
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
    spikes, _, _ = emu_ltc_fwd(emu, *inputs, inclusive, b0=0.5)
    ref = ltc_scan_reference(*inputs, 0.5, BETA_A, ATan(inclusive=inclusive))[0]
    assert spikes.item() == ref.item() == float(inclusive)


@needs_gxx
@pytest.mark.parametrize("name,inclusive", LTC_CASES)
def test_ltc_backward_matches_autograd(emu, name, inclusive):
    T, N = 40, 33
    surrogate = SURROGATES[name][0](inclusive=inclusive)
    inputs = _ltc_inputs(T, N, seed=len(name) + 1, surrogate=surrogate)
    gen = torch.Generator().manual_seed(11)
    grads = (torch.randn(T, N, generator=gen), torch.randn(T, N, generator=gen)) + tuple(
        torch.randn(N, generator=gen) for _ in range(3)
    )
    leaves = [x.clone().requires_grad_(True) for x in inputs]
    expected = torch.autograd.grad(ltc_scan_reference(*leaves, B0, BETA_A, surrogate), leaves, grads)
    outputs = emu_ltc_fwd(emu, *inputs, inclusive)
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
    outputs = emu_ltc_fwd(lib, *inputs, True)
    assert torch.equal(outputs[0], ltc_scan_reference(*inputs, B0, BETA_A, surrogate)[0])  # forward unaffected
    got = emu_ltc_bwd(lib, grads, inputs, outputs, surrogate)
    with pytest.raises(AssertionError):
        for x, y in zip(got, expected):
            _assert_close(x, y)
