"""Shape buckets for jitted host-side calls (sampler, verifier): round sizes up so that a search or
labelling run compiles a handful of programs, not one per request (on a CPU a compile costs more
than many padded rows)."""

from __future__ import annotations


def pow2(n: int, minimum: int = 1) -> int:
    """Returns the smallest power of two >= n, and at least `minimum`."""
    return max(minimum, 1 << max(0, int(n) - 1).bit_length())


def multiple(n: int, step: int) -> int:
    """Returns n rounded up to a multiple of `step`, and at least `step`."""
    return max(step, -(-int(n) // step) * step)
