"""Tests for prm_jax.model: shapes, presets, masking (packing, causality), scan/remat/bf16, KV-cache decode."""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec

from prm_jax import model as M
from _hf_utils import random_params  # tests/ is on sys.path under pytest

CFG = M.ModelConfig.preset("tiny")


@pytest.fixture(scope="module")
def params():
    return random_params(CFG, seed=0)


def test_init_params_statistics():
    p = M.init_params(CFG, jax.random.PRNGKey(0))
    shapes = jax.tree.map(lambda x: (x.shape, x.dtype), M.abstract_params(CFG))
    assert jax.tree.map(lambda x: (x.shape, x.dtype), p) == shapes
    assert all(isinstance(x, jax.Array) for x in jax.tree.leaves(p))
    np.testing.assert_array_equal(p["final_norm"]["scale"], 1.0)
    np.testing.assert_array_equal(p["score_head"]["bias"], 0.0)
    q = np.asarray(p["layers"]["attn"]["q_proj"]["kernel"])
    assert abs(q.std() - CFG.init_std) < 0.1 * CFG.init_std
    assert not np.allclose(q[0], q[1])  # layers get different draws


@functools.partial(jax.jit, static_argnums=0, static_argnames=("lm_head",))
def fwd(cfg, p, tokens, segment_ids=None, positions=None, lm_head=True):
    """Jitted M.forward: one compile per config and shape keeps this file fast on a loaded CPU."""
    return M.forward(cfg, p, tokens, segment_ids=segment_ids, positions=positions, lm_head=lm_head)


def _tokens(B, L, seed=0, vocab=CFG.vocab_size):
    return jnp.asarray(np.random.default_rng(seed).integers(0, vocab, (B, L)), jnp.int32)


def test_preset_shapes_and_param_counts():
    # Published totals (HF safetensors, without our score head of D + 1 parameters).
    known = {
        "qwen2.5-0.5b": 494_032_768,
        "qwen2.5-math-7b": 7_615_616_512,
        "llama-3.1-8b": 8_030_261_248,
        "llama-3.2-1b": 1_235_814_400,
    }
    for name, n in known.items():
        cfg = M.ModelConfig.preset(name)
        abstract = M.abstract_params(cfg)
        counted = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(abstract))
        assert counted == M.num_params(cfg) == n + cfg.d_model + 1, name
    q = M.ModelConfig.preset("qwen2.5-0.5b")
    assert (q.vocab_size, q.d_model, q.n_layers, q.n_heads, q.n_kv_heads, q.mlp_dim) == (151936, 896, 24, 14, 2, 4864)
    assert q.tie_embeddings and q.qkv_bias and q.rope_theta == 1e6
    l8 = M.ModelConfig.preset("llama-3.1-8b")
    assert l8.rope_scaling == M.RopeScaling(8.0, 1.0, 4.0, 8192) and not l8.qkv_bias and not l8.tie_embeddings
    assert M.ModelConfig.preset("tiny", d_model=32, head_dim=8).d_model == 32
    hash(l8)  # usable as a jit static argument
    with pytest.raises(KeyError, match="unknown model preset"):
        M.ModelConfig.preset("gpt-5")


def test_bad_config_and_inputs(params):
    with pytest.raises(ValueError, match="multiple of n_kv_heads"):
        M.ModelConfig.preset("tiny", n_kv_heads=3)
    with pytest.raises(ValueError, match="remat"):
        M.ModelConfig.preset("tiny", remat="sometimes")
    with pytest.raises(ValueError, match="architecture"):
        M.ModelConfig.preset("tiny", architecture="gpt2")
    with pytest.raises(ValueError, match=r"tokens must be \[B, L\]"):
        M.forward(CFG, params, jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="segment_ids shape"):
        M.forward(CFG, params, jnp.zeros((2, 5), jnp.int32), segment_ids=jnp.ones((2, 4), jnp.int32))
    # dict / tuple-of-pairs rope scaling normalise to the hashable dataclass
    c = M.ModelConfig.preset("tiny", rope_scaling=(("factor", 8.0), ("original_max_position_embeddings", 64)))
    assert isinstance(c.rope_scaling, M.RopeScaling) and c.rope_scaling.factor == 8.0


def test_attention_impl_resolution():
    assert M.resolve_attention_impl(CFG.replace(attention_impl=None)) == "xla"  # CPU here
    assert M.resolve_attention_impl(CFG.replace(attention_impl="cudnn")) == "cudnn"
    with pytest.raises(ValueError, match="attention_impl"):
        M.ModelConfig.preset("tiny", attention_impl="flash")


def test_logical_axes_match_params(params):
    axes = M.param_logical_axes(CFG)
    allowed = {"vocab", "embed", "heads", "kv_heads", "head_dim", "mlp", "layers", None}
    flat_p = jax.tree_util.tree_leaves_with_path(params)
    flat_a = jax.tree_util.tree_leaves_with_path(axes, is_leaf=lambda x: isinstance(x, PartitionSpec))
    assert [p for p, _ in flat_p] == [p for p, _ in flat_a]
    for (path, x), (_, spec) in zip(flat_p, flat_a):
        assert isinstance(spec, PartitionSpec) and len(spec) == x.ndim, path
        assert set(spec) <= allowed, (path, spec)
    assert axes["layers"]["attn"]["q_proj"]["kernel"] == PartitionSpec("layers", "embed", "heads", "head_dim")
    assert axes["embed"]["embedding"] == PartitionSpec("vocab", "embed")
    abstract = M.abstract_params(CFG)
    assert jax.tree.map(lambda x: (x.shape, x.dtype), abstract) == jax.tree.map(lambda x: (x.shape, x.dtype), params)


def test_forward_outputs_and_lm_head_switch(params):
    tokens = _tokens(2, 12)
    out = fwd(CFG, params, tokens)
    assert out.logits.shape == (2, 12, CFG.vocab_size) and out.hidden.shape == (2, 12, CFG.d_model)
    assert out.score.shape == (2, 12) and out.score.dtype == jnp.float32
    no_head = fwd(CFG, params, tokens, lm_head=False)
    assert no_head.logits is None
    np.testing.assert_array_equal(no_head.hidden, out.hidden)
    np.testing.assert_array_equal(no_head.score, out.score)
    # logits are hidden @ output_embedding, score is the dense head on hidden
    w = M.output_embedding(CFG, params)
    np.testing.assert_allclose(out.logits, np.asarray(out.hidden) @ np.asarray(w), atol=1e-5)
    sh = params["score_head"]
    np.testing.assert_allclose(
        out.score, np.asarray(out.hidden) @ np.asarray(sh["kernel"])[:, 0] + sh["bias"][0], atol=1e-5
    )
    tied = M.ModelConfig.preset("tiny", tie_embeddings=True, score_head=False)
    tp = {k: v for k, v in params.items() if k not in ("lm_head", "score_head")}
    assert jax.tree.structure(tp) == jax.tree.structure(M.abstract_params(tied))
    to = fwd(tied, tp, tokens)
    assert to.score is None
    np.testing.assert_allclose(to.logits, np.asarray(to.hidden) @ np.asarray(tp["embed"]["embedding"]).T, atol=1e-5)


def test_rmsnorm_and_rope_against_numpy():
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    cfg = M.ModelConfig.preset("tiny", d_model=8, head_dim=4)
    y = M.RMSNorm(cfg).apply({"params": {"scale": np.full(8, 2.0, np.float32)}}, x)
    ref = 2.0 * x / np.sqrt((x**2).mean(-1, keepdims=True) + cfg.norm_eps)
    np.testing.assert_allclose(y, ref, rtol=1e-5)
    # RoPE on one head of size 4 at position p: pairs (0, 2) and (1, 3) rotate by p * theta^(-2i/4).
    inv = M.rope_inv_freq(cfg)
    np.testing.assert_allclose(inv, [1.0, 1.0 / 100.0], rtol=1e-6)
    v = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
    out = np.asarray(M.apply_rope(jnp.asarray(v)[None, None, None], jnp.array([[5]]), inv))[0, 0, 0]
    for i, (a, b) in enumerate([(0, 2), (1, 3)]):
        ang = 5 * inv[i]
        np.testing.assert_allclose(
            [out[a], out[b]],
            [v[a] * np.cos(ang) - v[b] * np.sin(ang), v[b] * np.cos(ang) + v[a] * np.sin(ang)],
            rtol=1e-5,
        )


def test_packed_sequences_match_separate(params):
    a, b = _tokens(1, 7, seed=1), _tokens(1, 5, seed=2)
    packed = jnp.concatenate([a, b, jnp.zeros((1, 3), jnp.int32)], axis=1)
    seg = jnp.array([[1] * 7 + [2] * 5 + [0] * 3], jnp.int32)
    pos = jnp.array([list(range(7)) + list(range(5)) + [0] * 3], jnp.int32)
    out = fwd(CFG, params, packed, segment_ids=seg, positions=pos)
    # Both examples alone in one unpacked batch; b's trailing filler cannot reach b's positions (causal).
    alone = fwd(CFG, params, jnp.concatenate([a, jnp.concatenate([b, a[:, :2]], 1)], 0))
    alone_a, alone_b = jax.tree.map(lambda x: x[:1], alone), jax.tree.map(lambda x: x[1:, :5], alone)
    np.testing.assert_allclose(out.logits[:, :7], alone_a.logits, atol=1e-5)
    np.testing.assert_allclose(out.logits[:, 7:12], alone_b.logits, atol=1e-5)
    np.testing.assert_allclose(out.score[:, 7:12], alone_b.score, atol=1e-5)
    # without segment ids the second example would see the first: the test can fail
    leaky = fwd(CFG, params, packed, positions=pos)
    assert np.abs(np.asarray(leaky.logits[:, 7:12] - alone_b.logits)).max() > 1e-4


def test_causality_gradient(params):
    """d output[t] / d embedding(token[t+1..]) is exactly zero, and nonzero for token[t]."""
    L, t = 10, 4
    tokens = jnp.asarray(np.random.default_rng(3).permutation(CFG.vocab_size)[:L][None], jnp.int32)

    def out_t(table):
        p = dict(params, embed={"embedding": table})
        o = fwd(CFG, p, tokens)
        return o.logits[0, t].sum() + o.score[0, t]

    g = np.asarray(jax.jit(jax.grad(out_t))(params["embed"]["embedding"]))
    rows = np.asarray(tokens[0])
    assert np.all(g[rows[t + 1 :]] == 0.0)
    assert np.abs(g[rows[t]]).max() > 0 and np.abs(g[rows[0]]).max() > 0


def test_scan_unrolled_and_remat_agree(params):
    tokens = _tokens(2, 12, seed=4)  # the shape test_forward_outputs compiled already
    ref = fwd(CFG, params, tokens)
    ucfg = CFG.replace(scan_layers=False)
    up = M.unstack_layer_params(params, CFG.n_layers)
    assert jax.tree.structure(up) == jax.tree.structure(M.abstract_params(ucfg))
    np.testing.assert_allclose(fwd(ucfg, up, tokens).logits, ref.logits, atol=1e-5)
    restacked = M.stack_layer_params(up, CFG.n_layers)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), restacked, params))

    def loss(cfg, p):
        o = fwd(cfg, p, tokens)
        return jnp.mean(o.logits**2) + jnp.mean(o.score**2)

    g_ref = jax.jit(jax.grad(functools.partial(loss, CFG)))(params)
    g = jax.jit(jax.grad(functools.partial(loss, CFG.replace(remat="dots_no_batch"))))(params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), g, g_ref)


def test_bf16_compute_close_to_float32(params):
    cfg, p = CFG, params
    tokens = _tokens(2, 12, seed=5)
    ref = fwd(cfg, p, tokens)
    out = fwd(cfg.replace(dtype="bfloat16"), p, tokens)
    assert out.logits.dtype == jnp.bfloat16 and out.hidden.dtype == jnp.bfloat16
    assert out.score.dtype == jnp.float32
    assert jax.tree.leaves(p)[0].dtype == jnp.float32
    for a, r in ((out.logits, ref.logits), (out.hidden, ref.hidden), (out.score, ref.score)):
        a, r = np.asarray(a, np.float32), np.asarray(r)
        rel = np.linalg.norm(a - r) / np.linalg.norm(r)
        assert 0 < rel < 2e-2, rel


def _left_padded_batch():
    rng = np.random.default_rng(6)
    B, L = 3, 11
    pad = np.array([0, 4, 2])
    tokens = rng.integers(1, CFG.vocab_size, (B, L)).astype(np.int32)
    valid = np.arange(L)[None] >= pad[:, None]
    tokens[~valid] = 0
    positions = np.maximum(np.arange(L)[None] - pad[:, None], 0).astype(np.int32)
    return tokens, positions, valid


@pytest.mark.parametrize("scan_layers", [True, False])
def test_decode_matches_forward(params, scan_layers):
    cfg = CFG.replace(scan_layers=scan_layers)
    p = params if scan_layers else M.unstack_layer_params(params, CFG.n_layers)
    tokens, positions, valid = _left_padded_batch()
    ref = fwd(cfg, p, tokens, segment_ids=valid.astype(np.int32), positions=positions)
    B, L = tokens.shape
    cache = M.init_cache(cfg, B, 16)
    assert cache["k"].shape == (CFG.n_layers, B, CFG.n_kv_heads, CFG.head_dim, 16)
    step = jax.jit(functools.partial(M.decode, cfg))
    prefill = 5
    out, cache = step(p, tokens[:, :prefill], positions[:, :prefill], valid[:, :prefill], cache)
    logits, scores = [out.logits], [out.score]
    for i in range(prefill, L):
        out, cache = step(p, tokens[:, i : i + 1], positions[:, i : i + 1], valid[:, i : i + 1], cache)
        logits.append(out.logits)
        scores.append(out.score)
    assert int(cache["end"]) == L
    got = np.concatenate(logits, 1)
    diff = np.abs(got - np.asarray(ref.logits))[valid]
    assert diff.max() <= 1e-5, diff.max()
    np.testing.assert_allclose(np.concatenate(scores, 1)[valid], np.asarray(ref.score)[valid], atol=1e-5)
    np.testing.assert_array_equal(cache["valid"][:, :L], valid)


@pytest.mark.parametrize("window", [None, 4])
def test_decode_with_a_per_row_end_matches_forward(params, window):
    """A [B] cache end (continuous batching) puts row b's tokens at its own slots off_b, off_b + 1, ..:
    logits equal full forwards (with a sliding window too), although every slot holds junk keys/values
    marked valid until written (slots after a row's query are masked by position, those before its
    offset by valid=False)."""
    cfg = CFG.replace(sliding_window=window)
    tokens, positions, valid = _left_padded_batch()
    B, L = tokens.shape
    off_B = np.array([3, 0, 6])
    ref = fwd(cfg, params, tokens, segment_ids=valid.astype(np.int32), positions=positions)
    cache = M.init_cache(cfg, B, L + 6)
    rng = np.random.default_rng(1)
    junk = jnp.asarray(rng.normal(size=cache["k"].shape) * 5, cache["k"].dtype)
    cache = dict(cache, k=junk, v=-junk, valid=jnp.asarray(np.arange(L + 6)[None] >= off_B[:, None]))
    cache["end"] = jnp.asarray(off_B, jnp.int32)
    step = jax.jit(functools.partial(M.decode, cfg))
    got = []
    for i in range(L):
        out, cache = step(params, tokens[:, i : i + 1], positions[:, i : i + 1], valid[:, i : i + 1], cache)
        got.append(out.logits)
    np.testing.assert_array_equal(cache["end"], off_B + L)
    diff = np.abs(np.concatenate(got, 1) - np.asarray(ref.logits))[valid]
    assert diff.max() <= 1e-5, diff.max()
    with pytest.raises(ValueError, match="per-row cache end takes one new token"):
        M.decode(CFG, params, tokens[:, :2], positions[:, :2], valid[:, :2], cache)


@pytest.mark.parametrize("n_queries", [1, 3])
@pytest.mark.parametrize("slot_sum", [True, False])
def test_decode_attention_both_forms_equal_a_numpy_reference(n_queries, slot_sum):
    """Grouped-query attention over a [B, K, H, M] cache, by the sum over the head dim (CPU's decode
    step) or the batched dot, equals a per-row, per-head numpy softmax over the allowed slots."""
    rng = np.random.default_rng(0)
    B, N, K, H, Mx = 3, 4, 2, 8, 11
    q = rng.normal(size=(B, n_queries, N, H)).astype(np.float32)
    k, v = (rng.normal(size=(B, K, H, Mx)).astype(np.float32) for _ in range(2))
    mask = rng.random((B, 1, n_queries, Mx)) < 0.7
    mask[..., 0] = True  # every query sees a slot
    got = np.asarray(M.decode_attention(jnp.asarray(q), jnp.asarray(k), jnp.asarray(v), jnp.asarray(mask), slot_sum))
    want = np.zeros_like(q)
    for b in range(B):
        for s in range(n_queries):
            for n in range(N):
                kv = n // (N // K)  # query group n reads KV head n // G
                sc = np.where(mask[b, 0, s], q[b, s, n] @ k[b, kv] / np.sqrt(H), -np.inf)
                w = np.exp(sc - sc.max())
                want[b, s, n] = v[b, kv] @ (w / w.sum())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_decode_inside_while_loop(params):
    """Greedy generation under lax.while_loop (static cache shape) equals re-running forward each step."""
    tokens, positions, valid = _left_padded_batch()
    B, L = tokens.shape
    n_new = 4

    @jax.jit
    def generate(p):
        cache = M.init_cache(CFG, B, L + n_new)
        out, cache = M.decode(CFG, p, tokens, positions, valid, cache)
        first = jnp.argmax(out.logits[:, -1], -1).astype(jnp.int32)
        buf = jnp.zeros((B, n_new), jnp.int32).at[:, 0].set(first)

        def body(state):
            i, cache, buf, pos = state
            o, cache = M.decode(
                CFG, p, jax.lax.dynamic_slice(buf, (0, i - 1), (B, 1)), pos[:, None], jnp.ones((B, 1), bool), cache
            )
            buf = jax.lax.dynamic_update_slice(buf, jnp.argmax(o.logits[:, -1], -1).astype(jnp.int32)[:, None], (0, i))
            return i + 1, cache, buf, pos + 1

        _, _, buf, _ = jax.lax.while_loop(
            lambda s: s[0] < n_new, body, (jnp.int32(1), cache, buf, jnp.asarray(positions[:, -1] + 1))
        )
        return buf

    got = np.asarray(generate(params))
    # Reference: forward at one fixed length (L + n_new); causality makes the unfilled tail irrelevant.
    seq = np.concatenate([tokens, np.zeros((B, n_new), np.int32)], 1)
    pos = np.concatenate([positions, positions[:, -1:] + 1 + np.arange(n_new)[None]], 1).astype(np.int32)
    seg = np.concatenate([valid, np.ones((B, n_new), bool)], 1).astype(np.int32)
    for i in range(n_new):
        o = fwd(CFG, params, seq, segment_ids=seg, positions=pos)
        nxt = np.asarray(jnp.argmax(o.logits[:, L - 1 + i], -1))
        np.testing.assert_array_equal(got[:, i], nxt)
        seq[:, L + i] = nxt


def test_logical_constraints_under_mesh(params):
    """With a mesh and rules active the sharded forward equals the unsharded one."""
    devices = np.array(jax.devices()[:4]).reshape(2, 2)
    mesh = Mesh(devices, ("data", "tensor"))
    rules = (
        ("batch", "data"),
        ("heads", "tensor"),
        ("kv_heads", "tensor"),
        ("mlp", "tensor"),
        ("vocab", "tensor"),
        ("embed", None),
        ("length", None),
        ("layers", None),
        ("head_dim", None),
    )
    tokens = _tokens(4, 8, seed=7)
    ref = fwd(CFG, params, tokens)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        specs = nn.logical_to_mesh_sharding(M.param_logical_axes(CFG), mesh, rules)
        sharded = jax.device_put(params, specs)
        out = jax.jit(functools.partial(M.forward, CFG))(sharded, tokens)
    np.testing.assert_allclose(out.logits, ref.logits, atol=1e-5)
    assert sharded["layers"]["mlp"]["up_proj"]["kernel"].sharding.spec == PartitionSpec(None, None, "tensor")
    assert out.logits.sharding.spec[0] == "data"
