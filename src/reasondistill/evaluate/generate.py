"""Generation backends: rendered prompts in, one :class:`Generation` per sample out.

The transformers backend (the default, and the one that runs on CPU) batches prompts of
similar length with LEFT padding and the KV cache, and stops each row on its own the moment
it has answered: its ``\\boxed{...}`` after ``</think>`` has closed, or it wrote EOS. A
generation that keeps the contract is finished there, so every token after it would be
wasted time (and could add a second box that changes the extracted answer). On CPU, for
attention-only models, a batch runs as short ``generate`` calls continuing one preallocated
KV cache, and rows that have stopped are dropped between calls, so a batch does not keep
paying for its finished rows while its longest one is still writing.

Per sample we record the text (cut right after that closing brace), the number of generated
tokens up to and including the stop point, whether it hit ``max_new_tokens`` without
stopping (``truncated``) and ``confidence``: the mean probability of the answer's tokens
(those inside the final ``\\boxed{}``) under the model's own distribution.

The vLLM backend (``backend: vllm``, or ``auto`` with vLLM installed and CUDA present) is
a thin wrapper that applies the adapter through a ``LoRARequest``; it cuts and scores its
outputs with the same functions.
"""

from __future__ import annotations

import copy
import importlib.util
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from transformers import (
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    StoppingCriteria,
    StoppingCriteriaList,
)

from reasondistill.boxed import iter_boxed
from reasondistill.errors import ReasondistillError
from reasondistill.evaluate.answers import THINK_CLOSE
from reasondistill.evaluate.kv_cache import cache_argument, compactable_cache, prefill_in_groups

StopReason = Literal["answer", "eos", "length", "stop"]


@dataclass
class Generation:
    """One sample for one prompt."""

    text: str
    token_ids: list[int]  # generated ids up to and including the stop point
    truncated: bool  # hit max_new_tokens without answering or writing EOS
    confidence: float | None  # mean prob. of the answer's tokens; None without a box
    stop_reason: StopReason

    @property
    def n_generated_tokens(self) -> int:
        return len(self.token_ids)


# --------------------------------------------------------------------------- text rules


def answer_end(text: str) -> int | None:
    """Index just past the first non-empty ``\\boxed{...}`` after the last ``</think>``:
    where a generation that keeps the format contract is finished. None before that."""
    think = text.rfind(THINK_CLOSE)
    if think < 0:
        return None
    start = think + len(THINK_CLOSE)
    for _, end, content in iter_boxed(text[start:]):
        if content.strip():
            return start + end
    return None


def answer_span(text: str) -> tuple[int, int] | None:
    """Character span of the content of the last non-empty box: the box
    :func:`~reasondistill.evaluate.answers.extract` reads (a box after the last
    ``</think>`` is necessarily the last box of a cut generation)."""
    span = None
    for _start, end, content in iter_boxed(text):
        if content.strip():
            span = (end - 1 - len(content), end - 1)
    return span


def span_token_indices(tokenizer, ids: Sequence[int], start: int, end: int) -> list[int]:
    """Indices of the tokens whose decoded text overlaps characters ``[start, end)``.

    Token ``i`` covers ``[len(decode(ids[:i])), len(decode(ids[:i + 1])))``. The answer sits
    at the end of a generation, so we walk back from the end and decode only the prefixes
    we need.
    """
    hits = []
    right = len(_decode(tokenizer, ids))
    for i in range(len(ids) - 1, -1, -1):
        if right <= start:
            break
        left = len(_decode(tokenizer, ids[:i]))
        if left < end and right > left:
            hits.append(i)
        right = left
    return hits[::-1]


def answer_confidence(tokenizer, ids: Sequence[int], probs: Sequence[float],
                      text: str) -> float | None:
    """Mean probability of the tokens inside the answer box of ``text`` (decoded from
    ``ids``, possibly cut after the box); None when there is no box."""
    span = answer_span(text)
    if span is None:
        return None
    indices = span_token_indices(tokenizer, ids, *span)
    if not indices:
        return None
    return float(sum(probs[i] for i in indices) / len(indices))


def _decode(tokenizer, ids: Sequence[int]) -> str:
    # Special tokens stay: with some templates </think> is one.
    return tokenizer.decode(list(ids), skip_special_tokens=False)


def finish_generation(tokenizer, ids: list[int], probs: Sequence[float] | None,
                      reason: StopReason) -> Generation:
    """Decode a sample (without its EOS), cut it after the answer box and score it."""
    body = ids[:-1] if reason == "eos" else ids
    text = _decode(tokenizer, body)
    cut = answer_end(text)
    if cut is not None:
        text = text[:cut]
    confidence = answer_confidence(tokenizer, body, probs, text) if probs is not None else None
    return Generation(text, ids, reason == "length", confidence, reason)


# --------------------------------------------------------------------------- stopping


class IncrementalDetokenizer:
    """Text of a growing token sequence, one token at a time, decoding only a short tail.

    Decodes the window from ``prefix`` on and emits what the newest tokens added beyond the
    already-read part; a trailing U+FFFD means a multi-byte character is still incomplete,
    so it waits for the next token (the usual streaming detokenizer, as in TGI and vLLM).
    """

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self.prefix = 0
        self.read = 0

    def push(self, token: int) -> str:
        self.ids.append(token)
        before = _decode(self.tokenizer, self.ids[self.prefix:self.read])
        after = _decode(self.tokenizer, self.ids[self.prefix:])
        if len(after) > len(before) and not after.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return after[len(before):]
        return ""


@dataclass
class RowProgress:
    """One sequence being generated: its new tokens (up to and including the stop), their
    probabilities, the text so far (for the stop rule) and why it stopped."""

    detok: IncrementalDetokenizer
    tokens: list[int] = field(default_factory=list)
    probs: list[float] = field(default_factory=list)
    text: str = ""
    reason: StopReason | None = None


class AnswerStop(StoppingCriteria):
    """Stops each row once its answer box after ``</think>`` closes, or at EOS.

    Returns one bool per row (transformers 5 ANDs ``~done`` into its unfinished mask and pads
    the rest of a finished row) and records each live row's new token in its
    :class:`RowProgress`. Cheap per step: one short incremental decode per live row, and a
    scan for the box only when a ``}`` arrives.
    """

    def __init__(self, rows: Sequence[RowProgress], eos_ids: set[int]) -> None:
        self.rows, self.eos_ids = list(rows), set(eos_ids)

    @classmethod
    def fresh(cls, tokenizer, n_rows: int, eos_ids: set[int]) -> AnswerStop:
        return cls([RowProgress(IncrementalDetokenizer(tokenizer)) for _ in range(n_rows)],
                   eos_ids)

    def __call__(self, input_ids: torch.LongTensor, scores=None, **kwargs) -> torch.BoolTensor:
        for row, token in zip(self.rows, input_ids[:, -1].tolist()):
            if row.reason is not None:
                continue
            row.tokens.append(token)
            if token in self.eos_ids:
                row.reason = "eos"
                continue
            chunk = row.detok.push(token)
            row.text += chunk
            if "}" in chunk and answer_end(row.text) is not None:
                row.reason = "answer"
        done = [row.reason is not None for row in self.rows]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)


class ChosenTokenProbs(LogitsProcessor):
    """Records the probability of every generated token under the model's distribution.

    A processor runs before the token is chosen, so each call keeps this step's
    log-softmax and reads the previous step's choice (now the last column of
    ``input_ids``) from the one kept before; :meth:`finish` reads the final choice from the
    returned sequences. Only one ``(rows, vocab)`` tensor is held, never all the logits.
    transformers puts custom processors before the sampling warpers, so these are the
    model's own (temperature-1) probabilities; under greedy decoding the chosen token is
    the argmax of exactly this distribution.
    """

    def __init__(self, prompt_length: int) -> None:
        self.prompt_length = prompt_length
        self.steps: list[torch.Tensor] = []
        self._last: torch.Tensor | None = None

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        if self._last is not None:
            self._gather(input_ids)
        self._last = torch.log_softmax(scores.float(), dim=-1)
        return scores

    def _gather(self, input_ids: torch.LongTensor) -> None:
        self.steps.append(self._last.gather(1, input_ids[:, -1:]).squeeze(1).exp())

    def finish(self, sequences: torch.LongTensor) -> torch.Tensor:
        """``(rows, n_generated)`` probabilities of the generated tokens."""
        if self._last is not None and sequences.shape[1] > self.prompt_length + len(self.steps):
            self._gather(sequences)
        self._last = None
        if not self.steps:
            return torch.zeros(sequences.shape[0], 0)
        return torch.stack(self.steps, dim=1).cpu()


# --------------------------------------------------------------------------- transformers


def eos_token_ids(model, tokenizer) -> set[int]:
    """EOS ids from the tokenizer and the model's generation config (chat models often
    end a turn with a token that is not the tokenizer's plain EOS)."""
    ids = set()
    for value in (tokenizer.eos_token_id, getattr(model.generation_config, "eos_token_id", None)):
        if isinstance(value, int):
            ids.add(value)
        elif value:
            ids.update(int(v) for v in value)
    return ids


def greedy_or_sampling_config(*, max_new_tokens: int, temperature: float, num_samples: int,
                              eos_ids: set[int], pad_id: int,
                              top_p: float = 1.0) -> GenerationConfig:
    """Explicit settings, so a model's own generation_config (top_p, repetition penalty...)
    never changes what is measured."""
    sampling = temperature > 0
    if num_samples > 1 and not sampling:
        raise ReasondistillError(
            f"eval.num_samples={num_samples} needs eval.temperature > 0 (greedy decoding would "
            "repeat the same answer)"
        )
    warpers = dict(temperature=temperature, top_k=0, top_p=top_p) if sampling else {}
    return GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=sampling, **warpers, repetition_penalty=1.0,
        eos_token_id=sorted(eos_ids), pad_token_id=pad_id, use_cache=True,
        disable_compile=True,  # a compile per batch shape costs more than it saves here
    )


class TransformersBackend:
    """Batched ``model.generate``: prompts sorted by length, left-padded, per-row stopping.

    With a compactable cache (CPU, attention-only models) a batch is generated in
    ``chunk_tokens``-long ``generate`` calls that continue from the same cache, and rows that
    have stopped are dropped between calls once they are at least ``compact_at`` of the
    batch, so a batch does not keep paying for its finished rows until its longest one ends.
    """

    name = "transformers"

    def __init__(self, model, tokenizer, *, max_new_tokens: int, batch_size: int = 16,
                 temperature: float = 0.0, num_samples: int = 1, seed: int = 0,
                 chunk_tokens: int = 32, compact_at: float = 0.125,
                 prefill_rows: int = 8, top_p: float = 1.0) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size
        self.num_samples, self.seed = num_samples, seed
        self.chunk_tokens, self.compact_at = chunk_tokens, compact_at
        self.prefill_rows = prefill_rows
        self.eos_ids = eos_token_ids(model, tokenizer)
        from reasondistill.speedups import usable

        # the preallocated, compacted cache reaches into transformers' cache internals
        self.cache_surgery = usable("kv_cache", model)
        if not self.eos_ids:
            raise ReasondistillError("the tokenizer and model define no EOS token; cannot stop")
        pad = tokenizer.pad_token_id
        self.pad_id = pad if pad is not None else min(self.eos_ids)
        self.config = greedy_or_sampling_config(
            max_new_tokens=max_new_tokens, temperature=temperature, num_samples=num_samples,
            eos_ids=self.eos_ids, pad_id=self.pad_id, top_p=top_p)

    def encode(self, prompts: Sequence[str]) -> list[list[int]]:
        # The chat template already wrote any BOS, exactly as training tokenized it.
        return [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]

    def batches(self, encoded: Sequence[list[int]]) -> list[list[int]]:
        """Prompt indices grouped into batches of similar length (longest first, so memory
        trouble shows at once); ``batch_size`` counts sequences, samples included."""
        per_batch = max(1, self.batch_size // self.num_samples)
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
        return [order[i:i + per_batch] for i in range(0, len(order), per_batch)]

    def iter_generate(self, prompts: Sequence[str]) -> Iterator[list[tuple[int, list[Generation]]]]:
        """Yield each finished batch as ``[(prompt index, samples), ...]``."""
        encoded = self.encode(prompts)
        for number, indices in enumerate(self.batches(encoded)):
            if self.config.do_sample:
                torch.manual_seed(self.seed + number)
            samples = self.generate_ids([encoded[i] for i in indices])
            yield list(zip(indices, samples))

    def generate(self, prompts: Sequence[str]) -> list[list[Generation]]:
        """All samples for all prompts, in prompt order."""
        out: list[list[Generation]] = [[] for _ in prompts]
        for batch in self.iter_generate(prompts):
            for index, samples in batch:
                out[index] = samples
        return out

    def generate_ids(self, batch: Sequence[list[int]]) -> list[list[Generation]]:
        """Generate for one batch of token-id prompts; samples per prompt, in order."""
        k = self.num_samples
        width = max(len(ids) for ids in batch)
        device = self.model.device
        input_ids = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in batch])
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in batch])
        input_ids = input_ids.repeat_interleave(k, dim=0).to(device)
        mask = mask.repeat_interleave(k, dim=0).to(device)
        rows = AnswerStop.fresh(self.tokenizer, len(batch) * k, self.eos_ids).rows
        self._run(rows, input_ids, mask)
        done = [finish_generation(self.tokenizer, row.tokens, row.probs, row.reason or "length")
                for row in rows]
        return [done[i * k:(i + 1) * k] for i in range(len(batch))]

    def _run(self, rows: list[RowProgress], input_ids: torch.Tensor, mask: torch.Tensor) -> None:
        """Drive ``generate`` until every row has stopped or used ``max_new_tokens``."""
        cache = (compactable_cache(self.model, input_ids.shape[1] + self.max_new_tokens)
                 if self.cache_surgery else None)
        if cache is not None and len(rows) > self.prefill_rows:
            prefill_in_groups(self.model, cache, input_ids, mask, self.prefill_rows)
        live = list(range(len(rows)))  # which rows the current batch holds, in order
        budget = self.max_new_tokens
        while budget > 0:
            config = copy.deepcopy(self.config)
            config.max_new_tokens = min(budget, self.chunk_tokens) if cache else budget
            recorder = ChosenTokenProbs(input_ids.shape[1])
            extra = {cache_argument(self.model): cache} if cache is not None else {}
            sequences = self.model.generate(
                input_ids=input_ids, attention_mask=mask, generation_config=config,
                stopping_criteria=StoppingCriteriaList([AnswerStop([rows[i] for i in live],
                                                                   self.eos_ids)]),
                logits_processor=LogitsProcessorList([recorder]), **extra)
            probs = recorder.finish(sequences)
            for position, i in enumerate(live):
                row = rows[i]
                row.probs.extend(probs[position, :len(row.tokens) - len(row.probs)].tolist())
            new = sequences.shape[1] - input_ids.shape[1]
            budget -= new
            keep = [p for p, i in enumerate(live) if rows[i].reason is None]
            if not keep or budget <= 0 or cache is None:
                return
            input_ids = sequences
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], new)], dim=1)
            if len(live) - len(keep) >= self.compact_at * len(live):
                index = torch.tensor(keep, device=input_ids.device)
                input_ids, mask = input_ids[index], mask[index]
                cache.reorder_cache(index)
                live = [live[p] for p in keep]


def load_eval_model(model_cfg, *, adapter: str | None = None, dtype: str | None = None):
    """``(model, tokenizer)`` for generation: the base model from ``load_model`` (dtype
    ``auto`` = bf16 where the CPU/GPU runs it natively), with the LoRA adapter merged in when
    one is given: the same function, without the adapter's per-layer cost at every step."""
    from reasondistill.models import load_model

    model, tokenizer = load_model(model_cfg, dtype=dtype)
    if adapter is not None:
        from peft import PeftModel

        from reasondistill.export import loading_adapter

        with loading_adapter(adapter):
            model = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    if torch.cuda.is_available():
        model = model.to("cuda")
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- vLLM


def vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def resolve_backend(requested: str) -> str:
    """``auto`` → vllm when it can run here, else transformers; a requested vllm that
    cannot run is an error, not a silent fallback."""
    if requested == "auto":
        return "vllm" if vllm_available() else "transformers"
    if requested == "vllm" and not vllm_available():
        why = ("it is not installed (pip install 'reasondistill[vllm]')"
               if importlib.util.find_spec("vllm") is None else "no CUDA device is available")
        raise ReasondistillError(f"eval.backend is 'vllm' but {why}; use eval.backend: "
                                 "transformers (or auto)")
    return requested


class VllmBackend:
    """vLLM generation with the adapter as a ``LoRARequest`` (GPU only, imported lazily).

    vLLM has no per-row "answer closed" rule, so rows run to EOS or ``max_new_tokens``;
    the text is cut after the answer box as in the transformers backend.
    """

    name = "vllm"

    def __init__(self, model_path: str, *, adapter: str | None, max_new_tokens: int,
                 temperature: float = 0.0, num_samples: int = 1, seed: int = 0,
                 top_p: float = 1.0) -> None:
        from vllm import LLM, SamplingParams
        from vllm.lora.request import LoRARequest

        lora = {"enable_lora": True, "max_lora_rank": _lora_rank(adapter)} if adapter else {}
        self.llm = LLM(model=model_path, seed=seed, **lora)
        self.tokenizer = self.llm.get_tokenizer()
        self.params = SamplingParams(n=num_samples, temperature=temperature, top_p=top_p,
                                     max_tokens=max_new_tokens, seed=seed, logprobs=0)
        self.lora = LoRARequest("adapter", 1, str(adapter)) if adapter else None

    def iter_generate(self, prompts: Sequence[str]) -> Iterator[list[tuple[int, list[Generation]]]]:
        outputs = self.llm.generate(list(prompts), self.params, lora_request=self.lora)
        yield [(i, [self._generation(c) for c in out.outputs]) for i, out in enumerate(outputs)]

    def _generation(self, completion) -> Generation:
        ids = list(completion.token_ids)
        probs = [math.exp(step[token].logprob)
                 for token, step in zip(ids, completion.logprobs or [])] or None
        if completion.finish_reason == "length":
            reason: StopReason = "length"
        elif ids and ids[-1] == self.tokenizer.eos_token_id:
            reason = "eos"
        else:
            reason = "stop"  # vLLM stopped on a stop token it did not return
        return finish_generation(self.tokenizer, ids, probs, reason)


def _lora_rank(adapter: str) -> int:
    """The smallest ``max_lora_rank`` vLLM accepts that holds the adapter's rank."""
    from pathlib import Path

    from reasondistill.export import adapter_config, check_rank

    config = adapter_config(Path(adapter))
    rank = max([config.get("r", 8), *(config.get("rank_pattern") or {}).values()])
    supported = (8, 16, 32, 64, 128, 256, 320, 512)
    check_rank(config, supported[-1], Path(adapter))
    return next(r for r in supported if r >= rank)


def make_backend(eval_cfg, model_cfg, *, adapter: str | None = None, seed: int = 0,
                 top_p: float = 1.0):
    """The backend ``eval_cfg.backend`` names, with its model loaded."""
    name = resolve_backend(eval_cfg.backend)
    if name == "vllm":
        from reasondistill.models import resolve_model_source

        return VllmBackend(resolve_model_source(model_cfg.name), adapter=adapter,
                           max_new_tokens=eval_cfg.max_new_tokens,
                           temperature=eval_cfg.temperature, num_samples=eval_cfg.num_samples,
                           seed=seed, top_p=top_p)
    model, tokenizer = load_eval_model(model_cfg, adapter=adapter)
    return TransformersBackend(model, tokenizer, max_new_tokens=eval_cfg.max_new_tokens,
                               batch_size=eval_cfg.batch_size, temperature=eval_cfg.temperature,
                               num_samples=eval_cfg.num_samples, seed=seed, top_p=top_p)
