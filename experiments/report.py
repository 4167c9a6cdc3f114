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


def parse_args(argv) -> Path | None:
    """The results.json to render; None for --help."""
    if argv in (["-h"], ["--help"]):
        return None
    if len(argv) != 1 or not Path(argv[0]).is_file():
        raise ConfigError(f"{USAGE} (an existing results.json written by experiments.compare)")
    return Path(argv[0])


def main(argv=None):
    results_file = parse_args(sys.argv[1:] if argv is None else argv)
    if results_file is None:
        print(__doc__)
        return None
    results = json.loads(results_file.read_text())
    path = write_report(results, results_file.parent)
    print(path)
    return path


if __name__ == "__main__":
    cli.run(main)
