import dataclasses
import json
from pathlib import Path

import pytest

from experiments.core import config as cfglib
from experiments.train_lm import TrainConfig, parse_args

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "experiments" / "configs" / "lm").glob("*.toml"))


def test_precedence_defaults_file_cli(tmp_path):
    f = tmp_path / "run.toml"
    f.write_text('[train]\nlr = 0.005\nmax_steps = 10\n[model]\nn_layer = 3\n')
    cfg, model = parse_args(["--config", str(f), "--max_steps", "20", "--model.n_embd=32", "--preset=makemore"])
    assert cfg.lr == 0.005            # file over default
    assert cfg.max_steps == 20        # command line over file
    assert model.n_layer == 3         # file over preset
    assert model.n_embd == 32         # command line over preset
    assert cfg.batch_size == TrainConfig.batch_size  # untouched default


def test_json_config_and_bare_keys(tmp_path):
    f = tmp_path / "run.json"
    f.write_text(json.dumps({"n_head": 2, "batch_size": 8}))
    cfg, model = parse_args(["--config", str(f)])
    assert model.n_head == 2 and cfg.batch_size == 8


def test_ambiguous_bare_key_asks_for_a_section():
    @dataclasses.dataclass
    class A:
        x: int = 1

    @dataclasses.dataclass
    class B:
        x: int = 2

    with pytest.raises(cfglib.ConfigError, match="a.x"):
        cfglib.resolve({"a": A(), "b": B()}, {}, [("x", "3")])
    out = cfglib.resolve({"a": A(), "b": B()}, {}, [("b.x", "3")])
    assert out["a"].x == 1 and out["b"].x == 3


def test_sections_are_not_mutated():
    t = TrainConfig()
    cfglib.resolve({"train": t}, {}, [("lr", "0.5")])
    assert t.lr == TrainConfig.lr


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_every_shipped_config_loads(path):
    cfg, model = parse_args(["--config", str(path)])
    assert cfg.model and dataclasses.is_dataclass(model)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_every_setting_with_its_comment(flag, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--lr", "1e-3", flag])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "[train]" in out and "[model]" in out
    for f in dataclasses.fields(TrainConfig):
        assert f"  {f.name} = " in out
    assert "max_steps = 2000  # optimizer steps" in out  # the default and the source comment


ROOT = Path(__file__).resolve().parent.parent / "experiments" / "configs"


@pytest.mark.parametrize("path", sorted(ROOT.glob("*/*.toml")), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_committed_config_resolves(path, tmp_path):
    """Each config file resolves through the command it is written for, and a comparison's (or a
    literature table's) every entry through its family's trainer, with the comparison's data: a
    broken key surfaces here, not after the first models of a long run have trained."""
    from experiments import frontier, literature
    from experiments.generators import guidance
    from experiments.studies import comparison
    from experiments.trainers import gan, lm, relgan, seqgan
    trainers = {"lm": lm, "gan": gan, "seqgan": seqgan, "relgan": relgan}
    kind = path.parent.name
    if kind in trainers:
        trainers[kind].parse_args(["--config", str(path)])
        return
    extras = {"compare": None, "literature": {"literature": literature.LiteratureConfig()},
              "frontier": {"frontier": frontier.FrontierConfig(), "guide": guidance.GuideConfig()}}
    assert kind in extras, f"{path}: no command known for configs/{kind}/"
    extra = extras[kind]
    sections, entries, _ = comparison.parse_sections(*cfglib.read_cli(["--config", str(path)]), extra=extra)
    comparison.preflight(sections["compare"], entries, tmp_path, vocabularies={})
