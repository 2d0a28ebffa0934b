"""Packaging: every subpackage is installed, and importing the library stays light."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).parent.parent


def test_every_subpackage_is_listed_in_pyproject():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    on_disk = {".".join(init.parent.relative_to(ROOT).parts) for init in (ROOT / "snn_parallel").rglob("__init__.py")}
    assert on_disk <= listed, f"missing from pyproject.toml: {sorted(on_disk - listed)}"
    assert config["package-dir"] == {"snn_parallel.adapters": "adapters"}
    assert "adapters" not in listed  # never a top-level package of that name


def test_import_needs_no_framework_or_gpu_package():
    code = (
        "import sys, snn_parallel, snn_parallel.ops, snn_parallel.neurons, snn_parallel.surrogate;"
        "print(sorted(m for m in ('snntorch', 'spikingjelly', 'cupy', 'sklearn', 'matplotlib') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
