"""The main job, `prm-jax demo`: policy SFT -> MC labels -> six verifiers -> search -> report.md.

Its config ships with the package (prm_jax/configs/demo.py, so an installed prm-jax runs it from any
folder); this file re-exports it so that experiments/ documents every run. The stages one by one are
arith_policy_sft.py, arith_mc_label.py, arith_verifier.py and arith_search.py.

    prm-jax demo --workdir runs/demo                                   # the packaged 'full' config
    prm-jax demo --config experiments/arith_demo.py:quick --workdir /tmp/demo_quick
    prm-jax demo --config experiments/arith_demo.py:full --workdir runs/demo_s1 --config.seed=1
    prm-jax demo --config experiments/arith_demo.py:full --workdir runs/long --config.policy.train.steps=2000

    # the same run on seeds 0, 1, 2 (one folder each, then a table of their final.json):
    prm-jax sweep --config experiments/arith_demo.py:full --workdir runs/demo_seeds

Variants: full (the README's run), quick (every stage and figure in ~2 minutes; numbers not meaningful).
"""

from prm_jax.configs import demo

COMMAND = "demo"  # `prm-jax sweep` runs it as `prm-jax demo --config THIS --workdir RUN ...`
VARIANTS = ("full", "quick")


def get_config(arg=None):
    """Returns the packaged demo config (prm_jax/configs/demo.py) of variant `arg`."""
    arg = arg or "full"
    if arg not in VARIANTS:
        raise ValueError(f"arith_demo.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    return demo.get_config(arg)


def get_hyper(h):
    """The demo on three seeds: its figures per seed."""
    return h.sweep("seed", [0, 1, 2])


SWEEP_METRICS = (
    "policy_accuracy",
    "acc@N/oracle",
    "acc@N/majority",
    "acc@N/bce/min/weighted_vote",
    "acc@N/bce/min/argmax",
    "acc@N/beam_pav",
    "auroc/bce",
    "auroc/exact",
)
