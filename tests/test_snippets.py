"""The examples of the README and the docs (``docs_snippets/``) run as they are, and their copies are verbatim."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

SNIPPETS = sorted((Path(__file__).parent.parent / "docs_snippets").glob("*.py"))
# what each snippet imports beyond torch: its framework, and scikit-learn for those that train on the digits
NEEDS = {
    "snntorch_swap": ("snntorch",),
    "snntorch_synaptic_swap": ("snntorch",),
    "snntorch_round_trip": ("snntorch",),
    "spikingjelly_round_trip": ("spikingjelly",),
    "spikingjelly_swap": ("spikingjelly",),
    "learners": ("spikingjelly", "sklearn"),
    "quickstart_snntorch": ("snntorch", "sklearn"),
    "quickstart_spikingjelly": ("spikingjelly", "sklearn"),
    "tsslbp": ("sklearn",),
}
# the quick starts and the learners' example must train: their printed test accuracy on the digits (chance: 0.1)
MIN_ACCURACY = {"quickstart_snntorch": 0.7, "quickstart_spikingjelly": 0.7, "learners": 0.6}


#: snippets whose run takes over ten seconds on two cores (learners: 13 s, tsslbp: 10 s): run with the slow checks
LONG = {"learners", "tsslbp"}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if p.stem in LONG else p for p in SNIPPETS],
    ids=[p.stem for p in SNIPPETS],
)
def test_snippet_runs(path, tmp_path):
    for module in NEEDS[path.stem]:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed")
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    if path.stem in MIN_ACCURACY:
        accuracy = float(re.search(r"test accuracy ([0-9.]+)", done.stdout).group(1))
        assert accuracy >= MIN_ACCURACY[path.stem], done.stdout
    else:
        assert "loss" in done.stdout


# where each snippet is shown: the two quick starts in the README, the others on their docs pages
PAGES = {
    "quickstart_snntorch": "README.md",
    "quickstart_spikingjelly": "README.md",
    "snntorch_swap": "docs/compatibility.md",
    "snntorch_synaptic_swap": "docs/neurons/synaptic.md",
    "snntorch_round_trip": "docs/compatibility.md",
    "spikingjelly_round_trip": "docs/compatibility.md",
    "spikingjelly_swap": "docs/compatibility.md",
    "learners": "docs/learners/index.md",
    "tsslbp": "docs/learners/tsslbp.md",
}


def test_every_snippet_is_shown_verbatim():
    root = Path(__file__).parent.parent
    assert set(NEEDS) == set(PAGES) == {p.stem for p in SNIPPETS}
    for path in SNIPPETS:
        page = PAGES[path.stem]
        assert path.read_text().strip() in (root / page).read_text(), f"{path.name} differs from its copy in {page}"
