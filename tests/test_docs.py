"""The READMEs cannot rot silently.

Every command line in a README that runs `-m experiments.<command>` (in a fenced block, with its
`\\` continuations joined, `torchrun ... -m` lines included, or inline in backticks) is given to
that command's own `parse_args`: its settings must resolve (parse only, nothing trains or is
written). Placeholders are filled from fixtures first: the corpus folders the READMEs cut or
generate (`/tmp/my_corpus/`, `/tmp/messages/`) become a temporary folder, `$TEXTDUEL_DATA_DIR` the
data directory, and each `<placeholder>` a value of its kind from PLACEHOLDERS (a placeholder not
there is a failure: add it). A line whose command itself is a placeholder,
`python -m experiments.<command>`, is a pattern, not a command line. Every relative link and image
in a README must point at a file that exists, and a link to `#anchor` at a heading there.
"""

import importlib
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CORPUS_FOLDERS = ("/tmp/my_corpus/", "/tmp/messages/")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.M | re.S)
INLINE = re.compile(r"`([^`\n]*-m experiments\.[^`\n]*)`")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
SHELL_STOPS = {"|", ">", ">>", "&&", ";", "&", "2>&1"}
PLACEHOLDERS = {"<corpus>": "numbers", "<experiment>": "compare-numbers", "<name>": "gpt2", "<model>": "gpt2"}
PATTERN = re.compile(r"-m experiments\.<")


def readmes() -> list[Path]:
    """Every README.md git tracks or would track (untracked but not ignored), so runs/ never counts."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "*README.md"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    return sorted(REPO / p for p in out.split() if (REPO / p).is_file())


def command_lines(text: str) -> list[str]:
    """The `-m experiments.X` command lines of a README's text: fenced ones joined across `\\`, and inline ones."""
    lines = []
    for block in FENCE.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if "-m experiments." in line:
                lines.append(line)
    outside = FENCE.sub("", text)
    return [line for line in lines + INLINE.findall(outside) if not PATTERN.search(line)]


def command_of(line: str, fill: dict[str, str]) -> tuple[str, list[str]]:
    """(command, argv) of one command line: placeholders filled, comments and shell plumbing dropped."""
    for placeholder, value in {**PLACEHOLDERS, **fill}.items():
        line = line.replace(placeholder, value)
    words = shlex.split(line, comments=True)
    at = words.index("-m")
    argv = []
    for w in words[at + 2:]:
        if w in SHELL_STOPS:
            break
        argv.append(w)
    return words[at + 1].removeprefix("experiments."), argv


def parse_failures(lines: list[str], fill: dict[str, str]) -> list[str]:
    """Each line whose command does not exist or whose settings its parse_args refuses, with the reason."""
    failures = []
    for line in lines:
        command, argv = command_of(line, fill)
        left = re.findall(r"<[\w-]+>", " ".join(argv))
        if left:
            failures.append(f"{line.strip()}\n    -> placeholders with no value in PLACEHOLDERS: {left}")
            continue
        try:
            module = importlib.import_module(f"experiments.{command}")
            module.parse_args(argv)
        except (Exception, SystemExit) as e:  # noqa: BLE001  (any refusal is the finding)
            failures.append(f"{line.strip()}\n    -> {type(e).__name__}: {e}")
    return failures


def anchors(readme: Path) -> set[str]:
    """GitHub's heading anchors: lowercased, punctuation but hyphens dropped, spaces to hyphens."""
    text = FENCE.sub("", readme.read_text(encoding="utf-8"))
    heads = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, re.M)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def broken_links(readme: Path) -> list[str]:
    """The relative links (and images) of one README that point at no file, or at no heading of it."""
    broken = []
    for target in LINK.findall(FENCE.sub("", readme.read_text(encoding="utf-8"))):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        dest = (readme.parent / path).resolve() if path else readme
        if not dest.exists():
            broken.append(f"{readme.relative_to(REPO)}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{readme.relative_to(REPO)}: {target} (no such heading)")
    return broken


@pytest.fixture
def fill(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "val", "test"):
        (corpus / f"{split}.txt").write_text("".join(f"line {i} of {split}\n" for i in range(40)), encoding="utf-8")
    data = os.environ.get("TEXTDUEL_DATA_DIR") or str(tmp_path)
    return {**{folder: f"{corpus}/" for folder in CORPUS_FOLDERS}, "$TEXTDUEL_DATA_DIR": data}


def test_every_readme_command_line_parses(fill, monkeypatch):
    monkeypatch.chdir(REPO)  # the READMEs' relative paths (experiments/configs/...) are from the root
    lines = [line for readme in readmes() for line in command_lines(readme.read_text(encoding="utf-8"))]
    commands = {command_of(line, fill)[0] for line in lines}
    on_disk = {p.stem for p in (REPO / "experiments").glob("*.py") if p.stem != "__init__"}
    assert len(lines) >= 40, f"only {len(lines)} command lines found: is the collector still reading the READMEs?"
    assert on_disk <= commands, f"commands no README shows: {sorted(on_disk - commands)}"
    failures = parse_failures(lines, fill)
    assert not failures, "README command lines their command refuses:\n" + "\n".join(failures)


def test_every_relative_link_in_the_readmes_exists():
    found = readmes()
    assert REPO / "README.md" in found and len(found) >= 6
    broken = [b for readme in found for b in broken_links(readme)]
    assert not broken, "\n".join(broken)


def test_the_docs_checks_catch_a_bad_flag_a_missing_command_and_a_bad_link(tmp_path, fill, monkeypatch):
    """Both checks, broken on purpose: a README with a mistyped setting, a command that does not
    exist, a placeholder with no value, a good line continued over two lines, a link to a missing
    file and one to a missing heading."""
    monkeypatch.chdir(REPO)
    readme = tmp_path / "README.md"
    (tmp_path / "exists.md").write_text("# Real heading\n", encoding="utf-8")
    readme.write_text(
        "# Title\n\n```bash\n"
        "python -m experiments.train_lm --dataset /tmp/my_corpus/train.txt \\\n    --n_layre 2   # a typo\n"
        "OMP_NUM_THREADS=1 python -m experiments.train_lm --dataset /tmp/my_corpus/train.txt \\\n    --n_layer 2\n"
        "```\n\nInline: `python -m experiments.no_such_command --x 1`, `python -m experiments.score --samples <unknown>`, "
        "and a pattern, `python -m experiments.<command>`.\n\n"
        "[fine](exists.md#real-heading) [gone](missing.md) [no heading](exists.md#other) [here](#title)\n",
        encoding="utf-8")
    lines = command_lines(readme.read_text(encoding="utf-8"))
    assert len(lines) == 4  # the pattern is not a command line
    failures = parse_failures(lines, fill)
    assert len(failures) == 3
    assert "n_layre" in failures[0] and "n_layer" in failures[0]  # the closest valid name is suggested
    assert "no_such_command" in failures[1]
    assert "<unknown>" in failures[2] and "PLACEHOLDERS" in failures[2]
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert broken_links(readme) == ["README.md: missing.md (no such file)", "README.md: exists.md#other (no such heading)"]
