"""The config schema: unknown keys, bad values, overrides, files."""

import pytest

from reasondistill.config import dump_config, load_config, parse_config
from reasondistill.errors import ConfigError


def test_defaults_are_valid_and_round_trip(tmp_path):
    cfg = parse_config({})
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("raw,expected", [
    ({"trian": {}}, "unknown key 'trian' (did you mean 'train'?)"),
    ({"lora": {"rank": 8}}, "unknown key 'lora.rank' (did you mean 'r'?)"),
    ({"train": {"train": {"learnin_rate": 1}}},
     "unknown key 'train.train.learnin_rate' (did you mean 'learning_rate'?)"),
    ({"data": {"columns": {"promt": "q"}}}, "unknown key 'data.columns.promt' (did you mean 'prompt'?)"),
])
def test_unknown_keys_name_the_key_and_the_closest(raw, expected):
    with pytest.raises(ConfigError) as error:
        parse_config(raw, "run.yaml")
    assert expected in str(error.value)
    assert str(error.value).startswith("run.yaml")


def test_bad_values_name_the_key_and_allowed_values():
    with pytest.raises(ConfigError) as error:
        parse_config({"data": {"source": "xml"}, "lora": {"r": 0}})
    message = str(error.value)
    assert "data.source" in message and "'jsonl'" in message and "'xml'" in message
    assert "lora.r" in message


def test_nudge_needs_hard_types():
    with pytest.raises(ConfigError, match="hard_types"):
        parse_config({"train": {"phases": ["train", "nudge"]}})


def test_set_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train: {seed: 1}\n")
    cfg = load_config(path, ["train.seed=7", "train.phases=[train, nudge]",
                             "train.hard_types=[x]", "lora.families=[attention]"])
    assert cfg.train.seed == 7 and cfg.train.phases == ["train", "nudge"]
    assert cfg.lora.families == ["attention"]
    with pytest.raises(ConfigError, match="key=value"):
        load_config(path, ["train.seed"])


@pytest.mark.parametrize("text,message", [
    ("train: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "top level must be a mapping"),
])
def test_bad_files(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
