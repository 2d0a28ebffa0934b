"""TSSL-BP's kernel-loss target: PSP(d) as submitted with the paper, PSP(PSP(d)) as the reference's later revision."""

from __future__ import annotations

import pytest
import torch
from learner_support import train_rows

from snn_parallel.learners import SpikeSequenceLoss


def _reference_psp(spikes: list[float], tau_s: float) -> list[float]:
    """The reference code's ``psp``: ``syn <- syn - syn / tau_s + x_t``, output ``syn / tau_s``."""
    syn, out = 0.0, []
    for x in spikes:
        syn = syn - syn / tau_s + x
        out.append(syn / tau_s)
    return out


@pytest.mark.parametrize("steps, pattern", [(5, [0, 1, 1, 1, 1]), (10, [0, 1] * 5)])
def test_kernel_target_is_filtered_once_or_twice(steps, pattern):
    once = _reference_psp(pattern, 3.0)
    twice = _reference_psp(once, 3.0)  # main.py filters d, then the later loss_kernel filters it again
    like = torch.zeros((), dtype=torch.float64)
    torch.testing.assert_close(SpikeSequenceLoss().desired_psp(steps, like), torch.tensor(once, dtype=torch.float64))
    torch.testing.assert_close(
        SpikeSequenceLoss(kernel_target="psp_psp").desired_psp(steps, like), torch.tensor(twice, dtype=torch.float64)
    )
    if steps == 5:  # the values the fidelity notes quote
        assert [round(v, 3) for v in once] == [0, 0.333, 0.556, 0.704, 0.802]
        assert [round(v, 3) for v in twice] == [0, 0.111, 0.259, 0.407, 0.539]


def test_kernel_loss_trains_against_the_chosen_target():
    torch.manual_seed(0)
    outputs, target = torch.rand(5, 3, 4, dtype=torch.float64), torch.tensor([2, 0, 3])
    loss = SpikeSequenceLoss(kernel_target="psp_psp")
    desired = torch.zeros_like(outputs)
    desired[:, torch.arange(3), target] = torch.tensor(
        _reference_psp(_reference_psp([0, 1, 1, 1, 1], 3.0), 3.0), dtype=torch.float64
    )[:, None]
    # the reference sums 1/2 (o - target)^2 over steps, classes and the batch; the library reports the batch mean
    torch.testing.assert_close(loss.sequence_loss(outputs, target), 0.5 * (outputs - desired).square().sum() / 3)


def test_kernel_target_refuses_other_values():
    with pytest.raises(ValueError, match="kernel_target"):
        SpikeSequenceLoss(kernel_target="psp2")


def test_cli_kernel_target(tmp_path, capsys):
    from snn_parallel import cli

    row = train_rows(tmp_path, "--task image --rule tsslbp --epochs 1 --network 4C3-12 --kernel-target psp_psp")[0]
    assert row["kernel_target"] == "psp_psp"
    for argv in (
        ["--task", "row", "--kernel-target", "psp_psp"],
        ["--task", "image", "--loss", "count", "--kernel-target", "psp"],
    ):
        assert cli.main(["train", *argv]) == 2
        assert "--kernel-target" in capsys.readouterr().err
