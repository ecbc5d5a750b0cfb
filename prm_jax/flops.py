"""Analytic FLOP counts of the decoder (PaLM appendix-B convention): the one count the fit check, the
benchmarks' MFU and their tests use. Standard library only, so the PyTorch peer can import it.
"""

from __future__ import annotations

import dataclasses

KINDS = ("prm", "implicit", "score", "lm")
# config.objective -> the FLOP kind of its train step
OBJECTIVE_KIND = {
    "bce": "prm",
    "orm": "prm",
    "pav": "prm",
    "implicit_ce": "implicit",
    "implicit_dpo": "implicit",
    "sft": "lm",
    "pg": "implicit",  # policy fwd+bwd through the vocabulary + the reference forward of the KL term
}


@dataclasses.dataclass(frozen=True)
class Shape:
    """The transformer dimensions a FLOP count needs (framework-independent)."""

    vocab: int
    d_model: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    mlp: int
    qkv_bias: bool = True
    tied: bool = True

    def layer_params(self) -> int:
        """Returns the parameter count of one decoder layer (attention, SwiGLU MLP, two RMSNorms)."""
        d, hd = self.d_model, self.head_dim
        q = d * self.heads * hd
        kv = 2 * d * self.kv_heads * hd
        o = self.heads * hd * d
        bias = (self.heads + 2 * self.kv_heads) * hd if self.qkv_bias else 0
        return q + kv + o + bias + 3 * d * self.mlp + 2 * d

    def non_embedding_params(self) -> int:
        """Returns N_body: every layer plus the final norm; no token embedding, no output projection."""
        return self.layers * self.layer_params() + self.d_model

    def total_params(self) -> int:
        """Returns every parameter (embedding once if tied, twice if untied), score head excluded."""
        emb = self.vocab * self.d_model
        return self.non_embedding_params() + emb * (1 if self.tied else 2)

    @classmethod
    def of(cls, model_cfg) -> "Shape":
        """Returns the Shape of a prm_jax ModelConfig."""
        return cls(
            vocab=model_cfg.vocab_size,
            d_model=model_cfg.d_model,
            layers=model_cfg.n_layers,
            heads=model_cfg.n_heads,
            kv_heads=model_cfg.n_kv_heads,
            head_dim=model_cfg.head_dim,
            mlp=model_cfg.mlp_dim,
            qkv_bias=model_cfg.qkv_bias,
            tied=model_cfg.tie_embeddings,
        )


def flops_per_token(shape: Shape, seq_len: int, kind: str) -> float:
    """Returns model FLOPs per trained token (PaLM appendix-B convention, full causal square).

    kind='prm':      6*N_prm + 12*L*d*S, N_prm = N_body + 2*d (score head); no vocab projection.
    kind='implicit': 8*N_lm + 16*L*d*S, N_lm = N_body + V*d (the output projection is a matmul
                     whether tied or not); policy fwd+bwd (6N, 12LdS) + frozen reference fwd (2N, 4LdS).
    kind='score':    2*N_prm + 4*L*d*S (one forward, no vocab projection).
    kind='lm':       6*N_lm + 12*L*d*S (SFT: fwd+bwd through the output projection).
    The token embedding lookup is a gather, not a matmul, so it is never counted. d here is the
    attention width heads*head_dim (equal to d_model for Qwen2.5-0.5B).
    """
    attn_d = shape.heads * shape.head_dim
    n_prm = shape.non_embedding_params() + 2 * shape.d_model
    n_lm = shape.non_embedding_params() + shape.vocab * shape.d_model
    if kind == "prm":
        return 6 * n_prm + 12 * shape.layers * attn_d * seq_len
    if kind == "implicit":
        return 8 * n_lm + 16 * shape.layers * attn_d * seq_len
    if kind == "score":
        return 2 * n_prm + 4 * shape.layers * attn_d * seq_len
    if kind == "lm":
        return 6 * n_lm + 12 * shape.layers * attn_d * seq_len
    raise ValueError(f"unknown FLOP kind {kind!r}; expected one of {KINDS}")


def step_flops(model_cfg, objective: str, batch_size: int, seq_len: int) -> float:
    """Returns the model FLOPs of one train step of `objective` (a DPO row is a chosen and a rejected one)."""
    tokens = batch_size * seq_len * (2 if objective == "implicit_dpo" else 1)
    return float(flops_per_token(Shape.of(model_cfg), seq_len, OBJECTIVE_KIND[objective]) * tokens)
