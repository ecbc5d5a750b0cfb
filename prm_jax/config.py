"""Experiment configs: load `PATH[:ARG]`, apply `--config.key=value` overrides, JSON round trip.

An experiment file is a Python module with `get_config(arg) -> ml_collections.ConfigDict`
(see `experiments/arith_prm.py` for the layout every training config follows).
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os
from typing import Any, Sequence


class UnknownKeyError(KeyError):
    """A config key (in a file, a dict or an override) that the base config does not have."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def load_module(path: str):
    """Returns the experiment file at `path` imported as a module (never cached in sys.modules)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found")
    name = "_prm_config_" + os.path.splitext(os.path.basename(path))[0]
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def load_config(spec: str):
    """Returns the locked ConfigDict of `PATH[:ARG]` (the file's `get_config(ARG)`); a training config
    (no top-level `stage` key) is first completed from the base config."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (from --config {spec!r})")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path} has no get_config(arg)")
    config = module.get_config(arg) if arg else module.get_config(None)
    if "stage" in config:  # a stage config (demo, labelling, search, evaluation) is its own base
        config.lock()
        return config
    return complete(config, where=path)


def base_config():
    """Returns the base training config (`prm_jax/configs/base.py`), unlocked."""
    from prm_jax.configs import base

    return base.get_config()


def _missing_and_unknown(node, ref, prefix: str):
    """Adds `ref`'s keys missing from `node` (copies); raises KeyError for a key of `node` not in `ref`."""
    import ml_collections

    for k in list(node.keys()):
        if k not in ref:
            raise UnknownKeyError(_unknown(prefix + k, ref))
    for k in ref.keys():
        sub = ref[k]
        if k not in node:
            with node.unlocked():
                node[k] = copy.deepcopy(sub)
        elif isinstance(sub, ml_collections.ConfigDict) and isinstance(node[k], ml_collections.ConfigDict):
            _missing_and_unknown(node[k], sub, f"{prefix}{k}.")


def _unknown(dotted: str, ref, dashes: str = "") -> str:
    """Returns 'config.a.b is not an a setting (did you mean config.a.c?)' for a key not in `ref`."""
    import difflib

    *head, last = dotted.split(".")
    section = ".".join(head) or "top-level"
    near = difflib.get_close_matches(last, list(ref.keys()), n=1)
    hint = (
        f" (did you mean {dashes}config.{'.'.join(head + [near[0]])}?)" if near else f"; known: {', '.join(ref.keys())}"
    )
    article = "an" if section[0] in "aeiou" else "a"
    return f"config.{dotted} is not {article} {section} setting{hint}"


def complete(config, where: str = "the config"):
    """Returns a locked copy of `config` (ConfigDict or dict) with every base key it lacks added from the
    base config; a key the base does not have is a KeyError naming the nearest one."""
    import ml_collections

    out = copy.deepcopy(config) if isinstance(config, ml_collections.ConfigDict) else ml_collections.ConfigDict(config)
    try:
        _missing_and_unknown(out, base_config(), "")
    except UnknownKeyError as e:
        raise UnknownKeyError(f"{where}: {e.args[0]}") from None
    out.lock()
    return out


def complete_section(name: str, section=None):
    """Returns the base config's section `name` updated with `section` (a dict, ConfigDict or None), locked;
    an unknown key is a KeyError naming the nearest one (`data.arith` is checked too)."""
    import ml_collections

    ref = base_config()[name]
    if section is None:
        section = {}
    out = (
        copy.deepcopy(section)
        if isinstance(section, ml_collections.ConfigDict)
        else ml_collections.ConfigDict(dict(section))
    )
    _missing_and_unknown(out, ref, f"{name}.")
    out.lock()
    return out


def _parse_value(text: str, old: Any, typed: bool = True) -> Any:
    """Returns `text` parsed as a Python literal, converted to the type of the existing value (in a
    section that is not type-safe, e.g. `model`, whose fields may hold a sentinel string such as
    vocab_size='tokenizer', the literal is kept as parsed)."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    if isinstance(old, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        return bool(value)
    if isinstance(old, float) and isinstance(value, int):
        return float(value)
    if isinstance(old, str) and not isinstance(value, str) and typed:
        return text
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def apply_overrides(config, overrides: Sequence[str]):
    """Returns `config` with `--config.a.b=value` (or `config.a.b=value`) overrides applied in place.

    Values are Python literals (`3`, `1e-4`, `'x'`, `(1, 2)`, `None`) or bare strings. A key the
    config does not have is a KeyError naming the nearest one, so a typo never trains with a default.
    """
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if not text.startswith("config.") or "=" not in text:
            raise ValueError(f"override {item!r} must look like --config.key=value")
        key, _, raw = text[len("config.") :].partition("=")
        parts = key.split(".")
        node = config
        for i, part in enumerate(parts):
            if not hasattr(node, "keys"):
                raise UnknownKeyError(f"override {item!r}: config.{'.'.join(parts[:i])} is a value, not a section")
            if part not in node:
                raise UnknownKeyError(f"override {item!r}: {_unknown('.'.join(parts[: i + 1]), node, '--')}")
            if i < len(parts) - 1:
                node = node[part]
        last = parts[-1]
        old = node[last]
        value = _parse_value(raw, old, getattr(node, "is_type_safe", True))
        try:
            node[last] = value
        except TypeError as e:
            raise ValueError(
                f"override {item!r}: {value!r} does not fit the type of the current value {old!r} ({e})"
            ) from None
    return config


def config_diff(old: dict, new: dict, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Returns [(dotted key, old value, new value)] where two nested config dicts differ."""
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append((f"{prefix}{k}", a, b))
    return out


def to_dict(config) -> dict:
    """Returns a plain JSON-able dict of a ConfigDict (tuples become lists)."""
    if hasattr(config, "to_dict"):
        config = config.to_dict()
    return json.loads(json.dumps(config, default=_json_default))


def _json_default(x):
    if isinstance(x, (set, frozenset)):
        return sorted(x)
    if hasattr(x, "tolist"):
        return x.tolist()
    return str(x)


def to_json(config) -> str:
    """Returns the config as indented JSON."""
    return json.dumps(to_dict(config), indent=2, sort_keys=True)


def from_json(text_or_dict):
    """Returns a ConfigDict from JSON text (or a dict) written by `to_json`."""
    import ml_collections

    d = json.loads(text_or_dict) if isinstance(text_or_dict, str) else text_or_dict
    return ml_collections.ConfigDict(d)


def get(config, dotted: str, default: Any = None) -> Any:
    """Returns config[a][b]... for 'a.b...', or `default` where a key is missing or None (for tools
    that read dotted keys, e.g. sweep tables; the library reads `config.a.b` directly)."""
    node = config
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return default
        if node is None:
            return default
    return node
