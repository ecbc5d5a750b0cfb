"""Decoder-only transformer (Llama-3 / Qwen2 / Mistral families) in Flax Linen, with a step-score head.

Parameters are a plain pytree (fp32 by default) cast to the compute dtype at use. Every parameter carries
logical axis names and every large activation a logical constraint, so that one rules table shards the
model; both are no-ops when no rules/mesh are active.

Parameter layout (``scan_layers=True``; unrolled layers are ``layers_0 .. layers_{n-1}`` without the
leading axis, see ``stack_layer_params`` / ``unstack_layer_params``)::

    embed/embedding                  [V, D]
    layers/input_norm/scale          [n_layers, D]
    layers/attn/{q,k,v}_proj/kernel  [n_layers, D, heads|kv_heads, head_dim]  (+ bias [n_layers, heads, head_dim])
    layers/attn/o_proj/kernel        [n_layers, heads, head_dim, D]
    layers/post_attn_norm/scale      [n_layers, D]
    layers/mlp/{gate,up}_proj/kernel [n_layers, D, F];  layers/mlp/down_proj/kernel [n_layers, F, D]
    final_norm/scale                 [D]
    lm_head/kernel                   [D, V]   (absent when tie_embeddings)
    score_head/kernel [D, 1], score_head/bias [1]   (absent when score_head=False)
    score_head/likelihood [2]        (only when score_likelihood: see `objectives.score_logits`)
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------------------------------
# Config
# ----------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RopeScaling:
    """Llama-3 style RoPE frequency scaling (hashable, so configs stay usable as jit static args)."""

    factor: float = 8.0
    low_freq_factor: float = 1.0
    high_freq_factor: float = 4.0
    original_max_position_embeddings: int = 8192
    rope_type: str = "llama3"


_REMAT_POLICIES = ("none", "full", "dots", "dots_no_batch", "nothing", "everything")
_ARCHITECTURES = ("llama", "qwen2", "mistral")
_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shape and numerics of the transformer. Frozen and hashable: pass it as a jit static argument."""

    vocab_size: int
    d_model: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    mlp_dim: int
    rope_theta: float = 10000.0
    rope_scaling: Optional[RopeScaling] = None
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    tie_embeddings: bool = False
    max_seq_len: int = 2048
    param_dtype: str = "float32"
    dtype: str = "float32"
    scan_layers: bool = True
    remat: str = "none"
    attention_impl: Optional[str] = "xla"
    architecture: str = "llama"
    score_head: bool = True
    # The step logit also reads the LM's log-likelihood of the step's tokens (objectives.score_logits):
    # a shallow model cannot compare a shown token with its own prediction of it (that needs a layer
    # after the prediction is formed), so without it a 2-layer PRM cannot see a wrong digit.
    score_likelihood: bool = False
    sliding_window: Optional[int] = None
    init_std: float = 0.02

    def __post_init__(self):
        rs = self.rope_scaling
        if isinstance(rs, dict):
            rs = RopeScaling(**rs)
        elif isinstance(rs, (tuple, list)):
            rs = RopeScaling(**dict(rs))
        object.__setattr__(self, "rope_scaling", rs)
        for name in ("param_dtype", "dtype"):
            v = getattr(self, name)
            v = jnp.dtype(v).name
            if v not in _DTYPES:
                raise ValueError(f"ModelConfig.{name}={v!r}; expected one of {_DTYPES}")
            object.__setattr__(self, name, v)
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim={self.head_dim} must be even for RoPE")
        if self.remat not in _REMAT_POLICIES:
            raise ValueError(f"ModelConfig.remat={self.remat!r}; expected one of {_REMAT_POLICIES}")
        if self.architecture not in _ARCHITECTURES:
            raise ValueError(f"ModelConfig.architecture={self.architecture!r}; expected one of {_ARCHITECTURES}")
        if self.score_likelihood and not self.score_head:
            raise ValueError("ModelConfig.score_likelihood=True needs score_head=True")
        if self.attention_impl not in ("xla", "cudnn", None):
            raise ValueError(f"ModelConfig.attention_impl={self.attention_impl!r}; expected xla, cudnn or None")

    def replace(self, **overrides) -> "ModelConfig":
        """Returns a copy with the given fields replaced."""
        return dataclasses.replace(self, **overrides)

    @classmethod
    def preset(cls, name: str, **overrides) -> "ModelConfig":
        """Returns the named preset (see PRESETS) with fields overridden."""
        if name not in PRESETS:
            raise KeyError(f"unknown model preset {name!r}; known: {sorted(PRESETS)}")
        return dataclasses.replace(PRESETS[name], **overrides)


_LLAMA3_8B_SCALING = RopeScaling(8.0, 1.0, 4.0, 8192)
_LLAMA32_SCALING = RopeScaling(32.0, 1.0, 4.0, 8192)

PRESETS: dict[str, ModelConfig] = {
    "tiny": ModelConfig(
        vocab_size=128, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, head_dim=16, mlp_dim=128, max_seq_len=256
    ),
    "small": ModelConfig(
        vocab_size=512, d_model=256, n_layers=4, n_heads=8, n_kv_heads=4, head_dim=32, mlp_dim=768, max_seq_len=1024
    ),
    "qwen2.5-0.5b": ModelConfig(
        vocab_size=151936,
        d_model=896,
        n_layers=24,
        n_heads=14,
        n_kv_heads=2,
        head_dim=64,
        mlp_dim=4864,
        rope_theta=1e6,
        qkv_bias=True,
        tie_embeddings=True,
        max_seq_len=32768,
        architecture="qwen2",
    ),
    "qwen2.5-1.5b": ModelConfig(
        vocab_size=151936,
        d_model=1536,
        n_layers=28,
        n_heads=12,
        n_kv_heads=2,
        head_dim=128,
        mlp_dim=8960,
        rope_theta=1e6,
        qkv_bias=True,
        tie_embeddings=True,
        max_seq_len=32768,
        architecture="qwen2",
    ),
    "qwen2.5-math-7b": ModelConfig(
        vocab_size=152064,
        d_model=3584,
        n_layers=28,
        n_heads=28,
        n_kv_heads=4,
        head_dim=128,
        mlp_dim=18944,
        rope_theta=10000.0,
        qkv_bias=True,
        tie_embeddings=False,
        max_seq_len=4096,
        architecture="qwen2",
    ),
    "llama-3.1-8b": ModelConfig(
        vocab_size=128256,
        d_model=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=8,
        head_dim=128,
        mlp_dim=14336,
        rope_theta=5e5,
        rope_scaling=_LLAMA3_8B_SCALING,
        norm_eps=1e-5,
        max_seq_len=131072,
        architecture="llama",
    ),
    "llama-3.2-1b": ModelConfig(
        vocab_size=128256,
        d_model=2048,
        n_layers=16,
        n_heads=32,
        n_kv_heads=8,
        head_dim=64,
        mlp_dim=8192,
        rope_theta=5e5,
        rope_scaling=_LLAMA32_SCALING,
        norm_eps=1e-5,
        tie_embeddings=True,
        max_seq_len=131072,
        architecture="llama",
    ),
}
# The Math models share their base's shapes; only RoPE's base and the context differ.
PRESETS["qwen2.5-math-1.5b"] = dataclasses.replace(PRESETS["qwen2.5-1.5b"], rope_theta=10000.0, max_seq_len=4096)
PRESETS["qwen2.5-7b"] = dataclasses.replace(PRESETS["qwen2.5-math-7b"], rope_theta=1e6, max_seq_len=32768)
# Qwen2.5-Math-72B(-Instruct), the backbone of Qwen2.5-Math-PRM-72B (its config.json's sizes)
PRESETS["qwen2.5-math-72b"] = dataclasses.replace(
    PRESETS["qwen2.5-math-7b"], d_model=8192, n_layers=80, n_heads=64, n_kv_heads=8, mlp_dim=29568
)


def num_params(cfg: ModelConfig) -> int:
    """Returns the parameter count of the model (score head included when cfg.score_head)."""
    from prm_jax import flops

    head = cfg.d_model + 1 + (2 if cfg.score_likelihood else 0) if cfg.score_head else 0
    return flops.Shape.of(cfg).total_params() + head


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def _constrain(x, names):
    return nn.with_logical_constraint(x, names)


def _param(module: nn.Module, name: str, init, shape, names, cfg: ModelConfig):
    return module.param(name, nn.with_logical_partitioning(init, names), shape, jnp.dtype(cfg.param_dtype))


def rope_inv_freq(cfg: ModelConfig) -> np.ndarray:
    """Returns the [head_dim/2] float32 RoPE inverse frequencies (llama3 scaling applied if configured)."""
    hd = cfg.head_dim
    inv = 1.0 / (cfg.rope_theta ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    rs = cfg.rope_scaling
    if rs is not None:
        if rs.rope_type != "llama3":
            raise ValueError(f"unsupported rope scaling type {rs.rope_type!r} (only llama3)")
        low_wavelen = rs.original_max_position_embeddings / rs.low_freq_factor
        high_wavelen = rs.original_max_position_embeddings / rs.high_freq_factor
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_wavelen, inv / rs.factor, inv)
        smooth = (rs.original_max_position_embeddings / wavelen - rs.low_freq_factor) / (
            rs.high_freq_factor - rs.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / rs.factor + smooth * scaled
        medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)


def apply_rope(x_BxLxNxH: jax.Array, positions_BxL: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Returns x rotated by RoPE at the given positions (half-split convention of HF Llama/Qwen2)."""
    angles_BxLxH2 = positions_BxL.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq)
    cos = jnp.cos(angles_BxLxH2)[:, :, None, :].astype(x_BxLxNxH.dtype)
    sin = jnp.sin(angles_BxLxH2)[:, :, None, :].astype(x_BxLxNxH.dtype)
    x1, x2 = jnp.split(x_BxLxNxH, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def resolve_attention_impl(cfg: ModelConfig) -> str:
    """Returns the jax.nn.dot_product_attention implementation of the forward pass ('xla' or 'cudnn').

    None (auto) picks cuDNN flash attention on GPU for bf16/fp16 compute (about 3.6x faster than XLA for
    Qwen2.5-0.5B shapes on an H200), XLA otherwise. Decoding uses `decode_attention` instead: its mask
    (a query block at cache offset `end` over M slots) is not the aligned causal mask cuDNN is built for.
    """
    if cfg.attention_impl is None:
        gpu = jax.default_backend() == "gpu"
        return "cudnn" if gpu and cfg.dtype in ("bfloat16", "float16") else "xla"
    return cfg.attention_impl


def decode_attention(
    q_BxSxNxH: jax.Array,
    k_BxKxHxM: jax.Array,
    v_BxKxHxM: jax.Array,
    mask_Bx1xSxM: jax.Array,
    slot_sum: bool | None = None,
) -> jax.Array:
    """Returns [B, S, N, H]: grouped-query attention of S new queries over a cache laid out [B, K, H, M].

    Query groups of a KV head share its keys; scores and softmax are float32; the cache keeps the slot
    axis minor. `slot_sum` (None: on the CPU backend) takes one new query's scores (a decode step) as
    a sum over the head dim of broadcast products along the contiguous slots instead of a batched dot:
    XLA's CPU backend runs a dot of B x K tiny matrices as that many library calls (the demo's decode
    step at B = 256, M = 192: 5.2 -> 4.3 ms; benchmarks/NOTES.md). The same sum for the values'
    product was slower there, so it stays a dot. Several queries (a prefill) are real matrix products.
    """
    B, S, N, H = q_BxSxNxH.shape
    K = k_BxKxHxM.shape[1]
    if slot_sum is None:
        slot_sum = jax.default_backend() == "cpu"
    q = q_BxSxNxH.reshape(B, S, K, N // K, H).transpose(0, 2, 3, 1, 4).astype(jnp.float32)  # B K G S H
    k, v = k_BxKxHxM.astype(jnp.float32), v_BxKxHxM.astype(jnp.float32)
    if S == 1 and slot_sum:
        q_BxKxGxH = q[:, :, :, 0] * (1.0 / math.sqrt(H))
        s = sum(q_BxKxGxH[..., h, None] * k[:, :, None, h, :] for h in range(H))[:, :, :, None]  # B K G 1 M
    else:
        s = jnp.einsum("bkgsh,bkhm->bkgsm", q, k) * (1.0 / math.sqrt(H))
    s = jnp.where(mask_Bx1xSxM[:, :, None], s, -1e30)
    p = jax.nn.softmax(s, axis=-1)
    o = jnp.einsum("bkgsm,bkhm->bkgsh", p, v)
    return o.transpose(0, 3, 1, 2, 4).reshape(B, S, N, H).astype(q_BxSxNxH.dtype)


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in float32, returned in the compute dtype."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD):
        scale_D = _param(self, "scale", nn.initializers.ones, (x_BxLxD.shape[-1],), ("embed",), self.cfg)
        x = x_BxLxD.astype(jnp.float32)
        x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + self.cfg.norm_eps)
        return (x * scale_D.astype(jnp.float32)).astype(jnp.dtype(self.cfg.dtype))


class _Proj(nn.Module):
    """Linear map `einsum(spec)` with a logically named kernel (and optional bias over the output axes)."""

    cfg: ModelConfig
    kernel_shape: tuple
    kernel_names: tuple
    spec: str
    bias_shape: Optional[tuple] = None
    bias_names: Optional[tuple] = None

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        dt = jnp.dtype(cfg.dtype)
        w = _param(self, "kernel", nn.initializers.normal(cfg.init_std), self.kernel_shape, self.kernel_names, cfg)
        y = jnp.einsum(self.spec, x.astype(dt), w.astype(dt))
        if self.bias_shape is not None:
            b = _param(self, "bias", nn.initializers.zeros, self.bias_shape, self.bias_names, cfg)
            y = y + b.astype(dt)
        return y


class Attention(nn.Module):
    """Grouped-query attention with RoPE; when decoding, reads/writes slice `layer` of the stacked KV cache."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD, positions_BxL, mask_Bx1xLxM, end, kv, layer):
        cfg = self.cfg
        D, N, K, H = cfg.d_model, cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        qb = dict(bias_shape=(N, H), bias_names=("heads", "head_dim")) if cfg.qkv_bias else {}
        kb = dict(bias_shape=(K, H), bias_names=("kv_heads", "head_dim")) if cfg.qkv_bias else {}
        q = _Proj(cfg, (D, N, H), ("embed", "heads", "head_dim"), "bld,dnh->blnh", name="q_proj", **qb)(x_BxLxD)
        k = _Proj(cfg, (D, K, H), ("embed", "kv_heads", "head_dim"), "bld,dkh->blkh", name="k_proj", **kb)(x_BxLxD)
        v = _Proj(cfg, (D, K, H), ("embed", "kv_heads", "head_dim"), "bld,dkh->blkh", name="v_proj", **kb)(x_BxLxD)
        q = _constrain(q, ("batch", "length", "heads", "head_dim"))
        k = _constrain(k, ("batch", "length", "kv_heads", "head_dim"))
        v = _constrain(v, ("batch", "length", "kv_heads", "head_dim"))
        inv_freq = rope_inv_freq(cfg)
        q = apply_rope(q, positions_BxL, inv_freq)
        k = apply_rope(k, positions_BxL, inv_freq)

        new_kv = None
        if kv is not None:
            # Decode: write this chunk's keys/values at slots end..end+S-1 of this layer's slice of the
            # stacked cache (a loop carry, so XLA updates it in place), attend over the whole slice.
            cache_k, cache_v = kv
            if jnp.ndim(end):  # one slot per row (S = 1): rows at their own offsets (continuous batching)
                rows_B = jnp.arange(k.shape[0])
                cache_k = cache_k.at[layer, rows_B, :, :, end].set(k[:, 0].astype(cache_k.dtype))
                cache_v = cache_v.at[layer, rows_B, :, :, end].set(v[:, 0].astype(cache_v.dtype))
            else:
                at = (layer, 0, 0, 0, end)
                cache_k = jax.lax.dynamic_update_slice(cache_k, k.transpose(0, 2, 3, 1)[None].astype(cache_k.dtype), at)
                cache_v = jax.lax.dynamic_update_slice(cache_v, v.transpose(0, 2, 3, 1)[None].astype(cache_v.dtype), at)
            new_kv = (cache_k, cache_v)
            out = decode_attention(q, cache_k[layer].astype(q.dtype), cache_v[layer].astype(q.dtype), mask_Bx1xLxM)
        else:
            # Queries and keys share positions, so is_causal is exact even beside an explicit segment mask,
            # and lets cuDNN skip the upper triangle.
            out = jax.nn.dot_product_attention(
                q, k, v, mask=mask_Bx1xLxM, is_causal=True, implementation=resolve_attention_impl(cfg)
            )
        out = _constrain(out, ("batch", "length", "heads", "head_dim"))
        y = _Proj(cfg, (N, H, D), ("heads", "head_dim", "embed"), "blnh,nhd->bld", name="o_proj")(out)
        return y, new_kv


class MLP(nn.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, x_BxLxD):
        cfg = self.cfg
        D, F = cfg.d_model, cfg.mlp_dim
        gate = _Proj(cfg, (D, F), ("embed", "mlp"), "bld,df->blf", name="gate_proj")(x_BxLxD)
        up = _Proj(cfg, (D, F), ("embed", "mlp"), "bld,df->blf", name="up_proj")(x_BxLxD)
        h = _constrain(jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
        return _Proj(cfg, (F, D), ("mlp", "embed"), "blf,fd->bld", name="down_proj")(h)


class Block(nn.Module):
    """Pre-norm decoder block. Signature fits nn.scan: ((x, kv), broadcast args..., layer) -> ((x, kv), None).

    kv is None (forward) or the whole stacked cache (k, v) [n_layers, B, K, H, M]; the block updates
    slice `layer` of it, so the cache stays one loop-carried buffer instead of per-layer copies.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, carry, positions_BxL, mask, end, layer):
        cfg = self.cfg
        x_BxLxD, kv = carry
        h = RMSNorm(cfg, name="input_norm")(x_BxLxD)
        a, kv = Attention(cfg, name="attn")(h, positions_BxL, mask, end, kv, layer)
        x = x_BxLxD + a
        h = RMSNorm(cfg, name="post_attn_norm")(x)
        x = x + MLP(cfg, name="mlp")(h)
        return (_constrain(x, ("batch", "length", "embed")), kv), None


def _remat_policy(name: str):
    return {
        "full": None,
        "nothing": jax.checkpoint_policies.nothing_saveable,
        "dots": jax.checkpoint_policies.checkpoint_dots,
        "dots_no_batch": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
        "everything": jax.checkpoint_policies.everything_saveable,
    }[name]


class Output(NamedTuple):
    logits: Optional[jax.Array]  # [B, L, V] compute dtype, None when lm_head=False
    hidden: jax.Array  # [B, L, D] final-normed, compute dtype
    score: Optional[jax.Array]  # [B, L] float32 step-score logit, None when cfg.score_head is False


class Transformer(nn.Module):
    """The decoder. Call with a precomputed attention mask (None = plain causal) and an optional cache."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BxL, positions_BxL, mask, *, lm_head: bool = True, end=None, kv=None):
        cfg = self.cfg
        dt = jnp.dtype(cfg.dtype)
        table_VxD = _Table(cfg, (cfg.vocab_size, cfg.d_model), ("vocab", "embed"), "embedding", name="embed")()
        x = jnp.take(table_VxD, tokens_BxL, axis=0).astype(dt)
        x = _constrain(x, ("batch", "length", "embed"))

        block = Block
        if cfg.remat != "none":
            block = nn.remat(Block, policy=_remat_policy(cfg.remat), prevent_cse=not cfg.scan_layers)
        if cfg.scan_layers:
            stack = nn.scan(
                block,
                variable_axes={"params": 0},
                split_rngs={"params": True},
                in_axes=(nn.broadcast, nn.broadcast, nn.broadcast, 0),
                length=cfg.n_layers,
                metadata_params={nn.PARTITION_NAME: "layers"},
            )
            (x, new_kv), _ = stack(cfg, name="layers")(
                (x, kv), positions_BxL, mask, end, jnp.arange(cfg.n_layers, dtype=jnp.int32)
            )
        else:
            new_kv = kv
            for i in range(cfg.n_layers):
                (x, new_kv), _ = block(cfg, name=f"layers_{i}")((x, new_kv), positions_BxL, mask, end, i)

        hidden = RMSNorm(cfg, name="final_norm")(x)
        hidden = _constrain(hidden, ("batch", "length", "embed"))
        logits = None
        if lm_head:
            if cfg.tie_embeddings:
                w_DxV = table_VxD.T
            else:
                w_DxV = _Table(cfg, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), "kernel", name="lm_head")()
            logits = jnp.einsum("bld,dv->blv", hidden, w_DxV.astype(dt))
            logits = _constrain(logits, ("batch", "length", "vocab"))
        elif not cfg.tie_embeddings and self.is_initializing():
            # Create the parameter even when this call skips the vocab projection.
            _Table(cfg, (cfg.d_model, cfg.vocab_size), ("embed", "vocab"), "kernel", name="lm_head")()
        score = None
        if cfg.score_head:
            score = _ScoreHead(cfg, name="score_head")(hidden)
        return Output(logits, hidden, score), new_kv


class _Table(nn.Module):
    """Holds one named parameter and returns it (embedding table, untied output projection)."""

    cfg: ModelConfig
    shape: tuple
    names: tuple
    pname: str

    @nn.compact
    def __call__(self):
        return _param(self, self.pname, nn.initializers.normal(self.cfg.init_std), self.shape, self.names, self.cfg)


def _likelihood_init(key, shape, dtype):
    del key
    # Weight 1 on the prefix's least likely token from the start: under Adam a weight moves about lr
    # per step, so a zero start would leave a short verifier run without the feature.
    return jnp.zeros(shape, dtype).at[0].set(1.0)


class _ScoreHead(nn.Module):
    """Dense(D -> 1) in float32; returns the per-token step-score logit [B, L].

    With cfg.score_likelihood it also holds `likelihood` [2], the weights of the step's log-likelihood
    features that `objectives.score_logits` adds at each marker.
    """

    cfg: ModelConfig

    @nn.compact
    def __call__(self, hidden_BxLxD):
        cfg = self.cfg
        if cfg.score_likelihood:
            _param(self, "likelihood", _likelihood_init, (2,), (None,), cfg)
        w = _param(self, "kernel", nn.initializers.normal(cfg.init_std), (cfg.d_model, 1), ("embed", None), cfg)
        b = _param(self, "bias", nn.initializers.zeros, (1,), (None,), cfg)
        s = jnp.einsum("bld,do->blo", hidden_BxLxD.astype(jnp.float32), w.astype(jnp.float32))
        return (s + b.astype(jnp.float32))[..., 0]


# ----------------------------------------------------------------------------------------------------
# Functional API
# ----------------------------------------------------------------------------------------------------


def _causal_segment_mask(segment_ids_BxL: jax.Array, sliding_window: Optional[int]) -> jax.Array:
    """Returns the [B, 1, L, L] bool mask: causal, same segment (segment 0 = padding attends to padding)."""
    L = segment_ids_BxL.shape[1]
    idx = jnp.arange(L)
    causal_LxL = idx[:, None] >= idx[None, :]
    if sliding_window is not None:
        causal_LxL &= (idx[:, None] - idx[None, :]) < sliding_window
    same_BxLxL = segment_ids_BxL[:, :, None] == segment_ids_BxL[:, None, :]
    return (causal_LxL[None] & same_BxLxL)[:, None]


def _dummy_inputs(cfg: ModelConfig):
    tokens = jnp.zeros((1, 8), jnp.int32)
    return tokens, jnp.broadcast_to(jnp.arange(8, dtype=jnp.int32), (1, 8))


def _boxed_init(cfg: ModelConfig, rng: jax.Array):
    tokens, positions = _dummy_inputs(cfg)
    return Transformer(cfg).init(rng, tokens, positions, None)["params"]


def init_params(cfg: ModelConfig, rng: jax.Array) -> Any:
    """Returns freshly initialised parameters: a plain (unboxed) pytree of arrays in cfg.param_dtype.

    Runs under jit (one compile instead of op-by-op dispatch). For sharded init of a large model, jit
    `nn.meta.unbox(_boxed_init(cfg, rng))` with out_shardings from `param_logical_axes` instead.
    """
    return jax.jit(lambda r: nn.meta.unbox(_boxed_init(cfg, r)))(rng)


def abstract_params(cfg: ModelConfig) -> Any:
    """Returns the parameter pytree as jax.ShapeDtypeStruct leaves; nothing is allocated."""
    return nn.meta.unbox(jax.eval_shape(functools.partial(_boxed_init, cfg), jax.random.PRNGKey(0)))


def param_logical_axes(cfg: ModelConfig) -> Any:
    """Returns a pytree like the params whose leaves are PartitionSpecs of logical axis names."""
    boxed = jax.eval_shape(functools.partial(_boxed_init, cfg), jax.random.PRNGKey(0))
    return nn.get_partition_spec(boxed)


def forward(
    cfg: ModelConfig,
    params: Any,
    tokens: jax.Array,
    *,
    segment_ids: Optional[jax.Array] = None,
    positions: Optional[jax.Array] = None,
    lm_head: bool = True,
) -> Output:
    """Returns Output(logits [B,L,V] | None, hidden [B,L,D], score [B,L] f32) for tokens [B, L].

    segment_ids [B, L] (1, 2, ... per packed example, 0 = padding) forbids attention across segments;
    positions [B, L] feed RoPE (default 0..L-1). Attention is always causal in token order.
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2:
        raise ValueError(f"tokens must be [B, L], got shape {tokens.shape}")
    B, L = tokens.shape
    if positions is None:
        positions = jnp.broadcast_to(jnp.arange(L, dtype=jnp.int32), (B, L))
    elif positions.shape != (B, L):
        raise ValueError(f"positions shape {positions.shape} != tokens shape {(B, L)}")
    mask = None
    if segment_ids is not None:
        if segment_ids.shape != (B, L):
            raise ValueError(f"segment_ids shape {segment_ids.shape} != tokens shape {(B, L)}")
        mask = _causal_segment_mask(segment_ids, cfg.sliding_window)
    elif cfg.sliding_window is not None and cfg.sliding_window < L:
        mask = _causal_segment_mask(jnp.ones((B, L), jnp.int32), cfg.sliding_window)
    out, _ = Transformer(cfg).apply({"params": params}, tokens, positions, mask, lm_head=lm_head)
    return out


def score_head_logits(cfg: ModelConfig, head: Any, hidden_BxLxD: jax.Array) -> jax.Array:
    """Returns [B, L] float32: the per-token step-score logit of score head `head` (params['score_head']
    of some run) on final hidden states, as `forward` computes it for its own head. Several probes
    trained on one frozen body share its forward this way (`prm_jax.verifier_group`)."""
    return _ScoreHead(cfg).apply({"params": head}, hidden_BxLxD)


def check_token_ids(cfg: ModelConfig, tokens, *, source: str) -> None:
    """Raises ValueError if any token id (host array) is negative or >= cfg.vocab_size.

    An out-of-range id would be gathered from outside the embedding table and turn every score into
    NaN; `source` names where the ids came from (the tokenizer) for the message.
    """
    ids = np.asarray(tokens)
    if ids.size == 0:
        return
    hi, lo = int(ids.max()), int(ids.min())
    if hi >= cfg.vocab_size or lo < 0:
        bad = hi if hi >= cfg.vocab_size else lo
        raise ValueError(
            f"token id {bad} from {source} is outside the model vocabulary of size "
            f"{cfg.vocab_size} (ids must be in [0, {cfg.vocab_size - 1}]): the tokenizer "
            "does not match the checkpoint"
        )


def output_embedding(cfg: ModelConfig, params: Any) -> jax.Array:
    """Returns the [D, V] output projection (the embedding table transposed when tied)."""
    if cfg.tie_embeddings:
        return params["embed"]["embedding"].T
    return params["lm_head"]["kernel"]


def init_cache(cfg: ModelConfig, batch: int, max_len: int, dtype: Any = None) -> dict:
    """Returns an empty KV cache: k, v [n_layers, B, n_kv_heads, head_dim, M], valid [B, M] bool, end int32.

    Slots minor, so that a decode step's products with one query run along contiguous slots
    (`decode_attention`).
    """
    dt = jnp.dtype(dtype or cfg.dtype)
    shape = (cfg.n_layers, batch, cfg.n_kv_heads, cfg.head_dim, max_len)
    return dict(
        k=jnp.zeros(shape, dt),
        v=jnp.zeros(shape, dt),
        valid=jnp.zeros((batch, max_len), bool),
        end=jnp.zeros((), jnp.int32),
    )


def extend_cache(cache: dict, n: int) -> dict:
    """Returns `cache` with n more empty slots after its last one (a prefill runs on a cache the size of
    the prefix, so that its attention never reads the slots the decode steps fill later)."""
    slots = [(0, 0)] * (cache["k"].ndim - 1) + [(0, n)]
    return dict(
        cache,
        k=jnp.pad(cache["k"], slots),
        v=jnp.pad(cache["v"], slots),
        valid=jnp.pad(cache["valid"], [(0, 0), (0, n)]),
    )


def decode(
    cfg: ModelConfig,
    params: Any,
    tokens_BxS: jax.Array,
    positions_BxS: jax.Array,
    valid_BxS: jax.Array,
    cache: dict,
    *,
    lm_head: bool = True,
) -> tuple[Output, dict]:
    """Returns (Output for the S new tokens, cache advanced by S).

    The new keys/values go to slots end..end+S-1 (left padding is marked by valid=False). Query i
    attends to valid slots j <= end + i. `cache["end"]` is a scalar (rows advance in lockstep) or, for
    S = 1, one slot per row [B] (rows at their own offsets: a row refilled with a new prefix restarts
    its new tokens after that prefix, and the slots it has not yet rewritten lie after its query). The
    caller keeps end + S <= M (the write position would otherwise be clamped or dropped).
    """
    B, S = tokens_BxS.shape
    M = cache["valid"].shape[1]
    end = cache["end"]
    slot_M = jnp.arange(M)
    if jnp.ndim(end):
        if S != 1:
            raise ValueError(f"a per-row cache end takes one new token per row, got {S}")
        valid_BxM = cache["valid"].at[jnp.arange(B), end].set(valid_BxS[:, 0].astype(bool))
        query_slot_BxS = end[:, None]
    else:
        valid_BxM = jax.lax.dynamic_update_slice(cache["valid"], valid_BxS.astype(bool), (0, end))
        query_slot_BxS = jnp.broadcast_to(end + jnp.arange(S), (B, S))
    allowed_BxSxM = slot_M <= query_slot_BxS[..., None]
    if cfg.sliding_window is not None:
        allowed_BxSxM &= (query_slot_BxS[..., None] - slot_M) < cfg.sliding_window
    mask = (allowed_BxSxM & valid_BxM[:, None, :])[:, None]
    out, (k, v) = Transformer(cfg).apply(
        {"params": params}, tokens_BxS, positions_BxS, mask, lm_head=lm_head, end=end, kv=(cache["k"], cache["v"])
    )
    return out, dict(k=k, v=v, valid=valid_BxM, end=end + S)


def stack_layer_params(params: Any, n_layers: int) -> Any:
    """Returns params with layers_0..layers_{n-1} stacked into one 'layers' subtree (scan layout)."""
    params = dict(params)
    layers = [params.pop(f"layers_{i}") for i in range(n_layers)]
    params["layers"] = jax.tree.map(lambda *xs: jnp.stack(xs), *layers)
    return params


def unstack_layer_params(params: Any, n_layers: int) -> Any:
    """Returns params with the scanned 'layers' subtree split into layers_0..layers_{n-1}."""
    params = dict(params)
    stacked = params.pop("layers")
    for i in range(n_layers):
        params[f"layers_{i}"] = jax.tree.map(lambda x: x[i], stacked)
    return params
