"""The format contract (data/format.py), and byte parity with tracedistill's build_records on
every row the reference handles correctly."""

from __future__ import annotations

import random

import pytest

from reasondistill.boxed import iter_boxed, unescape_braces
from reasondistill.data.example import Example
from reasondistill.data.format import (
    DEFAULT_PROMPT_SUFFIX,
    DROP_SHORT_TRACE,
    FormatSpec,
    RowDropped,
    build_record,
    build_records,
)


def example(trace: str = "Two and two make four.", answer: str = "4", prompt: str = "2+2?",
            **fields) -> Example:
    return Example(id=fields.pop("id", "x"), prompt=prompt, answer=answer, trace=trace,
                   **fields)


def completion(trace: str, answer: str = "4", spec: FormatSpec = FormatSpec()) -> str:
    return build_record(example(trace, answer), spec)["messages"][1]["content"]


def final_box_content(text: str) -> str:
    boxes = list(iter_boxed(text))
    assert boxes, f"no balanced box in {text!r}"
    assert boxes[-1][1] == len(text), "the record must end with its box"
    return unescape_braces(boxes[-1][2]).strip()  # extraction strips, as the grader does


def test_user_turn_is_prompt_plus_the_grader_suffix():
    record = build_record(example(prompt="What is 2+2?"))
    user, assistant = record["messages"]
    assert user == {"role": "user", "content": "What is 2+2?" + DEFAULT_PROMPT_SUFFIX}
    assert DEFAULT_PROMPT_SUFFIX == ("\nPlease put your final answer inside `\\boxed{}`. "
                                     "For example: `\\boxed{your answer}`")
    assert assistant == {"role": "assistant",
                         "content": "Two and two make four.\n</think>\n\\boxed{4}"}
    custom = build_record(example(prompt="Q"), FormatSpec(prompt_suffix=" [box it]"))
    assert custom["messages"][0]["content"] == "Q [box it]"


@pytest.mark.parametrize("trace, kept", [
    ("We add. \\boxed{5}", "We add."),
    ("so x \\boxed{\\frac{1}{2}} y \\boxed{{a}{b}}", "so x  y"),
    ("first \\boxed{1} then \\boxed{2}\n\n", "first  then"),
    ("cut off \\boxed{abc", "cut off \\boxed{abc"),  # unbalanced: kept literally
    ("open \\boxed{a \\boxed{b} end", "open \\boxed{a  end"),
    ("set \\boxed{\\{1, 2\\}} done", "set  done"),
    ("  leading space kept, trailing dropped  \n\t", "  leading space kept, trailing dropped"),
])
def test_the_traces_own_boxes_are_stripped(trace, kept):
    assert completion(trace) == kept + "\n</think>\n\\boxed{4}"


@pytest.mark.parametrize("answer", ["{", "}", "a}b{", "}{", "{{x}", "\\frac{1}{2}", "{1, 2}",
                                    "x^{2", "f(x) = {", "}}}"])
def test_answers_with_braces_make_a_balanced_box(answer):
    assert final_box_content(completion("Some reasoning here.", answer)) == answer


def test_random_brace_answers_round_trip():
    rng = random.Random(7)
    for _ in range(500):
        # Loaders strip answers, so an answer never starts or ends with whitespace.
        answer = "".join(rng.choice("{}ab1 ^_") for _ in range(rng.randint(1, 12))).strip() or "a"
        text = completion("Some reasoning here.", answer)
        assert final_box_content(text) == answer, answer


@pytest.mark.parametrize("trace", [
    "<think>I reason here.</think>",
    "I reason </think> then more <think> and more",
    "<think><think>nested</think></think> text here",
])
def test_stray_think_tags_are_removed(trace):
    text = completion(trace)
    assert text.count("</think>") == 1 and "<think>" not in text
    assert text.endswith("\n</think>\n\\boxed{4}")


@pytest.mark.parametrize("trace", ["a <thi<think>nk> b reasoning", "a <\\boxed{x}/think> b c d"])
def test_tags_rebuilt_by_the_cleaning_are_removed_too(trace):
    text = completion(trace)
    assert text.count("</think>") == 1 and "<think>" not in text


@pytest.mark.parametrize("answer", ["a\\", "C:\\", "{\\"])
def test_answers_ending_in_a_backslash_make_a_balanced_box(answer):
    from reasondistill.evaluate.answers import extract_answer

    text = completion("Some reasoning here.", answer)
    assert final_box_content(text) == answer
    assert extract_answer(text) == answer


def test_short_traces_are_dropped_and_counted():
    traces = ["Long enough trace.", "", "abc", "   abcd   ", "\\boxed{123456}",
              "<think></think>", "ok ok ok"]
    examples = [example(t, id=str(i)) for i, t in enumerate(traces)]
    out = build_records(examples)
    assert out.drops == {DROP_SHORT_TRACE: 5}
    assert [e.id for e in out.examples] == ["0", "6"]
    assert len(out.records) == len(out.examples)
    with pytest.raises(RowDropped) as info:
        build_record(example("abc"))
    assert info.value.reason == DROP_SHORT_TRACE
    relaxed = build_records(examples, FormatSpec(min_trace_chars=3))
    assert relaxed.drops == {DROP_SHORT_TRACE: 3}


def test_answer_only_variant():
    spec = FormatSpec(answer_only=True)
    out = build_records([example("", answer="42"), example("a long trace \\boxed{1}")], spec)
    assert not out.drops
    assert [r["messages"][1]["content"] for r in out.records] == \
        ["</think>\n\\boxed{42}", "</think>\n\\boxed{4}"]
    assert out.records[0]["messages"][0]["content"] == "2+2?" + DEFAULT_PROMPT_SUFFIX


# --- parity with tracedistill ----------------------------------------------------------------

WORDS = ["add", "the", "sum", "is", "x", "=", "3", "so", "we", "get", "(a+b)", "{x}", "f{1}",
         "\\frac{1}{2}", "42", "therefore", "$", "0101"]
SPACES = [" ", " ", " ", "\n", "\n\n", "\t", "  "]


def random_trace(rng: random.Random) -> str:
    """Traces tracedistill handles correctly: no think tags, only escaped braces in pairs."""
    parts = [rng.choice(["", " ", "\n", "  \t"])]
    for _ in range(rng.choice([0, 1, 2, 3, 8, 20, 40])):
        roll = rng.random()
        if roll < 0.08:
            parts.append(rng.choice(["\\boxed{12}", "\\boxed{\\frac{1}{2}}", "\\boxed{{a}{b}}",
                                     "\\boxed{\\{1, 2\\}}", "\\boxed{x^{2}}", "\\boxed{}"]))
        elif roll < 0.1:
            parts.append(rng.choice(["\\boxed{", "\\boxed{unclosed", "\\boxed{ {nested} "]))
        else:
            parts.append(rng.choice(WORDS))
        parts.append(rng.choice(SPACES))
    if rng.random() < 0.3:
        parts.append(rng.choice(["\\boxed{7}", " \\boxed{7}\n", "Answer: \\boxed{7}.  "]))
    parts.append(rng.choice(["", " ", "\n", "\n\n  "]))
    return "".join(parts)


def random_rows(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        answer = rng.choice([str(rng.randint(-50, 10_000)), "00010101", "3/4", "x = 2",
                             "\\frac{1}{2}", "B", "1,000", "-0.5"])
        prompt = rng.choice(["Solve: ", "  What is x?\n", "Q", "Flip the bits of 0101."]) + \
            str(i)
        rows.append({"id": f"r{i}", "prompt": prompt, "generated_cot": random_trace(rng),
                     "answer": answer, "type": rng.choice(["arith", "bits", "cipher"])})
    return rows


@pytest.mark.parametrize("min_chars", [5, 1, 12])
def test_parity_with_tracedistill(min_chars):
    reference = pytest.importorskip("tracedistill.formatting")
    rows = random_rows(600, seed=min_chars)
    examples = [Example(id=r["id"], prompt=r["prompt"], trace=r["generated_cot"],
                        answer=r["answer"], type=r["type"]) for r in rows]
    theirs, their_types = reference.build_records(rows, min_cot_len=min_chars)
    ours = build_records(examples, FormatSpec(min_trace_chars=min_chars))
    assert ours.records == theirs  # byte-identical messages, same rows kept
    assert [e.type for e in ours.examples] == their_types
    assert sum(ours.drops.values()) == len(rows) - len(theirs) > 0  # ...and drops are counted
    assert sum(1 for r in rows if "\\boxed{" in r["generated_cot"]) > 100
