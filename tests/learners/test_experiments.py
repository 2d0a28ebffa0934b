"""The memory benchmark of the learners: its figures belong to the child process that measures them."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest
import torch

from snn_parallel.learners.experiments import memory_profile


@pytest.mark.skipif(sys.platform != "linux", reason="the parent's peak carries over into ru_maxrss on Linux")
def test_memory_profile_reports_the_childs_peak_not_the_parents():
    # what importing torch alone costs a fresh process: about 220 MiB with the CPU wheel, 530-710 MiB with
    # PyPI's CUDA wheels of torch 2.14 and 2.15, which load the CUDA libraries at import even without a GPU
    # (VmHWM, as the profile reads it: ru_maxrss would carry this process's peak over through fork and exec)
    code = "import torch; from snn_parallel.bench.memory import peak_kib; print(peak_kib() / 1024)"
    import_mib = float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    big = torch.ones(256 * 2**20)  # 1 GiB resident in this process, on top of its own torch import
    big += 1
    del big
    parent_peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert parent_peak_mib >= import_mib + 1024
    (row,) = memory_profile(["bptt"], [8], batch=2, hidden=16)
    # the child imports torch and trains a 16-unit network (measured: about 90-180 MiB more than the import);
    # it used to report the parent's peak, inherited through fork and exec
    assert 50 < row["peak_rss_mib"] < import_mib + 512
