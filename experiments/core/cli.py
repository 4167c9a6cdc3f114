"""How every entry point runs: a TextDuel error is one clear message and exit status 2.

    if __name__ == "__main__":
        cli.run(main)

A `CorpusError`, `ConfigError` or `CheckpointError` already says what is wrong and how to
fix it, so the traceback under it only hides the message: it is printed as `error: ...`
on stderr and the process exits with status 2 (the usage-error status of Unix tools).
`--debug true` (on any entry point) re-raises it with the traceback. Any other exception
is a bug or a failure of the machine and keeps its traceback.
"""

from __future__ import annotations

import sys

from baselines.hf_gpt2 import HFCheckpointError
from datasets.corpora import CorpusError
from experiments.core.checkpoint import CheckpointError
from experiments.core.config import ConfigError
from experiments.jobs.cells import JobsFailed

TEXTDUEL_ERRORS = (CorpusError, ConfigError, CheckpointError, HFCheckpointError)
EXIT_USAGE = 2


def pop_debug(argv: list[str]) -> tuple[bool, list[str]]:
    """(--debug's value, argv without it): --debug, --debug=true|false, --debug true|false."""
    debug, rest, i = False, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--debug":
            nxt = argv[i + 1].lower() if i + 1 < len(argv) else ""
            if nxt in ("true", "false", "1", "0", "yes", "no"):
                debug, i = nxt in ("true", "1", "yes"), i + 1
            else:
                debug = True
        elif arg.startswith("--debug="):
            debug = arg.split("=", 1)[1].lower() in ("true", "1", "yes")
        else:
            rest.append(arg)
        i += 1
    return debug, rest


def run(main, argv: list[str] | None = None):
    """main(argv) with TextDuel's errors turned into a one-line message and exit status 2."""
    debug, argv = pop_debug(list(sys.argv[1:] if argv is None else argv))
    try:
        return main(argv)
    except TEXTDUEL_ERRORS as e:
        if debug:
            raise
        print(f"error: {e}\n(add --debug true for the traceback)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except JobsFailed as e:  # each failure was reported with its log's tail as it happened
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(1) from None
