"""The command line and the demo."""

from __future__ import annotations

import pytest

from snn_parallel import cli
from snn_parallel.demo import run_demo

pytest.importorskip("sklearn")


@pytest.mark.parametrize("neuron", ["dsn", "prf", "ltc"])
def test_demo_trains_and_reports(neuron):
    lines = []
    result = run_demo(neuron, epochs=1, hidden=16, progress=False, log=lines.append)
    assert 0.0 <= result.test_accuracy <= 1.0
    assert result.samples_per_second > 0 and result.seconds_per_epoch > 0
    assert "test accuracy" in lines[-1]


def test_demo_rejects_bad_arguments():
    with pytest.raises(ValueError, match="neuron must be one of"):
        run_demo("lif", progress=False)
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        run_demo("dsn", epochs=0, progress=False)


def test_cli_demo_runs(capsys):
    assert cli.main(["demo", "--epochs", "1", "--hidden", "8", "--no-progress"]) == 0
    assert "test accuracy" in capsys.readouterr().out


def test_cli_rejects_unknown_neuron():
    with pytest.raises(SystemExit):
        cli.main(["demo", "--neuron", "izhikevich"])


@pytest.mark.slow
@pytest.mark.parametrize("neuron", ["dsn", "prf", "ltc"])
def test_default_demo_reaches_80_percent(neuron):
    """The README's promise: the default demo reaches at least 80 % test accuracy."""
    assert run_demo(neuron, progress=False).test_accuracy >= 0.80
