"""Run experiments.train_lm several times in one torchrun launch, so the DDP tests pay for
starting the ranks once:

    torchrun --nproc_per_node 2 tests/ddp_runs.py '[[PORT, ["--model", "gpt2", ...]], [PORT2, [...]]]'

Each run joins and leaves its own process group. Re-joining through torchrun's agent store
would reuse the first group's rendezvous keys (a rank that arrives early can read the
stale address of the previous group and hang), so every run rendezvous afresh on its own
port: rank 0 hosts a new TCPStore there.
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from experiments import train_lm  # noqa: E402

if __name__ == "__main__":
    for port, argv in json.loads(sys.argv[1]):
        os.environ["TORCHELASTIC_USE_AGENT_STORE"] = "False"
        os.environ["MASTER_PORT"] = str(port)
        train_lm.main(argv)
