"""Every tutorial runs top to bottom (shrunken) and writes its figures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib")
TUTORIALS = sorted((Path(__file__).parent.parent / "tutorials").glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs_and_draws(path, tmp_path):
    env = {**os.environ, "SNN_TUTORIAL_OUT": str(tmp_path), "SNN_TUTORIAL_SMALL": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run([sys.executable, str(path)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    figures = list(tmp_path.glob(f"{path.stem[:2]}_*.png"))
    assert figures, f"{path.name} wrote no figure"
    assert all(f.stat().st_size > 5000 for f in figures)


def test_there_are_tutorials():
    assert TUTORIALS
