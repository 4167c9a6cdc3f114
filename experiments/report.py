"""Re-render a comparison's report from its results.json (e.g. after changing a figure), without re-scoring:

    python -m experiments.report research/<experiment>/results.json

The learning curves are read again from the TensorBoard runs named in it. What the report
holds: experiments/reporting/comparison.py.
"""

import json
import sys
from pathlib import Path

from experiments.core import cli
from experiments.core.config import ConfigError
from experiments.reporting.comparison import write_report

USAGE = "usage: python -m experiments.report research/<experiment>/results.json"


def main(argv=None):
    args = sys.argv[1:] if argv is None else argv
    if args in (["-h"], ["--help"]):
        print(__doc__)
        return None
    if len(args) != 1 or not Path(args[0]).is_file():
        raise ConfigError(f"{USAGE} (an existing results.json written by experiments.compare)")
    results = json.loads(Path(args[0]).read_text())
    path = write_report(results, Path(args[0]).parent)
    print(path)
    return path


if __name__ == "__main__":
    cli.run(main)
