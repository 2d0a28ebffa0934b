"""``snn-parallel bench --quick`` (snn_parallel.bench_quick): the JSON schema, byte counts, partial writes and
resume, with the timing run on CPU tensors or replaced where a GPU would be needed."""

from __future__ import annotations

import argparse
import importlib.util
import json

import pytest
import torch

from snn_parallel import bench, bench_quick

ROW_KEYS = {"model", "pass", "T", "B", "C", "dtype", "time_ms", "bandwidth_gbs", "peak_fraction"}
RATIO_KEYS = {"model", "baseline", "shape", "speedup"}


def _parse(argv):
    parser = argparse.ArgumentParser(prog="snn-parallel bench")
    bench.add_arguments(parser)
    return parser.parse_args(argv)


def test_minimum_bytes_follow_the_table():
    """Bytes an element each op must move in float32: read its inputs once and write its outputs once."""
    elements = 1000
    expected = {
        ("scan", "forward"): 12,
        ("scan", "backward"): 20,
        ("scan", "fwd+bwd"): 32,
        ("prf", "forward"): 8,
        ("prf", "backward"): 12,
        ("dsn", "forward"): 8,
        ("dsn", "backward"): 12,
        ("lif", "forward"): 12,
        ("lif", "backward"): 12,
        ("sj_lif", "fwd+bwd"): 24,
        ("copy", "forward"): 8,
        ("dsn_int", "forward"): 8,
        ("ltc", "forward"): 20,
        ("ltc", "backward"): 28,
        ("psplif", "forward"): 8,
        ("psplif", "backward"): 12,
    }
    for (model, pass_), per_element in expected.items():
        assert bench_quick.min_bytes(model, pass_, elements) == per_element * elements
    assert bench_quick.min_bytes("copy", "backward", elements) is None
    assert bench_quick.min_bytes("sj_psn", "forward", elements) is None


def test_a_run_on_cpu_tensors_writes_the_schema(tmp_path):
    out = tmp_path / "quick.json"
    models = ("dsn", "prf", "lif", "scan", "sj_lif", "copy")
    if "sj_lif" in models:
        pytest.importorskip("spikingjelly")
    results = bench_quick.run(
        "cpu", models=models, shapes=[(32, 2, 8)], scan_shape=(40, 1, 8), repeats=1, json_path=out
    )
    data = json.loads(out.read_text())
    assert data == json.loads(json.dumps(results)) and data["complete"] is True and data["errors"] == []
    assert data["machine"]["device"] == "cpu" and "torch" in data["machine"]
    for row in data["rows"]:
        assert set(row) == ROW_KEYS
        assert row["dtype"] == "float32" and row["time_ms"] > 0 and row["peak_fraction"] is None  # no peak on a CPU
        nbytes = bench_quick.min_bytes(row["model"], row["pass"], row["T"] * row["B"] * row["C"])
        if nbytes is None:
            assert row["bandwidth_gbs"] is None
        else:
            assert row["bandwidth_gbs"] == pytest.approx(nbytes / (row["time_ms"] / 1e3) / 1e9)
    passes = {(r["model"], (r["T"], r["B"], r["C"])): [] for r in data["rows"]}
    for r in data["rows"]:
        passes[r["model"], (r["T"], r["B"], r["C"])].append(r["pass"])
    assert passes.pop(("copy", (32, 2, 8))) == ["forward"]
    assert passes.pop(("scan", (40, 1, 8))) == list(bench_quick.PASSES)  # the scan's large case, last
    assert set(passes) == {(m, (32, 2, 8)) for m in models if m != "copy"}
    assert all(p == list(bench_quick.PASSES) for p in passes.values())
    assert {(r["model"], r["baseline"]) for r in data["ratios"]} == {
        ("dsn", "sj_lif"),
        ("prf", "sj_lif"),
        ("lif", "sj_lif"),
    }
    for ratio in data["ratios"]:
        assert set(ratio) == RATIO_KEYS and ratio["shape"] == "32x2x8"
        times = {r["model"]: r["time_ms"] for r in data["rows"] if r["pass"] == "fwd+bwd" and r["T"] == 32}
        assert ratio["speedup"] == pytest.approx(times["sj_lif"] / times[ratio["model"]])


def test_the_timed_ops_are_the_kernels_and_the_modules():
    """forward runs the op alone, backward differentiates its output, fwd+bwd is the module's training step."""
    for model in bench_quick.NEURONS:
        runs = bench_quick.runs_for(model, (16, 2, 4), torch.device("cpu"))
        spikes = runs.forward()
        assert spikes.shape == (16, 2, 4) and spikes.requires_grad, model
        runs.backward(spikes)
        runs.step()
    torch.manual_seed(0)
    binary = bench_quick.runs_for("dsn", (16, 2, 4), torch.device("cpu")).forward()
    torch.manual_seed(0)
    integer = bench_quick.runs_for("dsn_int", (16, 2, 4), torch.device("cpu")).forward()
    assert (integer > binary).any()  # round(H) fires from H = 0.5, the binary spike from the threshold 1
    scan = bench_quick.runs_for("scan", (16, 2, 4), torch.device("cpu"))
    h = scan.forward()
    scan.backward(h)
    assert bench_quick.measure(scan, "backward", 2, torch.device("cpu")) > 0


def _fake_cuda(monkeypatch, peak=2e12):
    """A machine that looks like a GPU to the run (no device is touched: the timing is replaced too)."""
    machine = {
        "cpu": "x",
        "cores": 1,
        "torch": torch.__version__,
        "threads": 1,
        "device": "cuda",
        "gpu": "Fake GPU",
        "python": "3",
        "peak_bandwidth_gbs": peak / 1e9,
    }
    monkeypatch.setattr(bench_quick, "machine_info", lambda device: dict(machine))
    monkeypatch.setattr(bench_quick, "peak_bandwidth", lambda: (peak, "test"))


def _fake_case(times, calls):
    def measure_case(model, shape, repeats, device):
        calls.append((model, shape))
        if model not in times:
            raise KeyboardInterrupt  # the job's time limit
        return {p: times[model] for p in bench_quick._passes(model)}

    return measure_case


def test_without_spikingjelly_the_baselines_are_left_out_with_a_note(monkeypatch, capsys):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *rest: None if name == "spikingjelly" else find_spec(name, *rest)
    )
    data = bench_quick.run("cpu", models=("prf", "sj_lif", "sj_psn"), shapes=[(16, 1, 4)], scan_shape=None, repeats=1)
    assert data["complete"] is True and data["errors"] == []
    assert {r["model"] for r in data["rows"]} == {"prf"}
    assert "SpikingJelly is not installed: sj_lif, sj_psn not measured" in capsys.readouterr().err


def test_peak_fraction_and_partial_write_and_resume(tmp_path, monkeypatch):
    _fake_cuda(monkeypatch)
    out = tmp_path / "quick.json"
    shapes = [(1024, 1, 256), (4096, 1, 256)]
    models = ("prf", "scan", "sj_lif")
    calls = []
    with pytest.raises(KeyboardInterrupt):  # dies at the third case, sj_lif 1024x1x256
        bench_quick.run(
            "cuda",
            models=models,
            shapes=shapes,
            scan_shape=None,
            json_path=out,
            measure_case=_fake_case({"prf": 2.0, "scan": 1.0}, calls),
        )
    cut = json.loads(out.read_text())
    assert cut["complete"] is False and cut["machine"]["gpu"] == "Fake GPU"
    assert {(r["model"], r["T"]) for r in cut["rows"]} == {("prf", 1024), ("scan", 1024)}
    scan_forward = next(r for r in cut["rows"] if r["model"] == "scan" and r["pass"] == "forward")
    assert scan_forward["bandwidth_gbs"] == pytest.approx(12 * 1024 * 256 / 1e-3 / 1e9)
    assert scan_forward["peak_fraction"] == pytest.approx(scan_forward["bandwidth_gbs"] / 2000)
    assert not list(tmp_path.glob("*.partial"))

    calls.clear()
    done = bench_quick.run(
        "cuda",
        models=models,
        shapes=shapes,
        scan_shape=None,
        json_path=out,
        resume=True,
        measure_case=_fake_case({"prf": 4.0, "scan": 3.0, "sj_lif": 8.0}, calls),
    )
    assert calls == [
        ("sj_lif", (1024, 1, 256)),
        ("prf", (4096, 1, 256)),
        ("scan", (4096, 1, 256)),
        ("sj_lif", (4096, 1, 256)),
    ]
    assert done["complete"] is True and json.loads(out.read_text())["complete"] is True
    kept = {r["time_ms"] for r in done["rows"] if r["T"] == 1024 and r["model"] == "prf"}
    assert kept == {2.0}  # measured before the cut, kept
    assert {(s["model"], s["shape"], s["speedup"]) for s in done["ratios"]} == {
        ("prf", "1024x1x256", 4.0),
        ("prf", "4096x1x256", 2.0),
    }


def test_resume_refuses_another_machine_and_a_failed_case_is_reported(tmp_path, monkeypatch):
    _fake_cuda(monkeypatch)
    out = tmp_path / "quick.json"

    def failing(model, shape, repeats, device):
        if model == "scan":
            raise RuntimeError("CUDA out of memory")
        return {p: 1.0 for p in bench_quick._passes(model)}

    data = bench_quick.run(
        "cuda", models=("prf", "scan"), shapes=[(64, 1, 8)], scan_shape=None, json_path=out, measure_case=failing
    )
    assert data["complete"] is True and [e["model"] for e in data["errors"]] == ["scan"]
    assert "out of memory" in data["errors"][0]["error"]
    written = json.loads(out.read_text())
    written["machine"]["gpu"] = "Other GPU"
    out.write_text(json.dumps(written))
    with pytest.raises(ValueError, match="was measured on"):
        bench_quick.run(
            "cuda",
            models=("prf",),
            shapes=[(64, 1, 8)],
            scan_shape=None,
            json_path=out,
            resume=True,
            measure_case=failing,
        )


def test_the_cli_runs_the_quick_benchmark(tmp_path, capsys):
    pytest.importorskip("spikingjelly")
    out, png = tmp_path / "q.json", tmp_path / "q.png"
    argv = ["--quick", "--shapes", "16x1x8", "--repeats", "1", "--json", str(out), "--plot", str(png)]
    assert bench.main(_parse(argv)) == 0
    data = json.loads(out.read_text())
    assert data["complete"] is True and {r["model"] for r in data["rows"]} == set(bench_quick.MODELS)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Machine: cpu" in capsys.readouterr().out
    assert bench.main(_parse(["--quick", "--resume"])) == 2


def test_the_gpu_session_script_parses_and_refuses_a_machine_without_a_gpu():
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).parent.parent / "benchmarks" / "gpu_session.sh"
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    if torch.cuda.is_available():
        return
    proc = subprocess.run(
        ["bash", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    )
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr


def test_the_gpu_session_dry_run_collects_the_gpu_tests_with_the_package_not_installed(tmp_path):
    """As on a GPU machine, where the session runs the checkout on PYTHONPATH: a Python that has this one's
    packages but not this package (no editable install's finder), so ``snn_parallel.adapters``, which pyproject
    maps to ``adapters/``, imports only through the session's link. The dry run collects the GPU tests without
    a collection error and leaves the checkout as it was."""
    import shutil
    import subprocess
    import sys
    import sysconfig
    from pathlib import Path

    if shutil.which("bash") is None:
        pytest.skip("no bash")
    root = Path(__file__).parent.parent
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = subprocess.check_output([python, "-c", "import site; print(site.getsitepackages()[0])"], text=True)
    # a path line only: the .pth files in that folder (the editable install's) are not run
    (Path(site.strip()) / "packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    probe = subprocess.run([python, "-c", "import snn_parallel.adapters"], capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0, "the package is still installed in the probe's Python"
    proc = subprocess.run(["bash", str(root / "benchmarks" / "gpu_session.sh"), "--dry-run"], capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "PYTHON": python})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tests collected" in proc.stdout and "error" not in proc.stdout.lower(), proc.stdout
    assert not (root / "snn_parallel" / "adapters").exists()


def test_targets_judge_bandwidth_at_large_shapes_and_speedups_at_their_shapes():
    """Each target is judged on its worst case; a case below 2^24 elements does not count for bandwidth, a shape
    of another T does not count for the PSN targets, and a model with no case is 'not measured' (None)."""

    def r(model, pass_, shape, time_ms, peak_fraction=None):
        return {"model": model, "pass": pass_, "T": shape[0], "B": shape[1], "C": shape[2], "dtype": "float32",
                "time_ms": time_ms, "bandwidth_gbs": None, "peak_fraction": peak_fraction}  # fmt: skip

    big, small, other_t = (16384, 16, 256), (1024, 1, 256), (4096, 16, 256)  # 2^26, 2^18 and 2^24 elements
    rows = [
        r("prf", "forward", big, 1.0, 0.75),
        r("prf", "forward", other_t, 1.0, 0.71),
        r("prf", "forward", small, 1.0, 0.05),  # too small to count
        r("prf", "backward", big, 1.0, 0.59),  # just under 60 %
        r("scan", "forward", big, 1.0, 0.80),
        r("prf", "fwd+bwd", big, 1.0),
        r("prf", "fwd+bwd", other_t, 1.0),
        r("sj_lif", "fwd+bwd", big, 3.0),
        r("sj_lif", "fwd+bwd", other_t, 0.5),  # prf slower than LIFNode here
        r("sj_psn", "fwd+bwd", big, 12.0),  # prf 12x PSN at T = 16384
        r("sj_psn", "fwd+bwd", other_t, 2.0),  # 2x at T = 4096: not judged
        r("dsn", "fwd+bwd", big, 1.0),
        r("sj_psn", "fwd+bwd", (16384, 1, 256), 9.0),  # no dsn case at this shape
    ]
    judged = {(t["model"], t["target"]): t for t in bench_quick.targets(rows)}
    forward = "forward >= 70% of peak bandwidth at >= 2^24 elements"
    backward = "backward >= 60% of peak bandwidth at >= 2^24 elements"
    assert judged["prf", forward] == {"target": forward, "model": "prf", "met": True, "worst": 0.71, "cases": 2}
    assert judged["scan", forward]["met"] is True
    assert judged["prf", backward]["met"] is False and judged["prf", backward]["worst"] == 0.59
    assert judged["scan", backward]["met"] is None and judged["scan", backward]["cases"] == 0
    assert judged["dsn", forward]["met"] is None
    lif = judged["prf", "fwd+bwd >= 1x sj_lif at every shape"]
    assert lif["met"] is False and lif["worst"] == pytest.approx(0.5) and lif["cases"] == 2
    psn = judged["prf", "fwd+bwd >= 10x sj_psn at T = 16384"]
    assert psn["met"] is True and psn["worst"] == pytest.approx(12.0) and psn["cases"] == 1
    dsn = judged["dsn", "fwd+bwd >= 25.6x sj_psn at T = 16384"]
    assert dsn["met"] is False and dsn["worst"] == pytest.approx(12.0)
    assert judged["lif", "fwd+bwd >= 1x sj_lif at every shape"]["met"] is None


def test_the_printed_table_ends_with_the_targets(capsys):
    results = bench_quick.run("cpu", models=("prf",), shapes=[(16, 1, 4)], scan_shape=None, repeats=1)
    assert [t["met"] for t in results["targets"]] == [None] * len(results["targets"])  # no peak, no baseline
    bench_quick.print_table(results)
    out = capsys.readouterr().out
    assert "target prf forward >= 70% of peak bandwidth at >= 2^24 elements: not measured" in out
    assert "target dsn fwd+bwd >= 25.6x sj_psn at T = 16384: not measured" in out
