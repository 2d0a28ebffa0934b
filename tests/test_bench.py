"""Tests for snn_parallel.bench: the ``snn-parallel bench`` engine (tiny shapes, fast)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess

import pytest
import torch

from snn_parallel import bench
from snn_parallel.bench import plot, run


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="snn-parallel bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_tiny_run_writes_rows_and_ratios(tmp_path, capsys):
    pytest.importorskip("spikingjelly")
    out = tmp_path / "b.json"
    argv = ["--shapes", "16x2x8", "--models", "dsn", "prf", "sj_lif", "--repeats", "1", "--json", str(out)]
    assert bench.main(_parse(argv)) == 0
    data = json.loads(out.read_text())
    rows = {row["model"]: row for row in data["rows"]}
    assert set(rows) == {"dsn", "prf", "sj_lif"}
    for row in rows.values():
        assert "error" not in row, row
        assert (row["shape"], row["T"], row["B"], row["C"]) == ("16x2x8", 16, 2, 8)
        assert row["time_ms"] > 0 and row["repeats"] == 1 and row["times_ms"] == [row["time_ms"]]
        assert row["peak_mib"] > 0 and row["threads"] >= 1
    assert {(r["model"], r["baseline"]) for r in data["ratios"]} == {("dsn", "sj_lif"), ("prf", "sj_lif")}
    for ratio in data["ratios"]:
        expected = rows["sj_lif"]["time_ms"] / rows[ratio["model"]]["time_ms"]
        assert ratio["speedup"] == pytest.approx(expected)
    assert data["machine"]["torch"] == torch.__version__ and data["machine"]["device"] == "cpu"
    assert data["options"]["shapes"] == ["16x2x8"]
    printed = capsys.readouterr().out
    assert f"x{data['ratios'][0]['speedup']:.1f} vs sj_lif" in printed
    assert "Machine:" in printed


@pytest.mark.slow  # two worker processes, about 8 s
def test_stateleaky_pair_runs_and_is_compared(tmp_path):
    """The opt-in pair: the StateLeaky skin timed against snnTorch 1.0's StateLeaky in the same run."""
    snntorch = pytest.importorskip("snntorch")
    if not hasattr(snntorch, "StateLeaky"):
        pytest.skip(f"snnTorch {snntorch.__version__} has no StateLeaky")
    out = tmp_path / "b.json"
    argv = ["--shapes", "16x2x8", "--models", "stateleaky", "snntorch_stateleaky", "--repeats", "1", "--json", str(out)]
    assert bench.main(_parse(argv)) == 0
    data = json.loads(out.read_text())
    assert all("error" not in row for row in data["rows"]), data["rows"]
    assert {(r["model"], r["baseline"]) for r in data["ratios"]} == {("stateleaky", "snntorch_stateleaky")}


def test_failing_worker_becomes_error_row(tmp_path, monkeypatch):
    out = tmp_path / "b.json"
    monkeypatch.setattr(subprocess, "run", _raise_timeout)
    assert bench.main(_parse(["--shapes", "8x1x4", "16x1x4", "--models", "dsn", "--json", str(out)])) == 0
    first, second = json.loads(out.read_text())["rows"]
    assert first["error"].startswith("timed out after 300 s")
    assert second["error"] == "skipped after 8x1x4: timed out after 300 s"


def _raise_timeout(*args, **kwargs):
    raise subprocess.TimeoutExpired(args[0], kwargs["timeout"])


def test_skip_projects_linear_time():
    done = [{"model": "sj_psn", "shape": "1024x4x64", "T": 1024, "B": 4, "C": 64, "time_ms": 40_000.0}]
    assert run.skip_reason("sj_psn", (16384, 4, 64), done, 300.0).startswith("skipped: >= 1280 s")
    assert run.skip_reason("sj_psn", (2048, 4, 64), done, 300.0) is None
    assert run.skip_reason("sj_psn", (16384, 8, 64), done, 300.0) is None
    assert run.skip_reason("dsn", (16384, 4, 64), done, 300.0) is None


@pytest.mark.parametrize("bad", ["1024x32", "axbxc", "0x4x64", "1024*32*256"])
def test_bad_shape_is_rejected(bad, capsys):
    with pytest.raises(SystemExit) as exc:
        _parse(["--shapes", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--shapes" in err and "TxBxC" in err


def test_unknown_model_is_rejected(capsys):
    with pytest.raises(SystemExit):
        _parse(["--models", "dsn", "brian2"])
    assert "invalid choice: 'brian2'" in capsys.readouterr().err


def test_defaults():
    args = _parse([])
    opt_in = ("stateleaky", "snntorch_stateleaky")  # timed only when named
    assert args.shapes == bench.DEFAULT_SHAPES and args.models == [m for m in bench.MODELS if m not in opt_in]
    assert (args.repeats, args.device, args.timeout, args.json, args.plot) == (5, "cpu", 300.0, None, None)
    assert args.resume is False


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_a_clear_error(capsys):
    assert bench.main(_parse(["--device", "cuda", "--shapes", "8x1x4", "--models", "dsn"])) == 2
    assert "--device cuda: CUDA is not available" in capsys.readouterr().err


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib")
    rows = [
        {"model": m, "shape": f"{t}x4x64", "T": t, "B": 4, "C": 64, "time_ms": ms * t}
        for m, ms in (("dsn", 0.01), ("sj_lif", 0.1), ("sj_psn", 0.2))
        for t in (1024, 4096)
    ]
    rows.append({"model": "sj_lif", "shape": "16384x4x64", "T": 16384, "B": 4, "C": 64, "error": "timed out"})
    out = tmp_path / "b.png"
    plot.plot(out, rows, bench.ratios(rows), bench.machine_info("cpu"))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_framework_is_skipped_with_a_note(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None if name == "snntorch" else real(name))
    fake = {"time_ms": 2.0, "times_ms": [2.0], "warmup_ms": 3.0, "repeats": 1, "peak_mib": 1.0}
    monkeypatch.setattr(run, "run_case", lambda model, shape, args: dict(fake))
    assert bench.main(_parse(["--shapes", "8x1x4", "--models", "dsn", "snntorch_leaky"])) == 0
    out = capsys.readouterr().out
    assert "note: skipping snntorch_leaky: snntorch is not installed" in out
    assert "  dsn " in out and "  snntorch_leaky " not in out


def _fake_case(times: dict[str, float], calls: list):
    def run(model, shape, args):
        calls.append((model, shape))
        if model not in times:
            raise KeyboardInterrupt  # the job's time limit
        return {"time_ms": times[model], "times_ms": [times[model]], "warmup_ms": 1.0, "repeats": 1, "peak_mib": 1.0}

    return run


def test_json_is_written_after_every_case_and_a_cut_run_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b.json"
    argv = ["--shapes", "8x1x4", "16x1x4", "--models", "dsn", "prf", "lif", "--json", str(out)]
    calls: list = []
    monkeypatch.setattr(run, "run_case", _fake_case({"dsn": 2.0, "prf": 1.0}, calls))
    with pytest.raises(KeyboardInterrupt):  # dies at the third case, lif 8x1x4
        bench.main(_parse(argv))
    cut = json.loads(out.read_text())
    assert cut["complete"] is False
    assert [(r["model"], r["shape"]) for r in cut["rows"]] == [("dsn", "8x1x4"), ("prf", "8x1x4")]
    assert not list(tmp_path.glob("*.partial"))

    calls.clear()
    monkeypatch.setattr(run, "run_case", _fake_case({"dsn": 4.0, "prf": 3.0, "lif": 5.0}, calls))
    assert bench.main(_parse([*argv, "--resume"])) == 0
    assert calls == [("lif", (8, 1, 4)), ("dsn", (16, 1, 4)), ("prf", (16, 1, 4)), ("lif", (16, 1, 4))]
    data = json.loads(out.read_text())
    assert data["complete"] is True
    times = {(r["model"], r["shape"]): r["time_ms"] for r in data["rows"]}
    assert times == {
        ("dsn", "8x1x4"): 2.0,
        ("prf", "8x1x4"): 1.0,
        ("lif", "8x1x4"): 5.0,
        ("dsn", "16x1x4"): 4.0,
        ("prf", "16x1x4"): 3.0,
        ("lif", "16x1x4"): 5.0,
    }
    assert "[1/6] dsn 8x1x4: kept from" in capsys.readouterr().err


def test_resume_refuses_another_machine_or_no_file(tmp_path, monkeypatch, capsys):
    out = tmp_path / "b.json"
    monkeypatch.setattr(run, "run_case", _fake_case({"dsn": 1.0}, []))
    argv = ["--shapes", "8x1x4", "--models", "dsn", "--json", str(out)]
    assert bench.main(_parse(argv)) == 0
    data = json.loads(out.read_text())
    data["machine"]["torch"] = "0.0.1"
    out.write_text(json.dumps(data))
    assert bench.main(_parse([*argv, "--resume"])) == 2
    assert "was measured on" in capsys.readouterr().err
    out.write_text("not json")
    assert bench.main(_parse([*argv, "--resume"])) == 2
    assert "is not a benchmark file" in capsys.readouterr().err
    assert bench.main(_parse(["--shapes", "8x1x4", "--models", "dsn", "--resume"])) == 2
    assert "--resume needs --json" in capsys.readouterr().err
