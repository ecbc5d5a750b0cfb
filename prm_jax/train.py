"""Sharded training: the train state, its initialisation into shardings, and the jitted train/eval steps.

`setup(config)` resolves a config into a `Setup` (model config, mesh, rules, optimizer, loss function,
abstract state and its shardings). `init_state` builds the state directly in its shardings
(`jax.eval_shape` + `jax.jit(out_shardings=...)`; or HF weights / a previous run's params loaded
straight into them); `make_train_step` / `make_eval_step` jit the steps once with explicit in/out
shardings and the state donated. The host loop (`run`, `load_trained`) lives in `prm_jax/loop.py`,
which imports this module (never the other way round).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import NamedSharding, PartitionSpec as P

from prm_jax import objectives, optim, sharding
from prm_jax.config import complete, complete_section

# config.model.vocab_size value that takes the tokenizer's vocabulary size
TOKENIZER_VOCAB = "tokenizer"


@struct.dataclass
class TrainState:
    """Everything that changes during training; `ref_params` is the frozen reference (implicit PRM)."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array
    ref_params: Any = None


class Setup(NamedTuple):
    """A config resolved into the pieces the steps and the host loop need."""

    config: Any
    model_cfg: Any
    mesh: Any
    rules: tuple
    tx: optax.GradientTransformation
    lr_schedule: Callable
    loss_fn: Callable
    abstract_state: TrainState  # ShapeDtypeStruct leaves, each with .sharding
    state_shardings: TrainState  # NamedSharding leaves


def model_config(config, vocab_size: int | None = None):
    """Returns the ModelConfig of `config.model`: an HF folder's config, or a preset + overrides.

    Keys of `config.model` other than `preset` / `hf_path` that are not None override preset fields;
    `vocab_size='tokenizer'` takes the tokenizer's `vocab_size` argument. `init.hf_path` only
    supplies weights (checked against this shape when loaded), so a fit check needs no files.
    """
    from prm_jax import model

    mc = complete_section("model", config.model)
    if mc.hf_path:
        from prm_jax import hf

        base = hf.load_config(mc.hf_path)
    else:
        base = model.ModelConfig.preset(mc.preset)
    fields = {}
    for k, v in mc.items():
        if k in ("preset", "hf_path") or v is None or (k == "vocab_size" and v == TOKENIZER_VOCAB):
            continue
        fields[k] = tuple(v) if isinstance(v, list) else v
    if mc.vocab_size == TOKENIZER_VOCAB and not mc.hf_path:
        if vocab_size is None:
            raise ValueError(
                "config.model.vocab_size is 'tokenizer' (= the tokenizer's), but no tokenizer vocab_size was given"
            )
        fields["vocab_size"] = int(vocab_size)
    return base.replace(**fields)


def compiler_options(config) -> dict | None:
    """Returns XLA compiler options from `train.compiler_options` (e.g. faster CPU compiles in tests)."""
    opts = config.train.compiler_options
    return dict(opts) if opts else None


def _abstract_with_shardings(tree, shardings):
    return jax.tree_util.tree_map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def setup(config, *, model_cfg=None, mesh=None, vocab_size: int | None = None) -> Setup:
    """Returns the Setup of `config` (nothing is allocated: shapes and shardings only)."""
    from prm_jax import model

    config = complete(config)
    objective = config.objective
    if objective not in objectives.OBJECTIVES:
        raise ValueError(f"config.objective={objective!r}; choose one of {objectives.OBJECTIVES}")
    model_cfg = model_cfg or model_config(config, vocab_size)
    if objective in ("bce", "orm", "pav") and not model_cfg.score_head:
        raise ValueError(f"objective {objective!r} reads the score head, but model.score_head=False")
    mesh = mesh or sharding.make_mesh(dict(config.mesh.shape))
    rules = sharding.normalize_rules(config.mesh.rules)
    tx, sched = optim.make_optimizer(config.optim, int(config.train.steps))
    loss_fn = objectives.make_loss_fn(objective, model_cfg, config.loss)
    with_ref = objective in objectives.NEEDS_REF

    params_abs = model.abstract_params(model_cfg)
    params_sh = sharding.param_shardings(model.param_logical_axes(model_cfg), params_abs, mesh, rules)
    opt_abs = jax.eval_shape(tx.init, params_abs)
    opt_sh = sharding.mirror_shardings(opt_abs, params_abs, params_sh, mesh)
    rep = NamedSharding(mesh, P())
    rng_abs = jax.eval_shape(lambda: jax.random.PRNGKey(0))
    abstract = TrainState(
        step=jax.ShapeDtypeStruct((), jnp.int32),
        params=params_abs,
        opt_state=opt_abs,
        rng=rng_abs,
        ref_params=params_abs if with_ref else None,
    )
    shardings = TrainState(
        step=rep, params=params_sh, opt_state=opt_sh, rng=rep, ref_params=params_sh if with_ref else None
    )
    return Setup(
        config, model_cfg, mesh, rules, tx, sched, loss_fn, _abstract_with_shardings(abstract, shardings), shardings
    )


def init_state(s: Setup, seed: int | None = None, *, params: Any = None, ref_params: Any = None) -> TrainState:
    """Returns a fresh TrainState created directly in its shardings.

    `params` / `ref_params` (already sharded, e.g. from `hf.load_checkpoint(..., shardings=...)` or a
    previous workdir) replace the random init; without `ref_params` the reference is the initial params.
    """
    from prm_jax import model

    seed = int(s.config.train.seed if seed is None else seed)
    with_ref = s.state_shardings.ref_params is not None

    def init(rng, params, ref_params):
        init_rng, state_rng = jax.random.split(rng)
        if params is None:
            params = model.init_params(s.model_cfg, init_rng)
        if with_ref and ref_params is None:
            ref_params = params
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=s.tx.init(params),
            rng=state_rng,
            ref_params=ref_params if with_ref else None,
        )

    p_sh = s.state_shardings.params
    fn = jax.jit(
        init,
        in_shardings=(None, None if params is None else p_sh, None if ref_params is None else p_sh),
        out_shardings=s.state_shardings,
        compiler_options=compiler_options(s.config),
    )
    with sharding.activation_context(s.mesh, s.rules):
        return fn(jax.random.PRNGKey(seed), params, ref_params)


def _split_micro(batch: Mapping[str, jax.Array], k: int) -> dict:
    """Returns the batch with a leading micro-batch axis [k, B/k, ...]; row i goes to micro-batch i % k.

    Interleaving keeps every micro-batch spread over all data shards (rows are sharded in blocks).
    """
    out = {}
    for key, x in batch.items():
        b = x.shape[0]
        if b % k:
            raise ValueError(f"batch[{key!r}] has {b} rows, not divisible by optim.accum_steps={k}")
        out[key] = jnp.swapaxes(x.reshape((b // k, k) + x.shape[1:]), 0, 1)
    return out


def _float_metrics(metrics: Mapping[str, Any]) -> dict:
    return {k: jnp.asarray(v, jnp.float32) for k, v in metrics.items()}


def train_step_fn(s: Setup) -> Callable:
    """Returns the pure train_step(state, batch) -> (state, metrics) of a Setup (not jitted)."""
    config = s.config
    k = int(config.optim.accum_steps)
    head_only = int(config.optim.head_only_steps)
    head = optim.head_mask(s.abstract_state.params) if head_only else None
    # A head-only run (a probe on a frozen model) needs no backward pass through the model: the
    # other parameters enter the loss as constants, so their gradients are zeros and cost nothing.
    probe = head is not None and head_only >= int(config.train.steps)

    def loss_of(params, ref_params, batch):
        if probe:
            params = jax.tree_util.tree_map(lambda x, h: x if h else jax.lax.stop_gradient(x), params, head)
        return s.loss_fn(params, ref_params, batch)

    def grads_of(params, ref_params, batch):
        (loss, aux), grads = jax.value_and_grad(loss_of, has_aux=True)(params, ref_params, batch)
        return grads, loss, _float_metrics(aux["metrics"])

    def step(state: TrainState, batch):
        with sharding.activation_context(None, s.rules):
            if k == 1:
                grads, loss, metrics = grads_of(state.params, state.ref_params, batch)
            else:
                micro = _split_micro(batch, k)
                first = jax.tree_util.tree_map(lambda x: x[0], micro)
                zero = jax.tree_util.tree_map(
                    lambda x: jnp.zeros(x.shape, x.dtype),
                    jax.eval_shape(grads_of, state.params, state.ref_params, first),
                )

                def body(acc, mb):
                    return jax.tree_util.tree_map(jnp.add, acc, grads_of(state.params, state.ref_params, mb)), None

                acc, _ = jax.lax.scan(body, zero, micro)
                grads, loss, metrics = jax.tree_util.tree_map(lambda x: x / k, acc)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = s.tx.update(grads, state.opt_state, state.params)
        if head is not None:
            warm = state.step < head_only
            updates = jax.tree_util.tree_map(
                lambda u, is_head: u if is_head else jnp.where(warm, jnp.zeros_like(u), u), updates, head
            )
        params = optax.apply_updates(state.params, updates)
        param_norm = optax.tree.norm(params)
        # One flag for the host: a state is saved only when its step's loss, gradient and updated
        # weights are all finite (a finite loss can still come with an inf gradient and NaN weights).
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm) & jnp.isfinite(param_norm)
        out = {
            **metrics,
            "loss": loss,
            "grad_norm": grad_norm,
            "param_norm": param_norm,
            "state_finite": finite.astype(jnp.float32),
            "lr": jnp.asarray(s.lr_schedule(state.step), jnp.float32),
        }
        rng, _ = jax.random.split(state.rng)
        return state.replace(step=state.step + 1, params=params, opt_state=opt_state, rng=rng), out

    return step


def batch_shardings_of(s: Setup, batch: Mapping[str, Any]) -> dict:
    """Returns {key: NamedSharding} for a batch (arrays or ShapeDtypeStructs) under `s`'s mesh and rules."""
    # Only leading sizes and ranks matter: stand-ins of shape [B, 1, ...] keep this allocation-free.
    stand_in = {}
    for k, v in batch.items():
        shape = tuple(v.shape) if hasattr(v, "shape") else np.shape(v)
        stand_in[k] = np.empty(shape[:1] + (1,) * (len(shape) - 1), np.int8)
    return sharding.batch_shardings(stand_in, s.mesh, s.rules)


class _MeshJit:
    """A jitted function that is always traced and called with the mesh active."""

    def __init__(self, fn, mesh):
        self.fn, self.mesh = fn, mesh

    def __call__(self, *args):
        with jax.set_mesh(self.mesh):
            return self.fn(*args)

    def lower(self, *args):
        with jax.set_mesh(self.mesh):
            return self.fn.lower(*args)


def make_train_step(s: Setup, batch_example: Mapping[str, Any]) -> _MeshJit:
    """Returns train_step(state, batch) jitted once: explicit shardings, the state donated.

    `batch_example` (arrays or ShapeDtypeStructs) fixes the batch keys and ranks.
    """
    objectives.check_batch(s.config.objective, batch_example)
    rep = NamedSharding(s.mesh, P())
    fn = jax.jit(
        train_step_fn(s),
        in_shardings=(s.state_shardings, batch_shardings_of(s, batch_example)),
        out_shardings=(s.state_shardings, rep),
        donate_argnums=(0,),
        compiler_options=compiler_options(s.config),
    )
    return _MeshJit(fn, s.mesh)


def eval_step_fn(s: Setup) -> Callable:
    """Returns eval_step(state, batch) -> outputs: loss, metrics and per-step scores for host-side AUROC."""

    def step(state: TrainState, batch):
        with sharding.activation_context(None, s.rules):
            loss, aux = s.loss_fn(state.params, state.ref_params, batch)
        out = {"loss": loss, "metrics": _float_metrics(aux["metrics"])}
        for key in ("step_scores", "step_labels", "step_mask", "outcome_scores", "outcome"):
            if key in aux:
                out[key] = aux[key]
        return out

    return step


def make_eval_step(s: Setup, batch_example: Mapping[str, Any]) -> _MeshJit:
    """Returns eval_step(state, batch) jitted once (state not donated; outputs replicated)."""
    objectives.check_batch(s.config.objective, batch_example)
    rep = NamedSharding(s.mesh, P())
    fn = jax.jit(
        eval_step_fn(s),
        in_shardings=(s.state_shardings, batch_shardings_of(s, batch_example)),
        out_shardings=rep,
        compiler_options=compiler_options(s.config),
    )
    return _MeshJit(fn, s.mesh)


def eval_summary(outputs: list[dict]) -> dict:
    """Returns eval metrics over several eval_step outputs: loss, step_acc, step_auroc, outcome_acc.

    Step accuracy and AUROC compare step scores (logits, or q_t for the implicit PRM) with step labels
    >= 0.5 over unmasked steps; outcome accuracy compares sign(r) with outcome >= 0.5.
    """
    from prm_jax.evaluate import step_auroc as auroc

    out: dict[str, float] = {"loss": float(np.mean([float(o["loss"]) for o in outputs]))}
    scores, labels = [], []
    for o in outputs:
        if "step_scores" in o and "step_labels" in o:
            m = np.asarray(o["step_mask"], bool)
            scores.append(np.asarray(o["step_scores"], np.float64)[m])
            labels.append(np.asarray(o["step_labels"], np.float64)[m])
    if scores:
        sc, lb = np.concatenate(scores), np.concatenate(labels)
        if sc.size:
            out["step_acc"] = float(np.mean((sc > 0) == (lb >= 0.5)))
            out["step_auroc"] = auroc(sc, lb)
    if outputs and "outcome_scores" in outputs[0]:
        r = np.concatenate([np.asarray(o["outcome_scores"]) for o in outputs])
        y = np.concatenate([np.asarray(o["outcome"]) for o in outputs])
        out["outcome_acc"] = float(np.mean((r > 0) == (y >= 0.5)))
        out["outcome_auroc"] = auroc(r, y)
    for key in outputs[0]["metrics"] if outputs else ():
        out.setdefault(key, float(np.mean([float(o["metrics"][key]) for o in outputs])))
    return out


def tokens_in(batch: Mapping[str, Any]) -> int:
    """Returns the number of non-padding tokens of a batch (segment_ids > 0, else all)."""
    if "segment_ids" in batch:
        n = int(np.sum(np.asarray(batch["segment_ids"]) > 0))
    else:
        n = int(math.prod(np.shape(batch["tokens"])))
    if "rejected_segment_ids" in batch:
        n += int(np.sum(np.asarray(batch["rejected_segment_ids"]) > 0))
    return n
