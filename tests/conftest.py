"""Shared fixtures. Real corpora come from the data directory, $TEXTDUEL_DATA_DIR (.ci/run sets it).
Tests that need one skip when it is absent, except under CI (CI=true), where a missing corpus is a
failure rather than a silent skip."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def notes_said_afresh():
    """Each test sees the data layer's notes as a fresh process would (they are said once per process)."""
    from datasets import corpora
    corpora._SAID.clear()


def _missing(msg):
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


@pytest.fixture(scope="session")
def real_file():
    """real_file(name): the path of a real corpus file in $TEXTDUEL_DATA_DIR, or a skip that says so."""
    def find(name: str) -> Path:
        d = os.environ.get("TEXTDUEL_DATA_DIR")
        if not d or not (Path(d) / name).is_file():
            _missing(f"{name} not found: set TEXTDUEL_DATA_DIR to the folder that holds the real corpora "
                     "(names.txt, tinyshakespeare.txt, image_coco*.txt, seqgan_oracle.npz)")
        return Path(d) / name
    return find


@pytest.fixture(scope="session")
def data_dir(real_file):
    return str(real_file("names.txt").parent)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    # never read or write the user's ~/.cache/textduel from tests
    monkeypatch.setenv("TEXTDUEL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def one_thread():
    """One intra-op thread for the test (restored after): tiny tensors gain nothing from more, on a
    loaded machine OpenMP workers spin-wait, and bit-exact resume comparisons need one reduction
    order. A file opts in with pytestmark = pytest.mark.usefixtures("one_thread")."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def wait_for_text(path, seconds: float) -> str:
    """The text of a file that another process writes (a job's pid file, its job record), once it
    has some; fails after `seconds`."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if path.is_file() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} never appeared")


@pytest.fixture
def wait_for():
    return wait_for_text


def python_for_ctrl_c(script: str) -> subprocess.Popen:
    """A Python child running `script` (from the repo root, output piped) that a SIGINT reaches as
    Ctrl-C would. A shell that starts a command in the background (`&` without job control, as a
    CI runner may) hands SIGINT on as ignored, and Python then installs no KeyboardInterrupt
    handler: the child puts it back first, so the test checks the code, not how it was started."""
    prologue = "import signal; signal.signal(signal.SIGINT, signal.default_int_handler)\n"
    return subprocess.Popen([sys.executable, "-c", prologue + script], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def ctrl_c_child():
    return python_for_ctrl_c
