from pathlib import Path

import pytest

from mt.config import Config, apply_overrides, config_from_dict, config_to_dict, load_config, save_config
from mt.errors import MTError

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_load(path):
    cfg = load_config(path)
    assert cfg.model.cell in ("lstm", "gru", "rnn")


def test_shipped_configs_exist():
    assert {p.name for p in CONFIGS} >= {"multi30k_en_de.yaml", "tiny.yaml"}


def test_overrides_use_yaml_names_and_types():
    cfg = apply_overrides(Config(), ["model.cell=gru", "train.lr=5e-4", "train.max_minutes=60", "model.bidirectional=false"])
    assert cfg.model.cell == "gru"
    assert cfg.train.lr == pytest.approx(5e-4)
    assert cfg.train.max_minutes == 60.0  # an int where a float is expected is accepted
    assert cfg.model.bidirectional is False


def test_save_and_load_round_trip(tmp_path):
    cfg = apply_overrides(Config(), ["model.hidden_dim=64", "decode.beam=3"])
    save_config(cfg, tmp_path / "c.yaml")
    assert config_to_dict(load_config(tmp_path / "c.yaml")) == config_to_dict(cfg)


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.cell=transformer", "'model.cell' must be one of lstm, gru, rnn"),
        ("model.attention=dot", "'model.attention' must be one of bahdanau, luong, none"),
        ("train.lr=fast", "'train.lr' must be float"),
        ("train.max_epochs=2.5", "'train.max_epochs' must be int"),
        ("model.nope=1", "unknown config key 'model.nope'"),
        ("nope.cell=lstm", "unknown config section 'nope'"),
        ("model.cell", "must look like section.key=value"),
        ("model.dropout=1.0", "'model.dropout' must be in [0, 1)"),
        ("model.hidden_dim=0", "'model.hidden_dim' must be > 0"),
        ("train.rdrop_alpha=-1", "'train.rdrop_alpha' must be >= 0"),
        ("train.rdrop_min_updates=-1", "'train.rdrop_min_updates' must be >= 0"),
        ("model.hidden_dim=7", "'model.hidden_dim' must be even"),
    ],
)
def test_bad_overrides_name_the_key(override, message):
    with pytest.raises(MTError) as err:
        apply_overrides(Config(), [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_yaml_key_names_file_and_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  cel: lstm\n")
    with pytest.raises(MTError) as err:
        load_config(path)
    assert str(path) in str(err.value) and "'model.cel'" in str(err.value) and "cell" in str(err.value)


def test_invalid_yaml_names_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("model:\n  cell: [lstm\n")
    with pytest.raises(MTError, match=r"bad.yaml line \d+: invalid YAML"):
        load_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(MTError, match="config file not found"):
        load_config(tmp_path / "none.yaml")


def test_empty_sections_keep_defaults():
    assert config_to_dict(config_from_dict({"model": None})) == config_to_dict(Config())


@pytest.mark.parametrize("overrides, message", [
    (["data.joint_vocab=false", "model.share_embeddings=true"], "'model.share_embeddings' needs 'data.joint_vocab"),
    (["model.share_embeddings=true", "model.init_encoder_from=a.pt", "model.init_decoder_from=b.pt"],
     "embeddings would overwrite each other"),
])
def test_shared_embeddings_conflicts_are_one_line_errors(overrides, message):
    with pytest.raises(MTError) as err:
        apply_overrides(Config(), overrides)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("section, key, value", [("decode", "beam", 10**9), ("decode", "max_len_ratio", 1e12),
                                                 ("decode", "max_len_extra", 10**7), ("data", "max_tokens", 10**9),
                                                 ("model", "layers", 1000)])
def test_settings_out_of_reason_are_refused(section, key, value):
    """A config read from someone else's file may say anything: a beam of 10^9 would allocate without end."""
    with pytest.raises(MTError, match=rf"'{section}.{key}' must be in"):
        config_from_dict({section: {key: value}}, source="model.mt")
