"""``python -m snn_parallel.bench [options]``, and ``--worker JOB``: one case measured in this process."""

import argparse
import sys

from . import __doc__ as _doc
from .measure import worker
from .options import add_arguments
from .run import main

if sys.argv[1:2] == ["--worker"]:
    raise SystemExit(worker(sys.argv[2]))
_parser = argparse.ArgumentParser(prog="python -m snn_parallel.bench", description=_doc.split("\n")[0])
add_arguments(_parser)
raise SystemExit(main(_parser.parse_args()))
