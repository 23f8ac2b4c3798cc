"""Chat rendering, completion-only labels, spans and the truncation policy."""

import pytest
from tiny import tiny_tokenizer

from reasondistill.data import Example, build_record
from reasondistill.data.format import FormatSpec, RowDropped
from reasondistill.errors import ReasondistillError
from reasondistill.tokenize import (
    IGNORE_INDEX,
    THINK_OPEN,
    render_chat,
    render_prompt,
    tokenize_examples,
    tokenize_record,
)

CHATML_NO_THINK = (  # SmolLM2-style: the template never opens <think> itself
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
    "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def example(trace="First add 2 and 3.\nThat gives 5.", answer="5", **kw):
    return Example(id=kw.pop("id", "x"), prompt=kw.pop("prompt", "What is 2+3?"), answer=answer,
                   trace=trace, **kw)


@pytest.fixture(params=["template-opens-think", "we-open-think"])
def tok(request):
    tokenizer = tiny_tokenizer()
    if request.param == "we-open-think":
        tokenizer.chat_template = CHATML_NO_THINK
    return tokenizer


def test_prompt_ends_with_one_think_opening(tok):
    prompt = render_prompt(tok, "What is 2+3?")
    assert prompt.endswith("<|im_start|>assistant\n" + THINK_OPEN)
    assert prompt.count("<think>") == 1
    assert "Please put your final answer inside `\\boxed{}`" in prompt


def test_labels_cover_exactly_the_completion(tok):
    record = build_record(example())
    prompt, full = render_chat(tok, record)
    row = tokenize_record(tok, record, max_length=512)
    start = row.prompt_span[1]
    assert all(label == IGNORE_INDEX for label in row.labels[:start])
    assert row.labels[start:] == row.input_ids[start:]
    assert tok.decode(row.input_ids[:start]) == prompt
    completion = tok.decode(row.input_ids[start:])
    assert completion == full[len(prompt):]
    assert completion.startswith("First add 2 and 3.")
    assert completion.endswith("\n</think>\n\\boxed{5}<|im_end|>\n")


def test_spans_split_trace_from_answer(tok):
    row = tokenize_record(tok, build_record(example()), max_length=512)
    assert row.prompt_span[1] == row.trace_span[0]
    assert row.trace_span[1] == row.answer_span[0]
    assert row.answer_span[1] == len(row.input_ids)
    answer_text = tok.decode(row.input_ids[slice(*row.answer_span)])
    assert answer_text.startswith("</think>") and "\\boxed{5}" in answer_text
    assert "That gives 5." in tok.decode(row.input_ids[slice(*row.trace_span)])


def test_prompt_that_is_not_a_prefix_stops_the_run():
    tok = tiny_tokenizer()
    # A template that rewrites assistant content (like Qwen3's reasoning_content handling).
    tok.chat_template = CHATML_NO_THINK.replace("m['content']", "m['content'] | trim")
    tok.chat_template = tok.chat_template.replace(
        "'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n\\n'")
    with pytest.raises(ReasondistillError, match="not a prefix"):
        render_chat(tok, build_record(example()))


def test_over_long_rows_are_dropped_and_counted(tok):
    long = example(trace="step " * 300, id="long")
    out = tokenize_examples(tok, [example(id="short"), long], FormatSpec(), max_length=128)
    assert [e.id for e in out.examples] == ["short"]
    assert out.drops == {"answer would not fit in max_length": 1}
    with pytest.raises(RowDropped):
        tokenize_record(tok, build_record(long), max_length=128)


def test_truncate_trace_cuts_the_middle_and_keeps_the_answer(tok):
    trace = "BEGIN " + "step " * 300 + " END"
    row = tokenize_record(tok, build_record(example(trace=trace)), max_length=128,
                          truncate="trace")
    assert len(row.input_ids) == 128
    assert row.trace_cut > 0
    text = tok.decode(row.input_ids[row.prompt_span[1]:])
    assert text.startswith("BEGIN") and "END" in text
    assert text.endswith("</think>\n\\boxed{5}<|im_end|>\n")
    assert row.n_supervised == 128 - row.prompt_span[1]


def test_truncate_trace_still_drops_when_the_prompt_alone_is_too_long(tok):
    record = build_record(example(prompt="word " * 400))
    with pytest.raises(RowDropped):
        tokenize_record(tok, record, max_length=128, truncate="trace")


def test_answer_only_records_supervise_just_the_answer(tok):
    row = tokenize_record(tok, build_record(example(), FormatSpec(answer_only=True)),
                          max_length=512)
    assert row.trace_span[0] == row.trace_span[1]
    assert tok.decode(row.input_ids[row.prompt_span[1]:]) == "</think>\n\\boxed{5}<|im_end|>\n"
