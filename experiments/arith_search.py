"""Demo stage 4: search with the trained verifiers on held-out arithmetic problems.

Majority vote; best-of-N with each verifier (aggregation `agg`, argmax and score-weighted vote); step-level
beam search ranked by the BCE-PRM; PAV beam search ranked by Q + alpha * A. Generated and verifier tokens
are counted so that methods compare at equal compute. The config is the demo config (its `search`
section, prm_jax/configs/demo.py) run by `prm_jax.demo.stage_eval` (`search.evaluate_methods`; a
Python stage: `prm-jax sweep --once`); it writes WORKDIR/eval.json and WORKDIR/final.json.

    prm-jax sweep --once --config experiments/arith_search.py:demo --workdir runs/arith/search \
        --config.runs=runs/arith
    # alpha of the PAV beam search (Setlur et al.: any alpha in [0.2, 0.6] beat Q alone):
    prm-jax sweep --config experiments/arith_search.py:pav_alpha --workdir runs/arith/alpha
    # aggregation rule of best-of-N (min, last, prod, mean, pure): one evaluation, five readings
    prm-jax sweep --config experiments/arith_search.py:agg --workdir runs/arith/agg
    # this CPU (tiny runs from arith_policy_sft.py:tiny and arith_verifier.py:*,tiny under /tmp/arith):
    prm-jax sweep --once --config experiments/arith_search.py:tiny --workdir /tmp/arith_search

`runs` holds policy/ and the verifier runs bce/ exact/ qpi/ orm/ pav/ implicit/ (each a `prm-jax train` workdir);
`labels` is arith_mc_label.py's labels/ folder (default RUNS/labels).
Variants: demo, pav_alpha, agg, tiny.
"""

import json
import os

from prm_jax.configs import demo

VARIANTS = ("demo", "pav_alpha", "agg", "tiny")


def get_config(arg=None):
    arg = arg or "demo"
    if arg not in VARIANTS:
        raise ValueError(f"arith_search.py: unknown variant {arg!r}; choose one of {VARIANTS}")
    c = demo.get_config("quick" if arg == "tiny" else "full")
    c.stage = "search"
    c.runs = (
        "/tmp/arith" if arg == "tiny" else "runs/arith"
    )  # policy/, bce/, exact/, qpi/, orm/, pav/, implicit/ inside
    c.agg = "min"  # best-of-N aggregation read into final.json
    c.shared_eval = "runs/arith/search_shared" if arg == "agg" else ""  # a folder whose eval.json is reused
    c.labels = ""  # arith_mc_label's labels/ folder (its val.jsonl); "" = RUNS/labels
    if arg == "tiny":
        c.search.update(problems=2, n=2, beam_width=2)
    return c


def get_hyper(h, arg=None):
    """The aggregation rule of best-of-N (variant agg), else alpha of the PAV beam search."""
    if arg == "agg":
        return h.sweep("agg", ["min", "last", "prod", "mean", "pure"])
    return h.sweep("search.alpha", [0.0, 0.2, 0.5, 1.0])


def _link(src: str, dst: str) -> None:
    if not os.path.isdir(src):
        raise FileNotFoundError(f"{src} does not exist: train it first (see the docstring)")
    if not os.path.lexists(dst):
        os.symlink(os.path.abspath(src), dst)


def run(config, workdir):
    """Runs the search evaluation; returns accuracy at N per method, AUROC and tokens."""
    from prm_jax import demo as demo_lib

    where = config.shared_eval or workdir
    os.makedirs(where, exist_ok=True)
    for name in ("policy", *config.verifiers):
        _link(os.path.join(config.runs, name), os.path.join(where, name))
    _link(config.labels or os.path.join(config.runs, "labels"), os.path.join(where, "labels"))
    res = demo_lib.stage_eval(where, config, print)
    if config.shared_eval:
        with open(os.path.join(workdir, "eval_source.json"), "w") as f:
            json.dump({"eval": os.path.abspath(os.path.join(where, "eval.json"))}, f)
    out = {"policy_accuracy": res["policy_accuracy"], "n": res["n"], "auroc": res["auroc"]}
    for name, c in res["curves"].items():
        verifier, _, rest = name.partition("/")
        if not rest or rest.split("/")[0] == config.agg:  # majority, beams, and the chosen aggregation
            out[f"acc@N/{verifier}/{rest.split('/')[-1]}" if rest else f"acc@N/{name}"] = c["acc"][-1]
    out["tokens"] = {k: v for k, v in res["tokens"].items() if not isinstance(v, dict)}
    return out


SWEEP_METRICS = ("acc@N/beam_pav", "acc@N/bce/argmax", "acc@N/implicit/argmax", "acc@N/majority")
