"""Every op's CUDA source builds: signatures read from the sources, constants passed from Python, and every
kernel file (each of its variants) compiled for sm_80 and sm_90 in float32, float16 and bfloat16 with no register
spills.

``nvcc`` is needed for the compile checks (skipped without it); the NVRTC check needs CuPy (not a GPU).
"""

from __future__ import annotations

import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from kernel_harness import CUDA_DIR, NVCC, source_path

from snn_parallel.ops import _cuda
from snn_parallel.ops._cuda import KERNEL_DTYPES, KernelFile, kernel_files, spike_code
from snn_parallel.surrogate import (
    ATan,
    DoubleGaussian,
    FastSigmoid,
    ForeignSurrogate,
    IntegerSpike,
    MultiGaussian,
    Rect,
    Sigmoid,
)

FILES = kernel_files()
#: every build of every file: (file name, variant)
BUILDS = [(name, variant) for name, file in FILES.items() for variant in file.builds()]
BUILD_IDS = [name if variant is None else f"{name}-{variant}" for name, variant in BUILDS]
ARCHS = ("sm_80", "sm_90")
_PTX_TYPE = {"P": "u64", "L": "u64", "I": "u32", "F": "f32"}


def test_every_cu_file_is_declared_by_its_op():
    on_disk = {p.name for p in Path(_cuda.__file__).parents[1].glob("*/*.cu")}
    assert on_disk == set(FILES)
    for name, file in FILES.items():
        assert source_path(file).parent.name == file.package.rsplit(".", 1)[1]
        assert file.signatures, name
        assert any(f'#include "{header}"' in file.source() for header in _cuda.HEADERS)


def test_signatures_come_from_the_declarations():
    assert FILES["scan.cu"].signatures["scan_fwd_real"] == "PPPPPPPPPILLLLL"
    source = (
        'extern "C" __global__ void __launch_bounds__(256) '
        "k(const float* __restrict__ a, long long n, int f, float v) {}\n"
        'extern "C" __global__ void\n    other(float2* x) {}\n'
    )
    assert _cuda.signatures(source) == {"k": "PLIF", "other": "P"}
    variants = 'extern "C" __global__ void SNN_ENTRY(k)(const state_t* x, int n) {}\n'
    assert _cuda.signatures(variants, "complex") == {"k_complex": "PI"}
    with pytest.raises(ValueError, match=r"SNN_ENTRY\(k\) in a file built without variants"):
        _cuda.signatures(variants)
    linear_fire = FILES["linear_fire.cu"]
    assert linear_fire.builds() == ["real", "complex"] and FILES["dsn.cu"].builds() == [None]
    assert linear_fire.signatures["lf_bwd_real"] == linear_fire.signatures["lf_bwd_complex"]
    assert linear_fire.variant_of("lf_chain_complex") == "complex"
    with pytest.raises(ValueError, match=r"bad: parameter 'double d' has no launcher kind"):
        _cuda.signatures('extern "C" __global__ void bad(double d) {}')


def test_constants_are_passed_from_python():
    assert FILES["dsn.cu"].macros()["DSN_MAX_TAPS"] == "(8)"
    assert FILES["tssl.cu"].macros()["TSSL_DT_DU_MIN"] == "(-8.0f)"
    options = FILES["dsn.cu"].options(torch.bfloat16)
    assert options[:2] == ("-std=c++17", "-DSNN_DTYPE=__nv_bfloat16") and "-DSNN_KIND_INTEGER=(4)" in options
    assert "-DSNN_KIND_FAST_SIGMOID=(5)" in options
    complex_scan = FILES["scan.cu"].options(torch.float32, "complex")
    assert "-DSNN_VARIANT=complex" in complex_scan and "-DSNN_COMPLEX=(1)" in complex_scan


def test_spike_codes():
    assert spike_code(ATan(3.0, inclusive=False)) == (0, (3.0, 0.0, 0.0, 0.0), 0)
    assert spike_code(Sigmoid()) == (1, (4.0, 0.0, 0.0, 0.0), 1)
    assert spike_code(Rect(0.5)) == (2, (0.5, 0.0, 0.0, 0.0), 1)
    assert spike_code(MultiGaussian()) == (3, (0.3, 6.0, 0.15, 0.5), 1)
    assert spike_code(DoubleGaussian()) == (3, (0.5, 6.0, 0.15, 0.5), 1)
    assert spike_code(IntegerSpike(3)) == (4, (3.0, 0.0, 0.0, 0.0), 1)
    assert spike_code(FastSigmoid(inclusive=False)) == (5, (25.0, 0.0, 0.0, 0.0), 0)
    assert spike_code(ForeignSurrogate(torch.sign, inclusive=True)) is None
    tuned = Sigmoid(2.0)
    tuned.alpha = 3.0
    assert spike_code(tuned) == (1, (3.0, 0.0, 0.0, 0.0), 1)  # the parameters as they are at the call

    class Custom(ATan):
        def derivative(self, x):
            return x

    assert spike_code(Custom()) is None  # a subclass may change the derivative


def test_cupy_source_pastes_the_headers():
    for name in ("dsn.cu", "scan.cu"):
        text = FILES[name].text()
        assert "#include" not in text.replace("#include <cuda_fp16.h>", "").replace("#include <cuda_bf16.h>", "")
        assert (
            _cuda.header_source().replace("#pragma once\n", "") in text
            and text.count("float heaviside(int inclusive") == 1
        )
    assert all("chunked_scan" in file.text() for file in FILES.values())  # every op is on the time-chunked family


# ---- nvcc ------------------------------------------------------------------------------------------

needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc not on PATH: CUDA compile checks skipped")


def nvcc(src: Path, options: tuple[str, ...], workdir: Path) -> tuple[int, str, str]:
    """``nvcc -c`` for sm_80 and sm_90 with ``--resource-usage``, keeping the PTX; returns (returncode,
    stderr and the resource report, PTX text of sm_90)."""
    keep = workdir / src.stem
    keep.mkdir(parents=True, exist_ok=True)
    cmd = [
        NVCC, *options, "--resource-usage", *(f"-gencode=arch=compute_{a[3:]},code={a}" for a in ARCHS),
        "-c", "-keep", "-keep-dir", str(keep), "-o", str(keep / f"{src.stem}.o"), f"-I{CUDA_DIR}", str(src),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    ptx = [p.read_text() for p in sorted(keep.glob("*.ptx")) if "compute_90" in p.name or "sm_90" in p.name]
    return proc.returncode, proc.stdout + proc.stderr, ptx[0] if ptx else ""


@pytest.fixture(scope="module")
def nvcc_builds(tmp_path_factory):
    """Every (file, variant, dtype) compiled once, two at a time."""
    workdir = tmp_path_factory.mktemp("nvcc")
    jobs = [(build, dtype) for build in BUILDS for dtype in KERNEL_DTYPES]

    def compile_one(job):
        (name, variant), dtype = job
        options = FILES[name].options(dtype, variant)
        return nvcc(source_path(FILES[name]), options, workdir / f"{name}.{variant}.{KERNEL_DTYPES[dtype]}")

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(zip(jobs, pool.map(compile_one, jobs), strict=True))


def ptx_entries(ptx: str) -> dict[str, list[str]]:
    """Entry name -> parameter types, from PTX text."""
    return {
        m.group(1): re.findall(r"\.param\s+\.(\w+)", m.group(2))
        for m in re.finditer(r"\.entry\s+(\w+)\s*\((.*?)\)", ptx, re.S)
    }


def spills(report: str) -> dict[tuple[str, str], tuple[int, int]]:
    """(kernel, arch) -> (spill store bytes, spill load bytes), from nvcc's ``--resource-usage`` report."""
    found, current = {}, None
    for line in report.splitlines():
        if m := re.search(r"Compiling entry function '(\w+)' for '(sm_\d+)'", line):
            current = (m.group(1), m.group(2))
        elif current and (m := re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", line)):
            found[current] = (int(m.group(1)), int(m.group(2)))
    return found


@needs_nvcc
@pytest.mark.slow  # compiles every kernel file for two archs in three dtypes, about a minute
@pytest.mark.parametrize("dtype", list(KERNEL_DTYPES), ids=list(KERNEL_DTYPES.values()))
@pytest.mark.parametrize("build", BUILDS, ids=BUILD_IDS)
def test_nvcc_compiles_without_spills(nvcc_builds, build, dtype):
    name, variant = build
    returncode, report, ptx = nvcc_builds[(build, dtype)]
    assert returncode == 0, f"nvcc failed on {name} {variant} ({dtype}):\n{report}"
    ours = [line for line in report.splitlines() if "warning" in line.lower() and ".cu" in line]
    assert not ours, f"nvcc warnings in {name} {variant} ({dtype}):\n" + "\n".join(ours)
    signatures = FILES[name].build_signatures(variant)
    entries = ptx_entries(ptx)
    assert set(entries) == set(signatures), f"entry points {sorted(entries)} != declarations {sorted(signatures)}"
    for kernel, kinds in signatures.items():
        assert entries[kernel] == [_PTX_TYPE[k] for k in kinds], f"{kernel}: PTX params {entries[kernel]}"
    found = spills(report)
    assert set(found) == {(k, a) for k in signatures for a in ARCHS}, f"no resource report for some kernels:\n{report}"
    spilling = {key: value for key, value in found.items() if value != (0, 0)}
    assert not spilling, f"register spills (store, load bytes) in {name} {variant} ({dtype}): {spilling}"


@needs_nvcc
@pytest.mark.slow
def test_nvcc_checks_bite(tmp_path):
    """A type error fails the compile; a missing constant or build variant stops at its #error; a spilling kernel is
    reported."""
    scan = FILES["scan.cu"]
    broken = tmp_path / "broken.cu"
    broken.write_text(scan.source() + '\nextern "C" __global__ void broken(scalar_t* x) { x = 1.0f; }\n')
    returncode, report, _ = nvcc(broken, scan.options(torch.float32, "real"), tmp_path)
    assert returncode != 0 and "error" in report and "#error" not in report
    dsn = FILES["dsn.cu"]
    options = tuple(o for o in dsn.options(torch.float32) if not o.startswith("-DDSN_MAX_TAPS"))
    returncode, report, _ = nvcc(source_path(dsn), options, tmp_path / "no_taps")
    assert returncode != 0 and "DSN_MAX_TAPS is passed by the launcher" in report
    returncode, report, _ = nvcc(source_path(scan), scan.options(torch.float32), tmp_path / "no_variant")
    assert returncode != 0 and "SNN_COMPLEX (the build variant) is passed by the launcher" in report
    spilling = tmp_path / "spilling.cu"
    spilling.write_text(
        '#include "common.cuh"\n'
        'extern "C" __global__ void __launch_bounds__(1024, 2) spill(float* x, long long n) {\n'
        "    float r[96];\n"
        "    for (int i = 0; i < 96; ++i) r[i] = x[i * n + threadIdx.x];\n"
        "    for (int k = 0; k < 8; ++k)\n"
        "        for (int i = 0; i < 96; ++i) r[i] = r[i] * r[(i + k) % 96] + 1.0f;\n"
        "    for (int i = 0; i < 96; ++i) x[i * n + threadIdx.x] = r[i];\n"
        "}\n"
    )
    returncode, report, _ = nvcc(spilling, scan.options(torch.float32), tmp_path)
    assert returncode == 0, report
    assert any(value != (0, 0) for value in spills(report).values()), report


def _nvrtc_ptx(file: KernelFile, dtype: torch.dtype, variant: str | None) -> str:
    """PTX of ``file`` (build ``variant``) from NVRTC with the launcher's source and options, for sm_90 (no device
    needed)."""
    from cupy._core.core import assemble_cupy_compiler_options  # adds CuPy's and the toolkit's include dirs
    from cupy_backends.cuda.libs import nvrtc

    options = assemble_cupy_compiler_options(file.options(dtype, variant) + ("-arch=compute_90",))
    program = nvrtc.createProgram(file.text(), file.name, (), ())
    try:
        nvrtc.compileProgram(program, options)
        ptx = nvrtc.getPTX(program)
    except nvrtc.NVRTCError:
        raise AssertionError(f"NVRTC failed on {file.name} ({dtype}):\n{nvrtc.getProgramLog(program)}") from None
    finally:
        nvrtc.destroyProgram(program)
    return ptx.decode() if isinstance(ptx, bytes) else ptx


@pytest.mark.parametrize("dtype", list(KERNEL_DTYPES), ids=list(KERNEL_DTYPES.values()))
@pytest.mark.parametrize("build", BUILDS, ids=BUILD_IDS)
def test_nvrtc_compiles_the_launched_source(build, dtype):
    """The text and options that ``backend='cupy'`` compiles, through CuPy's NVRTC (needs CuPy, not a GPU)."""
    pytest.importorskip("cupy_backends.cuda.libs.nvrtc", reason="CuPy not installed: NVRTC compile check skipped")
    name, variant = build
    entries = ptx_entries(_nvrtc_ptx(FILES[name], dtype, variant))
    signatures = FILES[name].build_signatures(variant)
    assert set(entries) == set(signatures)
    for kernel, kinds in signatures.items():
        assert entries[kernel] == [_PTX_TYPE[k] for k in kinds], f"{kernel}: PTX params {entries[kernel]}"
