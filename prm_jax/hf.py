"""Hugging Face checkpoints <-> prm_jax.model params (Llama, Qwen2, Mistral; safetensors only).

Loading reads one tensor at a time through `safetensors.safe_open` and writes it into the scanned
layout (per-layer tensors stacked on a leading `layers` axis), so host memory holds the final params
plus one parameter being assembled, never a second full copy. With `shardings` each tensor goes
straight to its sharding with `jax.make_array_from_callback`. The step-score head is prm-jax's own
file beside a causal-LM folder, or the `score` layer of a `*ForTokenClassification` folder (the form
TRL's PRMs use): `prm_jax.hf_heads` reads and writes both.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
from typing import Any, Callable, Optional, Union

import jax
import numpy as np
from tqdm.auto import tqdm

from prm_jax import hf_heads
from prm_jax import model as M
from prm_jax.hf_heads import LIKELIHOOD_KEY, SCORE_HEAD_FILE  # noqa: F401  (the folder layout's names)

log = logging.getLogger(__name__)

_ARCH_NAMES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM"}
# a token-classification PRM has the same decoder (hf_heads)
_ARCHS = {
    **{v: k for k, v in _ARCH_NAMES.items()},
    **{v: k for k, v in hf_heads.TOKEN_CLASSIFICATION.items()},
    **{v: k for k, v in hf_heads.PROCESS_REWARD.items()},
}

# ----------------------------------------------------------------------------------------------------
# config.json <-> ModelConfig
# ----------------------------------------------------------------------------------------------------


def _rope_from_hf(hf: dict, where: str) -> tuple[float, Optional[M.RopeScaling]]:
    """Returns (rope_theta, rope_scaling) from either the new `rope_parameters` or the old keys."""
    params = hf.get("rope_parameters")
    if params is not None:
        theta = params.get("rope_theta", hf.get("rope_theta", 10000.0))
        scaling = params
    else:
        theta = hf.get("rope_theta", 10000.0)
        scaling = hf.get("rope_scaling")
    if not scaling:
        return float(theta), None
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return float(theta), None
    if kind != "llama3":
        raise ValueError(f"{where}: unsupported rope scaling type {kind!r} (supported: default, llama3)")
    return float(theta), M.RopeScaling(
        factor=float(scaling["factor"]),
        low_freq_factor=float(scaling["low_freq_factor"]),
        high_freq_factor=float(scaling["high_freq_factor"]),
        original_max_position_embeddings=int(scaling["original_max_position_embeddings"]),
    )


def config_from_hf(hf: dict, where: str = "config.json", **overrides) -> M.ModelConfig:
    """Returns the ModelConfig described by a parsed HF config.json dict (overrides applied last)."""
    archs = hf.get("architectures") or []
    arch = archs[0] if archs else None
    if arch not in _ARCHS:
        raise ValueError(
            f"{where}: unsupported architecture {arch!r} (model_type {hf.get('model_type')!r}); "
            f"supported: {sorted(_ARCHS)}"
        )
    family = _ARCHS[arch]
    act = hf.get("hidden_act", "silu")
    if act != "silu":
        raise ValueError(f"{where}: unsupported hidden_act {act!r} for {arch} (only silu)")
    if hf.get("mlp_bias"):
        raise ValueError(f"{where}: mlp_bias=true is not supported")
    if family == "llama" and hf.get("attention_bias"):
        raise ValueError(f"{where}: LlamaForCausalLM with attention_bias=true (o_proj bias) is not supported")
    if family == "qwen2" and hf.get("use_sliding_window"):
        raise ValueError(f"{where}: Qwen2 use_sliding_window=true (per-layer windows) is not supported")
    theta, scaling = _rope_from_hf(hf, where)
    n_heads = int(hf["num_attention_heads"])
    d = int(hf["hidden_size"])
    fields = dict(
        vocab_size=int(hf["vocab_size"]),
        d_model=d,
        n_layers=int(hf["num_hidden_layers"]),
        n_heads=n_heads,
        n_kv_heads=int(hf.get("num_key_value_heads") or n_heads),
        head_dim=int(hf.get("head_dim") or d // n_heads),
        mlp_dim=int(hf["intermediate_size"]),
        rope_theta=theta,
        rope_scaling=scaling,
        norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        qkv_bias=family == "qwen2",
        tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
        max_seq_len=int(hf.get("max_position_embeddings", 2048)),
        architecture=family,
        sliding_window=hf.get("sliding_window") if family == "mistral" else None,
        score_likelihood=bool(hf.get(LIKELIHOOD_KEY, False)),
    )
    fields.update(overrides)
    return M.ModelConfig(**fields)


def config_to_hf(cfg: M.ModelConfig, dtype: str) -> dict:
    """Returns the HF config.json dict for cfg (new `rope_parameters` plus the legacy rope keys)."""
    if cfg.architecture == "llama" and cfg.qkv_bias:
        raise ValueError(
            "qkv_bias=True cannot be saved as LlamaForCausalLM (its attention_bias also adds an "
            "o_proj bias); use architecture='qwen2'"
        )
    if cfg.architecture != "mistral" and cfg.sliding_window is not None:
        raise ValueError(f"sliding_window is only saved for architecture mistral, not {cfg.architecture}")
    rs = cfg.rope_scaling
    scaling = (
        None
        if rs is None
        else dict(
            rope_type="llama3",
            factor=rs.factor,
            low_freq_factor=rs.low_freq_factor,
            high_freq_factor=rs.high_freq_factor,
            original_max_position_embeddings=rs.original_max_position_embeddings,
        )
    )
    rope_parameters = (
        dict(rope_type="default", rope_theta=cfg.rope_theta)
        if scaling is None
        else dict(scaling, rope_theta=cfg.rope_theta)
    )
    hf = dict(
        architectures=[_ARCH_NAMES[cfg.architecture]],
        model_type=cfg.architecture,
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        intermediate_size=cfg.mlp_dim,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.n_kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        rope_theta=cfg.rope_theta,
        rope_scaling=scaling,
        rope_parameters=rope_parameters,
        initializer_range=cfg.init_std,
        attention_dropout=0.0,
        use_cache=True,
        dtype=dtype,
        torch_dtype=dtype,
    )
    if cfg.score_likelihood:
        hf[LIKELIHOOD_KEY] = True
    if cfg.architecture == "llama":
        hf.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    elif cfg.architecture == "qwen2":
        hf.update(use_sliding_window=False, sliding_window=None, max_window_layers=cfg.n_layers)
    else:
        hf.update(sliding_window=cfg.sliding_window)
    return hf


def _config_json(path: str) -> dict:
    where = os.path.join(path, "config.json")
    if not os.path.isfile(where):
        raise FileNotFoundError(f"{where} not found (expected a Hugging Face model folder)")
    with open(where) as f:
        return json.load(f)


def load_config(path: str, **overrides) -> M.ModelConfig:
    """Returns the ModelConfig of the HF folder at path (reads config.json only)."""
    return config_from_hf(_config_json(path), os.path.join(path, "config.json"), **overrides)


# ----------------------------------------------------------------------------------------------------
# Tensor layout: HF name + transform for every parameter
# ----------------------------------------------------------------------------------------------------


def _layer_specs(cfg: M.ModelConfig) -> list:
    """Returns [(param path inside a layer, HF suffix, hf->ours, ours->hf)] for one decoder layer."""
    D, N, K, H = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
    ident = (lambda w: w, lambda w: w)
    specs = [
        (("input_norm", "scale"), "input_layernorm.weight", *ident),
        (("post_attn_norm", "scale"), "post_attention_layernorm.weight", *ident),
        (
            ("attn", "q_proj", "kernel"),
            "self_attn.q_proj.weight",
            lambda w: w.T.reshape(D, N, H),
            lambda w: w.reshape(D, N * H).T,
        ),
        (
            ("attn", "k_proj", "kernel"),
            "self_attn.k_proj.weight",
            lambda w: w.T.reshape(D, K, H),
            lambda w: w.reshape(D, K * H).T,
        ),
        (
            ("attn", "v_proj", "kernel"),
            "self_attn.v_proj.weight",
            lambda w: w.T.reshape(D, K, H),
            lambda w: w.reshape(D, K * H).T,
        ),
        (
            ("attn", "o_proj", "kernel"),
            "self_attn.o_proj.weight",
            lambda w: w.T.reshape(N, H, D),
            lambda w: w.reshape(N * H, D).T,
        ),
        (("mlp", "gate_proj", "kernel"), "mlp.gate_proj.weight", lambda w: w.T, lambda w: w.T),
        (("mlp", "up_proj", "kernel"), "mlp.up_proj.weight", lambda w: w.T, lambda w: w.T),
        (("mlp", "down_proj", "kernel"), "mlp.down_proj.weight", lambda w: w.T, lambda w: w.T),
    ]
    if cfg.qkv_bias:
        for name, heads in (("q_proj", N), ("k_proj", K), ("v_proj", K)):
            specs.append(
                (
                    ("attn", name, "bias"),
                    f"self_attn.{name}.bias",
                    (lambda n: lambda b: b.reshape(n, H))(heads),
                    lambda b: b.reshape(-1),
                )
            )
    return specs


def _top_specs(cfg: M.ModelConfig) -> list:
    """Returns [(param path, HF name, hf->ours, ours->hf)] for the non-layer parameters of the HF model."""
    specs = [
        (("embed", "embedding"), "model.embed_tokens.weight", lambda w: w, lambda w: w),
        (("final_norm", "scale"), "model.norm.weight", lambda w: w, lambda w: w),
    ]
    if not cfg.tie_embeddings:
        specs.append((("lm_head", "kernel"), "lm_head.weight", lambda w: w.T, lambda w: w.T))
    return specs


def _get(tree, path):
    for p in path:
        tree = tree[p]
    return tree


def _set(tree, path, value):
    for p in path[:-1]:
        tree = tree.setdefault(p, {})
    tree[path[-1]] = value


# ----------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------


class _SafetensorsFolder:
    """Lazily opened safetensors files of one folder; `get(name)` reads exactly one tensor."""

    def __init__(self, path: str):
        from safetensors import safe_open

        self._safe_open = safe_open
        self.path = path
        index = os.path.join(path, "model.safetensors.index.json")
        single = os.path.join(path, "model.safetensors")
        if os.path.isfile(index):
            try:
                with open(index) as f:
                    self.where = dict(json.load(f)["weight_map"])
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{index}: not a safetensors index ({type(e).__name__}: {e})") from None
            root = os.path.realpath(path)
            for name, fname in self.where.items():
                real = os.path.realpath(os.path.join(path, fname))
                if os.path.dirname(real) != root:
                    raise ValueError(
                        f"{index}: tensor {name!r} points to {fname!r}, outside the checkpoint folder {path}"
                    )
        elif os.path.isfile(single):
            self.where = {k: "model.safetensors" for k in self._open_file("model.safetensors").keys()}
        else:
            bins = [n for n in os.listdir(path) if n.endswith((".bin", ".pt", ".pth"))]
            hint = f" (found {bins}: pickle checkpoints are not loaded; convert them to safetensors)" if bins else ""
            raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {path}{hint}")
        self.read: set = set()

    def _open_file(self, fname: str):
        if not hasattr(self, "_open"):
            self._open = {}
        if fname not in self._open:
            full = os.path.join(self.path, fname)
            try:
                self._open[fname] = self._safe_open(full, "numpy")
            except Exception as e:  # safetensors raises its own error on a truncated or malformed header
                raise ValueError(f"{full}: not a readable safetensors file ({type(e).__name__}: {e})") from None
        return self._open[fname]

    def get(self, name: str) -> np.ndarray:
        if name not in self.where:
            files = sorted(set(self.where.values()))
            raise KeyError(f"tensor {name!r} missing from checkpoint {self.path} (files: {files})")
        fname = self.where[name]
        f = self._open_file(fname)
        try:
            out = f.get_tensor(name)
        except Exception as e:  # an index pointing at a file that lacks the tensor, or a truncated file
            raise ValueError(f"tensor {name!r} could not be read from {os.path.join(self.path, fname)}: {e}") from None
        self.read.add(name)
        return out

    def unused(self) -> list:
        """Returns the names of the folder's tensors that were never read, sorted."""
        return sorted(set(self.where) - self.read)


def _place(arr: np.ndarray, sharding) -> jax.Array:
    if sharding is None:
        return jax.device_put(arr)
    return jax.make_array_from_callback(arr.shape, sharding, lambda idx: arr[idx])


def _check_shape(got: np.ndarray, want: tuple, name: str, path: str):
    if tuple(got.shape) != tuple(want):
        raise ValueError(f"tensor {name!r} in {path} has shape {tuple(got.shape)}, config implies {tuple(want)}")


def _hf_shape(to_hf, ours_shape: tuple, pdt) -> tuple:
    """Returns the HF-side shape of a tensor whose prm-jax shape is `ours_shape` (no data touched)."""
    return tuple(jax.eval_shape(to_hf, jax.ShapeDtypeStruct(tuple(ours_shape), pdt)).shape)


def _read(folder, name: str, to_ours, to_hf, ours_shape: tuple, pdt, path: str) -> np.ndarray:
    """Returns tensor `name` in prm-jax's layout, its HF shape checked first (rank included), so a
    wrong size is named with both shapes instead of failing inside a reshape."""
    w = folder.get(name)
    _check_shape(w, _hf_shape(to_hf, ours_shape, pdt), name, path)
    return to_ours(w)


_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.")


def load_checkpoint(
    path: str, *, dtype: Any = None, shardings: Union[None, Any, Callable[[M.ModelConfig], Any]] = None, **overrides
) -> tuple[M.ModelConfig, Any]:
    """Returns (cfg, params) from a local HF folder (config.json + safetensors), score head included.

    A causal-LM folder's score head is prm-jax's own file; a *ForTokenClassification folder's is its
    `score` layer (`hf_heads`), and having no LM head, its LM head is zeros (a warning says so).

    dtype: parameter dtype (default cfg.param_dtype, i.e. float32). shardings: a pytree of
    jax.sharding.Sharding shaped like the params, or a function cfg -> such a pytree; each tensor is
    placed directly on its sharding. overrides: ModelConfig fields (e.g. dtype='bfloat16', remat='full',
    scan_layers=False).
    """
    if dtype is not None:
        overrides["param_dtype"] = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    hf_cfg = _config_json(path)
    cfg = config_from_hf(hf_cfg, os.path.join(path, "config.json"), **overrides)
    token_cls = hf_heads.is_token_classification(hf_cfg)
    process_rm = hf_heads.is_process_reward(hf_cfg)
    if process_rm and cfg.score_head:
        raise ValueError(
            f"{path}: a {hf_cfg['architectures'][0]} has a two-class MLP score head, not prm-jax's; "
            "load it as a Verifier with prm_jax.heads.load_verifier('qwen_prm', path) (or --head qwen_prm)"
        )
    pdt = np.dtype(jax.numpy.dtype(cfg.param_dtype))
    stacked_cfg = cfg.replace(scan_layers=True)
    abstract = M.abstract_params(stacked_cfg)
    if callable(shardings):
        shardings = shardings(cfg)
    if isinstance(shardings, dict) and "layers_0" in shardings and "scan_layers" not in overrides:
        cfg = cfg.replace(scan_layers=False)  # the caller's layout decides
    folder = _SafetensorsFolder(path)
    params: dict = {}
    top, per_layer = _top_specs(cfg), _layer_specs(cfg)
    if (token_cls or process_rm) and not cfg.tie_embeddings:
        top = [t for t in top if t[0] != ("lm_head", "kernel")]
        log.warning("%s: a %s has no LM head; its LM head is zeros", path, hf_cfg["architectures"][0])
        want = _get(abstract, ("lm_head", "kernel")).shape
        sh = None if shardings is None else _get(shardings, ("lm_head", "kernel"))
        _set(params, ("lm_head", "kernel"), _place(np.zeros(want, pdt), sh))
    bar = tqdm(
        total=len(top) + len(per_layer) * cfg.n_layers,
        desc=f"load {os.path.basename(path)}",
        unit="tensor",
        disable=len(per_layer) * cfg.n_layers < 200,
    )
    for ppath, name, to_ours, to_hf in top:
        want = _get(abstract, ppath).shape
        w = _read(folder, name, to_ours, to_hf, want, pdt, path)
        _set(params, ppath, _place(np.asarray(w, pdt), None if shardings is None else _get(shardings, ppath)))
        del w
        bar.update()
    for ppath, suffix, to_ours, to_hf in per_layer:
        full = ("layers",) + ppath
        want = _get(abstract, full).shape
        buf = np.empty(want, pdt)
        for i in range(cfg.n_layers):
            name = f"model.layers.{i}.{suffix}"
            w = _read(folder, name, to_ours, to_hf, want[1:], pdt, path)
            buf[i] = w
            del w
            bar.update()
        if cfg.scan_layers:
            _set(params, full, _place(buf, None if shardings is None else _get(shardings, full)))
        else:
            for i in range(cfg.n_layers):
                layer_path = (f"layers_{i}",) + ppath
                _set(params, layer_path, _place(buf[i], None if shardings is None else _get(shardings, layer_path)))
        del buf
    bar.close()
    if cfg.score_head:
        if token_cls:
            head = hf_heads.read_token_classification_head(folder.get, hf_cfg, cfg, pdt, path)
        else:
            head = hf_heads.load_prm_jax_head(path, cfg, pdt)
        for k, v in head.items():
            _set(
                params, ("score_head", k), _place(v, None if shardings is None else _get(shardings, ("score_head", k)))
            )
    # a family's own head is read by prm_jax.heads (QwenPRM's `score.*`, Skywork's `v_head.*`)
    unused = [n for n in folder.unused() if not ((process_rm and n.startswith("score.")) or n.startswith("v_head."))]
    extra_layers = sorted(
        {int(m.group(1)) for n in unused for m in [_LAYER_RE.match(n)] if m and int(m.group(1)) >= cfg.n_layers}
    )
    if extra_layers:
        raise ValueError(
            f"{path}: tensors of layers {extra_layers} are in the checkpoint but config.json says "
            f"num_hidden_layers={cfg.n_layers} (e.g. {next(n for n in unused if _LAYER_RE.match(n))!r})"
        )
    if unused:
        log.warning(
            "%s: %d tensors the config does not use were not loaded: %s",
            path,
            len(unused),
            ", ".join(unused[:8]) + (" ..." if len(unused) > 8 else ""),
        )
    return cfg, params


# ----------------------------------------------------------------------------------------------------
# Saving
# ----------------------------------------------------------------------------------------------------


def _hf_tensors(cfg: M.ModelConfig, params: Any, dtype):
    """Yields (HF name, numpy array) one tensor at a time."""

    def host(x):
        return np.ascontiguousarray(np.asarray(jax.device_get(x)).astype(dtype))

    for ppath, name, _, to_hf in _top_specs(cfg):
        yield name, host(to_hf(np.asarray(jax.device_get(_get(params, ppath)))))
    for i in range(cfg.n_layers):
        for ppath, suffix, _, to_hf in _layer_specs(cfg):
            if "layers" in params:
                w = jax.device_get(_get(params["layers"], ppath)[i])
            else:
                w = jax.device_get(_get(params[f"layers_{i}"], ppath))
            yield f"model.layers.{i}.{suffix}", host(to_hf(np.asarray(w)))
    if cfg.architecture == "qwen2" and not cfg.qkv_bias:
        # Qwen2 always has q/k/v biases; zeros reproduce a bias-free model exactly.
        for i in range(cfg.n_layers):
            for name, heads in (("q_proj", cfg.n_heads), ("k_proj", cfg.n_kv_heads), ("v_proj", cfg.n_kv_heads)):
                yield f"model.layers.{i}.self_attn.{name}.bias", np.zeros((heads * cfg.head_dim,), dtype)


def save_checkpoint(
    path: str,
    cfg: M.ModelConfig,
    params: Any,
    *,
    dtype: Any = None,
    max_shard_bytes: int = 5 * 2**30,
    head: str = "prm_jax",
    num_labels: int = 1,
) -> None:
    """Writes config.json and model.safetensors (sharded with an index above max_shard_bytes), with the
    score head in the form `head` names (`hf_heads.HEADS`).

    head='prm_jax': a causal-LM folder plus `score_head.safetensors`; head='token_classification':
    `*ForTokenClassification` with `num_labels` (1 or 2) that transformers loads natively (no LM head).
    dtype: dtype of the written tensors (default: the params' dtype).
    """
    from safetensors.numpy import save_file

    if head not in hf_heads.HEADS:
        raise ValueError(f"unknown head form {head!r}; choose one of {hf_heads.HEADS}")
    token_cls = head == "token_classification"
    if token_cls and not cfg.score_head:
        raise ValueError("a token-classification export needs a model with a score head")
    first = jax.tree.leaves(params)[0]
    dt = np.dtype(jax.numpy.dtype(dtype)) if dtype is not None else np.dtype(first.dtype)
    hf_cfg = config_to_hf(cfg, dt.name)
    extra = {}
    if token_cls:  # checked before anything is written
        extra = hf_heads.token_classification_tensors(cfg, params, num_labels, dt)
        hf_cfg = hf_heads.token_classification_config(hf_cfg, cfg.architecture, num_labels)
    os.makedirs(path, exist_ok=True)
    tensors = ((n, a) for n, a in _hf_tensors(cfg, params, dt) if not (token_cls and n == "lm_head.weight"))
    shards, current, size = [], {}, 0
    for name, arr in itertools.chain(tensors, extra.items()):
        if current and size + arr.nbytes > max_shard_bytes:
            shards.append(current)
            current, size = {}, 0
        current[name] = arr
        size += arr.nbytes
    shards.append(current)
    meta = {"format": "pt"}
    if len(shards) == 1:
        save_file(shards[0], os.path.join(path, "model.safetensors"), metadata=meta)
    else:
        weight_map, total = {}, 0
        for j, shard in enumerate(tqdm(shards, desc="save shards", unit="file")):
            fname = f"model-{j + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, os.path.join(path, fname), metadata=meta)
            weight_map.update({k: fname for k in shard})
            total += sum(a.nbytes for a in shard.values())
        with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(hf_cfg, f, indent=2)
    if cfg.score_head and not token_cls:
        save_file(
            hf_heads.prm_jax_head_tensors(cfg, params, dt), os.path.join(path, hf_heads.SCORE_HEAD_FILE), metadata=meta
        )


def load_tokenizer(path: str):
    """Returns the tokenizer of a local HF folder (local files only, no remote code)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path, local_files_only=True, trust_remote_code=False)
