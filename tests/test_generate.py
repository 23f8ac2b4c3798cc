"""Generation: per-row stopping on the answer box, left-padded batching that changes no token,
and the confidence of the answer span."""

from __future__ import annotations

import functools
import importlib.util
import math

import pytest
import torch
from tiny import tiny_model, tiny_tokenizer

from reasondistill.errors import ReasondistillError
from reasondistill.evaluate.generate import (
    AnswerStop,
    ChosenTokenProbs,
    IncrementalDetokenizer,
    TransformersBackend,
    answer_confidence,
    answer_end,
    resolve_backend,
)
from reasondistill.tokenize import render_prompt

EOS = "<|im_end|>"

# What the memorized model answers to each prompt (see memorized_model).
SCRIPT = {
    # a draft box in the reasoning, the answer box, then text that must never be generated
    "What is 2+3?": "Add: maybe \\boxed{4} is a draft.\n</think>\n\\boxed{5} then \\boxed{7}" + EOS,
    # no </think>: runs to EOS, the box is a fallback answer
    "Convert 1011 from binary.": "It is \\boxed{11}" + EOS,
    # never answers: hits max_new_tokens
    "Solve for x: 3x + 4 = 19": "Let me think step by step. First, add the numbers; then "
                                "divide by 2. The quick brown fox jumps over the lazy dog.",
}
MAX_NEW = 40


@functools.lru_cache(maxsize=1)
def memorized_model():
    """(model, tokenizer, rendered prompts): a tiny llama overfit to SCRIPT, so greedy
    decoding writes exactly those completions (and would go on past the answer box)."""
    tok = tiny_tokenizer()
    model = tiny_model("llama", tok)
    prompts = [render_prompt(tok, p) for p in SCRIPT]
    pairs = [(tok(p, add_special_tokens=False)["input_ids"],
              tok(c, add_special_tokens=False)["input_ids"])
             for p, c in zip(prompts, SCRIPT.values())]
    width = max(len(p) + len(c) for p, c in pairs)
    ids = torch.tensor([p + c + [tok.pad_token_id] * (width - len(p) - len(c)) for p, c in pairs])
    mask = torch.tensor([[1] * (len(p) + len(c)) + [0] * (width - len(p) - len(c))
                         for p, c in pairs])
    labels = torch.tensor([[-100] * len(p) + c + [-100] * (width - len(p) - len(c))
                           for p, c in pairs])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-2)
    model.train()
    for _ in range(100):
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05, f"the tiny model did not memorize its script (loss {loss.item()})"
    return model.eval(), tok, prompts


def noisy_model(kind: str, tok, seed: int = 1):
    """A random tiny model with large weights, so greedy outputs vary token to token."""
    model = tiny_model(kind, tok)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.3, generator=generator)
    return model


# --------------------------------------------------------------------------- text rule


@pytest.mark.parametrize("text, expected", [
    ("</think>\n\\boxed{5}", "</think>\n\\boxed{5}"),
    ("reasoning \\boxed{3} more", None),  # a box in the reasoning is not the answer
    ("\\boxed{3} </think> then", None),
    ("</think>\n\\boxed{\\frac{1}{2", None),  # not closed yet
    ("</think>\n\\boxed{\\frac{1}{2}} tail", "</think>\n\\boxed{\\frac{1}{2}}"),
    ("</think> \\boxed{} \\boxed{7}!", "</think> \\boxed{} \\boxed{7}"),  # empty box skipped
    ("a </think> b </think> \\boxed{8}", "a </think> b </think> \\boxed{8}"),
])
def test_answer_end(text, expected):
    end = answer_end(text)
    assert (None if end is None else text[:end]) == expected


# --------------------------------------------------------------------------- stopping


def _first_answer_step(tok, ids: list[int]) -> int | None:
    """Independent reference: the first prefix length whose full decode has a closed answer."""
    for n in range(1, len(ids) + 1):
        if answer_end(tok.decode(ids[:n], skip_special_tokens=False)) is not None:
            return n
    return None


def test_stop_criterion_on_hand_made_streams():
    tok = tiny_tokenizer()
    eos = tok.convert_tokens_to_ids(EOS)
    texts = [
        "draft \\boxed{3} more </think>\n\\boxed{42} tail \\boxed{9} and more text here",
        "</think>\n\\boxed{\\frac{1}{2}} x y z and some more words to pad this out",
        "no answer in this one, just words",
        "\\boxed{6} and nothing after it closes, ever, just more words and more words",
    ]
    streams = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    eos_at = 5
    streams[2] = streams[2][:eos_at - 1] + [eos] + streams[2][eos_at:]
    filler = tok(" a", add_special_tokens=False)["input_ids"]
    length = max(len(s) for s in streams)
    streams = [s + filler * (length - len(s)) for s in streams]
    expected = [_first_answer_step(tok, streams[0]), _first_answer_step(tok, streams[1]),
                eos_at, None]
    # Sanity of the reference itself: row 0 stops after its draft box closed, not at it.
    assert expected[0] > len(tok("draft \\boxed{3}", add_special_tokens=False)["input_ids"])
    assert expected[1] == len(tok("</think>\n\\boxed{\\frac{1}{2}}",
                                  add_special_tokens=False)["input_ids"])
    assert all(e is None or e < length for e in expected)

    prompt = [[7, 8, 9]] * 4
    stop = AnswerStop.fresh(tok, 4, {eos})
    for step in range(1, length + 1):
        input_ids = torch.tensor([p + s[:step] for p, s in zip(prompt, streams)])
        done = stop(input_ids, None)
        assert done.dtype == torch.bool and done.shape == (4,)
        assert done.tolist() == [e is not None and step >= e for e in expected], step
    assert [len(row.tokens) if row.reason else None for row in stop.rows] == expected
    assert [row.reason for row in stop.rows] == ["answer", "answer", "eos", None]
    assert stop.rows[0].tokens == streams[0][:expected[0]]  # nothing recorded after the stop


def test_incremental_detokenizer_matches_full_decode():
    tok = tiny_tokenizer()
    text = "héllo → 世界 </think>\n\\boxed{π ≈ 3.14} ✓"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    detok = IncrementalDetokenizer(tok)
    assert "".join(detok.push(i) for i in ids) == tok.decode(ids) == text


# --------------------------------------------------------------------------- batching


QUESTIONS = ["What is 2+3?", "x", "Convert 1011 from binary: 1*8 + 0*4 + 1*2 + 1 = 11.",
             "Solve for x: 3x + 4 = 19", "hello", "A cipher maps each letter to another."]


def _plain_generate(model, tok, prompt: str, max_new: int, eos: list[int]) -> list[int]:
    """One prompt, no padding, transformers' own greedy loop."""
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new,
                         do_sample=False, eos_token_id=eos, pad_token_id=tok.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_batched_greedy_equals_one_at_a_time_generate(kind):
    tok = tiny_tokenizer()
    model = noisy_model(kind, tok)
    prompts = [render_prompt(tok, q) for q in QUESTIONS]
    lengths = {len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts}
    assert len(lengths) >= 3  # the batch really is left-padded
    eos = [tok.convert_tokens_to_ids(EOS)]
    batched = TransformersBackend(model, tok, max_new_tokens=24, batch_size=8).generate(prompts)
    for prompt, (ours,) in zip(prompts, batched):
        reference = _plain_generate(model, tok, prompt, 24, eos)
        assert ours.token_ids == reference[:ours.n_generated_tokens]
        assert len(set(ours.token_ids)) > 3  # a varied output, not one repeated token


def test_chunked_generation_with_dropped_rows_equals_one_at_a_time():
    """Rows that stop at different steps are dropped from the batch and its cache between
    short generate calls; the rest must continue exactly as if alone."""
    tok = tiny_tokenizer()
    model = noisy_model("llama", tok)
    prompts = [render_prompt(tok, q) for q in QUESTIONS]
    free = [_plain_generate(model, tok, p, 30, [tok.convert_tokens_to_ids(EOS)]) for p in prompts]
    # An extra "EOS" that some rows write early, others late or never: rows stop unevenly.
    first_at = {}
    for row, tokens in enumerate(free):
        for step, token in enumerate(tokens):
            first_at.setdefault(token, {}).setdefault(row, step)
    stopper = max(first_at, key=lambda t: len(set(first_at[t].values())))
    assert len(set(first_at[stopper].values())) >= 2
    eos = [tok.convert_tokens_to_ids(EOS), stopper]
    model.generation_config.eos_token_id = eos
    backend = TransformersBackend(model, tok, max_new_tokens=30, batch_size=8, chunk_tokens=4,
                                  compact_at=0.0)
    calls = []
    original = model.generate
    model.generate = lambda **kw: calls.append(kw["input_ids"].shape[0]) or original(**kw)
    batched = backend.generate(prompts)
    del model.generate
    assert len(calls) > 2 and calls[-1] < calls[0]  # several calls, shrinking batches
    for prompt, (ours,) in zip(prompts, batched):
        assert ours.token_ids == _plain_generate(model, tok, prompt, 30, eos)


def test_grouped_prefill_equals_one_at_a_time():
    """Prompts prefilled two rows at a time into the batch's cache, each group padded only to
    its own longest prompt, then decoded together: every row writes what it writes alone."""
    tok = tiny_tokenizer()
    model = noisy_model("llama", tok)
    prompts = [render_prompt(tok, q) for q in QUESTIONS]
    eos = [tok.convert_tokens_to_ids(EOS)]
    backend = TransformersBackend(model, tok, max_new_tokens=20, batch_size=8, prefill_rows=2)
    widths = []
    hook = model.register_forward_pre_hook(
        lambda _m, _a, kw: widths.append(tuple(kw["input_ids"].shape)), with_kwargs=True)
    batched = backend.generate(prompts)
    hook.remove()
    longest = max(len(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts)
    group_calls = [shape for shape in widths if shape[0] == 2]
    assert len(group_calls) == 3  # six rows, three prefill groups
    assert min(w for _, w in group_calls) < longest - 1  # a group narrower than the batch
    for prompt, (ours,) in zip(prompts, batched):
        assert ours.token_ids == _plain_generate(model, tok, prompt, 20, eos)[:ours.n_generated_tokens]


def test_memorized_script_stops_per_row_and_pads_nothing():
    model, tok, prompts = memorized_model()
    (answer,), (fallback,), (endless,) = TransformersBackend(
        model, tok, max_new_tokens=MAX_NEW, batch_size=4).generate(prompts)
    script = list(SCRIPT.values())
    full = tok(script[0], add_special_tokens=False)["input_ids"]
    assert answer.text == "Add: maybe \\boxed{4} is a draft.\n</think>\n\\boxed{5}"
    assert answer.stop_reason == "answer" and not answer.truncated
    assert answer.token_ids == full[:answer.n_generated_tokens]
    assert answer.n_generated_tokens < len(full) - 3  # the tail was never generated
    assert fallback.text == "It is \\boxed{11}" and fallback.stop_reason == "eos"
    assert fallback.token_ids == tok(script[1], add_special_tokens=False)["input_ids"]
    assert endless.truncated and endless.n_generated_tokens == MAX_NEW
    assert endless.confidence is None
    assert tok.pad_token_id not in answer.token_ids + fallback.token_ids


# --------------------------------------------------------------------------- confidence


def _token_probs(model, prompt_ids: list[int], new_ids: list[int]) -> list[float]:
    """Independent reference: one forward pass over prompt + generation."""
    ids = torch.tensor([prompt_ids + new_ids])
    with torch.no_grad():
        probs = model(input_ids=ids).logits[0].float().softmax(-1)
    start = len(prompt_ids)
    return [probs[start - 1 + i, t].item() for i, t in enumerate(new_ids)]


def test_chosen_token_probs_match_a_forward_pass():
    tok = tiny_tokenizer()
    model = noisy_model("llama", tok)
    prompt = tok(render_prompt(tok, "What is 2+3?"), add_special_tokens=False)["input_ids"]
    recorder = ChosenTokenProbs(len(prompt))
    sequences = model.generate(torch.tensor([prompt]), max_new_tokens=12, do_sample=False,
                               eos_token_id=None, pad_token_id=tok.pad_token_id,
                               logits_processor=[recorder])
    recorded = recorder.finish(sequences)[0].tolist()
    reference = _token_probs(model, prompt, sequences[0, len(prompt):].tolist())
    assert len(recorded) == len(reference) == 12
    assert recorded == pytest.approx(reference, abs=1e-5)


def test_confidence_is_the_mean_prob_of_the_answer_tokens():
    model, tok, prompts = memorized_model()
    (answer,), (fallback,), _ = TransformersBackend(
        model, tok, max_new_tokens=MAX_NEW, batch_size=4).generate(prompts)
    for prompt, generation, content in ((prompts[0], answer, "5"), (prompts[1], fallback, "11")):
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        probs = _token_probs(model, prompt_ids, generation.token_ids)
        ids = generation.token_ids
        # the tokens that spell the box content, found from decoded prefixes
        prefix = [tok.decode(ids[:n]) for n in range(len(ids) + 1)]
        opened = max(n for n, text in enumerate(prefix) if text.endswith("\\boxed{"))
        closed = next(n for n in range(opened, len(ids) + 1) if prefix[n].endswith("}"))
        inside = range(opened, closed - 1)
        assert "".join(tok.decode([ids[i]]) for i in inside) == content
        assert 0.0 <= generation.confidence <= 1.0
        assert generation.confidence == pytest.approx(sum(probs[i] for i in inside) / len(inside),
                                                      abs=1e-5)


def test_answer_confidence_on_a_hand_made_case():
    tok = tiny_tokenizer()
    pieces = ["reason", " \\boxed{1}", "\n</think>\n", "\\boxed{", "4", "2", "}"]
    ids = [i for piece in pieces for i in tok(piece, add_special_tokens=False)["input_ids"]]
    text = tok.decode(ids)
    probs = [0.1 * (k % 10) for k in range(len(ids))]
    four = len(ids) - 3  # "4", "2", "}" are single tokens in the tiny vocabulary
    assert [tok.decode([i]) for i in ids[four:]] == ["4", "2", "}"]
    expected = (probs[four] + probs[four + 1]) / 2
    assert answer_confidence(tok, ids, probs, text) == pytest.approx(expected)
    assert answer_confidence(tok, ids[:2], probs, tok.decode(ids[:2])) is None


# --------------------------------------------------------------------------- settings


def test_sampling_gives_n_samples_per_prompt_reproducibly():
    tok = tiny_tokenizer()
    model = noisy_model("llama", tok)
    prompts = [render_prompt(tok, q) for q in ("What is 2+3?", "x")]
    make = functools.partial(TransformersBackend, model, tok, max_new_tokens=8, batch_size=6,
                             temperature=1.0, num_samples=3, seed=5)
    first, second = make().generate(prompts), make().generate(prompts)
    assert [len(s) for s in first] == [3, 3]
    assert [[g.token_ids for g in s] for s in first] == [[g.token_ids for g in s] for s in second]
    assert len({tuple(g.token_ids) for g in first[0]}) > 1


def test_greedy_with_several_samples_is_refused():
    tok = tiny_tokenizer()
    with pytest.raises(ReasondistillError, match="temperature"):
        TransformersBackend(tiny_model("llama", tok), tok, max_new_tokens=4, num_samples=2)


def test_backend_choice_without_vllm():
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here")
    assert resolve_backend("auto") == "transformers"
    assert resolve_backend("transformers") == "transformers"
    with pytest.raises(ReasondistillError, match="vllm"):
        resolve_backend("vllm")


def test_vllm_backend_with_a_stand_in_engine(monkeypatch, tmp_path):
    """vLLM cannot run here; a stand-in module checks how we call it and read its output."""
    import json
    import sys
    import types
    from dataclasses import dataclass as dc

    from reasondistill.evaluate.generate import VllmBackend

    tok = tiny_tokenizer()
    seen = {}

    @dc
    class Logprob:
        logprob: float

    class LLM:
        def __init__(self, **kwargs):
            seen["llm"] = kwargs

        def get_tokenizer(self):
            return tok

        def generate(self, prompts, params, lora_request=None):
            seen["lora"], seen["params"] = lora_request, params
            eos = tok.convert_tokens_to_ids(EOS)
            texts = ["so </think>\n\\boxed{5} and more", "no box at all"]
            outs = []
            for text, reason in zip(texts, ("stop", "length")):
                ids = tok(text, add_special_tokens=False)["input_ids"]
                ids = ids + [eos] if reason == "stop" else ids
                completion = types.SimpleNamespace(
                    token_ids=ids, finish_reason=reason,
                    logprobs=[{t: Logprob(-0.5)} for t in ids])
                outs.append(types.SimpleNamespace(outputs=[completion]))
            return outs

    vllm = types.ModuleType("vllm")
    vllm.LLM = LLM
    vllm.SamplingParams = lambda **kwargs: kwargs
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = lambda *args: args
    for name, module in (("vllm", vllm), ("vllm.lora", types.ModuleType("vllm.lora")),
                         ("vllm.lora.request", request)):
        monkeypatch.setitem(sys.modules, name, module)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24}))

    backend = VllmBackend("/models/base", adapter=str(adapter), max_new_tokens=16)
    [(index_a, [answered]), (index_b, [endless])] = next(backend.iter_generate(["p", "q"]))
    assert seen["llm"] == {"model": "/models/base", "seed": 0, "enable_lora": True,
                           "max_lora_rank": 32}
    assert seen["lora"] == ("adapter", 1, str(adapter))
    assert seen["params"]["max_tokens"] == 16 and seen["params"]["temperature"] == 0.0
    assert (index_a, index_b) == (0, 1)
    assert answered.text == "so </think>\n\\boxed{5}" and answered.stop_reason == "eos"
    assert answered.confidence == pytest.approx(math.exp(-0.5))
    assert endless.truncated and endless.confidence is None
