"""The layout rule of experiments/: commands (experiments/<command>.py, run as python -m
experiments.<command>) import library code only, and library code never imports a command."""

import ast
from pathlib import Path

EXPERIMENTS = Path(__file__).resolve().parent.parent / "experiments"
COMMANDS = {p.stem for p in EXPERIMENTS.glob("*.py")} - {"__init__", "families", "generation", "comparison", "guidance"}


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


def test_the_commands_are_the_entry_points_we_document():
    assert {"train_lm", "train_gan", "compare", "sample", "sample_gan", "score", "report"} <= COMMANDS


def test_no_module_imports_a_command():
    offenders = []
    for path in sorted(EXPERIMENTS.rglob("*.py")):
        for module in imported_modules(path):
            if module.startswith("experiments.") and module.split(".")[1] in COMMANDS and len(module.split(".")) == 2:
                offenders.append(f"{path.relative_to(EXPERIMENTS.parent)} imports {module}")
    assert not offenders, offenders


def test_every_command_runs_through_the_cli_wrapper():
    # one-line errors and exit status 2 for bad input (experiments/core/cli.py)
    for name in sorted(COMMANDS):
        text = (EXPERIMENTS / f"{name}.py").read_text()
        assert 'if __name__ == "__main__":' in text and "cli.run(main)" in text, name
