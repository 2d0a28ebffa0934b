"""Every tutorial runs top to bottom (shrunken with ``SNN_TUTORIAL_SMALL=1``) and draws its figures."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
ROOT = Path(__file__).parent.parent
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))

#: the figures each tutorial must write (tutorial 4 also writes 04_gpu.png where benchmarks/gpu.json exists)
FIGURES = {
    "00_parallel_neurons": ["00_membranes", "00_speed"],
    "01_snntorch_swap": ["01_accuracy_speed", "01_raster_membrane"],
    "02_spikingjelly": ["02_streaming_raster", "02_long_rate"],
    "03_online_learning": ["03_memory_time", "03_accuracy", "03_resnet_memory", "03_adding"],
    "04_speed": ["04_cpu", "04_live"] + (["04_gpu"] if (ROOT / "benchmarks" / "gpu.json").exists() else []),
    "05_custom_neuron": ["05_parallel_vs_step", "05_speed", "05_training"],
    "06_tsslbp": ["06_neuron_gradient", "06_desired_psp", "06_training", "06_output_psp", "06_seeds"],
}
#: what each tutorial imports beyond torch and matplotlib
NEEDS = {
    "01_snntorch_swap": ("snntorch", "sklearn"),
    "02_spikingjelly": ("spikingjelly", "sklearn"),
    "03_online_learning": ("sklearn", "spikingjelly"),
    "05_custom_neuron": ("snntorch", "spikingjelly", "sklearn"),
    "06_tsslbp": ("sklearn",),
}


def _run_tutorial(path: Path, cwd: Path, out: Path) -> None:
    """Run one tutorial shrunken from ``cwd``; it must find the repository's files by itself."""
    for module in NEEDS.get(path.stem, ()):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    env = {**os.environ, "SNN_TUTORIAL_OUT": str(out), "SNN_TUTORIAL_SMALL": "1", "MPLBACKEND": "Agg"}
    env.pop("SNN_BENCHMARKS", None)
    before = set(cwd.iterdir())
    done = subprocess.run([sys.executable, str(path)], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    written = {p.stem for p in out.glob("*.png")}
    missing = set(FIGURES[path.stem]) - written
    assert not missing, f"{path.name} did not write {sorted(missing)}"
    assert all(p.stat().st_size > 5000 for p in out.glob("*.png")), "a figure is empty"
    assert set(cwd.iterdir()) - before <= {out}, "the tutorial wrote outside SNN_TUTORIAL_OUT"


#: tutorials whose shrunken run alone takes over ten seconds on two cores (03: 71 s; 04, 06: 15 s): run with the
#: slow checks (CI runs them, and the documentation build executes every tutorial again)
LONG = {"03_online_learning", "04_speed", "06_tsslbp"}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in LONG else p for p in TUTORIALS],
    ids=[p.stem for p in TUTORIALS],
)
def test_tutorial_runs_and_draws(path, tmp_path):
    """From ``tutorials/``, the working directory Jupyter gives a notebook there."""
    _run_tutorial(path, ROOT / "tutorials", tmp_path / "figures")


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_from_another_folder(path, tmp_path):
    """From a folder outside the checkout (``python tutorials/...`` from the repository root is the same case):
    the tutorial finds the repository's files from its own path, not the working directory."""
    _run_tutorial(path, tmp_path, tmp_path / "figures")


def test_every_tutorial_is_listed():
    assert {p.stem for p in TUTORIALS} == set(FIGURES)


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_opens_as_a_notebook(path):
    """The sources are jupytext percent files: each converts to a notebook with markdown and code cells."""
    jupytext = pytest.importorskip("jupytext")
    notebook = jupytext.read(path)
    kinds = {cell.cell_type for cell in notebook.cells}
    assert kinds == {"markdown", "code"}
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith("# ")
