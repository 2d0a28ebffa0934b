"""The README's examples (``docs_snippets/``) run as they are."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

SNIPPETS = sorted((Path(__file__).parent.parent / "docs_snippets").glob("*.py"))
# each snippet is named after the framework it swaps a neuron into
FRAMEWORK = {"snntorch_swap": "snntorch", "spikingjelly_swap": "spikingjelly", "learners": "spikingjelly"}
# what else a snippet needs (the learners one trains on the scikit-learn digits)
NEEDS = {"learners": ("sklearn",)}


@pytest.mark.parametrize("path", SNIPPETS, ids=[p.stem for p in SNIPPETS])
def test_snippet_runs(path, tmp_path):
    for module in (FRAMEWORK[path.stem], *NEEDS.get(path.stem, ())):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "loss" in done.stdout


def test_every_snippet_is_in_the_readme():
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert set(FRAMEWORK) == {p.stem for p in SNIPPETS}
    for path in SNIPPETS:
        assert path.read_text().strip() in readme, f"{path.name} differs from its copy in README.md"
