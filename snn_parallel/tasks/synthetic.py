"""Synthetic memory tasks generated from a seed: adding problem, delayed cue, temporal XOR."""

from __future__ import annotations

import numpy as np
import torch

from ._base import SequenceDataset, check_int, check_open_unit, check_seed


class AddingProblem(SequenceDataset):
    """The adding problem (as in the FPTT code): regress the sum of two marked values.

    Item ``x`` is ``[T, 2]`` float32 with ``T = num_steps``: channel 0 holds values drawn
    from U(0, 1); channel 1 is a 0/1 marker with exactly one 1 in the first half (steps
    ``0 .. T//2 - 1``) and one in the second half (steps ``ceil(T/2) .. T - 1``; for odd
    ``T`` the middle step is never marked). ``y`` is the float32 scalar sum of the two
    marked values, in [0, 2].

    Always predicting 1 scores an MSE of :attr:`BASELINE_MSE` = 1/6 (the variance of a sum
    of two U(0, 1) values); a model must beat it to have learnt anything.

    Args:
        num_steps: Sequence length ``T``, at least 2 (one step per half).
        num_samples: Number of sequences ``N``, at least 1.
        seed: Seed of the generator, an int in ``[0, 2**32 - 1]``.

    Attributes:
        inputs: All inputs ``[N, T, 2]``.
        targets: All targets ``[N]`` (float32).
        markers: Marked steps ``[N, 2]`` (int64), one per half.
    """

    BASELINE_MSE: float = 1.0 / 6.0

    def __init__(self, num_steps: int, num_samples: int, *, seed: int = 0) -> None:
        num_steps = check_int(num_steps, "num_steps", minimum=2)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        rng = np.random.default_rng(check_seed(seed))

        values = rng.random((num_samples, num_steps), dtype=np.float32)
        first = rng.integers(0, num_steps // 2, num_samples, dtype=np.int64)
        second = rng.integers((num_steps + 1) // 2, num_steps, num_samples, dtype=np.int64)
        markers = np.stack([first, second], axis=1)
        rows = np.arange(num_samples)[:, None]
        marks = np.zeros_like(values)
        marks[rows, markers] = 1.0
        targets = values[rows, markers].sum(axis=1)

        super().__init__(torch.from_numpy(np.stack([values, marks], axis=-1)), torch.from_numpy(targets))
        self.markers = torch.from_numpy(markers)


class DelayedCue(SequenceDataset):
    """Store-recall task: remember which of two input groups fired, report it at a cue.

    Channels form three groups of ``channels_per_group``: class A (``0 .. c-1``), class B
    (``c .. 2c-1``) and cue (``2c .. 3c-1``), so ``F = 3 * channels_per_group``. Item ``x``
    is ``[T, F]`` float32 spikes (0/1) with ``T = SIGNAL_STEPS + delay + cue_steps``:

    * steps ``0 .. 19``: Bernoulli(``rate``) spikes on group A for class 0, group B for class 1;
    * the next ``delay`` steps: silence;
    * the last ``cue_steps`` steps: Bernoulli(``rate``) spikes on the cue group.

    ``y`` is the int64 class (0 or 1); the loss applies on the cue window, :attr:`loss_mask`.

    Args:
        delay: Silent steps between the signal and the cue, at least 0.
        num_samples: Number of sequences ``N``, at least 1.
        seed: Seed of the generator, an int in ``[0, 2**32 - 1]``.
        channels_per_group: Channels per group, at least 1.
        cue_steps: Length of the cue window, at least 1.
        rate: Spike probability per channel and step in the signal and cue, in (0, 1].

    Attributes:
        inputs: All inputs ``[N, T, F]``.
        targets: All labels ``[N]`` (int64).
        num_classes: 2.
    """

    SIGNAL_STEPS: int = 20
    num_classes: int = 2

    def __init__(
        self,
        delay: int,
        num_samples: int,
        *,
        seed: int = 0,
        channels_per_group: int = 5,
        cue_steps: int = 20,
        rate: float = 0.4,
    ) -> None:
        delay = check_int(delay, "delay", minimum=0)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        channels = check_int(channels_per_group, "channels_per_group", minimum=1)
        self.cue_steps = check_int(cue_steps, "cue_steps", minimum=1)
        rate = check_open_unit(rate, "rate", include_one=True)
        rng = np.random.default_rng(check_seed(seed))

        labels = rng.integers(0, 2, num_samples, dtype=np.int64)
        signal = rng.random((num_samples, self.SIGNAL_STEPS, channels)) < rate
        cue = rng.random((num_samples, self.cue_steps, channels)) < rate
        inputs = np.zeros((num_samples, self.SIGNAL_STEPS + delay + self.cue_steps, 3 * channels), np.float32)
        is_b = labels.astype(bool)[:, None, None]
        inputs[:, : self.SIGNAL_STEPS, :channels] = signal & ~is_b
        inputs[:, : self.SIGNAL_STEPS, channels : 2 * channels] = signal & is_b
        inputs[:, -self.cue_steps :, 2 * channels :] = cue

        super().__init__(torch.from_numpy(inputs), torch.from_numpy(labels))

    @property
    def loss_mask(self) -> torch.Tensor:
        """Bool mask ``[T]``, True on the cue window (the last ``cue_steps`` steps)."""
        mask = torch.zeros(self.num_steps, dtype=torch.bool)
        mask[-self.cue_steps :] = True
        return mask


class TemporalXOR(SequenceDataset):
    """Temporal XOR: two bits shown apart in time; the label is their XOR.

    Item ``x`` is ``[T, 2]`` float32 with ``T = 2 * pulse_steps + delay + TRAILING_STEPS``
    (``TRAILING_STEPS = 5``): channel 0 holds the first bit (1 or 0) for steps
    ``0 .. pulse_steps - 1``, then ``delay`` silent steps, then channel 1 holds the second
    bit for ``pulse_steps`` steps, then ``TRAILING_STEPS`` silent steps in which to answer.
    ``y`` is ``bit1 XOR bit2`` (int64 scalar).

    Args:
        delay: Silent steps between the two pulses, at least 0.
        num_samples: Number of sequences ``N``, at least 1.
        seed: Seed of the generator, an int in ``[0, 2**32 - 1]``.
        pulse_steps: Length of each pulse, at least 1.

    Attributes:
        inputs: All inputs ``[N, T, 2]``.
        targets: All labels ``[N]`` (int64).
        bits: The two bits ``[N, 2]`` (int64).
        num_classes: 2.
    """

    TRAILING_STEPS: int = 5
    num_classes: int = 2

    def __init__(self, delay: int, num_samples: int, *, seed: int = 0, pulse_steps: int = 5) -> None:
        delay = check_int(delay, "delay", minimum=0)
        num_samples = check_int(num_samples, "num_samples", minimum=1)
        pulse_steps = check_int(pulse_steps, "pulse_steps", minimum=1)
        rng = np.random.default_rng(check_seed(seed))

        bits = rng.integers(0, 2, (num_samples, 2), dtype=np.int64)
        second_start = pulse_steps + delay
        inputs = np.zeros((num_samples, second_start + pulse_steps + self.TRAILING_STEPS, 2), np.float32)
        inputs[:, :pulse_steps, 0] = bits[:, :1]
        inputs[:, second_start : second_start + pulse_steps, 1] = bits[:, 1:]

        super().__init__(torch.from_numpy(inputs), torch.from_numpy(bits[:, 0] ^ bits[:, 1]))
        self.bits = torch.from_numpy(bits)
