"""Every shipped example config validates against the schema."""

from pathlib import Path

import pytest

from reasondistill.config import load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "configs").glob("*.yaml"))


def test_there_are_examples():
    assert len(EXAMPLES) >= 2


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_config_validates(path):
    load_config(path)


def test_latent_examples_name_their_teacher():
    by_name = {p.stem: load_config(p) for p in EXAMPLES}
    self_teacher = by_name["latent-self-teacher"].distill
    assert self_teacher.enabled and self_teacher.teacher.kind == "self"
    assert self_teacher.teacher.adapter == "runs/demo/adapter"
    assert self_teacher.tokens == "answer_anchor"
    assert by_name["latent-self-teacher"].format.answer_only
    wider = by_name["latent-tiny-wider-teacher"].distill
    assert wider.enabled and wider.teacher.kind == "model" and wider.teacher.name


SWEEPS = sorted((Path(__file__).resolve().parents[1] / "examples" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_example_sweep_expands_into_valid_configs(path, tmp_path):
    from reasondistill.sweep import expand, load_sweep

    spec, base = load_sweep(path)
    points = expand(spec, base, tmp_path)  # each point's config is validated as it expands
    assert len({p.name for p in points}) == len(points) >= 3
