"""The layout rule of experiments/: its top level holds only the commands (experiments/<command>.py,
run as python -m experiments.<command>), library code lives in its subpackages; a command imports
library code only, and library code never imports a command. The trainers stay readable: files
under experiments/trainers/ at most 400 lines, functions there at most 80."""

import ast
import re
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
MAX_TRAINER_LINES, MAX_TRAINER_FUNCTION = 400, 80


def commands(root: Path = EXPERIMENTS) -> set[str]:
    """Every experiments/*.py but __init__.py is a command: the set comes from the layout."""
    return {p.stem for p in root.glob("*.py")} - {"__init__"}


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-local imports included)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.add(node.module)
            if node.module == "experiments":  # from experiments import compare
                out |= {f"experiments.{a.name}" for a in node.names}
    return out


def command_imports(root: Path = EXPERIMENTS) -> list[str]:
    """'<file> imports <command>' for every module under root that imports a command, and every
    job target ("experiments.<module>:<function>", what a grid's worker imports) naming one."""
    names, offenders = commands(root), []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        targets = set(re.findall(r"""["'](experiments\.[\w.]+):\w+["']""", text))
        for module in imported_modules(path) | targets:
            parts = module.split(".")
            if parts[0] == "experiments" and len(parts) == 2 and parts[1] in names:
                offenders.append(f"{path.relative_to(root.parent)} imports {module}")
    return offenders


def not_commands(root: Path = EXPERIMENTS) -> list[str]:
    """Top-level files without what makes a command: a main and a parse_args (each defined or
    imported; parse_args(argv) resolves the settings alone, what tests/test_docs.py checks the
    READMEs' command lines with) and a __main__ guard that runs main through the cli wrapper
    (one-line errors, exit status 2)."""
    out = []
    for name in sorted(commands(root)):
        text = (root / f"{name}.py").read_text()
        tree = ast.parse(text)
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)} | {
            a.asname or a.name for n in tree.body if isinstance(n, ast.ImportFrom) for a in n.names}
        if not ({"main", "parse_args"} <= defined and 'if __name__ == "__main__":' in text and "cli.run(main)" in text):
            out.append(f"experiments/{name}.py")
    return out


def oversized(root: Path = EXPERIMENTS / "trainers") -> list[str]:
    out = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > MAX_TRAINER_LINES:
            out.append(f"{path.name}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_TRAINER_FUNCTION:
                    out.append(f"{path.name}: {node.name} is {n} lines")
    return out


def test_the_commands_are_the_entry_points_we_document():
    assert {"train_lm", "train_gan", "compare", "sample", "sample_gan", "score", "report", "frontier",
            "literature", "ladder"} <= commands()


def test_every_top_level_module_is_a_command():
    assert not not_commands(), "library code belongs in a subpackage of experiments/"


def test_no_module_imports_a_command():
    assert not command_imports(), command_imports()


def test_trainers_stay_small():
    assert not oversized(), oversized()


def test_the_rules_catch_what_they_forbid(tmp_path):
    """Each rule fails on a layout that breaks it."""
    root = tmp_path / "experiments"
    (root / "lib").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "go.py").write_text('from experiments.core import cli\ndef parse_args(argv): ...\n'
                                'def main(argv=None): ...\nif __name__ == "__main__":\n    cli.run(main)\n')
    (root / "helpers.py").write_text("def helper(): ...\n")  # library code at the top level
    (root / "half.py").write_text('from experiments.core import cli\ndef main(argv=None): ...\n'
                                  'if __name__ == "__main__":\n    cli.run(main)\n')  # no parse_args
    (root / "lib" / "uses.py").write_text("from experiments import go\n")
    (root / "lib" / "cells.py").write_text('TARGET = "experiments.go:main"\n')
    assert not_commands(root) == ["experiments/half.py", "experiments/helpers.py"]
    assert command_imports(root) == ["experiments/lib/cells.py imports experiments.go",
                                     "experiments/lib/uses.py imports experiments.go"]
    trainers = root / "trainers"
    trainers.mkdir()
    (trainers / "long.py").write_text("def f():\n" + "    x = 1\n" * 90 + "\n" * 320)
    assert oversized(trainers) == ["long.py: 411 lines", "long.py: f is 91 lines"]
