"""Chat rendering, completion-only labels, token spans and the truncation policy.

One function, :func:`render_chat`, decides what the model sees before its answer, and both
training and evaluation call it, so the two can never drift apart. The opening ``<think>``
comes from the chat template when it writes one; templates that do not (SmolLM2's ChatML)
get ``<think>\\n`` appended to the generation prompt, so every model learns and is graded on
the same completion: ``trace\\n</think>\\n\\boxed{answer}<end of turn>``.

The prompt/completion boundary is found in the tokenization of the *whole* text through
offsets, never by tokenizing the halves separately (BPE merges across the join would shift
it). A row whose answer would not fit in ``max_length`` is dropped and counted, or with
``truncate="trace"`` loses the middle of its trace; the answer is never cut.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from reasondistill.data.example import Example
from reasondistill.data.format import FormatSpec, RowDropped, build_record, user_message
from reasondistill.errors import ReasondistillError

THINK_OPEN = "<think>\n"
IGNORE_INDEX = -100
DROP_ANSWER_TRUNCATED = "answer would not fit in max_length"


def _apply_template(tokenizer, messages, *, add_generation_prompt: bool,
                    enable_thinking: bool) -> str:
    if getattr(tokenizer, "chat_template", None) is None:
        raise ReasondistillError(
            f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template; "
            "reasondistill renders prompts with the model's chat template"
        )
    text = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt,
        enable_thinking=enable_thinking,
    )
    if not isinstance(text, str):
        raise ReasondistillError("the chat template did not return text (tokenize=False)")
    return text


def render_prompt(tokenizer, prompt: str, spec: FormatSpec = FormatSpec(), *,
                  enable_thinking: bool = True) -> str:
    """The text the model is given at generation time, ending with the opening ``<think>``."""
    text = _apply_template(tokenizer, [user_message(prompt, spec)], add_generation_prompt=True,
                           enable_thinking=enable_thinking)
    return text if text.endswith(THINK_OPEN) else text + THINK_OPEN


def render_chat(tokenizer, record: dict, *, enable_thinking: bool = True) -> tuple[str, str]:
    """(prompt, full) for a ``{"messages": [user, assistant]}`` record.

    Raises when the rendered prompt is not a prefix of the full conversation: then no safe
    boundary exists and prompt tokens could leak into the loss.
    """
    user, assistant = record["messages"]
    prompt = _apply_template(tokenizer, [user], add_generation_prompt=True,
                             enable_thinking=enable_thinking)
    think_prefix = "" if prompt.endswith(THINK_OPEN) else THINK_OPEN
    prompt += think_prefix
    full = _apply_template(
        tokenizer, [user, {"role": "assistant", "content": think_prefix + assistant["content"]}],
        add_generation_prompt=False, enable_thinking=enable_thinking,
    )
    if not full.startswith(prompt):
        raise ReasondistillError(
            "the chat template's generation prompt is not a prefix of the rendered "
            "conversation, so the prompt/completion boundary is unsafe.\n"
            f"  prompt ends with: {prompt[-80:]!r}\n  full text there:  "
            f"{full[len(prompt) - 80:len(prompt)]!r}\n"
            "Use a template that renders assistant turns verbatim."
        )
    return prompt, full


@dataclass
class TokenizedRow:
    """One training row. Spans are token index ranges ``[start, end)`` in ``input_ids``."""

    input_ids: list[int]
    labels: list[int]
    prompt_span: tuple[int, int]
    trace_span: tuple[int, int]
    answer_span: tuple[int, int]
    trace_cut: int = 0  # tokens removed from the middle of the trace (truncate="trace")

    @property
    def n_supervised(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _first_token_at(offsets, char_pos: int) -> int:
    """Index of the first token that starts at or after ``char_pos``."""
    for index, (start, end) in enumerate(offsets):
        if end > start and start >= char_pos:
            return index
    return len(offsets)


def tokenize_record(tokenizer, record: dict, *, max_length: int,
                    truncate: Literal["drop", "trace"] = "drop",
                    enable_thinking: bool = True) -> TokenizedRow:
    """Tokenize one record with labels on the completion only; raises :class:`RowDropped`."""
    prompt, full = render_chat(tokenizer, record, enable_thinking=enable_thinking)
    answer_at = full.rfind("</think>")
    encoded = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(encoded["input_ids"]), encoded["offset_mapping"]
    start = _first_token_at(offsets, len(prompt))
    answer_start = _first_token_at(offsets, answer_at) if answer_at >= len(prompt) else start
    # A token straddling the trace/answer join (rare) belongs to the trace.
    answer_start = max(answer_start, start)
    cut = 0
    if len(ids) > max_length:
        excess = len(ids) - max_length
        trace_len = answer_start - start
        if truncate == "drop" or trace_len - excess < 2:
            raise RowDropped(DROP_ANSWER_TRUNCATED)
        keep_head = (trace_len - excess) // 2
        cut_from, cut_to = start + keep_head, start + keep_head + excess
        ids = ids[:cut_from] + ids[cut_to:]
        answer_start -= excess
        cut = excess
    labels = [IGNORE_INDEX] * start + ids[start:]
    return TokenizedRow(ids, labels, (0, start), (start, answer_start),
                        (answer_start, len(ids)), cut)


@dataclass
class TokenizedSet:
    rows: list[TokenizedRow] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    full_lengths: list[int] = field(default_factory=list)  # before truncation, kept rows only


def tokenize_examples(tokenizer, examples, spec: FormatSpec, *, max_length: int,
                      truncate: Literal["drop", "trace"] = "drop",
                      enable_thinking: bool = True, progress: bool = False) -> TokenizedSet:
    """Format and tokenize examples, counting every drop by reason."""
    out = TokenizedSet()
    iterator = examples
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(examples, desc="tokenize", unit="row", leave=False)
    for example in iterator:
        try:
            row = tokenize_record(tokenizer, build_record(example, spec), max_length=max_length,
                                  truncate=truncate, enable_thinking=enable_thinking)
        except RowDropped as drop:
            out.drops[drop.reason] += 1
            continue
        out.rows.append(row)
        out.examples.append(example)
        out.full_lengths.append(len(row.input_ids) + row.trace_cut)
    return out
