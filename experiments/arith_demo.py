"""The main job, `prm-jax demo`: policy SFT -> MC labels -> five verifiers -> search -> report.md.

Its config ships with the package (prm_jax/configs/demo.py, so an installed prm-jax runs it from any
folder); this file re-exports it so that experiments/ documents every run. The stages one by one are
arith_policy_sft.py, arith_mc_label.py, arith_verifier.py and arith_search.py.

    prm-jax demo --workdir runs/demo                                   # the packaged 'full' config
    prm-jax demo --config experiments/arith_demo.py:quick --workdir /tmp/demo_quick
    prm-jax demo --config experiments/arith_demo.py:full --workdir runs/demo_s1 --config.seed=1
    prm-jax demo --config experiments/arith_demo.py:full --workdir runs/long --config.policy.train.steps=2000

Variants: full (the README's run), quick (every stage and figure in ~2 minutes; numbers not meaningful).
"""

from prm_jax.configs.demo import get_config  # noqa: F401  (the packaged demo config)
