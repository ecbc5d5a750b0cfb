"""The arithmetic task: verifier against hand-made steps, corruption labels, stream, char tokenizer."""

import numpy as np
import pytest

from prm_jax.data import arith as A

PROBLEM = "a = 12, b = 7, c = 3. d = a + b, e = d * 3, f = e - c. Find f."
GOLD = ["d = a + b = 12 + 7 = 19", "e = d * 3 = 19 * 3 = 57", "f = e - c = 57 - 3 = 54"]


def test_parse_problem_and_gold_answer():
    p = A.parse_problem(PROBLEM)
    assert p.answer == 54 and p.target == "f" and dict(p.given) == {"a": 12, "b": 7, "c": 3}
    assert p.text == PROBLEM
    assert A.solve(p)[0] == GOLD


def test_verifier_on_hand_made_steps():
    assert A.check_steps(PROBLEM, GOLD) == [True, True, True]
    assert A.is_correct(PROBLEM, GOLD) and A.final_answer(GOLD) == 54
    # carry slip at step 0: 12 + 7 = 29; later steps computed from the shown 29 are locally valid
    slip = ["d = a + b = 12 + 7 = 29", "e = d * 3 = 29 * 3 = 87", "f = e - c = 87 - 3 = 84"]
    assert A.step_validity(PROBLEM, slip) == [False, True, True]
    assert A.check_steps(PROBLEM, slip) == [False, False, False]
    assert A.first_error(PROBLEM, slip) == 0 and not A.is_correct(PROBLEM, slip)
    # wrong operand (b instead of 3) at step 1
    wrong_op = [GOLD[0], "e = d * b = 19 * 7 = 133", "f = e - c = 133 - 3 = 130"]
    assert A.check_steps(PROBLEM, wrong_op) == [True, False, False]
    # copied wrong value: 19 copied as 91, computation right
    copy = [GOLD[0], "e = d * 3 = 91 * 3 = 273", "f = e - c = 273 - 3 = 270"]
    assert A.step_validity(PROBLEM, copy) == [True, False, True]
    # last step wrong only
    last = GOLD[:2] + ["f = e - c = 57 - 3 = 53"]
    assert A.check_steps(PROBLEM, last) == [True, True, False] and A.first_error(PROBLEM, last) == 2
    # garbage, an extra step, a step out of order
    assert A.check_steps(PROBLEM, ["d = 19"]) == [False]
    assert A.check_steps(PROBLEM, GOLD + [GOLD[-1]]) == [True, True, True, False]
    assert A.check_steps(PROBLEM, [GOLD[1], GOLD[0]]) == [False, False]
    # a misnamed step leaves the formula's operand never shown: the later step is invalid, no crash
    misnamed = ["x = a + b = 12 + 7 = 19", "e = d * 3 = 19 * 3 = 57", "f = e - d = 57 - 19 = 38"]
    problem2 = "a = 12, b = 7, c = 3. d = a + b, e = d * 3, f = e - d. Find f."
    assert A.step_validity(problem2, misnamed) == [False, False, False]
    assert A.final_answer([]) is None and A.final_answer(["no number"]) is None


def test_parse_problem_rejects_bad_text():
    for bad in ["hello", "a = 1. d = x + a. Find d.", "a = 1. d = a + 1. Find e."]:
        with pytest.raises(ValueError):
            A.parse_problem(bad)


def test_records_labels_match_independent_verifier_and_rates():
    cfg = A.ArithConfig()
    n, wrong, bad_steps, steps = 600, 0, 0, 0
    for i in range(n):
        r = A.make_record(cfg, 3, i)
        r.validate()
        p = A.parse_problem(r.problem)
        # independent reference: recompute every step from the shown values by hand-rolled eval
        shown = dict(p.given)
        ref_ok, ok = [], True
        for t, s in enumerate(r.steps):
            lhs, formula, values, result = [x.strip() for x in s.split("=")]
            x, op, y = values.split()
            f = p.formulas[t]
            want_right = str(shown[f.right]) if f.right in shown else f.right
            local = (
                lhs == f.name
                and formula == f"{f.left} {f.op} {f.right}"
                and x == str(shown[f.left])
                and y == want_right
                and int(result) == eval(values)
            )
            ok = ok and local
            ref_ok.append(float(ok))
            shown[lhs] = int(result)
        assert r.step_labels == ref_ok, (r.problem, r.steps)
        assert r.outcome == float(int(r.steps[-1].split("=")[-1]) == p.answer)
        assert r.meta["first_error"] == (r.meta["corrupt_at"] if r.meta["corrupt_at"] is not None else -1)
        wrong += r.meta["first_error"] >= 0
        bad_steps += r.step_labels.count(0.0)
        steps += len(r.steps)
    assert 0.3 <= wrong / n <= 0.5
    assert 0.1 < bad_steps / steps < 0.4


def test_stream_is_seeded_and_random_access():
    cfg = A.ArithConfig(min_steps=3, max_steps=3, corrupt_prob=0.5)
    s1 = A.record_stream(cfg, seed=7)
    first = [next(s1) for _ in range(5)]
    assert [r.id for r in first] == [f"arith-7-{i}" for i in range(5)]
    assert A.make_record(cfg, 7, 3) == first[3]
    assert next(A.record_stream(cfg, seed=7, start=3)) == first[3]
    assert A.make_record(cfg, 8, 3).problem != first[3].problem or A.make_record(cfg, 8, 3).steps != first[3].steps
    assert all(len(r.steps) == 3 for r in first)
    p, gold = next(A.problem_stream(cfg, seed=1))
    assert A.check_steps(p, gold) == [True] * 3


def test_config_difficulty_and_validation():
    cfg = A.ArithConfig(operators=("+",), min_operand=1, max_operand=5, corrupt_prob=0.0, const_prob=0.0)
    for i in range(50):
        r = A.make_record(cfg, 0, i)
        assert r.step_labels == [1.0] * len(r.steps) and r.outcome == 1.0
        assert all(" + " in s and "*" not in s for s in r.steps)
    for bad in [
        dict(operators=("/",)),
        dict(min_steps=3, max_steps=2),
        dict(corrupt_prob=1.5),
        dict(corruption_kinds=("typo",)),
        dict(operators=("-",), self_sub=False),
    ]:
        with pytest.raises(ValueError):
            A.ArithConfig(**bad)
    assert A.ArithConfig.from_dict({"max_steps": 6, "operators": ["+", "-"], "other": 1}).operators == ("+", "-")
    # self_sub=False: no `x = y - y` formula (counted over many problems), same problems otherwise
    base = dict(operators=("+", "-"), max_operand=9, const_prob=0.0, min_given=1, max_given=1)
    with_self = [A.sample_problem(A.ArithConfig(**base), np.random.default_rng(i)) for i in range(300)]
    without = [A.sample_problem(A.ArithConfig(**base, self_sub=False), np.random.default_rng(i)) for i in range(300)]

    def n_self(ps):
        return sum(f.op == "-" and f.left == f.right for p in ps for f in p.formulas)

    assert n_self(with_self) > 20 and n_self(without) == 0
    assert [p.given for p in with_self] == [p.given for p in without]


def test_each_corruption_kind_gives_a_wrong_step():
    for kind in A.KINDS:
        cfg = A.ArithConfig(corrupt_prob=1.0, corruption_kinds=(kind,))
        for i in range(40):
            r = A.make_record(cfg, 0, i)
            assert r.meta["first_error"] == r.meta["corrupt_at"] >= 0


def test_step_faults_name_what_is_wrong_on_hand_made_steps():
    assert A.step_faults(PROBLEM, GOLD) == [None, None, None] and A.first_error_kind(PROBLEM, GOLD) is None
    slip = ["d = a + b = 12 + 7 = 29", "e = d * 3 = 29 * 3 = 87", "f = e - c = 87 - 3 = 84"]
    assert A.step_faults(PROBLEM, slip) == ["result", None, None]
    assert A.first_error_kind(PROBLEM, [GOLD[0], "e = d * b = 19 * 7 = 133"]) == "formula"
    assert A.first_error_kind(PROBLEM, [GOLD[0], "e = d * 3 = 91 * 3 = 273"]) == "value"
    assert A.first_error_kind(PROBLEM, [GOLD[0], "e = d * 3 = 19 * 4 = 76"]) == "value"  # the constant
    assert A.first_error_kind(PROBLEM, [GOLD[0], "e = d + 3 = 19 + 3 = 22"]) == "formula"  # operator
    assert A.step_faults(PROBLEM, ["d = 19"]) == ["unparsed"]
    assert A.step_faults(PROBLEM, GOLD + [GOLD[-1]]) == [None, None, None, "extra"]
    # a misnamed step leaves d never shown: the next step's look-up of d is wrong
    misnamed = ["x = a + b = 12 + 7 = 19", "e = d * 3 = 19 * 3 = 57"]
    assert A.step_faults(PROBLEM, misnamed) == ["formula", "value"]


def test_first_error_kind_is_the_generators_corruption():
    # carry: the result is off; operand: another quantity in the formula; copy: a value miscopied
    want = {"carry": "result", "operand": "formula", "copy": "value"}
    for kind in A.KINDS:
        cfg = A.ArithConfig(corrupt_prob=1.0, corruption_kinds=(kind,))
        for i in range(40):
            r = A.make_record(cfg, 0, i)
            # an operand corruption with no other quantity to use falls back to a carry slip
            assert A.first_error_kind(r.problem, r.steps) == want[r.meta["corruption"]]
            # the first fault sits at the step the generator corrupted; the steps before it are clean
            faults = A.step_faults(r.problem, r.steps)
            assert faults[: r.meta["corrupt_at"]] == [None] * r.meta["corrupt_at"]
            assert faults[r.meta["corrupt_at"]] is not None


NAMED = "a12, b7, c3. d = a + b, e = d * 3, f = e - c. Find f."
NAMED_GOLD = ["d = a12 + b7 = d19", "e = d19 * 3 = e57", "f = e57 - c3 = f54"]


def test_named_values_format_parses_solves_and_names_faults():
    p = A.parse_problem(NAMED)
    assert p.named_values and p.text == NAMED and p.answer == 54 and dict(p.given) == {"a": 12, "b": 7, "c": 3}
    assert p.formulas == A.parse_problem(PROBLEM).formulas and not A.parse_problem(PROBLEM).named_values
    assert A.solve(p)[0] == NAMED_GOLD and A.final_answer(NAMED_GOLD) == 54 and A.is_correct(NAMED, NAMED_GOLD)
    assert A.step_faults(NAMED, NAMED_GOLD) == [None, None, None]
    slip = ["d = a12 + b7 = d29", "e = d29 * 3 = e87", "f = e87 - c3 = f84"]
    assert A.step_faults(NAMED, slip) == ["result", None, None] and A.check_steps(NAMED, slip) == [False] * 3
    assert A.first_error_kind(NAMED, [NAMED_GOLD[0], "e = d19 * b7 = e133"]) == "formula"  # b for 3
    assert A.first_error_kind(NAMED, [NAMED_GOLD[0], "e = d91 * 3 = e273"]) == "value"
    assert A.first_error_kind(NAMED, ["d = a7 + b7 = d14"]) == "value"  # b's value after a's name
    assert A.first_error_kind(NAMED, [NAMED_GOLD[0], "e = d19 * 4 = e76"]) == "formula"  # the constant
    assert A.first_error_kind(NAMED, [NAMED_GOLD[0], "e = d19 * 3 = f57"]) == "formula"  # result misnamed
    assert A.final_answer(["f = e57 - c3 = f-4"]) == -4 and A.final_answer(["f = e57 - c3 ="]) is None
    # an unfinished last step ends in an operand or a garbled name, not in a result: no answer (policy
    # samples of the named demo that were graded by their operand)
    for unfinished in ["f = e57 - c3", "e0", "d = c8 - 4 = de4", "f = e8 - e8 = fe0", "e = d3 - d3 - d0"]:
        assert A.final_answer([unfinished]) is None, unfinished
    # graded right only by its operand before: c's value 3 would have been read as the answer 3
    three = "a0, b3. c = a + b. Find c."
    assert A.parse_problem(three).answer == 3 and not A.is_correct(three, ["c = a0 + b3"])
    # the other format's lines are not this problem's solution lines, and the reverse
    assert A.step_faults(NAMED, GOLD) == ["unparsed"] * 3 and A.step_faults(PROBLEM, NAMED_GOLD) == ["unparsed"] * 3
    assert A.step_faults(NAMED, NAMED_GOLD + [NAMED_GOLD[-1]])[-1] == "extra"


def _spaced(named_text: str) -> str:
    """Returns a named problem or solution line in the spaced format (a reference independent of arith)."""
    if named_text.endswith("."):  # a problem: only the given values are written `a12`
        given, rest = named_text.split(". ", 1)
        return ", ".join(f"{g[0]} = {g[1:]}" for g in given.split(", ")) + ". " + rest
    lhs, comp, res = [x.strip() for x in named_text.split(" = ")]
    x, op, y = comp.split()
    names = [t[0] if t[0].isalpha() else t for t in (x, y)]
    vals = [t[1:] if t[0].isalpha() else t for t in (x, y)]
    return f"{lhs} = {names[0]} {op} {names[1]} = {vals[0]} {op} {vals[1]} = {res[1:]}"


def test_named_records_are_the_spaced_records_in_the_other_format():
    # The format changes the text only: the same seed and index draw the same problem, corruption,
    # labels and outcome, and each named line rewritten by hand is the spaced line.
    for kw in [dict(), dict(corrupt_prob=1.0, operators=("+", "-"), max_operand=9)]:
        spaced_cfg, named_cfg = A.ArithConfig(**kw), A.ArithConfig(**kw, named_values=True)
        for i in range(300):
            s, n = A.make_record(spaced_cfg, 5, i), A.make_record(named_cfg, 5, i)
            assert _spaced(n.problem) == s.problem and [_spaced(x) for x in n.steps] == s.steps
            assert (n.step_labels, n.outcome, n.meta) == (s.step_labels, s.outcome, s.meta)
            assert A.step_faults(n.problem, n.steps) == A.step_faults(s.problem, s.steps)


def test_char_tokenizer_round_trip():
    tok = A.CharTokenizer()
    text = PROBLEM + "\n" + A.CharTokenizer.STEP.join(GOLD) + "<eos>"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert tok.marker_ids(tok.STEP) == [tok.step_id] == [3]
    assert (tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.encode("a=1") == [tok.stoi["a"], tok.stoi["="], tok.stoi["1"]]
    assert tok.encode("é") == [tok.unk_id]
    with pytest.raises(ValueError, match="not in the CharTokenizer"):
        A.CharTokenizer(strict=True).encode("é")
    assert max(ids) < tok.vocab_size and len(set(tok.itos)) == tok.vocab_size
