"""Orbax checkpoints of a training run: train state + data-iterator state + config, under WORKDIR/ckpt.

Layout: `WORKDIR/ckpt/<step>/{state,data,config,check}`; `state` through `StandardSave` (sharded
arrays, restored straight into their target shardings), `data`, `config` and `check` as JSON. Saves
are asynchronous. `check` holds a fingerprint of every state array (its bits summed as uint32,
computed on the device) taken at save time: a restore recomputes it, so flipped or truncated bytes
are caught even where Orbax reads them without complaint. A checkpoint that fails to restore or
to match its fingerprint (or holds a non-finite value) is skipped with a warning naming it and the
next older one is tried; a resuming run moves the skipped ones to `WORKDIR/ckpt_corrupt/<step>`. Half-written `*.orbax-checkpoint-tmp*`
folders of an interrupted save are removed when the checkpointer opens.
"""

from __future__ import annotations

import base64
import logging
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

ITEMS = ("state", "data", "config", "check")
log = logging.getLogger(__name__)


class CorruptCheckpointError(RuntimeError):
    """No checkpoint under the folder could be restored and validated; the message lists why."""


def _bits(x):
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    if x.dtype == jnp.bool_:
        return x.astype(jnp.uint32)
    width = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    return jax.lax.bitcast_convert_type(x, width).astype(jnp.uint32)


@jax.jit
def _fingerprint(tree):
    """Returns ({leaf: uint32 sum of its bits (mod 2^32)}, all float leaves finite)."""
    sums = jax.tree_util.tree_map(lambda x: jnp.sum(_bits(x), dtype=jnp.uint32), tree)
    finite = [
        jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)
    ]
    return sums, jnp.all(jnp.stack(finite)) if finite else jnp.bool_(True)


def fingerprint(state) -> tuple[list[int], bool]:
    """Returns (per-leaf bit sums in tree order, whether every float is finite) of a state pytree."""
    sums, finite = jax.device_get(_fingerprint(state))
    return [int(x) for x in jax.tree_util.tree_leaves(sums)], bool(finite)


def _encode_data_state(data_state: Any) -> Any:
    # Iterator states may be bytes (grain) or plain JSON; JSON cannot hold bytes.
    if isinstance(data_state, bytes):
        return {"__bytes__": base64.b64encode(data_state).decode()}
    return {"__json__": data_state}


def _decode_data_state(obj: Any) -> Any:
    if isinstance(obj, dict) and "__bytes__" in obj:
        return base64.b64decode(obj["__bytes__"])
    if isinstance(obj, dict) and "__json__" in obj:
        return obj["__json__"]
    return obj


class Checkpointer:
    """Saves and restores (state, data_state, config) under `workdir/ckpt` with an Orbax manager."""

    def __init__(self, workdir: str, *, max_to_keep: int | None = 3, async_save: bool = True):
        self.directory = os.path.abspath(os.path.join(workdir, "ckpt"))
        self.quarantine = os.path.abspath(os.path.join(workdir, "ckpt_corrupt"))
        if os.path.isdir(self.directory) and jax.process_index() == 0:
            for name in os.listdir(self.directory):
                if ".orbax-checkpoint-tmp" in name:  # a save that a kill interrupted
                    log.warning("removing the half-written checkpoint %s", os.path.join(self.directory, name))
                    shutil.rmtree(os.path.join(self.directory, name), ignore_errors=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, create=True, enable_async_checkpointing=async_save
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)

    def latest_step(self) -> int | None:
        """Returns the latest saved step, or None when there is no checkpoint."""
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_state: Any, config_dict: dict) -> None:
        """Starts an asynchronous save of step `step` (forced: the caller decides when to save)."""
        sums, finite = fingerprint(state)
        if not finite:
            raise FloatingPointError(f"refusing to save step {step}: the state holds NaN or inf")
        self.manager.save(
            int(step),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(_encode_data_state(data_state)),
                config=ocp.args.JsonSave(config_dict),
                check=ocp.args.JsonSave({"bit_sums": sums}),
            ),
            force=True,
        )

    def _candidates(self, step: int | None) -> list[int]:
        steps = sorted(self.manager.all_steps(), reverse=True) if step is None else [int(step)]
        if not steps:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        return steps

    def _set_aside(self, step: int) -> None:
        src = os.path.join(self.directory, str(step))
        if jax.process_index() == 0 and os.path.isdir(src):
            os.makedirs(self.quarantine, exist_ok=True)
            dst = os.path.join(self.quarantine, str(step))
            shutil.rmtree(dst, ignore_errors=True)
            shutil.move(src, dst)
            log.warning("moved the unusable checkpoint %s to %s", src, dst)

    def restore(
        self, abstract_state: Any, step: int | None = None, *, set_aside: bool = False
    ) -> tuple[Any, Any, dict]:
        """Returns (state, data_state, config_dict) of `step` (default: the newest valid one).

        `abstract_state` is a pytree of jax.ShapeDtypeStruct carrying `.sharding`. Without `step`, a
        newest checkpoint that fails to restore or to validate is skipped with a warning naming it,
        and the next older one restored; with `set_aside` (a run about to save those steps again) the
        skipped ones are then moved to WORKDIR/ckpt_corrupt. CorruptCheckpointError when none is left.
        """

        def read(cand):
            out = self.manager.restore(
                cand,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    config=ocp.args.JsonRestore(),
                ),
            )
            return out["state"], (out["state"], _decode_data_state(out["data"]), out["config"])

        return self._first_valid(step, read, None, set_aside)

    def restore_params(self, abstract_state: Any, step: int | None = None) -> Any:
        """Returns the params of `step` (default: the newest valid one), reading no other array.

        An Orbax partial restore of the `params` subtree of the saved TrainState: the optimizer's
        moments and the implicit PRM's reference stay on disk, so inference needs the weights' memory
        only. `abstract_state` is the run's abstract TrainState (its `params` carry the shardings).
        """
        item = {"params": abstract_state.params}
        paths = jax.tree_util.tree_flatten_with_path(abstract_state)[0]
        index = [i for i, (path, _) in enumerate(paths) if getattr(path[0], "name", None) == "params"]

        def read(cand):
            # Its own PyTree checkpointer on the step's `state` folder: the manager holds a Standard
            # handler for that item once it restored a full state, and that handler cannot restore part.
            with ocp.Checkpointer(ocp.PyTreeCheckpointHandler()) as reader:
                out = reader.restore(
                    os.path.join(self.directory, str(cand), "state"),
                    args=ocp.args.PyTreeRestore(
                        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item), partial_restore=True
                    ),
                )
            return out["params"], out["params"]

        return self._first_valid(step, read, index, False)

    def _first_valid(self, step, read, index, set_aside):
        """Returns the result of `read(step)` for the newest checkpoint whose arrays are finite and match
        their fingerprint (`index`: the positions of the arrays read among the saved state's)."""
        errors, skipped = [], []
        for cand in self._candidates(step):
            try:
                arrays, result = read(cand)
                sums, finite = fingerprint(arrays)
                saved = self._saved_sums(cand)
                if saved is not None and index is not None:
                    saved = [saved[i] for i in index]
                if not finite:
                    raise ValueError("the restored state holds NaN or inf")
                if saved is not None and saved != sums:
                    bad = sum(a != b for a, b in zip(saved, sums))
                    raise ValueError(f"{bad} of {len(sums)} arrays differ from their fingerprint at save time")
            except Exception as e:  # Orbax raises many kinds (OUT_OF_RANGE, JSONDecodeError, ValueError)
                why = f"{type(e).__name__}: {str(e).splitlines()[0][:300] if str(e) else ''}"
                errors.append(f"step {cand}: {why}")
                if step is not None:
                    raise CorruptCheckpointError(
                        f"checkpoint {os.path.join(self.directory, str(cand))} cannot be restored: {why}"
                    ) from e
                log.warning(
                    "checkpoint %s is unusable (%s); trying an older one", os.path.join(self.directory, str(cand)), why
                )
                skipped.append(cand)
                continue
            if set_aside and skipped:
                for bad_step in skipped:
                    self._set_aside(bad_step)
                self.manager.reload()
            return result
        raise CorruptCheckpointError(f"no valid checkpoint under {self.directory}: " + "; ".join(errors))

    def _saved_sums(self, step: int) -> list[int] | None:
        if not os.path.isdir(os.path.join(self.directory, str(step), "check")):
            return None  # saved before fingerprints existed
        check = self.manager.restore(step, args=ocp.args.Composite(check=ocp.args.JsonRestore()))["check"]
        return [int(x) for x in check["bit_sums"]]

    def restore_config(self, step: int | None = None) -> dict:
        """Returns the config dict saved with `step` (default: the newest one whose config reads)."""
        errors = []
        for cand in self._candidates(step):
            try:
                return self.manager.restore(cand, args=ocp.args.Composite(config=ocp.args.JsonRestore()))["config"]
            except Exception as e:
                errors.append(f"step {cand}: {type(e).__name__}: {e}")
                if step is not None:
                    raise CorruptCheckpointError(
                        f"config of checkpoint {os.path.join(self.directory, str(cand))} cannot be read: {e}"
                    ) from e
        raise CorruptCheckpointError(f"no readable checkpoint config under {self.directory}: " + "; ".join(errors))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
