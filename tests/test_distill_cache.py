"""The teacher cache on a tiny model: round trip, fingerprint refusals, resume, training."""

import json

import pytest
import torch
import yaml
from test_train import make_config
from typer.testing import CliRunner

from reasondistill.cli import app
from reasondistill.config import parse_config
from reasondistill.distill import cache
from reasondistill.errors import ReasondistillError

PAIRS = [[1, 1], [2, 2]]  # the tiny Llama's block 1 and its final (post-norm) state


def make_adapter(path, model_dir, seed):
    """A LoRA adapter with random, non-zero weights (a stand-in for a trained teacher)."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"],
                      init_lora_weights=False)
    get_peft_model(base, lora).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def adapters(tmp_path_factory, tiny_model_dir):
    root = tmp_path_factory.mktemp("adapters")
    return (make_adapter(root / "a", tiny_model_dir, 0), make_adapter(root / "b", tiny_model_dir, 1))


def cache_config(tmp_path, model_dir, adapter=None, cache_dir=None, **distill):
    base = make_config(tmp_path, model_dir, phases=["train"], hard_types=[])
    raw = base.model_dump(mode="json", exclude_unset=True)
    teacher = {"kind": "self"}
    if adapter is not None:
        teacher["adapter"] = str(adapter)
    if cache_dir is not None:
        teacher["cache"] = str(cache_dir)
    raw["distill"] = {"enabled": True, "teacher": teacher, "layers": {"pairs": PAIRS}, **distill}
    raw["train"]["train"] = {"max_steps": 3, "learning_rate": 3e-3}
    return parse_config(raw)


def prepared_rows(cfg):
    from reasondistill.models import load_tokenizer
    from reasondistill.prepare import prepare_data

    tokenizer = load_tokenizer(cfg.model.name)
    return prepare_data(cfg.data, cfg.format, tokenizer, progress=False), tokenizer


def stored(directory):
    """Every row of a cache directory: id → tensor (and the index)."""
    from safetensors.torch import load_file

    index = json.loads((directory / "index.json").read_text())
    rows = {}
    for shard in index["shards"]:
        rows.update(load_file(directory / shard))
    return rows, index


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, adapters):
    """A complete cache of adapter a's signal (8 rows a shard, 4 per forward)."""
    tmp = tmp_path_factory.mktemp("built")
    cfg = cache_config(tmp, tiny_model_dir, adapters[0])
    result = cache.write_cache(cfg, tmp / "cache", batch_size=4, rows_per_shard=8,
                               progress=False)
    return cfg, tmp / "cache", result


def test_cache_round_trip_equals_the_online_teacher(built, tiny_model_dir, adapters):
    """The cached signal of a packed training micro-batch equals what the self-teacher
    computes for it online (as the trainer runs it: packed attention), within bf16 rounding."""
    from reasondistill.distill.layer_map import LayerMap
    from reasondistill.distill.setup import align_rows
    from reasondistill.distill.teacher import SelfTeacher
    from reasondistill.lora import apply_lora
    from reasondistill.models import load_model
    from reasondistill.train.collate import DistillCollator, PackedCollator
    from reasondistill.train.packing import packed_attention, packed_forward

    cfg, directory, result = built
    assert result.rows == 48 and result.written == 48
    assert result.bytes_per_token == pytest.approx(2 * 32 * 2, rel=0.2)  # pairs × d × bf16
    prepared, tokenizer = prepared_rows(cfg)
    model, _ = load_model(cfg.model, dtype="float32")
    model, _ = apply_lora(model, cfg.lora)
    online = SelfTeacher(model, LayerMap(tuple(map(tuple, PAIRS))), str(adapters[0]))
    alignments, _, _, _ = align_rows("same_sequence", cfg.format, prepared, tokenizer)
    cached = cache.CachedTeacher.open(directory, [e.id for e in prepared.examples])
    collator = DistillCollator(PackedCollator(), alignments)
    rows = prepared.tokenized.rows
    for picks in ([5, 0, 17], [47, 12, 30, 9, 8]):  # across shards, out of order
        batch = collator([{"input_ids": rows[i].input_ids, "labels": rows[i].labels, "row": i}
                          for i in picks])
        lengths = batch.pop("sequence_lengths").tolist()
        with packed_attention(model), packed_forward(lengths):
            want = online.signal(batch).aligned
        got = cached.signal(batch).aligned
        assert len(got) == len(want) == 2
        for g, w in zip(got, want):
            assert g.dtype == torch.float32 and g.shape == w.shape
            assert torch.all((g - w).abs() <= w.abs() * 2**-8 + 1e-5)
    # the adapter matters: the base alone gives other states
    with model.disable_adapter(), packed_attention(model), packed_forward(lengths):
        hidden = model(**{k: batch[k] for k in ("input_ids", "position_ids")},
                       output_hidden_states=True).hidden_states[1]
    from reasondistill.distill.teacher import pool

    base = pool(hidden, batch["align_teacher_positions"], batch["align_teacher_groups"],
                int(batch["align_groups"]))
    assert not torch.allclose(base, got[0], atol=1e-3)
    with pytest.raises(ReasondistillError, match="logit KD"):
        cached.signal(batch, final_positions=torch.tensor([0]))


def test_a_differing_fingerprint_is_refused_naming_the_key(built, tmp_path, tiny_model_dir,
                                                           adapters):
    cfg, directory, _ = built
    prepared, tokenizer = prepared_rows(cfg)
    same = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={
        "teacher": cfg.distill.teacher.model_copy(update={"cache": str(directory)})})})
    assert cache.open_for_run(same, prepared, tokenizer).num_blocks == 2  # the same setup opens

    def variant(**distill):
        raw = cfg.model_dump(mode="json", exclude_unset=True)
        raw["distill"]["teacher"]["cache"] = str(directory)
        for key, value in distill.items():
            raw["distill"][key] = value
        return parse_config(raw)

    other_map = variant(layers={"pairs": [[1, 1]]})
    with pytest.raises(ReasondistillError, match="layer_map") as refused:
        cache.open_for_run(other_map, prepared, tokenizer)
    assert "teacher_adapter" not in str(refused.value)
    other_adapter = variant(teacher={"kind": "self", "adapter": str(adapters[1]),
                                     "cache": str(directory)})
    with pytest.raises(ReasondistillError, match="teacher_adapter") as refused:
        cache.open_for_run(other_adapter, prepared, tokenizer)
    assert "layer_map" not in str(refused.value)
    with pytest.raises(ReasondistillError, match="logit KD"):
        cache.open_for_run(variant(beta=0.5), prepared, tokenizer)
    # writing into a cache of another setup is refused too, before any teacher runs
    with pytest.raises(ReasondistillError, match="differs: layer_map"):
        cache.write_cache(variant(layers={"pairs": [[1, 1]]}), directory, progress=False)


def test_an_interrupted_write_resumes_to_the_same_cache(built, tmp_path, tiny_model_dir,
                                                        adapters, monkeypatch):
    cfg, complete, _ = built
    directory = tmp_path / "cache"
    real = cache.write_shard
    calls = []

    def killed_on_second_shard(path, tensors):
        calls.append(path.name)
        if len(calls) == 2:  # killed mid-write: a half .tmp left behind, never renamed
            path.with_name(path.name + ".tmp").write_bytes(b"half a shard")
            raise KeyboardInterrupt
        return real(path, tensors)

    monkeypatch.setattr(cache, "write_shard", killed_on_second_shard)
    with pytest.raises(KeyboardInterrupt):
        cache.write_cache(cfg, directory, batch_size=4, rows_per_shard=8, progress=False)
    index = json.loads((directory / "index.json").read_text())
    assert list(index["shards"]) == ["shard-00000.safetensors"] and len(index["rows"]) == 8
    assert not index["complete"]
    assert (directory / "shard-00001.safetensors.tmp").exists()
    assert not any(name.endswith(".tmp") for name in index["rows"].values())
    prepared, tokenizer = prepared_rows(cfg)
    partial = cfg.model_copy(update={"distill": cfg.distill.model_copy(update={
        "teacher": cfg.distill.teacher.model_copy(update={"cache": str(directory)})})})
    with pytest.raises(ReasondistillError, match="holds 8 of 48 rows"):
        cache.open_for_run(partial, prepared, tokenizer)

    monkeypatch.setattr(cache, "write_shard", real)
    result = cache.write_cache(cfg, directory, batch_size=4, rows_per_shard=8, progress=False)
    assert result.written == 40 and result.rows == 48
    assert not list(directory.glob("*.tmp"))
    resumed, index = stored(directory)
    assert index["complete"] and all(not s.endswith(".tmp") for s in index["rows"].values())
    assert all((directory / shard).is_file() for shard in index["shards"])
    reference, _ = stored(complete)
    assert resumed.keys() == reference.keys()
    for row_id, tensor in reference.items():
        assert tensor.dtype == torch.bfloat16 and torch.equal(resumed[row_id], tensor), row_id
    # a finished cache: a rerun computes nothing
    assert cache.write_cache(cfg, directory, progress=False).written == 0


def test_training_from_the_cache_logs_the_hidden_term(built, tmp_path, tiny_model_dir,
                                                      monkeypatch):
    from reasondistill.distill import teacher as teacher_module
    from reasondistill.train.recipe import run_training

    _, directory, _ = built

    def no_forward(*args, **kwargs):
        raise AssertionError("the online teacher ran")

    monkeypatch.setattr(teacher_module.OnlineTeacher, "signal", no_forward)
    cfg = cache_config(tmp_path, tiny_model_dir, cache_dir=directory)  # names only the cache
    run_training(cfg)
    run = tmp_path / "run"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert steps and all(r["loss_hidden"] > 0 and 0 < r["share_hidden"] < 1 for r in steps)
    assert (run / "adapter" / "adapter_model.safetensors").is_file()


def test_not_enough_disk_is_refused_before_the_teacher_loads(tmp_path, tiny_model_dir,
                                                             adapters, monkeypatch):
    cfg = cache_config(tmp_path, tiny_model_dir, adapters[0])
    monkeypatch.setattr(cache, "_free_bytes", lambda path: 1000)
    monkeypatch.setattr(cache, "build_online_teacher", None)  # never reached
    with pytest.raises(ReasondistillError, match="not enough disk"):
        cache.write_cache(cfg, tmp_path / "cache", progress=False)
    assert not (tmp_path / "cache").exists()


def write_yaml(tmp_path, cfg, **teacher):
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["distill"]["teacher"].update(teacher)
    path = tmp_path / f"run-{len(list(tmp_path.glob('run-*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_cli_cache_and_bad_cache_dirs(built, tmp_path, tiny_model_dir, adapters):
    runner = CliRunner()
    cfg = cache_config(tmp_path, tiny_model_dir, adapters[0])
    config = write_yaml(tmp_path, cfg)
    result = runner.invoke(app, ["train", str(config), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "128 bytes per aligned token" in result.output  # 2 pairs × 32 × 2 bytes
    untrained = write_yaml(tmp_path, cfg, adapter=str(tmp_path / "not-trained-yet"))
    result = runner.invoke(app, ["train", str(untrained), "--dry-run"])
    assert result.exit_code == 0 and "no size estimate yet" in result.output
    out = tmp_path / "cli-cache"
    result = runner.invoke(app, ["cache", str(config), "--out", str(out), "--shard-rows", "20"])
    assert result.exit_code == 0, result.output
    assert "128 bytes per aligned token" in result.output and "wrote the teacher cache" in result.output
    assert len(json.loads((out / "index.json").read_text())["shards"]) == 3

    not_a_cache = tmp_path / "elsewhere"
    not_a_cache.mkdir()
    (not_a_cache / "notes.txt").write_text("mine")
    result = runner.invoke(app, ["cache", str(config), "--out", str(not_a_cache)])
    assert result.exit_code == 2 and "not a teacher cache" in result.output
    missing = write_yaml(tmp_path, cfg, cache=str(tmp_path / "no-such-cache"))
    result = runner.invoke(app, ["train", str(missing)])
    assert result.exit_code == 2 and "not a directory" in result.output
    assert not (tmp_path / "run").exists()  # refused before the run directory was made
    result = runner.invoke(app, ["train", str(write_yaml(tmp_path, cfg, cache=str(not_a_cache)))])
    assert result.exit_code == 2 and "not a teacher cache" in result.output


def test_answer_anchor_with_a_wider_model_teacher_trains_from_the_cache(tmp_path,
                                                                        tiny_model_dir):
    """Another model (hidden 48, 3 blocks), the teacher reading the full trace while the
    student answers only: the cache keeps the teacher's rows' alignment and tokenizer."""
    import transformers as tf
    from tiny import tiny_config, tiny_tokenizer

    from reasondistill.train.recipe import run_training

    tok = tiny_tokenizer()
    config = tiny_config("llama", tok)
    config.hidden_size, config.num_hidden_layers, config.intermediate_size = 48, 3, 96
    wide = tmp_path / "wide"
    tf.AutoModelForCausalLM.from_config(config).save_pretrained(wide)
    tok.save_pretrained(wide)
    cfg = cache_config(tmp_path, tiny_model_dir, tokens="answer_anchor",
                       teacher={"kind": "model", "name": str(wide)}, layers={"last_k": 1})
    raw = cfg.model_dump(mode="json", exclude_unset=True)
    raw["format"]["answer_only"] = True
    cfg = parse_config(raw)
    result = cache.write_cache(cfg, tmp_path / "cache", progress=False)
    index = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert index["layer_map"] == [[1, 2]] and index["teacher"]["hidden_size"] == 48
    assert result.rows == 48 and (tmp_path / "cache" / "teacher-tokenizer").is_dir()
    raw["distill"]["teacher"] = {"cache": str(tmp_path / "cache")}  # the cache alone
    run_training(parse_config(raw))
    plan = json.loads((tmp_path / "run" / "distill_plan.json").read_text())
    assert plan["projection"] == [32, 48] and plan["layer_map"] == [[1, 2]]
    steps = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
             .splitlines()]
    assert all(r["loss_hidden"] > 0 for r in steps if "loss" in r)
