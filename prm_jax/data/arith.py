"""The synthetic arithmetic reasoning task: problems, an exact step verifier, corruption, a char tokenizer.

A problem is a chain of named quantities. The text gives the starting values and, in order, the
formula for every derived quantity, and asks for the last one:

    a = 12, b = 7, c = 3. d = a + b, e = d * 3, f = e - c. Find f.

A solution has one line per formula, in the problem's order, showing names, values and result:

    d = a + b = 12 + 7 = 19
    e = d * 3 = 19 * 3 = 57
    f = e - c = 57 - 3 = 54

Verifier rule (makes the first error well defined, and labels monotone like PRM800K's
`after_first_error='drop'` and Math-Shepherd's MC labels):
  * step t is *locally valid* when it parses, computes the t-th formula of the problem (same name on
    the left, same operands and operator), every operand value it shows equals the value last shown
    for that name (the given value, or the result an earlier step showed, even a wrong one), and its
    result is the exact value of the shown computation;
  * step t is *correct* when it is locally valid and every earlier step is correct.
The first error is therefore the first locally invalid step. After a corrupted step the generator
keeps computing from the values shown, so later steps are locally valid but labelled wrong.
The outcome is whether the final answer (the result of the last step) equals the gold answer.

`ArithConfig.named_values` writes every value right after its name, in the prompt and in the steps:

    a12, b7, c3. d = a + b, e = d * 3, f = e - c. Find f.

    d = a12 + b7 = d19
    e = d19 * 3 = e57
    f = e57 - c3 = f54

Looking a value up is then copying what follows an earlier occurrence of its name, the one token
before it: the copy an induction head makes. In the spaced format a name stands 4 characters before
its value in the prompt and 8-9 in a step, and the demo's 2-layer policy learned the look-up late, on
some seeds not within its 1,100 SFT steps; with `a:12` (2 before) on fewer (benchmarks/NOTES.md,
eighteenth session). The rule above is the same in both formats.

Corruption kinds (one step per corrupted solution): `carry` (the result is off by a dropped or added
carry, +-10^k), `operand` (a different earlier quantity is used in place of one operand), `copy` (an
operand's value is copied wrongly, e.g. digits transposed, then the computation is right).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Iterator, Sequence

import numpy as np

from prm_jax.data.records import Record

OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y}
NAMES = "abcdefghijklmnopqrstuvwxyz"
KINDS = ("carry", "operand", "copy")


@dataclasses.dataclass(frozen=True)
class ArithConfig:
    """Difficulty and corruption settings of the arithmetic task."""

    min_given: int = 2
    max_given: int = 3
    min_steps: int = 2  # derived quantities = solution steps
    max_steps: int = 4
    min_operand: int = 1  # given values and constants
    max_operand: int = 20
    max_result: int = 999  # '*' is replaced by '+' when it would exceed this
    operators: tuple = ("+", "-", "*")
    const_prob: float = 0.3  # chance the second operand is a small constant
    self_sub: bool = True  # allow `d = c - c` (0 whatever c is shown as: an error before it
    # cannot change the answer, so outcome labels miss it)
    corrupt_prob: float = 0.4  # chance a solution has one wrong step
    corruption_kinds: tuple = KINDS
    named_values: bool = False  # write each value right after its name, `a12` (module docstring)

    def __post_init__(self):
        if not 1 <= self.min_given <= self.max_given:
            raise ValueError(f"bad given range [{self.min_given}, {self.max_given}]")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"bad step range [{self.min_steps}, {self.max_steps}]")
        if self.max_given + self.max_steps > len(NAMES):
            raise ValueError("at most 26 quantities")
        if not 0 <= self.min_operand <= self.max_operand:
            raise ValueError(f"bad operand range [{self.min_operand}, {self.max_operand}]")
        bad = [o for o in self.operators if o not in OPS]
        if bad or not self.operators:
            raise ValueError(f"operators must be a non-empty subset of + - *, got {self.operators}")
        bad = [k for k in self.corruption_kinds if k not in KINDS]
        if bad:
            raise ValueError(f"unknown corruption kinds {bad}; known: {KINDS}")
        if not 0.0 <= self.corrupt_prob <= 1.0:
            raise ValueError(f"corrupt_prob must be in [0, 1], got {self.corrupt_prob}")
        if not self.self_sub and "-" in self.operators and "+" not in self.operators:
            raise ValueError("self_sub=False replaces `x - x` by `x + x`: it needs '+' among the operators")

    @classmethod
    def from_dict(cls, d) -> "ArithConfig":
        """Returns a config from a dict / ConfigDict, ignoring keys it does not know."""
        d = dict(d or {})
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields}
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class Formula:
    name: str
    left: str  # a quantity name
    op: str
    right: str  # a quantity name or a decimal constant


@dataclasses.dataclass(frozen=True)
class ArithProblem:
    """A parsed problem: given values, formulas in order, the asked quantity and its gold value."""

    given: tuple  # ((name, value), ...)
    formulas: tuple  # (Formula, ...)
    answer: int
    named_values: bool = False  # the text's and the steps' format (module docstring)

    @property
    def target(self) -> str:
        return self.formulas[-1].name

    @property
    def text(self) -> str:
        sep = "" if self.named_values else " = "
        given = ", ".join(f"{n}{sep}{v}" for n, v in self.given)
        forms = ", ".join(f"{f.name} = {f.left} {f.op} {f.right}" for f in self.formulas)
        return f"{given}. {forms}. Find {self.target}."


_GIVEN = re.compile(r"([a-z]) = (-?\d+)")
_NAMED_GIVEN = re.compile(r"([a-z])(-?\d+)")
_FORMULA = re.compile(r"([a-z]) = ([a-z]) ([+\-*]) ([a-z]|\d+)")
_STEP = re.compile(r"^([a-z]) = ([a-z]) ([+\-*]) ([a-z]|\d+) = (-?\d+) ([+\-*]) (-?\d+) = (-?\d+)$")
# name = left<value> op (right<value> | constant) = name<result>
_NAMED_STEP = re.compile(r"^([a-z]) = ([a-z])(-?\d+) ([+\-*]) ([a-z])?(-?\d+) = ([a-z])(-?\d+)$")


def _parse_step(step: str, named: bool):
    """Returns (name, left, op, right, shown left value, shown op, shown right value, result, whether a
    named result carries the step's name), or None when `step` is not a solution line."""
    if not named:
        m = _STEP.match(step.strip())
        if m is None:
            return None
        name, left, op, right, sx, sop, sy, sres = m.groups()
        return name, left, op, right, int(sx), sop, int(sy), int(sres), True
    m = _NAMED_STEP.match(step.strip())
    if m is None:
        return None
    name, left, sx, op, right_name, sy, res_name, sres = m.groups()
    return name, left, op, right_name or sy, int(sx), op, int(sy), int(sres), res_name == name


def _eval(formulas, env: dict) -> dict:
    env = dict(env)
    for f in formulas:
        right = env[f.right] if f.right in env else int(f.right)
        env[f.name] = OPS[f.op](env[f.left], right)
    return env


def parse_problem(text: str) -> ArithProblem:
    """Returns the problem parsed from its text; raises ValueError if it is not an arith problem."""
    parts = text.strip().split(". ")
    if len(parts) != 3 or not parts[2].startswith("Find "):
        raise ValueError(f"not an arithmetic problem: {text!r}")
    named = _NAMED_GIVEN.search(parts[0]) is not None
    given = tuple((n, int(v)) for n, v in (_NAMED_GIVEN if named else _GIVEN).findall(parts[0]))
    formulas = tuple(Formula(*m) for m in _FORMULA.findall(parts[1]))
    if not given or not formulas or formulas[-1].name != parts[2][5:].rstrip("."):
        raise ValueError(f"not an arithmetic problem: {text!r}")
    known = {n for n, _ in given}
    for f in formulas:
        if f.left not in known or not (f.right in known or f.right.isdigit()):
            raise ValueError(f"formula for {f.name} uses an unknown quantity: {text!r}")
        known.add(f.name)
    env = _eval(formulas, dict(given))
    return ArithProblem(given, formulas, env[formulas[-1].name], named)


def _as_problem(problem) -> ArithProblem:
    return problem if isinstance(problem, ArithProblem) else parse_problem(problem)


def step_text(f: Formula, vx: int, vy: int, result: int, right_name: str | None = None, named: bool = False) -> str:
    """Returns one solution line: `d = a + b = 12 + 7 = 19`, or `d = a12 + b7 = d19` when `named`."""
    right = right_name or f.right
    if named:
        shown_right = str(vy) if right.isdigit() else f"{right}{vy}"
        return f"{f.name} = {f.left}{vx} {f.op} {shown_right} = {f.name}{result}"
    return f"{f.name} = {f.left} {f.op} {right} = {vx} {f.op} {vy} = {result}"


def step_faults(problem, steps: Sequence[str]) -> list[str | None]:
    """Returns, per step, None when it is locally valid (module docstring), else what is wrong with it.

    'unparsed' (not a solution line, or a line of the other text), 'extra' (past the problem's last
    formula), 'formula' (name, operands or operator differ from the problem's formula: a wrong quantity
    used; in the named text also a constant other than the formula's, or a result written under another
    name), 'value' (an operand's value is not the one shown for its name: a wrong look-up), 'result'
    (the result is not the shown computation's).
    """
    p = _as_problem(problem)
    shown = dict(p.given)
    out = []
    for t, s in enumerate(steps):
        parsed = _parse_step(s, p.named_values)
        if parsed is None or t >= len(p.formulas):
            out.append("unparsed" if parsed is None else "extra")
            continue
        name, left, op, right, sx, sop, sy, sres, result_named = parsed
        f = p.formulas[t]
        if (name, left, op, right) != (f.name, f.left, f.op, f.right) or sop != op or not result_named:
            out.append("formula")
        # A name whose step did not parse has no shown value: its look-up is wrong too.
        elif sx != shown.get(left) or sy != (int(right) if right.isdigit() else shown.get(right)):
            out.append("value")
        elif sres != OPS[sop](sx, sy):
            out.append("result")
        else:
            out.append(None)
        shown[name] = sres  # later steps are checked against the value shown, right or wrong
    return out


def step_validity(problem, steps: Sequence[str]) -> list[bool]:
    """Returns, per step, whether it is locally valid (see module docstring)."""
    return [fault is None for fault in step_faults(problem, steps)]


def first_error_kind(problem, steps: Sequence[str]) -> str | None:
    """Returns what is wrong with the first wrong step (`step_faults`' kinds), None when all are correct."""
    return next((fault for fault in step_faults(problem, steps) if fault is not None), None)


def check_steps(problem, steps: Sequence[str]) -> list[bool]:
    """Returns, per step, whether it is correct: locally valid and after no wrong step."""
    out, ok_so_far = [], True
    for v in step_validity(problem, steps):
        ok_so_far = ok_so_far and v
        out.append(ok_so_far)
    return out


def first_error(problem, steps: Sequence[str]) -> int:
    """Returns the index of the first wrong step, -1 when all are correct."""
    return next((i for i, ok in enumerate(check_steps(problem, steps)) if not ok), -1)


def final_answer(steps: Sequence[str]) -> int | None:
    """Returns the integer that ends the last step right after an '=' (in the named text after the
    result's name: `= f54`), None if there is none: an operand (`- c3`) is not an answer."""
    if not steps:
        return None
    m = re.search(r"=\s*[a-z]?(-?\d+)\s*$", steps[-1].strip())
    return int(m.group(1)) if m else None


def is_correct(problem, steps: Sequence[str]) -> bool:
    """Returns whether the final answer equals the gold answer (the outcome label)."""
    return final_answer(steps) == _as_problem(problem).answer


def sample_problem(cfg: ArithConfig, rng: np.random.Generator) -> ArithProblem:
    """Returns a random problem under `cfg`."""
    n_given = int(rng.integers(cfg.min_given, cfg.max_given + 1))
    n_steps = int(rng.integers(cfg.min_steps, cfg.max_steps + 1))
    env = {NAMES[i]: int(rng.integers(cfg.min_operand, cfg.max_operand + 1)) for i in range(n_given)}
    given = tuple(env.items())
    formulas = []
    for k in range(n_steps):
        name, names = NAMES[n_given + k], list(env)
        # a chain: each step builds on the previous result, so the answer depends on every step
        left = names[-1] if k > 0 else names[int(rng.integers(len(names)))]
        if rng.random() < cfg.const_prob:
            right = str(int(rng.integers(max(cfg.min_operand, 1), min(cfg.max_operand, 9) + 1)))
        else:
            right = names[int(rng.integers(len(names)))]
        vx, vy = env[left], (env[right] if right in env else int(right))
        op = cfg.operators[int(rng.integers(len(cfg.operators)))]
        if op == "*" and abs(vx * vy) > cfg.max_result:
            op = "+" if "+" in cfg.operators else "-"
        if op == "-" and vx < vy:  # keep gold values non-negative
            op = "+" if "+" in cfg.operators else op
        if op == "+" and vx + vy > cfg.max_result and "-" in cfg.operators and vx >= vy:
            op = "-"
        if op == "-" and right == left and not cfg.self_sub and "+" in cfg.operators:
            op = "+"
        f = Formula(name, left, op, right)
        formulas.append(f)
        env[name] = OPS[op](vx, vy)
    return ArithProblem(given, tuple(formulas), env[formulas[-1].name], cfg.named_values)


def _carry_slip(value: int, rng) -> int:
    digits = len(str(abs(value)))
    delta = 10 ** int(rng.integers(1, digits)) if digits > 1 else 1
    out = value + delta * (1 if rng.random() < 0.5 else -1)
    return out if out >= 0 else value + delta


def _miscopy(value: int, rng) -> int:
    s = str(value)
    if len(s) >= 2 and s[-1] != s[-2]:
        return int(s[:-2] + s[-1] + s[-2])  # transposed last two digits
    out = value + int(rng.choice([-2, -1, 1, 2]))
    return out if out >= 0 else value + 1


def solve(
    problem: ArithProblem,
    rng: np.random.Generator | None = None,
    *,
    corrupt_at: int | None = None,
    kind: str | None = None,
) -> tuple[list[str], str | None]:
    """Returns (steps, kind used) for a gold solution, or one with step `corrupt_at` corrupted."""
    shown = dict(problem.given)
    steps, used = [], None
    for t, f in enumerate(problem.formulas):
        vx = shown[f.left]
        vy = shown[f.right] if f.right in shown else int(f.right)
        right_name = None
        res = OPS[f.op](vx, vy)
        if t == corrupt_at:
            used = kind
            others = [n for n in shown if n != f.right and n != f.name and shown[n] != vy]
            if kind == "operand" and not others:
                used = "carry"
            if used == "carry":
                res = _carry_slip(res, rng)
            elif used == "operand":
                right_name = others[int(rng.integers(len(others)))]
                vy = shown[right_name]
                res = OPS[f.op](vx, vy)
            elif used == "copy":
                vx = _miscopy(vx, rng)
                res = OPS[f.op](vx, vy)
            else:
                raise ValueError(f"unknown corruption kind {kind!r}")
        steps.append(step_text(f, vx, vy, res, right_name, problem.named_values))
        shown[f.name] = res
    return steps, used


def make_record(cfg: ArithConfig, seed: int, index: int) -> Record:
    """Returns record `index` of the stream `seed` (random access: the pair fixes the record)."""
    rng = np.random.default_rng([int(seed), int(index)])
    problem = sample_problem(cfg, rng)
    corrupt_at = kind = None
    if cfg.corruption_kinds and rng.random() < cfg.corrupt_prob:
        corrupt_at = int(rng.integers(len(problem.formulas)))
        kind = cfg.corruption_kinds[int(rng.integers(len(cfg.corruption_kinds)))]
    steps, used = solve(problem, rng, corrupt_at=corrupt_at, kind=kind)
    labels = [float(ok) for ok in check_steps(problem, steps)]
    fe = next((i for i, lab in enumerate(labels) if lab == 0.0), -1)
    return Record(
        problem=problem.text,
        steps=steps,
        step_labels=labels,
        outcome=float(final_answer(steps) == problem.answer),
        answer=str(problem.answer),
        source="arith",
        id=f"arith-{seed}-{index}",
        meta={"first_error": fe, "corruption": used, "corrupt_at": corrupt_at},
    )


def record_stream(cfg: ArithConfig, seed: int = 0, start: int = 0) -> Iterator[Record]:
    """Yields records start, start+1, ... of the seeded unbounded stream."""
    i = start
    while True:
        yield make_record(cfg, seed, i)
        i += 1


def problem_stream(cfg: ArithConfig, seed: int = 0, start: int = 0) -> Iterator[tuple[ArithProblem, list[str]]]:
    """Yields (problem, gold steps) pairs of the seeded unbounded stream."""
    i = start
    while True:
        rng = np.random.default_rng([int(seed), int(i), 1])
        p = sample_problem(cfg, rng)
        yield p, solve(p)[0]
        i += 1


class CharTokenizer:
    """A fixed character vocabulary for the arithmetic task; the tokenizer protocol of tokenize.py.

    Ids: 0 <pad>, 1 <bos>, 2 <eos>, 3 <step> (the step-end marker, `CharTokenizer.STEP`), 4 <unk>,
    then printable characters. Special names inside text encode to their ids, so decode(encode(x))
    round-trips. Characters outside the vocabulary map to <unk> (strict=True raises instead).
    """

    SPECIALS = ("<pad>", "<bos>", "<eos>", "<step>", "<unk>")
    STEP = "<step>"
    CHARS = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ +-*=/().,:;?!'\"\n"
    _SPECIAL_RE = re.compile("(" + "|".join(re.escape(s) for s in SPECIALS) + ")")

    def __init__(self, strict: bool = False):
        self.strict = strict
        self.itos = list(self.SPECIALS) + list(self.CHARS)
        self.stoi = {s: i for i, s in enumerate(self.itos)}
        self.pad_id, self.bos_id, self.eos_id, self.step_id, self.unk_id = range(5)
        self.name = "char"
        # characters encoded so far and how many became <unk> (`unknown_share`; training warns)
        self.chars_seen = self.unknown_seen = 0

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        """Returns the ids of `text` (special names become their single id)."""
        ids = []
        for piece in self._SPECIAL_RE.split(text):
            if piece in self.SPECIALS:
                ids.append(self.stoi[piece])
                continue
            self.chars_seen += len(piece)
            for ch in piece:
                i = self.stoi.get(ch)
                if i is None:
                    if self.strict:
                        raise ValueError(f"character {ch!r} is not in the CharTokenizer vocabulary")
                    i = self.unk_id
                    self.unknown_seen += 1
                ids.append(i)
        return ids

    @property
    def unknown_share(self) -> float:
        """Returns the share of the characters encoded so far that became <unk> (0 before any)."""
        return self.unknown_seen / max(self.chars_seen, 1)

    def decode(self, ids) -> str:
        """Returns the text of `ids`; pad ids are dropped."""
        return "".join(self.itos[int(i)] for i in ids if int(i) != self.pad_id)

    def marker_ids(self, marker: str) -> list[int]:
        """Returns the ids that close a step for `marker`."""
        return self.encode(marker)
