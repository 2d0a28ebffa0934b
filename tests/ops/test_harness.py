"""The CPU kernel harness itself (``tests/kernel_harness``): threads as fibers with real block and warp barriers and
shuffles, blocks on several host threads that really wait for each other, and failures reported, not hung."""

from __future__ import annotations

import kernel_harness
import pytest
import torch

PROBE = kernel_harness.HARNESS_DIR / "probe.cu"


@pytest.fixture(scope="module")
def probe(tmp_path_factory):
    if kernel_harness.GXX is None:
        pytest.skip("g++ not on PATH: CPU kernel emulation skipped")
    return kernel_harness.build(tmp_path_factory.mktemp("probe"), extra=[PROBE], files=[])


@pytest.mark.parametrize("workers", [1, 4])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_block_scan_with_shuffles_and_barriers(probe, seed, workers):
    probe.seed, probe.workers = seed, workers
    x = torch.randint(-4, 5, (3 * 256,)).float()
    out = torch.empty_like(x)
    probe.launch("probe_block_scan", (3,), (256,), x, out)
    torch.testing.assert_close(out, x.view(3, 256).cumsum(1).view(-1), rtol=0, atol=0)


def test_warp_shuffles(probe):
    x = torch.randn(64)
    sums, first, following = (torch.empty(64) for _ in range(3))
    probe.launch("probe_warp", (1,), (64,), x, sums, first, following)
    warps = x.view(2, 32)
    torch.testing.assert_close(sums.view(2, 32), warps.sum(1, keepdim=True).expand(2, 32))
    assert torch.equal(first.view(2, 32), warps[:, :1].expand(2, 32))
    expected = torch.cat([warps[:, 1:], warps[:, 31:]], 1)  # lane 31 keeps its own value
    assert torch.equal(following.view(2, 32), expected)


def test_a_missing_barrier_is_caught_by_some_schedule(tmp_path):
    """Without the barrier between writing and reading the warp totals, some seeds read them too early."""
    if kernel_harness.GXX is None:
        pytest.skip("g++ not on PATH")
    source = PROBE.read_text().replace("#define PROBE_SKIP_BARRIER 0", "#define PROBE_SKIP_BARRIER 1")
    (tmp_path / "racy").mkdir()
    (tmp_path / "racy" / "probe.cu").write_text(source)
    racy = kernel_harness.build(tmp_path / "lib", extra=[tmp_path / "racy" / "probe.cu"], files=[], strict=False)
    x = torch.ones(256)
    wrong = 0
    for seed in range(5):
        racy.seed = seed
        out = torch.empty_like(x)
        racy.launch("probe_block_scan", (1,), (256,), x, out)
        wrong += not torch.equal(out, x.cumsum(0))
    assert wrong > 0


@pytest.mark.parametrize("workers", [1, 2, 8])
def test_blocks_wait_for_each_other_across_host_threads(probe, workers):
    """A chain across 64 blocks in ticket order: right for any number of workers and schedule; with one, no block
    ever waits (the one before it has finished); with several, some schedule makes a block wait for a predecessor
    running on another host thread."""
    probe.workers = workers
    waits = 0
    for seed in range(20):
        probe.seed = seed
        x = torch.randn(64)
        prefix = torch.zeros(64)
        flags = torch.zeros(65, dtype=torch.int32)
        probe.reset_counters()
        probe.launch("probe_chain", (64,), (32,), x, prefix, flags)
        torch.testing.assert_close(prefix, x.cumsum(0))
        waits += probe.counters()["lookback_wait"]
        if workers == 1 and seed == 2 or workers > 1 and waits > 0:
            break
    assert (waits > 0) == (workers > 1)


@pytest.mark.parametrize(
    "mode, message", [(0, "deadlock"), (1, "after some threads of the block had exited"), (2, "without the whole warp")]
)
def test_divergent_barriers_are_reported(probe, mode, message):
    probe.workers = 1
    with pytest.raises(RuntimeError, match=message):
        probe.launch("probe_divergent_barrier", (1,), (32,), torch.zeros(32), mode)


def test_a_wait_that_never_ends_times_out(probe):
    probe.workers, probe.timeout_s = 2, 0.5
    try:
        with pytest.raises(RuntimeError, match="ran past the timeout"):
            probe.launch("probe_wait_forever", (2,), (1,), torch.zeros(1, dtype=torch.int32))
    finally:
        probe.timeout_s = 60.0
