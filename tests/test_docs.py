"""The results pages are generated from the committed results files, and the README quotes them faithfully."""

from __future__ import annotations

import importlib.util
import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("results_tables", ROOT / "docs" / "results_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def results_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in sorted((ROOT / "benchmarks" / folder).glob("*.json"))]


def rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"]


def test_every_results_file_is_rendered(tables):
    expected = {p.relative_to(ROOT).as_posix() for p in results_files("learners", "neurons")}
    assert expected, "no results files found"
    assert tables.rendered_files() == expected
    files = tables.files_page()
    for path in results_files("learners", "neurons"):
        assert f"## `{path.relative_to(ROOT).as_posix()}`" in files, path.name
        assert json.loads(path.read_text())["meta"]["command"] in files, path.name


def test_learner_tables_carry_the_files_values(tables):
    page = tables.learners_page()
    for path in tables.digits_files():
        for row in rows(path):
            assert f"{100 * row['test_accuracy']:.1f} %" in page, (path.name, row)
    for path in tables.adding_files():
        for row in rows(path):
            assert f"{row['test_mse']:.4f}" in page, path.name
    for row in rows(ROOT / "benchmarks" / "learners" / "memory.json"):
        if "peak_rss_mib" in row and "rss_vs_first_T" in row:
            assert f"{row['peak_rss_mib']:.0f} MiB" in page
    # the 30-seed comparison, recomputed here from the two files
    tssl = {r["seed"]: r["test_accuracy"] for r in rows(ROOT / "benchmarks/learners/image_test_tsslbp_reference.json")}
    bptt = {r["seed"]: r["test_accuracy"] for r in rows(ROOT / "benchmarks/learners/image_test_bptt_reference.json")}
    diffs = [tssl[s] - bptt[s] for s in tssl]
    assert f"{100 * statistics.mean(tssl.values()):.2f} %" in page
    assert f"{100 * statistics.mean(bptt.values()):.2f} %" in page
    assert f"{100 * statistics.mean(diffs):+.2f} ± {100 * statistics.stdev(diffs) / len(diffs) ** 0.5:.2f}" in page
    # the FPTT study: BPTT's mean over the seeds of the row-serial digits
    study = [
        r["test_accuracy"] for r in rows(ROOT / "benchmarks/learners/fptt_study_row.json") if r["config"] == "bptt"
    ]
    assert f"{100 * statistics.mean(study):.1f} ± {100 * statistics.stdev(study):.1f} %" in page


def test_neuron_tables_carry_the_files_values(tables):
    page = tables.neurons_page()
    for row in rows(ROOT / "benchmarks/neurons/digits_defaults.json"):
        assert f"| {row['node']} | {100 * row['test_accuracy']:.1f} % |" in page
    for row in rows(ROOT / "benchmarks/neurons/compile_vs_eager.json"):
        assert f"{row['eager_ms']:.2f} ms | {row['compiled_ms']:.2f} ms" in page


def prose(text: str) -> str:
    """``text`` without its fenced code blocks."""
    return re.sub(r"```.*?```", "", text, flags=re.S)


def test_readme_quotes_only_the_headline_figures(tables):
    headlines = tables.headlines()
    for figure in headlines.values():
        assert figure in README, figure
    # every measured figure in the README's prose: a ratio ("21×"; "2 × 256" is a product) or a number with a
    # unit of share, memory or time
    quoted = re.findall(r"\d[\d.,]*(?:×|\s?(?:%|MiB|GiB|ms\b|s\b))", prose(README))
    assert sorted(set(quoted)) == sorted(set(headlines.values())), quoted


def test_readme_is_short_and_starts_with_the_two_commands():
    lines = README.splitlines()
    assert len(lines) <= 200, len(lines)
    first_block = re.search(r"```bash\n(.*?)```", README, flags=re.S).group(1).splitlines()
    assert first_block[0].startswith("make demo") and first_block[1].startswith("make test")
    assert README.index("```bash") < README.index("## ")
