"""Latent distillation, piece by piece: layer map, token masks and alignment, projections
(shapes, optimizer, save/load, resume), the loss terms, the self-teacher and a 2-process run."""

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from test_distill_e2e import latent_config, wider_teacher_dir  # noqa: F401 (a fixture)
from test_train import StopAt, write_arithmetic_rows
from tiny import END_THINK, tiny_config, tiny_lora_model, tiny_model, tiny_tokenizer

from reasondistill.config import FormatConfig, LayerMapConfig, parse_config
from reasondistill.data.example import Example
from reasondistill.data.format import FormatSpec, build_record
from reasondistill.distill import losses
from reasondistill.distill.layer_map import LayerMap, build_layer_map, proportional
from reasondistill.distill.losses import StepTensors, chunked_kd, hidden_alignment
from reasondistill.distill.objective import Objective
from reasondistill.distill.positions import answer_anchor, same_sequence
from reasondistill.distill.projections import FILENAME, Projections, attach, attached
from reasondistill.distill.teacher import ModelTeacher, SelfTeacher, pool
from reasondistill.errors import ConfigError
from reasondistill.tokenize import tokenize_examples, tokenize_record
from reasondistill.train.collate import DistillCollator, PackedCollator, PaddedCollator
from reasondistill.train.recipe import run_training
from reasondistill.train.trainer import DistillTrainer

EXAMPLES = [
    Example(id="a", prompt="What is 12*7?", trace="12*7 = 84.", answer="84", type="mul"),
    Example(id="b", prompt="What is 2+3?", trace="Let me think step by step. 2+3 = 5.",
            answer="5", type="add"),
    Example(id="c", prompt="Solve for x: 3x + 4 = 19.", trace="3x = 15, so x = 5.",
            answer="5", type="alg"),
]

# much longer than the others: a padded batch of [short, LONG, ...] has a lot of padding
LONG = Example(id="long", prompt="What is the mean of 3 and 5?", answer="4", type="add",
               trace="Let me think step by step. First, add the numbers; then divide by 2. "
                     "3 + 5 = 8, and 8 / 2 = 4. Check: 4 - 3 = 1 and 5 - 4 = 1, so 4 is "
                     "halfway between them. The quick brown fox agrees: the answer is 4.")


def rows_of(tok, examples=EXAMPLES, *, answer_only=False):
    spec = FormatSpec(answer_only=answer_only)
    return [tokenize_record(tok, build_record(e, spec), max_length=256) for e in examples]


def answer_text(example) -> str:
    return f"{END_THINK}\n\\boxed{{{example.answer}}}<|im_end|>\n"


def wide_teacher_model(tok, seed=1):
    """A tiny Llama with hidden size 48 and 3 blocks (the student has 32 and 2)."""
    from transformers import AutoModelForCausalLM

    config = tiny_config("llama", tok)
    config.hidden_size, config.num_hidden_layers, config.intermediate_size = 48, 3, 96
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


def make_trainer(tmp_path, model, *, teacher=None, objective=None, collator=None,
                 dataset=None, **args):
    from transformers import TrainingArguments

    targs = TrainingArguments(
        output_dir=str(tmp_path / "checkpoints"), use_cpu=True, report_to="none",
        per_device_train_batch_size=len(EXAMPLES), max_steps=1, learning_rate=1e-2,
        save_strategy="no", remove_unused_columns=False, dataloader_num_workers=0,
        logging_steps=1, max_grad_norm=1e9, **args)
    return DistillTrainer(model=model, args=targs, train_dataset=dataset, data_collator=collator,
                          objective=objective, teacher=teacher)


def loss_terms(trainer, model, batch) -> tuple[torch.Tensor, dict]:
    """The trainer's loss for ``batch`` and each term's value (batch left untouched)."""
    trainer._term_sums, trainer._term_micro_batches = {}, 0
    loss = trainer.compute_loss(model, {k: v.clone() for k, v in batch.items()})
    return loss, dict(trainer._term_sums)


HIDDEN_AND_CE = Objective((("ce", 0.5), ("hidden", 0.5)),
                          {"normalize": "layernorm", "distance": "mse"})


# --------------------------------------------------------------------------- layer map


def layers(**kw):
    return LayerMapConfig.model_validate(kw)


@pytest.mark.parametrize(("cfg", "message"), [
    (dict(pairs=[[3, 1]]), r"student index 3 is out of range.*valid indices are 0 \.\. 2"),
    (dict(pairs=[[-1, 0]]), r"student index -1 is out of range.*0 \.\. 2"),
    (dict(pairs=[[1, 7]]), r"teacher index 7 is out of range.*valid indices are 0 \.\. 3"),
    (dict(student=[5]), r"student index 5 is out of range.*0 \.\. 2"),
    (dict(last_k=2), r"last_k: 2.*the student has 2 .*valid: 1 \.\. 1"),
    (dict(last_k=9), r"last_k: 9.*valid: 1 \.\. 1"),
    (dict(pairs=[[1, 2], [1, 2]]), r"listed twice"),
    (dict(student=[1, 1]), r"listed twice"),
])
def test_layer_map_rejects_bad_maps_naming_what_is_wrong(cfg, message):
    with pytest.raises(ConfigError, match=message):
        build_layer_map(layers(**cfg), student_blocks=2, teacher_blocks=3)


@pytest.mark.parametrize("student_blocks", [2, 3, 4, 6])
@pytest.mark.parametrize("teacher_blocks", [1, 2, 3, 5, 8, 28])
def test_proportional_mapping(student_blocks, teacher_blocks):
    s, t = student_blocks, teacher_blocks
    assert proportional(0, s, t) == 0
    assert proportional(s, s, t) == t
    for i in range(1, s):
        assert proportional(i, s, t) == round(i * (t - 1) / (s - 1))
    assert proportional(s - 1, s, t) == t - 1  # last block to last block (both pre-norm)
    got = build_layer_map(layers(student=list(range(s + 1))), s, t)
    assert got.teacher_layers == [proportional(i, s, t) for i in range(s + 1)]
    assert got.pairs[0] == (0, 0) and got.pairs[-1] == (s, t)


def test_last_k_takes_the_last_blocks_before_the_final_norm():
    assert build_layer_map(layers(last_k=3), 4, 8).pairs == ((1, 2), (2, 5), (3, 7))
    assert build_layer_map(layers(last_k=1), 2, 3).pairs == ((1, 2),)
    assert build_layer_map(layers(pairs=[[2, 3], [0, 0]]), 2, 3).pairs == ((2, 3), (0, 0))


# --------------------------------------------------------------------------- masks


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def rows(tok):
    return rows_of(tok)


def batch_rows(rows):
    return [{"input_ids": r.input_ids, "labels": r.labels, "row": i} for i, r in enumerate(rows)]


@pytest.mark.parametrize("packed", [False, True])
def test_same_sequence_aligns_completion_tokens_only(tok, rows, packed):
    base = PackedCollator() if packed else PaddedCollator(tok.pad_token_id)
    batch = DistillCollator(base, [same_sequence(r) for r in rows])(batch_rows(rows))
    positions = batch["align_student_positions"].tolist()
    assert positions == batch["align_teacher_positions"].tolist()
    width = batch["input_ids"].shape[1]
    starts = [0]
    for r in rows:
        starts.append(starts[-1] + len(r.input_ids))
    found = set()
    for flat in positions:
        if packed:
            index = max(i for i, s in enumerate(starts[:-1]) if s <= flat)
            row, col = index, flat - starts[index]
        else:
            row, col = divmod(flat, width)
        # never a prompt token, never padding
        assert rows[row].prompt_span[1] <= col < len(rows[row].input_ids), (row, col)
        found.add((row, col))
    completion = {(i, c) for i, r in enumerate(rows)
                  for c in range(r.prompt_span[1], len(r.input_ids))}
    assert found == completion
    assert len(positions) == int(batch["align_groups"]) == len(completion)
    if not packed:  # the padded layout really has padding to keep out
        assert (batch["attention_mask"] == 0).any()


@pytest.fixture(scope="module")
def latent_student():
    """A LoRA student (32 wide, 2 blocks), a wider model teacher (48, 3) and projections."""
    tok = tiny_tokenizer()
    student = tiny_lora_model("llama")
    layer_map = build_layer_map(layers(last_k=1), 2, 3)
    teacher = ModelTeacher(wide_teacher_model(tok), layer_map)
    projections = Projections(32, 48, len(layer_map.pairs), always=False)
    attach(student, projections)
    return student, teacher, projections


def test_garbage_in_padding_changes_neither_the_hidden_loss_nor_the_ce(
        tmp_path, tok, latent_student):
    student, teacher, _ = latent_student
    rows = rows_of(tok, [EXAMPLES[0], LONG, EXAMPLES[1]])
    assert len(rows[1].input_ids) - len(rows[0].input_ids) > rows[1].prompt_span[1]
    collator = DistillCollator(PaddedCollator(tok.pad_token_id), [same_sequence(r) for r in rows])
    batch = collator(batch_rows(rows))
    trainer = make_trainer(tmp_path, student, teacher=teacher, objective=HIDDEN_AND_CE,
                           collator=collator)
    loss, terms = loss_terms(trainer, student, batch)
    padding = batch["attention_mask"] == 0
    assert padding.sum() >= 60
    garbage = dict(batch)
    torch.manual_seed(0)
    random_ids = torch.randint(len(tok) // 2, len(tok), batch["input_ids"].shape)
    garbage["input_ids"] = torch.where(padding, random_ids, batch["input_ids"])
    assert not torch.equal(garbage["input_ids"], batch["input_ids"])
    loss_g, terms_g = loss_terms(trainer, student, garbage)
    assert terms["hidden"] > 0 and terms["ce"] > 0
    assert terms_g == pytest.approx(terms, rel=1e-6, abs=1e-8)
    torch.testing.assert_close(loss_g, loss, rtol=1e-6, atol=1e-8)

    # the same change in a completion token does move both terms (the check can fail)
    moved = dict(batch)
    ids = batch["input_ids"].clone()
    ids[0, rows[0].prompt_span[1] + 1] = (ids[0, rows[0].prompt_span[1] + 1] + 7) % len(tok)
    moved["input_ids"] = ids
    _, terms_m = loss_terms(trainer, student, moved)
    assert abs(terms_m["hidden"] - terms["hidden"]) > 1e-6
    assert abs(terms_m["ce"] - terms["ce"]) > 1e-6


# --------------------------------------------------------------------------- projections


def test_projection_shapes_and_identity_cases():
    wide = Projections(32, 48, 2, always=False)
    assert wide.learned and wide.shape == (32, 48) and len(wide.maps) == 2
    assert all(m.weight.shape == (48, 32) for m in wide.maps)
    assert wide(1, torch.randn(5, 32)).shape == (5, 48)
    assert wide.num_parameters() == 2 * 32 * 48

    same = Projections(32, 32, 3, always=False)
    assert not same.learned and same.num_parameters() == 0
    x = torch.randn(4, 32)
    assert same(0, x) is x

    forced = Projections(32, 32, 1, always=True)
    assert forced.learned
    torch.testing.assert_close(forced(0, x), x)  # starts at the identity


def test_projections_are_in_the_trainers_optimizer(tmp_path, latent_student):
    student, teacher, projections = latent_student
    assert attached(student) is projections
    trainer = make_trainer(tmp_path, student, teacher=teacher, objective=HIDDEN_AND_CE)
    trainer.create_optimizer()
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    params = list(projections.parameters())
    assert params and all(id(p) in optimized for p in params)
    # and nothing of the teacher model is
    assert not any(id(p) in optimized for p in teacher.model.parameters())


def test_projections_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    saved = Projections(32, 48, 2, always=False)
    assert saved.save(tmp_path) == tmp_path / FILENAME
    torch.manual_seed(1)
    fresh = Projections(32, 48, 2, always=False)
    assert not torch.equal(fresh.maps[0].weight, saved.maps[0].weight)
    assert fresh.load(tmp_path)
    for a, b in zip(saved.state_dict().values(), fresh.state_dict().values()):
        assert torch.equal(a, b)
    assert not fresh.load(tmp_path / "elsewhere")
    same = Projections(32, 32, 2, always=False)
    assert same.save(tmp_path / "none") is None and not (tmp_path / "none").exists()


def test_projections_saved_beside_the_adapter_and_peft_ignores_them(tmp_path):
    from peft import PeftModel

    from reasondistill.train.adapters import save_adapter

    student = tiny_lora_model("llama")
    torch.manual_seed(2)
    projections = Projections(32, 48, 1, always=False)
    attach(student, projections)
    save_adapter(student, tmp_path / "adapter")
    assert (tmp_path / "adapter" / FILENAME).is_file()
    loaded = PeftModel.from_pretrained(tiny_model("llama", tiny_tokenizer()), tmp_path / "adapter")
    assert attached(loaded) is None
    again = Projections(32, 48, 1, always=False)
    assert again.load(tmp_path / "adapter")
    assert torch.equal(again.maps[0].weight, projections.maps[0].weight)


def projection_tensors(path):
    from safetensors.torch import load_file

    return load_file(str(path / FILENAME))


def test_resume_restores_the_projections(tmp_path, tiny_model_dir, wider_teacher_dir):  # noqa: F811
    def config(name):
        (tmp_path / name).mkdir()
        cfg = latent_config(tmp_path / name, tiny_model_dir, {
            "teacher": {"kind": "model", "name": str(wider_teacher_dir)}, "alpha": 0.5,
            "layers": {"last_k": 1}})
        raw = cfg.model_dump(mode="json", exclude_unset=True)
        raw["train"]["train"] = {"num_train_epochs": 1, "learning_rate": 1e-2}
        return parse_config(raw)

    straight = config("a")
    run_training(straight)  # 48 rows / (4 per device x 2 accumulation) = 6 steps

    interrupted = config("b")
    first = run_training(interrupted, callbacks=[StopAt(4)])
    run_b = tmp_path / "b" / "run"
    assert first["interrupted"] and not (run_b / "adapter").exists()
    checkpoint = run_b / "checkpoints" / "train" / "checkpoint-4"
    assert (checkpoint / FILENAME).is_file()
    at_stop = projection_tensors(checkpoint)
    run_training(interrupted, resume=True)

    expected = projection_tensors(tmp_path / "a" / "run" / "adapter")
    resumed = projection_tensors(run_b / "adapter")
    assert expected.keys() == resumed.keys() == at_stop.keys()
    for key, value in expected.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-6)
        assert not torch.allclose(at_stop[key], value)  # they kept training after the resume
    from safetensors.torch import load_file

    adapter_a = load_file(str(tmp_path / "a" / "run" / "adapter" / "adapter_model.safetensors"))
    adapter_b = load_file(str(run_b / "adapter" / "adapter_model.safetensors"))
    for key, value in adapter_a.items():
        torch.testing.assert_close(adapter_b[key], value, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------- answer anchor


def decode(tok, ids) -> str:
    return tok.decode(ids, skip_special_tokens=False)


@pytest.mark.parametrize("packed", [False, True])
def test_answer_anchor_pairs_the_token_before_the_answer_and_the_answer(tok, packed):
    teacher_rows = rows_of(tok)  # full trace
    student_rows = rows_of(tok, answer_only=True)
    end_think = tok.convert_tokens_to_ids(END_THINK)
    alignments = [answer_anchor(s, t) for s, t in zip(student_rows, teacher_rows)]
    for example, s, t, a in zip(EXAMPLES, student_rows, teacher_rows, alignments):
        n_answer = s.answer_span[1] - s.answer_span[0]
        assert a.n_groups == 1 + n_answer  # same answer tokens: one to one
        anchor_s, anchor_t = a.student_positions[0], a.teacher_positions[0]
        assert s.input_ids[anchor_s + 1] == end_think and t.input_ids[anchor_t + 1] == end_think
        assert decode(tok, [s.input_ids[p] for p in a.student_positions[1:]]) == answer_text(example)
        assert decode(tok, [t.input_ids[p] for p in a.teacher_positions[1:]]) == answer_text(example)
        # the teacher's anchor is the last token of its trace; the answer-only student's is
        # the position that predicts its first completion token (</think>), the last of the
        # prompt: the one prompt position answer_anchor pairs
        assert t.trace_span[0] <= anchor_t < t.trace_span[1]
        assert anchor_s == s.prompt_span[1] - 1
        assert all(p >= s.prompt_span[1] for p in a.student_positions[1:])

    base = PackedCollator() if packed else PaddedCollator(tok.pad_token_id)
    collator = DistillCollator(base, alignments,
                               [{"input_ids": t.input_ids, "labels": t.labels}
                                for t in teacher_rows])
    batch = collator(batch_rows(student_rows))
    flat_s, flat_t = batch["input_ids"].reshape(-1), batch["teacher_input_ids"].reshape(-1)
    s_pos, t_pos = batch["align_student_positions"], batch["align_teacher_positions"]
    s_grp = batch["align_student_groups"]
    assert torch.equal(s_grp, batch["align_teacher_groups"])
    offset = 0
    for example, a in zip(EXAMPLES, alignments):
        mine = (s_grp >= offset) & (s_grp < offset + a.n_groups)
        assert decode(tok, flat_s[s_pos[mine][1:]].tolist()) == answer_text(example)
        assert decode(tok, flat_t[t_pos[mine][1:]].tolist()) == answer_text(example)
        assert flat_s[s_pos[mine][0] + 1] == end_think and flat_t[t_pos[mine][0] + 1] == end_think
        offset += a.n_groups


def test_answer_anchor_pools_the_answer_across_two_tokenizers(tok):
    other = tiny_tokenizer(vocab_size=300)
    assert len(other) != len(tok)
    student_rows = rows_of(tok)  # the student keeps its trace here, in its own tokenizer
    teacher_rows = rows_of(other)
    for example, s, t in zip(EXAMPLES, student_rows, teacher_rows):
        s_answer = s.input_ids[s.answer_span[0]:s.answer_span[1]]
        t_answer = t.input_ids[t.answer_span[0]:t.answer_span[1]]
        assert s_answer != t_answer  # the two split the answer differently
        a = answer_anchor(s, t)
        assert a.n_groups == 2
        s_by_group = [[p for p, g in zip(a.student_positions, a.student_groups) if g == k]
                      for k in (0, 1)]
        t_by_group = [[p for p, g in zip(a.teacher_positions, a.teacher_groups) if g == k]
                      for k in (0, 1)]
        # group 0: the token before the answer on each side, one each, in the trace
        assert len(s_by_group[0]) == len(t_by_group[0]) == 1
        assert s.input_ids[s_by_group[0][0] + 1] == tok.convert_tokens_to_ids(END_THINK)
        assert t.input_ids[t_by_group[0][0] + 1] == other.convert_tokens_to_ids(END_THINK)
        assert s_by_group[0][0] >= s.prompt_span[1]
        # group 1: each side's tokens that cover the answer text, contiguous, all of them
        assert s_by_group[1] == list(range(*s.answer_span))
        assert t_by_group[1] == list(range(*t.answer_span))
        assert decode(tok, [s.input_ids[p] for p in s_by_group[1]]) == answer_text(example)
        assert decode(other, [t.input_ids[p] for p in t_by_group[1]]) == answer_text(example)

        # pooling averages each group's states
        hidden = torch.randn(1, len(t.input_ids), 6)
        pooled = pool(hidden, torch.tensor(a.teacher_positions), torch.tensor(a.teacher_groups),
                      a.n_groups)
        torch.testing.assert_close(pooled[0], hidden[0, t_by_group[0][0]])
        torch.testing.assert_close(pooled[1], hidden[0, t_by_group[1]].mean(0))


def test_a_teacher_with_another_tokenizer_trains_through_answer_anchor(tmp_path, tok):
    """prepare_distillation with a teacher of another vocabulary: same_sequence is refused,
    answer_anchor aligns every row by text, and one loss step sees a positive hidden term."""
    from reasondistill.config import DistillConfig
    from reasondistill.distill.setup import prepare_distillation

    other = tiny_tokenizer(vocab_size=300)
    teacher_dir = tmp_path / "teacher"
    wide_teacher_model(other).save_pretrained(teacher_dir)
    other.save_pretrained(teacher_dir)
    format_cfg = FormatConfig(max_length=128, answer_only=True)
    tokenized = tokenize_examples(tok, EXAMPLES, FormatSpec(answer_only=True), max_length=128)
    prepared = SimpleNamespace(tokenized=tokenized)

    def distill(tokens):
        return DistillConfig.model_validate({
            "enabled": True, "alpha": 0.5, "tokens": tokens, "layers": {"last_k": 1},
            "teacher": {"kind": "model", "name": str(teacher_dir), "dtype": "float32"}})

    with pytest.raises(ConfigError, match="answer_anchor"):
        prepare_distillation(distill("same_sequence"), format_cfg, tiny_lora_model("llama"),
                             tok, prepared)
    student = tiny_lora_model("llama")
    d = prepare_distillation(distill("answer_anchor"), format_cfg, student, tok, prepared)
    assert d.kept == [0, 1, 2] and d.projections.shape == (32, 48)
    for example, row, t_row, a in zip(EXAMPLES, tokenized.rows, d.teacher_rows, d.alignments):
        assert a.n_groups == 2
        s_answer = [row.input_ids[p] for p, g in zip(a.student_positions, a.student_groups) if g]
        t_answer = [t_row["input_ids"][p]
                    for p, g in zip(a.teacher_positions, a.teacher_groups) if g]
        assert decode(tok, s_answer) == decode(other, t_answer) == answer_text(example)
    collator = DistillCollator(PaddedCollator(tok.pad_token_id), d.alignments, d.teacher_rows)
    batch = collator(batch_rows(tokenized.rows))
    trainer = make_trainer(tmp_path, student, teacher=d.teacher, objective=d.objective)
    _, terms = loss_terms(trainer, student, batch)
    assert terms["hidden"] > 0 and torch.isfinite(torch.tensor(terms["hidden"]))


# --------------------------------------------------------------------------- loss terms


NORMALIZE = ["none", "layernorm", "teacher_std"]
DISTANCE = ["mse", "cosine", "smooth_l1"]


def hidden_step(student, teacher, normalize, distance, share=1.0):
    return StepTensors(targets=torch.zeros(3, dtype=torch.long), denominator=3.0, share=share,
                       student_aligned=student, teacher_aligned=teacher,
                       options={"normalize": normalize, "distance": distance})


@pytest.mark.parametrize("normalize", NORMALIZE)
@pytest.mark.parametrize("distance", DISTANCE)
def test_hidden_loss_is_zero_for_equal_states_and_positive_otherwise(normalize, distance):
    torch.manual_seed(0)
    teacher = [torch.randn(7, 16) * 3 + 1, torch.randn(7, 16)]
    same = hidden_alignment(hidden_step([t.clone() for t in teacher], teacher, normalize,
                                        distance))
    assert abs(float(same)) < 1e-6
    student = [torch.randn(7, 16) for _ in teacher]
    other = hidden_alignment(hidden_step(student, teacher, normalize, distance))
    assert float(other) > 1e-3
    half = hidden_alignment(hidden_step(student, teacher, normalize, distance, share=0.5))
    torch.testing.assert_close(half, other * 0.5)  # weighted by the micro-batch's share


def test_hidden_loss_with_nothing_aligned_is_zero():
    empty = [torch.zeros(0, 4)]
    assert float(hidden_alignment(hidden_step(empty, empty, "layernorm", "mse"))) == 0.0


def test_hidden_loss_is_zero_for_a_self_teacher_equal_to_the_student(tmp_path, tok, rows):
    """Through the trainer: a self-teacher whose adapter is the student's own gives 0."""
    student = tiny_lora_model("llama")
    adapter_dir = tmp_path / "same"
    student.save_pretrained(adapter_dir)
    layer_map = LayerMap(((1, 1), (2, 2)))
    teacher = SelfTeacher(student, layer_map, adapter_dir)
    attach(student, Projections(32, 32, 2, always=False))
    collator = DistillCollator(PaddedCollator(tok.pad_token_id), [same_sequence(r) for r in rows])
    trainer = make_trainer(tmp_path, student, teacher=teacher, objective=HIDDEN_AND_CE)
    _, terms = loss_terms(trainer, student, collator(batch_rows(rows)))
    assert terms["ce"] > 0 and abs(terms["hidden"]) < 1e-10


def reference_kd(sh, sw, th, tw, kind, temperature, beta):
    vocab = min(sw.shape[0], tw.shape[0])
    s = F.log_softmax(sh @ sw[:vocab].T / temperature, -1)
    t = F.log_softmax(th @ tw[:vocab].T / temperature, -1)
    ps, pt = s.exp(), t.exp()

    def kl(p, logp, logq):
        return (p * (logp - logq)).sum()

    if kind == "forward_kl":
        value = kl(pt, t, s)
    elif kind == "reverse_kl":
        value = kl(ps, s, t)
    else:
        m = beta * pt + (1 - beta) * ps
        value = beta * kl(pt, t, m.log()) + (1 - beta) * kl(ps, s, m.log())
    return value * temperature**2


@pytest.mark.parametrize("kind", ["forward_kl", "reverse_kl", "jsd"])
@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_chunked_kd_equals_the_full_logits_divergence_and_gradient(monkeypatch, kind,
                                                                   temperature):
    vocab, rows, d = 50, 11, 8
    monkeypatch.setattr(losses, "CHUNK_BYTES", 4 * vocab * 3)  # 3 rows a chunk: 4 chunks
    torch.manual_seed(0)
    sh = torch.randn(rows, d, requires_grad=True)
    sw = torch.randn(vocab, d, requires_grad=True)
    th, tw = torch.randn(rows, d), torch.randn(vocab, d)
    got = chunked_kd(sh, sw, th, tw, kind=kind, temperature=temperature, beta=0.3)
    grads = torch.autograd.grad(got, (sh, sw))
    sh2, sw2 = sh.detach().clone().requires_grad_(), sw.detach().clone().requires_grad_()
    want = reference_kd(sh2, sw2, th, tw, kind, temperature, 0.3)
    want_grads = torch.autograd.grad(want, (sh2, sw2))
    assert float(want.detach()) > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    for g, w in zip(grads, want_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_chunked_kd_cuts_a_padded_teacher_vocabulary():
    torch.manual_seed(0)
    vocab, d = 40, 8
    sh, sw = torch.randn(6, d), torch.randn(vocab, d)
    th, tw = torch.randn(6, d), torch.randn(vocab, d)
    padded = torch.cat([tw, 50 * torch.randn(24, d)])  # rows a padded embedding adds
    cut = chunked_kd(sh, sw, th, padded)
    torch.testing.assert_close(cut, chunked_kd(sh, sw, th, tw))
    torch.testing.assert_close(cut, reference_kd(sh, sw, th, tw, "forward_kl", 1.0, 0.5),
                               rtol=1e-5, atol=1e-5)
    assert not torch.allclose(cut, reference_kd(sh, torch.cat([sw, torch.zeros(24, d)]), th,
                                                padded, "forward_kl", 1.0, 0.5))


def test_kd_term_is_zero_for_an_identical_teacher_and_divides_by_the_denominator():
    torch.manual_seed(0)
    h, w = torch.randn(5, 8), torch.randn(30, 8)
    step = StepTensors(targets=torch.zeros(5, dtype=torch.long), denominator=10.0, share=0.5,
                       final_hidden=h, head_weight=w, teacher_final=h.clone(),
                       teacher_head_weight=w.clone(), options={"kd": {"loss": "jsd"}})
    assert abs(float(losses.logit_kd(step))) < 1e-6
    step.teacher_final = torch.randn(5, 8)
    torch.testing.assert_close(losses.logit_kd(step),
                               chunked_kd(h, w, step.teacher_final, w, kind="jsd") / 10.0)


@pytest.mark.parametrize("values", [
    {"ce": 2.0, "hidden": 0.7, "kd": 0.01},
    {"ce": 1e-4, "hidden": 3.0, "kd": 5.0},
    {"ce": 1.3, "hidden": 0.0, "kd": 0.2},
])
def test_log_record_shares_sum_to_one(values):
    objective = Objective((("ce", 0.7), ("hidden", 0.3), ("kd", 0.5)), {})
    record = objective.log_record(values)
    shares = {k: v for k, v in record.items() if k.startswith("share_")}
    assert set(shares) == {"share_ce", "share_hidden", "share_kd"}
    assert sum(shares.values()) == pytest.approx(1.0, abs=2e-4)
    total = 0.7 * values["ce"] + 0.3 * values["hidden"] + 0.5 * values["kd"]
    assert shares["share_hidden"] == pytest.approx(0.3 * values["hidden"] / total, abs=1e-4)
    assert {record[f"loss_{k}"] for k in values} == set(values.values())
    assert not any(k.startswith("share_") for k in
                   Objective((("ce", 1.0),), {}).log_record({"ce": 2.0}))


def _term_step(ce: float, hidden: float):
    """A step whose cross-entropy and hidden term are exactly ``ce`` and ``hidden``."""
    from reasondistill.distill.losses import StepTensors

    vocab = 4
    logits = torch.full((1, vocab), 0.0)
    target = torch.tensor([0])
    base = float(torch.nn.functional.cross_entropy(logits, target))  # log(4)
    step = StepTensors(targets=target, denominator=base / ce, share=1.0, logits=logits)
    # layernorm + mse of s against t = 2 - 2·corr; unnormalised here for an exact value
    step.student_aligned = [torch.tensor([[hidden ** 0.5, 0.0]])]
    step.teacher_aligned = [torch.zeros(1, 2)]
    return step


def test_balance_initial_makes_alpha_the_first_share_and_keeps_the_factor():
    objective = Objective((("ce", 0.9), ("hidden", 0.1)),
                          {"normalize": "none", "distance": "mse"}, balance="initial")
    loss, values = objective(_term_step(ce=2.0, hidden=0.004))
    assert values["hidden"] == pytest.approx(0.002)  # mse averages the 2 features
    assert objective.scales == {"hidden": pytest.approx(1000.0)}
    assert float(loss) == pytest.approx(0.9 * 2.0 + 0.1 * 2.0)
    assert objective.log_record(values)["share_hidden"] == pytest.approx(0.1, abs=1e-4)
    assert objective.log_record(values)["scale_hidden"] == pytest.approx(1000.0)
    loss, values = objective(_term_step(ce=1.0, hidden=0.008))  # the factor stays
    assert objective.scales == {"hidden": pytest.approx(1000.0)}
    assert float(loss) == pytest.approx(0.9 * 1.0 + 0.1 * 1000.0 * 0.004)


def test_balance_none_sums_the_raw_terms():
    objective = Objective((("ce", 0.9), ("hidden", 0.1)),
                          {"normalize": "none", "distance": "mse"}, balance="none")
    loss, values = objective(_term_step(ce=2.0, hidden=0.004))
    assert objective.scales == {}
    assert float(loss) == pytest.approx(0.9 * 2.0 + 0.1 * 0.002)
    assert objective.log_record(values)["share_hidden"] < 1e-3


def test_balance_takes_the_values_the_processes_agree_on():
    objective = Objective((("ce", 0.9), ("hidden", 0.1)),
                          {"normalize": "none", "distance": "mse"}, balance="initial")
    objective(_term_step(ce=2.0, hidden=0.004),  # rank 0's values, here: hidden doubled
              agree_across_processes=lambda t: t * torch.tensor([1.0, 2.0]))
    assert objective.scales == {"hidden": pytest.approx(2.0 / 0.004)}


def test_objective_from_config_weights_the_terms():
    from reasondistill.config import DistillConfig

    cfg = DistillConfig.model_validate({"enabled": True, "alpha": 0.25, "beta": 0.5,
                                        "teacher": {"adapter": "x"}})
    assert Objective.from_config(cfg).weights == (("ce", 0.75), ("hidden", 0.25), ("kd", 0.5))
    assert Objective.from_config(DistillConfig()).weights == (("ce", 1.0),)


# --------------------------------------------------------------------------- self-teacher


@pytest.fixture(scope="module")
def teacher_adapter_dir(tmp_path_factory):
    """An adapter on the tiny Llama that differs from the student's (another LoRA B)."""
    model = tiny_lora_model("llama")
    torch.manual_seed(11)
    for name, param in model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(param, std=0.2)
    path = tmp_path_factory.mktemp("self-teacher")
    model.save_pretrained(path)
    return path


def teacher_params(model):
    return {n: p for n, p in model.named_parameters() if ".teacher." in n}


def test_self_teacher_forward_equals_a_separately_loaded_base_plus_adapter(
        tok, rows, teacher_adapter_dir):
    from peft import PeftModel

    student = tiny_lora_model("llama")
    layer_map = LayerMap(((0, 0), (1, 1), (2, 2)))
    collator = DistillCollator(PaddedCollator(tok.pad_token_id), [same_sequence(r) for r in rows])
    batch = collator(batch_rows(rows))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask")}
    with torch.no_grad():
        student_before = student(**inputs, output_hidden_states=True).hidden_states
    teacher = SelfTeacher(student, layer_map, teacher_adapter_dir)
    signal = teacher.signal(batch)

    reference = PeftModel.from_pretrained(tiny_model("llama", tok), teacher_adapter_dir).eval()
    with torch.no_grad():
        expected = reference(**inputs, output_hidden_states=True).hidden_states
    positions = batch["align_teacher_positions"]
    for (_, t), got in zip(layer_map.pairs, signal.aligned):
        want = expected[t].reshape(-1, expected[t].shape[-1]).index_select(0, positions)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    # the teacher's layer-2 states are not the student's (the adapters differ) ...
    student_2 = student_before[2].reshape(-1, 32).index_select(0, positions)
    assert not torch.allclose(signal.aligned[2], student_2, atol=1e-3)
    # ... and the student is itself again afterwards
    assert student.active_adapter == "default"
    with torch.no_grad():
        student_after = student(**inputs, output_hidden_states=True).hidden_states
    for before, after in zip(student_before, student_after):
        torch.testing.assert_close(after, before, rtol=0, atol=0)


def test_student_gradients_do_not_reach_the_teacher_adapter(tmp_path, tok, rows,
                                                            teacher_adapter_dir):
    student = tiny_lora_model("llama")
    teacher = SelfTeacher(student, LayerMap(((1, 1), (2, 2))), teacher_adapter_dir)
    attach(student, Projections(32, 32, 2, always=False))
    frozen = teacher_params(student)
    assert frozen and not any(p.requires_grad for p in frozen.values())
    before = {n: p.detach().clone() for n, p in frozen.items()}
    lora_before = {n: p.detach().clone() for n, p in student.named_parameters()
                   if "lora_" in n and ".default." in n}
    collator = DistillCollator(PaddedCollator(tok.pad_token_id), [same_sequence(r) for r in rows])
    dataset = batch_rows(rows)
    trainer = make_trainer(tmp_path, student, teacher=teacher, objective=HIDDEN_AND_CE,
                           collator=collator, dataset=dataset)

    loss, terms = loss_terms(trainer, student, collator(dataset))
    assert terms["hidden"] > 0
    loss.backward()
    assert all(p.grad is None for p in frozen.values())
    assert any(p.grad is not None and p.grad.abs().sum() > 0
               for n, p in student.named_parameters() if ".default." in n)
    student.zero_grad(set_to_none=True)

    trainer.train()  # one optimizer step
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not any(id(p) in optimized for p in frozen.values())
    for name, param in teacher_params(student).items():
        assert torch.equal(param.detach(), before[name]), name
        assert param.grad is None and not param.requires_grad
    assert any(not torch.equal(p.detach(), lora_before[n])
               for n, p in student.named_parameters() if n in lora_before)
    assert student.active_adapter == "default"


# --------------------------------------------------------------------------- accelerate launch


@pytest.mark.slow
def test_accelerate_launch_two_cpu_processes_latent_run(tmp_path, tiny_model_dir,
                                                        wider_teacher_dir):  # noqa: F811
    """A latent run (wider teacher, learned projections) under ``accelerate launch`` with 2
    gloo processes on CPU: it completes, and rank 0 alone writes the adapter and metrics."""
    config = {
        "output_dir": str(tmp_path / "run"),
        "model": {"name": str(tiny_model_dir)},
        "data": {"source": "jsonl", "path": str(write_arithmetic_rows(tmp_path / "rows.jsonl"))},
        "format": {"max_length": 128},
        "lora": {"r": 4, "alpha": 8},
        "train": {"phases": ["train"], "per_device_batch_size": 2,
                  "gradient_accumulation_steps": 2, "logging_steps": 1, "bf16": False},
        "distill": {"enabled": True, "alpha": 0.5, "layers": {"last_k": 1},
                    "teacher": {"kind": "model", "name": str(wider_teacher_dir)}},
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
           "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
           "--dynamo_backend", "no", "-m", "reasondistill", "train", str(path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = Path(tmp_path / "run")
    summary = json.loads((run / "train_summary.json").read_text())
    assert summary["effective_batch"] == 8 and summary["phases"][0]["steps"] == 6
    adapter = run / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / FILENAME).is_file()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("adapter")) == [
        "adapter", "adapter-train"]  # no leftover temp dir from a second writer
    # rank 0 alone prints and saves (the "done" line follows save_adapter under the same
    # is_main_process() flag): two lines mean both ranks wrote the adapter
    assert proc.stdout.count("done: adapter in") == 1, proc.stdout[-2000:]
    assert proc.stdout.count("rows read 48") == 1
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if "loss_hidden" in r]
    assert steps == sorted(set(steps)) and len(steps) == 6  # one writer, one line a step
    plan = json.loads((run / "distill_plan.json").read_text())
    assert plan["projection"] == [32, 48]
