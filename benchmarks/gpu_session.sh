#!/usr/bin/env bash
# One short GPU session as a single command, from the repository root (about 9 minutes at most):
#
#     bash benchmarks/gpu_session.sh            # results in benchmarks/
#     bash benchmarks/gpu_session.sh --dry-run  # steps 0 and 1 and the GPU tests' collection only, no GPU needed:
#                                               # run it beforehand where Python and torch are as on the GPU machine
#
# 0. links adapters/ in as snn_parallel/adapters for the session: pyproject maps that subpackage to the folder,
#    which only an installed package sees, not a checkout on PYTHONPATH;
# 1. installs the wheels in .wheels/ if there are any (offline: SpikingJelly 2.0 and what it imports, and
#    pytest-xdist, fetched beforehand with `make gpu-wheels`), so that the quick benchmark has its SpikingJelly
#    baselines; without them the baselines are skipped with a note and the tests run in one process;
# 2. runs the GPU tests (pytest -m gpu: every kernel against its float64 torch path in float32, float16 and
#    bfloat16, CUDA graphs, torch.compile, no host synchronisation; past a test file that does not import there;
#    in GPU_TEST_WORKERS processes (default 4) where pytest-xdist is installed) -> benchmarks/gpu_tests_<gpu>.log;
# 3. runs the quick benchmark (snn-parallel bench --device cuda --quick) -> benchmarks/gpu_quick_<gpu>.json,
#    .log and, with matplotlib, .png.
# Each step has its own time limit; both logs start with the device, the software versions and the command.
# The package is used from this checkout (PYTHONPATH), not installed. PYTHON overrides the interpreter.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=benchmarks
case "${1:-}" in
    "") dry_run=false ;;
    --dry-run) dry_run=true ;;
    *) echo "usage: bash benchmarks/gpu_session.sh [--dry-run]" >&2; exit 2 ;;
esac
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ ! -e snn_parallel/adapters ]; then
    ln -s ../adapters snn_parallel/adapters && trap 'rm -f snn_parallel/adapters' EXIT
fi

install_wheels() {
    if compgen -G ".wheels/*.whl" > /dev/null; then
        $PY -m pip install -q --no-index --no-deps .wheels/*.whl \
            || echo "note: the wheels in .wheels/ did not install; the SpikingJelly baselines will be skipped"
    else
        echo "note: no .wheels/ (make gpu-wheels fetches them); the SpikingJelly baselines are skipped if it is not installed"
    fi
}

# the long-sequence references are bound by the host and one process: with pytest-xdist (a wheel in .wheels/),
# several processes share the GPU so that the tests fit their time limit
test_workers() {
    if $PY -c "import xdist" 2>/dev/null; then echo "-n ${GPU_TEST_WORKERS:-4}"; fi
}

if $dry_run; then
    install_wheels
    $PY -m pytest -m gpu tests --collect-only -q -p no:cacheprovider $(test_workers)
    exit $?
fi

gpu=$($PY -c "import torch; print(torch.cuda.get_device_name() if torch.cuda.is_available() else '')")
if [ -z "$gpu" ]; then
    echo "gpu_session.sh: no CUDA device visible to torch" >&2
    exit 2
fi
tag=$(echo "$gpu" | tr 'A-Z' 'a-z' | sed -E 's/nvidia //; s/[^a-z0-9]+/_/g; s/_+$//' | cut -d_ -f1)
versions=$($PY -c "
import platform, torch
try:
    import cupy; c = f'CuPy {cupy.__version__}'
except Exception as e:
    c = f'no CuPy ({type(e).__name__})'
print(f'Python {platform.python_version()}, torch {torch.__version__} (CUDA {torch.version.cuda}), {c}')")

install_wheels

header() {  # the first lines of a log: command, device, versions
    echo "# $1"
    echo "# $gpu, $versions; $(date -u +%Y-%m-%dT%H:%MZ)"
}

tests_log="$OUT/gpu_tests_$tag.log"
command="$PY -m pytest -m gpu tests -q -rfE --durations=20 -p no:cacheprovider --continue-on-collection-errors"
command="$command $(test_workers)"
{ header "$command"; timeout 270 $command 2>&1; echo "# exit status $?"; } | tee "$tests_log"

quick="$OUT/gpu_quick_$tag"
plot=""
if $PY -c "import matplotlib" 2>/dev/null; then plot="--plot $quick.png"; fi
command="$PY -m snn_parallel.cli bench --device cuda --quick --json $quick.json $plot"
{ header "$command"; timeout 270 $command 2>&1; echo "# exit status $?"; } | tee "$quick.log"
if [ -z "$plot" ]; then
    echo "note: no matplotlib here; plot later with: python -c \"import json; from pathlib import Path; from snn_parallel import bench_quick; bench_quick.plot(Path('$quick.png'), json.loads(Path('$quick.json').read_text()))\""
fi
