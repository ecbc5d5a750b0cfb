"""Prints the final summary of one benchmark run from results.json: environment, ceilings, the
three tables, and the issue's targets (met / missed / not measured). Imports neither JAX nor torch.

Usage: python benchmarks/summary.py [--tiny] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import sampler as sampler_bench  # noqa: E402
import scoring as scoring_bench  # noqa: E402
import train_step as train_bench  # noqa: E402

# The targets (same card, one run).
PRM_MFU, PRM_VS_COMPILE = 0.50, 1.35
IMPLICIT_MFU, IMPLICIT_MEM = 0.45, 0.5
SAMPLER_VS_GENERATE = 50.0


def _verdict(ok) -> str:
    return "not measured" if ok is None else ("MET" if ok else "MISSED")


def targets(train_rows: list[dict], sampler_rows: list[dict]) -> list[dict]:
    """Returns one row per target with the measured values and a verdict."""
    by = {(r["impl"], r["name"]): r for r in train_rows}
    bce, imp = by.get(("prm-jax", "bce"), {}), by.get(("prm-jax", "implicit"), {})
    peer_c = by.get(("hf-peer", "prm_compile"), {})
    jax_s = next((r for r in sampler_rows if r["impl"] == "prm-jax"), {})
    out = []

    def both(a, b):
        return None if a is None or b is None else (a and b)

    m, v = (
        bce.get("mfu"),
        (
            bce.get("tokens_per_s") / peer_c["tokens_per_s"]
            if bce.get("tokens_per_s") and peer_c.get("tokens_per_s")
            else None
        ),
    )
    out.append(
        {
            "target": f"PRM step >= {PRM_MFU:.0%} MFU and >= {PRM_VS_COMPILE}x torch.compile peer",
            "measured": f"MFU {common.fmt(m)}, {common.fmt(v)}x",
            "verdict": _verdict(both(None if m is None else m >= PRM_MFU, None if v is None else v >= PRM_VS_COMPILE)),
        }
    )
    m, r = imp.get("mfu"), imp.get("mem_vs_peer")
    out.append(
        {
            "target": f"implicit step >= {IMPLICIT_MFU:.0%} MFU, peak <= {IMPLICIT_MEM}x peer",
            "measured": f"MFU {common.fmt(m)}, memory {common.fmt(r)}x",
            "verdict": _verdict(
                both(None if m is None else m >= IMPLICIT_MFU, None if r is None else r <= IMPLICIT_MEM)
            ),
        }
    )
    g = jax_s.get("vs_generate")
    out.append(
        {
            "target": f"sampler >= {SAMPLER_VS_GENERATE:.0f}x generate",
            "measured": f"{common.fmt(g)}x, {common.fmt(jax_s.get('floor_fraction'))} of floor",
            "verdict": _verdict(None if g is None else g >= SAMPLER_VS_GENERATE),
        }
    )
    return out


def render(results: dict, tiny: bool) -> str:
    """Returns the whole summary as markdown text."""
    env = results.get("env") or {}
    ceil = (results.get("ceilings") or {}).get("jax") or {}
    lines = [
        f"# prm-jax benchmarks ({'tiny, CPU' if tiny else 'full size'})",
        f"date {env.get('date_utc')}; gpu {env.get('gpu')}; versions {env.get('versions')}",
        f"ceilings (JAX): bf16 matmul {common.fmt((ceil.get('matmul_bf16_flops') or 0) / 1e12)} "
        f"TFLOP/s (n={ceil.get('matmul_n')}), copy {common.fmt((ceil.get('copy_bytes_per_s') or 0) / 1e9)} "
        f"GB/s; device {ceil.get('device')}",
    ]
    ts = results.get("train_step", {})
    rows = [v for k, v in ts.items() if k != "peer"]
    device = next((r.get("device") for r in rows if r.get("device")), ceil.get("device"))
    peak, source = common.peak_flops(results, device)
    shape = common.TINY if tiny else common.QWEN25_05B
    train_rows = train_bench.derive(rows, ts.get("peer"), peak, shape, 64 if tiny else 2048)
    lines += [
        "",
        f"## train step (MFU against the {source} peak, {common.fmt(peak)} FLOP/s)",
        common.table(train_rows, train_bench.COLUMNS),
    ]
    sc = (results.get("sampler") or {}).get("config") or {}
    sampler_rows = []
    if sc:
        sampler_rows = sampler_bench.derive(
            results["sampler"], shape, sc["batch"], sc["prompt"], sc["new"], ceil.get("copy_bytes_per_s")
        )
        lines += [
            "",
            f"## sampler (batch {sc['batch']}, prompt {sc['prompt']}, {sc['new']} new, "
            f"floor {common.fmt(sc['floor_bytes'] / 1e9)} GB)",
            common.table(sampler_rows, sampler_bench.COLUMNS),
        ]
    gc = (results.get("scoring") or {}).get("config") or {}
    if gc:
        lines += [
            "",
            f"## verifier scoring ({gc['n']} x {gc['seq']} tokens)",
            common.table(scoring_bench.derive(results["scoring"], shape, gc["seq"], peak), scoring_bench.COLUMNS),
        ]
    lines += ["", "## targets", common.table(targets(train_rows, sampler_rows), ["target", "measured", "verdict"])]
    skipped = results.get("skipped") or {}
    if skipped:
        lines += ["", "skipped stages: " + ", ".join(f"{k} ({v})" for k, v in skipped.items())]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tiny", action="store_true")
    p.add_argument("--markdown", default=None, help="also write the summary to this file")
    a = p.parse_args(argv)
    results = common.read_json(common.RESULTS)
    if results is None:
        print(f"no {common.RESULTS}.json under {common.out_dir()}", file=sys.stderr)
        return 1
    text = render(results, a.tiny)
    if a.markdown:
        with open(a.markdown, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
