"""Tests for prm_jax.hf: logit parity with transformers (torch CPU, float32), save/load round trips, errors."""

import functools
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prm_jax import hf
from prm_jax import model as M
from _hf_utils import TINY_HF, random_params  # tests/ is on sys.path under pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

L = 24  # longer than original_max_position_embeddings below, so llama3 scaling is exercised


@functools.partial(jax.jit, static_argnums=0)
def _logits(cfg, params, tokens):
    return M.forward(cfg, params, tokens).logits


def _randomize(model, seed):
    """Gives every parameter (norm scales and biases included) O(0.1) random values, so parity is not trivial."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g) * 0.1
            p.copy_(1.0 + noise if name.endswith("norm.weight") else noise)
    return model


def _hf_model(kind, tie, seed, **extra):
    common = dict(
        TINY_HF,
        rms_norm_eps=1e-6,
        tie_word_embeddings=tie,
        **extra,
    )
    cls = {
        "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),
        "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForCausalLM),
        "mistral": (transformers.MistralConfig, transformers.MistralForCausalLM),
    }[kind]
    torch.manual_seed(seed)
    return _randomize(cls[1](cls[0](**common)).eval(), seed)


def _torch_logits(model, tokens):
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(tokens), dtype=torch.long)).logits.numpy()


def _tokens(seed, B=2):
    return np.random.default_rng(seed).integers(0, 128, (B, L)).astype(np.int32)


LLAMA3 = dict(
    rope_type="llama3",
    rope_theta=10000.0,
    factor=4.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=16,
)
CASES = {
    "llama_untied_llama3": ("llama", False, dict(rope_parameters=LLAMA3)),
    "llama_tied": ("llama", True, dict(rope_parameters=dict(rope_type="default", rope_theta=500000.0))),
    "qwen2_untied_bias": ("qwen2", False, dict(rope_parameters=dict(rope_type="default", rope_theta=1e6))),
    "qwen2_tied_bias": ("qwen2", True, {}),
    "mistral_window": ("mistral", False, dict(sliding_window=8)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_parity_with_transformers(tmp_path, case):
    kind, tie, extra = CASES[case]
    model = _hf_model(kind, tie, seed=len(case), **extra)
    model.save_pretrained(tmp_path)
    cfg, params = hf.load_checkpoint(str(tmp_path))
    assert cfg.architecture == kind and cfg.tie_embeddings == tie and cfg.qkv_bias == (kind == "qwen2")
    if case == "llama_untied_llama3":
        assert cfg.rope_scaling == M.RopeScaling(4.0, 1.0, 4.0, 16)
    if kind == "mistral":
        assert cfg.sliding_window == 8
    tokens = _tokens(seed=len(case))
    ref = _torch_logits(model, tokens)
    got = np.asarray(_logits(cfg, params, tokens))
    diff = float(np.abs(got - ref).max())
    print(f"parity {case}: max |logit diff| = {diff:.3e} (logit scale {np.abs(ref).max():.2f})")
    assert diff <= 1e-4, diff


def test_legacy_rope_config_form(tmp_path):
    """The old `rope_theta` + `rope_scaling` keys parse to the same config as `rope_parameters`."""
    model = _hf_model("llama", False, seed=1, rope_parameters=LLAMA3)
    model.save_pretrained(tmp_path)
    new_cfg = hf.load_config(str(tmp_path))
    with open(tmp_path / "config.json") as f:
        c = json.load(f)
    c.pop("rope_parameters", None)
    c["rope_theta"] = 10000.0
    c["rope_scaling"] = {k: v for k, v in LLAMA3.items() if k not in ("rope_theta", "rope_type")}
    c["rope_scaling"]["type"] = "llama3"  # the oldest spelling of rope_type
    with open(tmp_path / "config.json", "w") as f:
        json.dump(c, f)
    assert hf.load_config(str(tmp_path)) == new_cfg
    assert hf.config_from_hf(dict(c, rope_scaling=None, rope_theta=1e6)).rope_theta == 1e6


@pytest.mark.parametrize("arch,tie,bias", [("llama", False, False), ("qwen2", True, True)])
def test_save_then_transformers_load(tmp_path, arch, tie, bias):
    cfg = M.ModelConfig.preset(
        "tiny",
        architecture=arch,
        tie_embeddings=tie,
        qkv_bias=bias,
        init_std=0.1,
        rope_scaling=M.RopeScaling(4.0, 1.0, 4.0, 16) if arch == "llama" else None,
    )
    params = random_params(cfg, seed=3)
    hf.save_checkpoint(str(tmp_path), cfg, params)
    assert os.path.isfile(tmp_path / hf.SCORE_HEAD_FILE)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    assert type(model).__name__ == {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM"}[arch]
    tokens = _tokens(seed=4)
    diff = float(np.abs(_torch_logits(model, tokens) - np.asarray(_logits(cfg, params, tokens))).max())
    print(f"save->transformers {arch}: max |logit diff| = {diff:.3e}")
    assert diff <= 1e-4, diff


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_load_save_load_round_trip_is_exact(tmp_path):
    model = _hf_model("qwen2", False, seed=5)
    model.save_pretrained(tmp_path / "a")
    cfg, params = hf.load_checkpoint(str(tmp_path / "a"))
    # the score head is not part of the HF folder: zeros, then a trained-looking head survives the trip
    np.testing.assert_array_equal(params["score_head"]["kernel"], 0.0)
    params["score_head"] = dict(kernel=jnp.linspace(-1, 1, cfg.d_model)[:, None], bias=jnp.array([0.25]))
    hf.save_checkpoint(str(tmp_path / "b"), cfg, params)
    cfg2, params2 = hf.load_checkpoint(str(tmp_path / "b"))
    assert cfg2 == cfg
    _assert_trees_equal(params, params2)
    # sharded writing (tiny shard limit) reads back identically through the index
    hf.save_checkpoint(str(tmp_path / "c"), cfg, params, max_shard_bytes=20_000)
    assert os.path.isfile(tmp_path / "c" / "model.safetensors.index.json")
    assert not os.path.isfile(tmp_path / "c" / "model.safetensors")
    _assert_trees_equal(params, hf.load_checkpoint(str(tmp_path / "c"))[1])
    # unrolled layout and a bf16 load
    cfg_u, params_u = hf.load_checkpoint(str(tmp_path / "b"), scan_layers=False)
    _assert_trees_equal(M.stack_layer_params(params_u, cfg.n_layers), params)
    _, params_bf16 = hf.load_checkpoint(str(tmp_path / "b"), dtype="bfloat16")
    assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(params_bf16))


def test_likelihood_head_round_trip_and_transformers_still_loads(tmp_path):
    """A score head with likelihood features saves its flag in config.json and its weights beside the
    head; transformers ignores both and loads the LM."""
    cfg = M.ModelConfig.preset("tiny", score_likelihood=True)
    params = random_params(cfg, seed=6)
    params["score_head"] = dict(params["score_head"], likelihood=jnp.asarray([0.8, -0.2], jnp.float32))
    hf.save_checkpoint(str(tmp_path), cfg, params)
    assert json.load(open(tmp_path / "config.json"))[hf.LIKELIHOOD_KEY] is True
    cfg2, params2 = hf.load_checkpoint(str(tmp_path))
    assert cfg2.score_likelihood and cfg2 == cfg
    _assert_trees_equal(params, params2)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path)).eval()
    tokens = _tokens(seed=7)
    assert float(np.abs(_torch_logits(model, tokens) - np.asarray(_logits(cfg, params, tokens))).max()) <= 1e-4
    # a head file without the likelihood tensor is an error naming it
    from safetensors.numpy import save_file

    head = {
        k: np.asarray(v)
        for k, v in (
            ("score_head.weight", params["score_head"]["kernel"].T),
            ("score_head.bias", params["score_head"]["bias"]),
        )
    }
    save_file(head, str(tmp_path / hf.SCORE_HEAD_FILE))
    with pytest.raises(KeyError, match="score_head.likelihood"):
        hf.load_checkpoint(str(tmp_path))


def test_load_with_shardings(tmp_path):
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import flax.linen as nn

    model = _hf_model("llama", False, seed=6)
    model.save_pretrained(tmp_path)
    mesh = Mesh(np.array(jax.devices()[:4]).reshape(2, 2), ("fsdp", "tensor"))
    rules = (("embed", "fsdp"), ("heads", "tensor"), ("kv_heads", "tensor"), ("mlp", "tensor"), ("vocab", "tensor"))
    shard_fn = lambda cfg: nn.logical_to_mesh_sharding(M.param_logical_axes(cfg), mesh, rules)
    cfg, sharded = hf.load_checkpoint(str(tmp_path), shardings=shard_fn)
    _, plain = hf.load_checkpoint(str(tmp_path))
    up = sharded["layers"]["mlp"]["up_proj"]["kernel"]
    assert isinstance(up.sharding, NamedSharding) and up.sharding.spec == P(None, "fsdp", "tensor")
    assert len(up.addressable_shards) == 4 and up.addressable_shards[0].data.shape == (2, 32, 48)
    _assert_trees_equal(sharded, plain)
    # an unrolled shardings tree selects the unrolled layout
    unrolled = lambda cfg: shard_fn(cfg.replace(scan_layers=False))
    cfg_u, sharded_u = hf.load_checkpoint(str(tmp_path), shardings=unrolled)
    assert not cfg_u.scan_layers and "layers_1" in sharded_u
    assert sharded_u["layers_1"]["mlp"]["up_proj"]["kernel"].sharding.spec == P("fsdp", "tensor")
    _assert_trees_equal(M.stack_layer_params(sharded_u, cfg.n_layers), plain)


def test_missing_tensor_and_bad_folders(tmp_path, caplog):
    from safetensors.numpy import load_file, save_file

    model = _hf_model("llama", False, seed=7)
    model.save_pretrained(tmp_path / "ok")
    tensors = load_file(str(tmp_path / "ok" / "model.safetensors"))
    missing = "model.layers.1.mlp.up_proj.weight"
    os.makedirs(tmp_path / "bad")
    save_file({k: v for k, v in tensors.items() if k != missing}, str(tmp_path / "bad" / "model.safetensors"))
    with open(tmp_path / "ok" / "config.json") as f:
        config = json.load(f)
    with open(tmp_path / "bad" / "config.json", "w") as f:
        json.dump(config, f)
    with pytest.raises(KeyError, match=r"model\.layers\.1\.mlp\.up_proj\.weight.*model\.safetensors"):
        hf.load_checkpoint(str(tmp_path / "bad"))
    # unknown architecture names itself
    with open(tmp_path / "bad" / "config.json", "w") as f:
        json.dump(dict(config, architectures=["GPT2LMHeadModel"], model_type="gpt2"), f)
    with pytest.raises(ValueError, match="GPT2LMHeadModel"):
        hf.load_checkpoint(str(tmp_path / "bad"))
    # a config that disagrees with the tensors names the tensor
    with open(tmp_path / "bad" / "config.json", "w") as f:
        json.dump(dict(config, intermediate_size=80), f)
    with pytest.raises(ValueError, match=r"model\.layers\.0\.mlp\.gate_proj\.weight.*shape"):
        hf.load_checkpoint(str(tmp_path / "bad"))
    # no safetensors: a pickle checkpoint is refused by name
    os.makedirs(tmp_path / "pickle")
    with open(tmp_path / "pickle" / "config.json", "w") as f:
        json.dump(config, f)
    (tmp_path / "pickle" / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(FileNotFoundError, match="pytorch_model.bin"):
        hf.load_checkpoint(str(tmp_path / "pickle"))
    with pytest.raises(ValueError, match="unsupported rope scaling"):
        hf.config_from_hf(dict(config, rope_parameters=dict(rope_type="yarn", factor=2.0)))
    # a missing score head is a logged zero init, not an error
    with caplog.at_level(logging.WARNING, logger="prm_jax.hf"):
        _, p = hf.load_checkpoint(str(tmp_path / "ok"))
    assert "score_head.safetensors not found" in caplog.text
    np.testing.assert_array_equal(p["score_head"]["bias"], 0.0)
    with pytest.raises(ValueError, match="qkv_bias"):
        hf.save_checkpoint(str(tmp_path / "x"), M.ModelConfig.preset("tiny", qkv_bias=True), p)


def test_load_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[PAD]": 1, "step": 2, "ки": 3, "1+1=2": 4}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]")
    fast.save_pretrained(tmp_path)
    loaded = hf.load_tokenizer(str(tmp_path))
    assert loaded("step ки zzz")["input_ids"] == [2, 3, 0]
    assert loaded.pad_token_id == 1
    with pytest.raises(OSError):
        hf.load_tokenizer(str(tmp_path / "nope"))
