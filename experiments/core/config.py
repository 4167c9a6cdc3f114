"""One config flow for every entry point: dataclass defaults, then an optional config
file (TOML or JSON), then command-line overrides. Resolved once, in the entry point,
and passed down explicitly; nothing here is global or mutable.

A run's settings live in named sections, each a dataclass instance (for the LM
trainer: `train` and `model`). A key may be written with its section
(`model.n_layer = 4`, `--model.n_layer=4`) or bare (`n_layer = 4`, `--n_layer 4`) when
only one section has a field of that name. Unknown keys fail with the closest names.

Config files: TOML tables map to sections ([model] n_layer = 4) and top-level keys
are resolved like bare keys; JSON is the same shape.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import json
import math
import re
import sys
import tomllib
import types
import typing
from pathlib import Path


class ConfigError(ValueError):
    """A config key or value that cannot be used; the message names the fix."""


HELP = "__help__"  # the pair split_cli records for -h / --help


def _comments(cls) -> dict[str, str]:
    """Field name -> its source comment (the documentation of every setting), inherited
    fields included; a comment continued on the following comment-only lines is joined."""
    out = {}
    for klass in reversed([k for k in cls.__mro__ if dataclasses.is_dataclass(k)]):
        try:
            lines = inspect.getsource(klass).splitlines()
        except (OSError, TypeError):
            continue
        name = None
        for line in lines:
            m = re.match(r"\s+(\w+)\s*:[^#]*#\s*(.*)$", line)
            if m:
                name, out[m.group(1)] = m.group(1), m.group(2)
            elif name and re.match(r"\s+#\s*(.*)$", line):
                out[name] += " " + line.strip()[1:].strip()
            else:
                name = None
    return out


def usage(sections: dict) -> str:
    """Every setting of every section with its default and comment (what --help prints)."""
    main = sys.modules.get("__main__")
    doc = (getattr(main, "__doc__", None) or "").strip()
    lines = [doc, ""] if doc else []
    lines.append("Settings (--key=value or --section.key=value; --config FILE.toml sets them from a file; "
                 "--debug true shows the traceback of an error):")
    for sec, obj in sections.items():
        lines.append(f"\n[{sec}]")
        notes = _comments(type(obj))
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            if dataclasses.is_dataclass(value):
                continue  # a nested section (e.g. generator.mapping), listed as its own table
            note = f"  # {notes[f.name]}" if f.name in notes else ""
            lines.append(f"  {f.name} = {value!r}{note}")
    return "\n".join(lines)


def load_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".toml":
            return tomllib.loads(text)
        if path.suffix == ".json":
            return json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"config file {path} is not valid {path.suffix[1:].upper()}: {e}") from None
    raise ConfigError(f"config file {path} must end in .toml or .json")


def split_cli(argv: list[str]) -> tuple[str | None, list[tuple[str, str]]]:
    """['--config', 'f.toml', '--lr=3e-4', '--n_layer', '4'] -> ('f.toml', [('lr', '3e-4'), ('n_layer', '4')])."""
    config_path, pairs, i = None, [], 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):  # resolve() prints the settings and exits
            pairs.append((HELP, "true"))
            i += 1
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}; settings are given as --key=value or --key value")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"--{key} needs a value (--{key}=VALUE)")
            value, i = argv[i + 1], i + 1
        key = key.replace("-", "_")
        if key == "config":
            config_path = value
        else:
            pairs.append((key, value))
        i += 1
    return config_path, pairs


def read_cli(argv: list[str] | None) -> tuple[dict, list[tuple[str, str]]]:
    """The opening of every entry point: (values of the --config file, or {}; the other
    --key=value pairs). argv None means the process's command line."""
    config_path, pairs = split_cli(sys.argv[1:] if argv is None else argv)
    return (load_file(config_path) if config_path else {}), pairs


def parse(sections: dict, argv: list[str] | None) -> dict:
    """defaults <- --config FILE <- --key=value for an entry point whose settings are these sections."""
    file_values, pairs = read_cli(argv)
    return resolve(sections, file_values, pairs)


def _fields(obj) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(obj)}


def _locate(sections: dict, key: str) -> tuple[str, str]:
    """'model.n_layer' or 'n_layer' -> ('model', 'n_layer'); unknown or ambiguous keys raise."""
    if "." in key:
        sec, _, name = key.partition(".")
        if sec in sections and name in _fields(sections[sec]):
            return sec, name
    else:
        owners = [s for s, obj in sections.items() if key in _fields(obj)]
        if len(owners) == 1:
            return owners[0], key
        if len(owners) > 1:
            raise ConfigError(f"{key!r} is a setting of several sections ({', '.join(owners)}); "
                              f"write it as {owners[0]}.{key}")
    known = [f"{s}.{n}" for s, obj in sections.items() for n in _fields(obj)] + \
            [n for obj in sections.values() for n in _fields(obj)]
    close = difflib.get_close_matches(key, known, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(f"unknown setting {key!r}{hint} (known: {', '.join(sorted(set(known)))})")


def _convert(value, typ, key):
    """Parse a command-line string (or check a file value) against a field's type."""
    origin = typing.get_origin(typ)
    if origin in (typing.Union, types.UnionType):  # e.g. int | None
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _convert(value, args[0], key)
    if typ is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
            return True
        if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if typ in (int, float, str):
        if isinstance(value, bool) or (typ is str and not isinstance(value, str)):
            raise ConfigError(f"{key} must be a {typ.__name__}, got {value!r}")
        try:
            if typ is int and isinstance(value, float) and not value.is_integer():
                raise ValueError
            out = typ(float(value)) if typ is int and isinstance(value, str) and "e" in value.lower() else typ(value)
        except ValueError:
            raise ConfigError(f"{key} must be a {typ.__name__}, got {value!r}") from None
        if typ is float and not math.isfinite(out):  # nan passes every `x < 0` check and means nothing
            raise ConfigError(f"{key} must be a finite number, got {value!r}")
        return out
    return value


def _set(sections, key, raw, updates):
    sec, name = _locate(sections, key)
    typ = typing.get_type_hints(type(sections[sec]))[name]
    updates.setdefault(sec, {})[name] = _convert(raw, typ, f"{sec}.{name}")


def resolve(sections: dict, file_values: dict | None = None, cli_pairs=()) -> dict:
    """New section objects: defaults <- file values <- command-line pairs. Validation
    runs in each dataclass's __post_init__ (dataclasses.replace calls it). With -h / --help
    on the command line it prints every setting (usage) and exits."""
    if any(k == HELP for k, _ in cli_pairs):
        print(usage(sections))
        raise SystemExit(0)
    updates: dict[str, dict] = {}
    for key, value in (file_values or {}).items():
        if isinstance(value, dict) and key in sections:  # a TOML table / JSON object for a section
            for k, v in value.items():
                _set(sections, f"{key}.{k}", v, updates)
        else:
            _set(sections, key, value, updates)
    for key, value in cli_pairs:
        _set(sections, key, value, updates)
    try:
        return {s: dataclasses.replace(obj, **updates.get(s, {})) for s, obj in sections.items()}
    except (TypeError, ValueError) as e:
        raise ConfigError(str(e)) from None


def refuse_data_derived(sections: dict, names=("vocab_size",)) -> None:
    """Sizes the data decides (the vocabulary) are filled in by the trainer: a value given for one
    would be silently overwritten, so it is an error that says where the size comes from."""
    for sec, obj in sections.items():
        for name in names:
            if hasattr(obj, name) and getattr(obj, name) != getattr(type(obj)(), name):
                raise ConfigError(f"{sec}.{name} = {getattr(obj, name)} cannot be set: it comes from the data (the "
                                  "training split's vocabulary, with --min_freq / --max_vocab / --lowercase shaping "
                                  f"it); remove {name} from the command line or config file")


def peek(file_values: dict, cli_pairs, section: str, key: str, default):
    """A value needed before the sections exist (e.g. which model's config class to build)."""
    value = file_values.get(key, default)
    if isinstance(value, dict):  # a table of that name (e.g. [model]), not the bare key
        value = default
    if isinstance(file_values.get(section), dict):
        value = file_values[section].get(key, value)
    for k, v in cli_pairs:
        if k in (key, f"{section}.{key}"):
            value = v
    return value
