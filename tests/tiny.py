"""Tiny, offline stand-ins for real tokenizers and models, so tests never download anything.

``tiny_tokenizer()`` is a byte-level BPE trained in-process (any text round-trips) with the
chat specials of a Qwen3-style model and a chat template that opens ``<think>\\n`` in the
generation prompt. ``tiny_model(kind, tok)`` builds a seeded, randomly initialised model of
one of the architectures the LoRA planner must understand, small enough to run on CPU in
milliseconds.
"""

from __future__ import annotations

import copy
import functools

import torch

IM_START, IM_END, THINK, END_THINK, ENDOFTEXT = (
    "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<|endoftext|>",
)
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, THINK, END_THINK]

# Qwen3-style, simplified so that (a) thinking is on unless enable_thinking=false, (b) the
# generation prompt ends with "<think>\n" when it is on, and (c) an assistant turn renders
# as exactly that prompt followed by its content, so prompt-only text is a prefix of the full one.
CHAT_TEMPLATE = (
    "{%- set thinking = enable_thinking is not defined or enable_thinking -%}"
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['role'] == 'assistant' and thinking -%}{{- '<think>\\n' -}}{%- endif -%}"
    "{{- message['content'] + '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- if thinking -%}{{- '<think>\\n' -}}{%- endif -%}"
    "{%- endif -%}"
)

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is 2+3? The answer is 5. What is 12*7? It is 84.",
    "Solve for x: 3x + 4 = 19, so x = 5. Then y = x^2 - 1 = 24.",
    "Convert 1011 from binary: 1*8 + 0*4 + 1*2 + 1 = 11.",
    "Please put your final answer inside `\\boxed{}`. For example: `\\boxed{your answer}`",
    "Let me think step by step. First, add the numbers; then divide by 2.",
    "0123456789 +-*/=()[]{}<>!?.,:;'\"`~@#$%^&_|\\ 3.14 -7 1e-3 50% $20",
    "Bit manipulation: 0b1010 XOR 0b0110 = 0b1100; shift left by 2 gives 48.",
    "A cipher maps each letter to another: abc -> def, hello -> khoor.",
]


@functools.lru_cache(maxsize=4)
def _build_tiny_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        extra_special_tokens=[IM_START, THINK, END_THINK],
        model_max_length=512,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok


def tiny_tokenizer(vocab_size: int = 400):
    """A fresh copy of the session's tiny tokenizer (built once; copies are cheap and safe to
    mutate). Another ``vocab_size`` trains fewer or more merges on the same corpus: a second
    tokenizer that splits the same text differently (for cross-tokenizer alignment)."""
    return copy.deepcopy(_build_tiny_tokenizer(vocab_size))


TINY_KINDS = ("llama", "qwen3", "nemotron_h", "mamba2", "gpt2")
# The model types the training speed-ups allow-list (lean norms, fused head), each buildable
# tiny too, so every one of them is tested against the stock path.
SPEEDUP_KINDS = ("llama", "mistral", "qwen2", "qwen3", "qwen2_moe", "qwen3_moe")

# NemotronH layer pattern: M = Mamba-2 mixer, * = attention, E = MoE, - = dense MLP.
NEMOTRON_PATTERN = "M*E-ME"


def tiny_config(kind: str, tokenizer):
    """The config of a tiny model of ``kind`` whose vocabulary is ``tokenizer``'s."""
    import transformers as tf

    ids = dict(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id,
               pad_token_id=tokenizer.pad_token_id, bos_token_id=None)
    attention = dict(hidden_size=32, num_attention_heads=4, num_key_value_heads=2,
                     max_position_embeddings=256)
    if kind == "llama":
        return tf.LlamaConfig(**ids, **attention, intermediate_size=64, num_hidden_layers=2,
                              tie_word_embeddings=True)
    if kind in ("mistral", "qwen2"):
        config_class = tf.MistralConfig if kind == "mistral" else tf.Qwen2Config
        return config_class(**ids, **attention, intermediate_size=64, num_hidden_layers=2,
                            tie_word_embeddings=True)
    if kind in ("qwen2_moe", "qwen3_moe"):
        config_class = tf.Qwen2MoeConfig if kind == "qwen2_moe" else tf.Qwen3MoeConfig
        extra = {"shared_expert_intermediate_size": 32} if kind == "qwen2_moe" else {"head_dim": 8}
        return config_class(**ids, **attention, intermediate_size=64, moe_intermediate_size=16,
                            num_experts=4, num_experts_per_tok=2, num_hidden_layers=2,
                            tie_word_embeddings=True, **extra)
    if kind == "qwen3":
        return tf.Qwen3Config(**ids, **attention, head_dim=8, intermediate_size=64,
                              num_hidden_layers=2, tie_word_embeddings=True)
    if kind == "nemotron_h":
        return tf.NemotronHConfig(
            **ids, **attention, head_dim=8, intermediate_size=64,
            hybrid_override_pattern=NEMOTRON_PATTERN,
            mamba_num_heads=4, mamba_head_dim=8, n_groups=2, ssm_state_size=8, conv_kernel=4,
            chunk_size=16, n_routed_experts=4, num_experts_per_tok=2, moe_intermediate_size=16,
            moe_shared_expert_intermediate_size=24, n_group=1, topk_group=1,
        )
    if kind == "mamba2":
        return tf.Mamba2Config(**ids, hidden_size=32, num_hidden_layers=2, expand=2,
                               num_heads=4, head_dim=16, n_groups=1, state_size=8,
                               conv_kernel=4, chunk_size=16, tie_word_embeddings=True)
    if kind == "gpt2":
        return tf.GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                             n_positions=256, eos_token_id=tokenizer.eos_token_id,
                             bos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id)
    raise ValueError(f"unknown tiny model kind {kind!r}; choose from {TINY_KINDS}")


def tiny_model(kind: str, tokenizer, *, seed: int = 0, dtype: torch.dtype = torch.float32):
    """A seeded, randomly initialised causal LM of ``kind`` (eval mode, on CPU)."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_config(kind, tokenizer), dtype=dtype)
    return model.eval()


def tiny_lora_model(kind: str = "llama", *, alpha: int = 8, dropout: float = 0.0,
                    b_std: float = 0.02, dtype: torch.dtype = torch.float32):
    """A tiny model of ``kind`` with rank-4 LoRA on attention and MLP (MoE experts for
    ``*_moe`` kinds), in eval mode (no model
    dropout: GPT-2 has some). LoRA's B starts at zero, which would hide the update and give A
    no gradient, so it is drawn from N(0, ``b_std``)."""
    from reasondistill.config import LoraConfig
    from reasondistill.lora import apply_lora

    families = ["attention", "moe" if kind.endswith("_moe") else "mlp"]
    model, _ = apply_lora(tiny_model(kind, tiny_tokenizer(), dtype=dtype),
                          LoraConfig(r=4, alpha=alpha, dropout=dropout, families=families))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=b_std)
    return model.eval()


def tiny_rows():
    """Four tokenized rows (prompt + trace + answer) of growing length, for loss tests."""
    from reasondistill.data import Example, build_record
    from reasondistill.tokenize import tokenize_record

    tok = tiny_tokenizer()
    examples = [Example(id=str(i), prompt=f"What is {i} + {i}?" + " please" * i,
                        trace=f"Double {i}." + " ok" * (3 * i), answer=str(2 * i))
                for i in range(1, 5)]
    return [tokenize_record(tok, build_record(e), max_length=256) for e in examples]


def reference_loss(model, rows):
    """Mean CE over completion tokens, one unpadded sequence at a time, full logits: the
    stock path no speed-up touches."""
    total, count = 0.0, 0
    for row in rows:
        logits = model(input_ids=torch.tensor([row.input_ids])).logits[0, :-1]
        targets = torch.tensor(row.labels[1:])
        mask = targets != -100
        total = total + torch.nn.functional.cross_entropy(logits[mask], targets[mask],
                                                          reduction="sum")
        count += int(mask.sum())
    return total / count
