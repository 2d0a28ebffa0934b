"""``snn-parallel bench``: time our parallel neurons against snnTorch and SpikingJelly.

**What is timed.** One training step of a lone neuron layer: the forward pass over the whole
sequence ``x = rand(T, B, C) * 1.5`` (``requires_grad=True``) plus ``spikes.sum().backward()``.
Each case gets one warm-up run and then the median of ``--repeats`` runs. Slow cases get fewer
runs: no further run starts once it would take the measured runs past about 10 s, so a run
longer than 5 s is measured once or twice. The count is set from the measured runs and not
from the warm-up, so a stall during the warm-up does not cut it. Every row reports the number
of runs used. Gradients are cleared outside the timed region. On CUDA the device is
synchronised around each run. The baselines are snnTorch's ``Leaky`` stepped in a Python loop
over ``x.unbind(0)`` (indexing ``x[t]`` instead makes the backward pass O(T^2)), and
SpikingJelly's multi-step ``LIFNode``, ``PSN`` and ``SlidingPSN``.

**How memory is measured.** The peak resident memory added by the runs, warm-up included:
``VmHWM`` after the runs minus the ``VmRSS`` just before the first forward pass, both read from
``/proc/self/status``. The high-water mark is reset first by writing ``5`` to
``/proc/self/clear_refs``. Where that fails, the process's lifetime peak is used instead
(``VmHWM``, or ``ru_maxrss`` without ``/proc``). That fallback can under-count, and rows say
which method they used. On CUDA the figure is ``torch.cuda.max_memory_allocated`` after
``reset_peak_memory_stats``, minus the memory already allocated.

**On a GPU** (``--device cuda``) the default shapes are T in {1024, 4096, 16384, 65536} by
B·C in {256, 4096, 65536} (``CUDA_SHAPES``, up to 2^30 elements), our neurons take their default
``backend="auto"`` (the CuPy kernels when CuPy works; each row names the backend), the input
checks that read data are off, and SpikingJelly 0.0.0.0.14's nodes run their CuPy backend
(SpikingJelly 2.x picks its fastest path itself). Each row also gives the achieved bandwidth:
``bytes`` / time, where ``bytes`` is a lower bound any implementation must move, 4 float32
tensors of T·B·C elements (read x, write the spikes, read their gradient, write x's), and its
fraction of the device's peak bandwidth (from the memory clock and bus width, else a table).
Then the recurrence forward alone, ``linear_scan`` on float32 ``[T, B, C]`` with time-varying
decays at B·C·T = 2^28 (``RECURRENCE_SHAPES``), which moves 12 bytes per element (read a and b,
write h): its bandwidth fraction is the kernel's memory-roofline figure.

**Why subprocesses.** Peak memory belongs to a whole process. If the cases ran one after
another in one process, their allocator caches and high-water marks would mix. A case that
crashed, ran out of memory or hung would also take the whole benchmark down with it. So each
(model, shape) case runs in a fresh ``python -m snn_parallel.bench --worker`` process, which
prints one JSON line. A failure becomes a row with an ``error`` field.

**Interrupted runs.** The ``--json`` file is rewritten after every case (``"complete": false`` until
the last), so a run cut short by a job's time limit keeps what it measured. ``--resume`` continues
it: the cases already in the file are kept and only the others run. It refuses a file measured
on another device, GPU or torch version.

Cases run from the smallest to the largest. Some larger cases of a model are skipped:

- a case that is at least as large in T, B and C as a case that failed;
- a case with the same B and C as a measured case, when the time of that measured case scaled
  linearly to the larger T (a lower bound) says that warm-up plus one run would exceed
  ``--timeout``.

The package keeps one job per module: :mod:`.cases` (what is timed), :mod:`.measure` (timing one
case in the worker), :mod:`.memory` (the resident high-water mark), :mod:`.bandwidth` (the GPU's
peak and the achieved share), :mod:`.run` (the subprocess per case, skips and the loop),
:mod:`.results` (the JSON file and ``--resume``), :mod:`.report` (machine info, speed-ups, the
table), :mod:`.plot` (the figure) and :mod:`.options` (the command-line options).
"""

from .bandwidth import PEAK_BANDWIDTH, peak_bandwidth
from .cases import CUDA_SHAPES, DEFAULT_SHAPES, MODELS, RECURRENCE, RECURRENCE_SHAPES, Shape
from .measure import measure, measure_recurrence
from .options import add_arguments
from .report import machine_info, ratios
from .results import write_json
from .run import main

__all__ = [
    "CUDA_SHAPES",
    "DEFAULT_SHAPES",
    "MODELS",
    "PEAK_BANDWIDTH",
    "RECURRENCE",
    "RECURRENCE_SHAPES",
    "Shape",
    "add_arguments",
    "machine_info",
    "main",
    "measure",
    "measure_recurrence",
    "peak_bandwidth",
    "ratios",
    "write_json",
]
