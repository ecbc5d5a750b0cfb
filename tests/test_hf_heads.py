"""prm_jax.hf_heads: the token-classification form of a PRM (what TRL trains, what transformers loads
natively) against torch, both ways, and the errors."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prm_jax import hf, hf_heads
from prm_jax import model as M
from _hf_utils import TINY_HF, random_params

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

CONFIGS = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForTokenClassification),
    "qwen2": (transformers.Qwen2Config, transformers.Qwen2ForTokenClassification),
    "mistral": (transformers.MistralConfig, transformers.MistralForTokenClassification),
}


def _tokens(seed, B=2, L=20, vocab=128):
    return np.random.default_rng(seed).integers(0, vocab, (B, L)).astype(np.int32)


def _jax_step_probs(cfg, params, tokens):
    """Returns prm-jax's P(step correct) at every token, [B, L] (the verifier reads it at the markers)."""
    return np.asarray(jax.nn.sigmoid(M.forward(cfg, params, jnp.asarray(tokens), lm_head=False).score))


def _torch_step_probs(model, tokens):
    """Returns the authors' read-out of a TRL token-classification PRM: sigmoid (1 label) or softmax[1]."""
    with torch.no_grad():
        z = model(torch.as_tensor(np.asarray(tokens), dtype=torch.long)).logits.double()
    p = torch.sigmoid(z[..., 0]) if z.shape[-1] == 1 else torch.softmax(z, -1)[..., 1]
    return p.numpy()


@pytest.mark.parametrize("arch,tie,num_labels", [("llama", False, 1), ("qwen2", True, 2), ("mistral", False, 2)])
def test_export_loads_in_transformers_with_equal_step_scores(tmp_path, arch, tie, num_labels):
    cfg = M.ModelConfig.preset("tiny", architecture=arch, tie_embeddings=tie, qkv_bias=arch == "qwen2")
    params = random_params(cfg, seed=1)
    params["score_head"] = dict(
        kernel=np.random.default_rng(2).normal(size=(64, 1)).astype(np.float32), bias=np.array([0.3], np.float32)
    )
    hf.save_checkpoint(str(tmp_path), cfg, params, head="token_classification", num_labels=num_labels)
    assert not os.path.exists(tmp_path / hf_heads.SCORE_HEAD_FILE)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["architectures"] == [hf_heads.TOKEN_CLASSIFICATION[arch]] and saved["num_labels"] == num_labels
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(tmp_path)).eval()
    assert type(model).__name__ == hf_heads.TOKEN_CLASSIFICATION[arch]
    tokens = _tokens(3)
    want, got = _torch_step_probs(model, tokens), _jax_step_probs(cfg, params, tokens)
    assert float(np.abs(want - got).max()) <= 1e-5
    # and back: the same scores from prm-jax's reading of the folder (its LM head is zeros)
    cfg2, params2 = hf.load_checkpoint(str(tmp_path))
    np.testing.assert_allclose(_jax_step_probs(cfg2, params2, tokens), got, atol=1e-6)
    if not tie:
        assert float(np.abs(np.asarray(params2["lm_head"]["kernel"])).max()) == 0.0


@pytest.mark.parametrize("arch,num_labels,bias", [("qwen2", 2, True), ("llama", 1, True), ("mistral", 2, False)])
def test_a_trl_style_folder_loads_into_prm_jax(tmp_path, arch, num_labels, bias):
    """A token-classification PRM made by transformers (random weights, as TRL's PRMTrainer saves one)
    scores the same in prm-jax."""
    conf_cls, model_cls = CONFIGS[arch]
    conf = conf_cls(
        **TINY_HF,
        num_labels=num_labels,
        token_classification_bias=bias,
        classifier_dropout=0.0,
    )
    torch.manual_seed(4)
    model = model_cls(conf).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape) * 0.05)
    model.save_pretrained(str(tmp_path))
    cfg, params = hf.load_checkpoint(str(tmp_path))
    tokens = _tokens(5)
    diff = float(np.abs(_torch_step_probs(model, tokens) - _jax_step_probs(cfg, params, tokens)).max())
    assert diff <= 1e-5, diff


def test_errors(tmp_path):
    cfg = M.ModelConfig.preset("tiny", score_likelihood=True)
    params = random_params(cfg, seed=1)
    with pytest.raises(ValueError, match="no token-classification form"):
        hf.save_checkpoint(str(tmp_path / "a"), cfg, params, head="token_classification")
    assert not os.path.exists(tmp_path / "a")  # nothing written
    with pytest.raises(ValueError, match="unknown head form 'trl'"):
        hf.save_checkpoint(str(tmp_path / "a"), cfg, params, head="trl")
    cfg = M.ModelConfig.preset("tiny")
    params = random_params(cfg, seed=1)
    with pytest.raises(ValueError, match="num_labels must be 1 or 2"):
        hf.save_checkpoint(str(tmp_path / "b"), cfg, params, head="token_classification", num_labels=3)
    hf.save_checkpoint(str(tmp_path / "c"), cfg, params, head="token_classification", num_labels=2)
    conf = json.load(open(tmp_path / "c" / "config.json"))
    json.dump(
        dict(conf, num_labels=3, id2label={"0": "a", "1": "b", "2": "c"}), open(tmp_path / "c" / "config.json", "w")
    )
    with pytest.raises(ValueError, match="num_labels 1 or 2, got 3"):
        hf.load_checkpoint(str(tmp_path / "c"))


def test_cli_export_of_a_training_run(tmp_path, capsys):
    from prm_jax import cli, loop
    from prm_jax.configs import base

    c = base.get_config()
    c.model.update(preset="tiny", vocab_size="tokenizer")
    c.data.update(tokenizer="char")
    c.train.update(steps=2, batch_size=8, seq_len=128, log_every=1)  # ckpt_every 0: the last step is saved
    run = str(tmp_path / "run")
    loop.run(c, run)
    assert cli.main(["export", run, str(tmp_path / "tc"), "--head", "token_classification", "--num-labels", "2"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["head"] == "token_classification"
    cfg, params, _ = loop.load_trained(run)
    model = transformers.AutoModelForTokenClassification.from_pretrained(str(tmp_path / "tc")).eval()
    tokens = _tokens(6, vocab=cfg.vocab_size)
    assert float(np.abs(_torch_step_probs(model, tokens) - _jax_step_probs(cfg, params, tokens)).max()) <= 1e-5
    # the export carries the run's tokenizer: transformers' AutoTokenizer encodes as the char tokenizer
    from prm_jax.data.arith import CharTokenizer
    from prm_jax.data.tokenizers import HFTokenizer

    text = "a = 3. b = a + 4. Find b.<step>b = 3 + 4 = 7<step><eos> é"
    assert HFTokenizer(str(tmp_path / "tc")).encode(text) == CharTokenizer().encode(text)
    # ProcessBench on the run folder itself and on its export: the same step probabilities
    split = tmp_path / "pb.json"
    case = {"problem": "a = 3. b = a + 4. Find b.", "steps": ["b = 3 + 4 = 7", "b = 7"], "label": -1}
    split.write_text(json.dumps([dict(case, id="x", final_answer_correct=True)]))
    probs = {}
    for name, ckpt in (("run", run), ("export", str(tmp_path / "tc"))):
        out = tmp_path / f"{name}.json"
        args = ["evaluate", "processbench", "--checkpoint", ckpt, "--data", str(split), "--output", str(out)]
        assert cli.main(args + ["--marker", "<step>"]) == 0, capsys.readouterr().err
        probs[name] = json.loads(out.read_text())["predictions"]["pb"][0]["step_probs"]
    assert len(probs["run"]) == 2
    np.testing.assert_allclose(probs["run"], probs["export"], atol=1e-5)
    assert cli.main(["export", str(tmp_path / "nope"), str(tmp_path / "x")]) == 2
    assert "run folder not found" in capsys.readouterr().err
