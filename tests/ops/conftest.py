"""Fixtures of the op tests: the CPU kernel harness, the ops' CuPy path redirected to it, each op's kernel mutants."""

from __future__ import annotations

import math

import kernel_harness
import pytest
import torch

from snn_parallel.ops import _backend, _cuda


@pytest.fixture(scope="session")
def harness(tmp_path_factory) -> kernel_harness.Harness:
    """The float32 kernels built for the CPU (skipped without g++)."""
    if kernel_harness.GXX is None:
        pytest.skip("g++ not on PATH: CPU kernel emulation skipped")
    return kernel_harness.build(tmp_path_factory.mktemp("harness"))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test asking for ``mutant`` runs once for each entry of its module's ``MUTANTS`` table."""
    if "mutant" in metafunc.fixturenames:
        metafunc.parametrize("mutant", list(metafunc.module.MUTANTS), indirect=True)


@pytest.fixture(scope="module")
def mutants(request, tmp_path_factory) -> dict[str, kernel_harness.Harness]:
    """The test module's ``MUTANTS`` built into harnesses of the op's kernel file alone (``test_<op>.py``:
    ``<op>.cu``), all at the module's first use (skipped without g++). Each entry ``name: (old, new)`` replaces the one
    occurrence of ``old`` in that file, ``name: (header, old, new)`` in a shared header (see ``kernel_harness.build``).
    """
    if kernel_harness.GXX is None:
        pytest.skip("g++ not on PATH: CPU kernel emulation skipped")
    kernel = request.module.__name__.rpartition(".")[2].removeprefix("test_") + ".cu"
    edits = {name: edit if len(edit) == 3 else (kernel, *edit) for name, edit in request.module.MUTANTS.items()}
    return kernel_harness.build_mutants(tmp_path_factory.mktemp("mutants"), edits, files=[kernel])


@pytest.fixture
def mutant(request, mutants) -> kernel_harness.Harness:
    """The harness of one mutant of the module's table (the test runs for each): the test shows that the op's checks
    bite, each mutant failing them."""
    return mutants[request.param]


@pytest.fixture(scope="session")
def half_harness(tmp_path_factory):
    """``get(dtype)``: the kernels built for the CPU with float16 or bfloat16 storage (built at first use)."""
    built: dict[torch.dtype, kernel_harness.Harness] = {}

    def get(dtype: torch.dtype) -> kernel_harness.Harness:
        if dtype not in built:
            built[dtype] = kernel_harness.build(tmp_path_factory.mktemp(str(dtype).split(".")[1]), dtype=dtype)
        return built[dtype]

    return get


@pytest.fixture
def emulate_cupy(monkeypatch, harness, half_harness):
    """``use(lib=harness, block=None, grid=None, workers=1, seed=0)``: run ``backend='cupy'`` on CPU tensors through
    ``lib`` (float16 and bfloat16 builds through the half-precision harnesses), its blocks on ``workers`` host
    threads in the schedule ``seed``; ``grid``/``block`` fix the geometry of one-thread-per-item launches; the scan
    chunks as on a GPU with 2 multiprocessors."""
    used: list[kernel_harness.Harness] = []

    def use(
        lib: kernel_harness.Harness = harness,
        *,
        block: int | None = None,
        grid: int | None = None,
        workers: int = 1,
        seed: int = 0,
    ) -> None:
        lib.workers, lib.seed = workers, seed
        used.append(lib)

        def launch(self, kernel, dtype, grid_, block_, *args):
            assert kernel in self.signatures, f"{kernel} is not declared in {self.name}"
            target = lib if dtype == getattr(lib, "dtype", torch.float32) else half_harness(dtype)
            target.workers, target.seed = lib.workers, lib.seed
            target.launch(kernel, grid_, block_, *args)

        def launch_items(self, kernel, dtype, items, *args):
            threads = block or _cuda.THREADS
            self.launch(kernel, dtype, (grid or max(1, math.ceil(items / threads)),), (threads,), *args)

        monkeypatch.setattr(_cuda.KernelFile, "launch", launch)
        monkeypatch.setattr(_cuda.KernelFile, "launch_items", launch_items)
        monkeypatch.setattr(_backend, "_cupy_gap", lambda like, unsupported: unsupported())
        monkeypatch.setattr(_cuda, "processors", lambda device: 2)

    yield use
    for lib in used:
        lib.workers, lib.seed = 1, 0


def _backend_params():
    return ["torch", "harness", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=_backend_params())
def backend(request) -> tuple[str, torch.device]:
    """``(backend, device)`` of one way to run an op: the torch path on the CPU, the kernels in the CPU harness
    (``backend='cupy'`` redirected), or the kernels on a GPU (marked ``gpu``)."""
    if request.param == "harness":
        request.getfixturevalue("emulate_cupy")()
        return "cupy", torch.device("cpu")
    if request.param == "cuda":
        from kernel_harness.gpu import require_cuda

        return "cupy", require_cuda()
    return "torch", torch.device("cpu")
