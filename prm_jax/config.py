"""Experiment configs: load `PATH[:ARG]`, apply `--config.key=value` overrides, JSON round trip.

An experiment file is a Python module with `get_config(arg) -> ml_collections.ConfigDict`
(see `experiments/arith_prm.py` for the layout every training config follows).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
from typing import Any, Sequence


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
    """Returns the ConfigDict of `PATH[:ARG]` by calling the file's `get_config(ARG)`."""
    path, _, arg = spec.partition(":")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"config file {path!r} not found (from --config {spec!r})")
    module = load_module(path)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"config file {path} has no get_config(arg)")
    return module.get_config(arg) if arg else module.get_config(None)


# Sections passed through to other code (ModelConfig fields, the data module's keys): new keys allowed.
OPEN_SECTIONS = ("model", "data")


def _parse_value(text: str, old: Any) -> Any:
    """Returns `text` parsed as a Python literal, converted to the type of the existing value."""
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
    if isinstance(old, str) and not isinstance(value, str):
        return text
    if isinstance(old, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def apply_overrides(config, overrides: Sequence[str]):
    """Returns `config` with `--config.a.b=value` (or `config.a.b=value`) overrides applied in place.

    Values are Python literals (`3`, `1e-4`, `'x'`, `(1, 2)`, `None`) or bare strings. Unknown keys are
    an error naming the key, so a typo never trains silently with the default, except under
    `model` and `data`, whose keys are ModelConfig fields / data-module settings (`train.setup`
    rejects a key that is not a ModelConfig field).
    """
    for item in overrides:
        text = item[2:] if item.startswith("--") else item
        if not text.startswith("config.") or "=" not in text:
            raise ValueError(f"override {item!r} must look like --config.key=value")
        key, _, raw = text[len("config.") :].partition("=")
        parts = key.split(".")
        node = config
        for i, part in enumerate(parts[:-1]):
            if part not in node:
                raise KeyError(
                    f"override {item!r}: config has no key {'.'.join(parts[: i + 1])!r}"
                    f"{_nearest(part, node, parts[:i])}"
                )
            node = node[part]
        last = parts[-1]
        if last not in node and parts[0] not in OPEN_SECTIONS:
            raise KeyError(f"override {item!r}: config has no key {key!r}{_nearest(last, node, parts[:-1])}")
        if parts[0] == "data" and last not in node:
            from prm_jax.data.pipeline import check_data_keys

            check_data_keys({".".join(parts[1:2]): None} if len(parts) == 2 else {"arith": {parts[-1]: None}})
        old = node[last] if last in node else None
        value = _parse_value(raw, old)
        try:
            node[last] = value
        except TypeError as e:
            raise TypeError(
                f"override {item!r}: {value!r} does not fit the type of the current value {old!r} ({e})"
            ) from None
    return config


def _nearest(name: str, node, prefix) -> str:
    import difflib

    keys = list(node.keys()) if hasattr(node, "keys") else []
    near = difflib.get_close_matches(name, keys, n=1)
    return f" (did you mean --config.{'.'.join(list(prefix) + [near[0]])}?)" if near else ""


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
    """Returns config[a][b]... for 'a.b...', or `default` where a key is missing or None."""
    node = config
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, AttributeError):
            return default
        if node is None:
            return default
    return node
