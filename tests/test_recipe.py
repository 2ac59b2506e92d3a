"""One source of truth for the recipe: the package defaults. A run prepared without a config trains with what
`make train` uses; docs/recipe.md has one row per key with today's value; RUN/config.yaml explains every key."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mt.cli import build_parser, main, resolve_config
from mt.config import Config, config_to_dict, describe, load_config, save_config
from mt.errors import MTError
from mt.run import RunDir
from mt.train.progress import TrainResult

ROOT = Path(__file__).resolve().parent.parent


def make_train_config() -> tuple[str, list[str]]:
    """What `make train` hands `mt train`, read from the Makefile: CONFIG's default and the overrides."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    config = re.search(r"^CONFIG \?= (\S+)", makefile, re.M).group(1)
    recipe = re.search(r"^train: .*\n\t(.*)$", makefile, re.M).group(1)
    assert "--config $(CONFIG)" in recipe, recipe
    variables = {"SRC": "en", "TGT": "de"}
    overrides = [re.sub(r"\$\((\w+)\)", lambda m: variables[m.group(1)], word)
                 for word in recipe.split() if re.match(r"data\.\w+=", word)]
    return config, overrides


def without_data(cfg: Config) -> dict:
    return {section: values for section, values in config_to_dict(cfg).items() if section != "data"}


def test_a_run_prepared_without_a_config_trains_with_what_make_train_uses(tiny_corpus, tmp_path, monkeypatch):
    """The README's own-corpus commands (`mt prepare` without --config, `mt train --run RUN`) hand training the
    same config as `make train` (data keys aside) and as the Python API's Config()."""
    run = tmp_path / "mine"
    assert main(["prepare", "--run", str(run), "--data-dir", str(tiny_corpus), "--src", "en", "--tgt", "de",
                 "--vocab-size", "300"]) == 0  # room for the 256 byte pieces
    handed = []
    monkeypatch.setattr("mt.tasks.translation.train",
                        lambda run, cfg: handed.append(cfg) or TrainResult(0, 0, 0.0, "max_epochs", 0.0, 0.0))
    assert main(["train", "--run", str(run)]) == 0
    config, overrides = make_train_config()
    assert overrides == ["data.src=en", "data.tgt=de"]
    make_train = resolve_config(RunDir.of(run), str(ROOT / config), overrides)
    assert without_data(handed[0]) == without_data(make_train) == without_data(Config())
    assert load_config(run / "config.yaml") == handed[0]  # what RUN/config.yaml says is what trains


def test_the_multi30k_config_only_names_the_language_pair():
    config, _ = make_train_config()
    raw = __import__("yaml").safe_load((ROOT / config).read_text(encoding="utf-8"))
    assert raw == {"data": {"src": "en", "tgt": "de"}}


def mt_command_lines(markdown: Path) -> list[list[str]]:
    """The arguments of every `mt ...` (or `.venv/bin/mt ...`) line of a page's bash blocks, continuation lines
    joined, comments, pipes and redirections left out."""
    text = markdown.read_text(encoding="utf-8")
    blocks = [block.replace("\\\n", " ") for block in re.findall(r"```bash\n(.*?)```", text, re.S)]
    lines = [re.split(r" [<>] ", line.split("#")[0].split("|")[-1])[0].strip()
             for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if re.match(r"(\.venv/bin/)?mt ", line)]


@pytest.mark.parametrize("page", ["README.md", "docs/usage.md"])
def test_the_documented_commands_are_valid_command_lines(page):
    """Every `mt ...` line of the page's code blocks parses with the `mt` command's own parser."""
    commands = mt_command_lines(ROOT / page)
    assert len(commands) >= 8
    parser = build_parser()
    for argv in commands:
        parser.parse_args(argv)  # argparse exits (a test failure) on an unknown command or option


def recipe_rows() -> dict[str, str]:
    """docs/recipe.md's key tables: {"section.key": the value column}."""
    text = (ROOT / "docs" / "recipe.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| `(\w+\.\w+)` \| `([^`]*)` \|", text, re.M))


def test_docs_recipe_has_one_row_per_key_with_its_value():
    import yaml

    rows = recipe_rows()
    keys = {f"{section}.{key}": value for section, values in config_to_dict(Config()).items()
            for key, value in values.items()}
    assert set(rows) == set(keys)
    for key, shown in rows.items():
        assert yaml.safe_load(shown) == keys[key], key


def test_a_saved_config_explains_every_key_and_marks_what_differs(tmp_path):
    cfg = Config()
    cfg.train.lr = 0.001
    save_config(cfg, tmp_path / "config.yaml")
    text = (tmp_path / "config.yaml").read_text(encoding="utf-8")
    assert load_config(tmp_path / "config.yaml") == cfg
    sections = re.split(r"^(\w+):$", text, flags=re.M)[1:]  # [name, body, name, body, ...]
    for section, body in zip(sections[::2], sections[1::2]):
        for key in config_to_dict(cfg)[section]:
            line = next(x for x in body.splitlines() if x.strip().startswith(f"{key}:"))
            assert describe(section, key) in line, f"{section}.{key}"
    assert [x.split(":")[0].strip() for x in text.splitlines() if x.endswith("(changed)")] == ["lr"]


@pytest.mark.parametrize("removed", ["model.word_dropout=0.1", "train.ema_decay=0.999", "decode.coverage=0.2"])
def test_keys_of_removed_experiments_are_unknown_keys(removed):
    """Experiments that lost are gone from the config (docs/results.md keeps their results): their keys are
    errors like any unknown key, never silently ignored."""
    from mt.config import apply_overrides

    with pytest.raises(MTError, match=f"unknown config key '{removed.split('=')[0]}'"):
        apply_overrides(Config(), [removed])
