"""Models on the Hub, offline: the folder `mt export --hub-dir` writes (the model and its card), the upload up to
huggingface_hub's client (replaced here, the one stand-in), and `--model hf://USER/NAME` served from a Hub cache
filled beforehand, through huggingface_hub's own offline mode."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mt.cli import main
from mt.decode.translator import Translator

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def evaluated_run(trained_run, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("hubrun") / "run"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "eval", ignore_errors=True)  # other tests' reports: this run has one, test_toy's
    assert main(["eval", "--run", str(run), "--split", "test_toy", "--beam", "2"]) == 0
    return run


@pytest.fixture(scope="module")
def hub_folder(evaluated_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hub") / "en-de"
    assert main(["export", "--run", str(evaluated_run), "--hub-dir", str(folder), "--license", "mit"]) == 0
    return folder


def test_the_hub_folder_holds_the_model_and_a_card_with_its_results(hub_folder, evaluated_run):
    assert sorted(p.name for p in hub_folder.iterdir()) == ["README.md", "model.mt"]
    card = (hub_folder / "README.md").read_text(encoding="utf-8")
    front = yaml.safe_load(card.split("---")[1])
    assert front["language"] == ["en", "de"] and front["license"] == "mit" and front["pipeline_tag"] == "translation"
    (result,) = front["model-index"][0]["results"]
    report = json.loads((evaluated_run / "eval" / "test_toy.json").read_text())
    bleu = {m["type"]: m for m in result["metrics"]}["bleu"]
    assert result["dataset"]["name"] == "test_toy" and bleu["args"] == report["signature"]["bleu"]
    assert bleu["value"] == report["bleu"] and "tok:13a" in bleu["args"]
    assert "mt translate --model hf://USER/run" in card and 'Translator.from_pretrained("hf://USER/run")' in card
    assert "| test_toy |" in card and "Embeddings 32, hidden 64" in card
    exported = Translator.from_file(hub_folder / "model.mt")
    assert exported.translate("the dog runs", beam=2) == Translator.from_run(evaluated_run).translate("the dog runs",
                                                                                                      beam=2)


def test_push_to_hub_creates_the_repository_and_uploads_the_folder(trained_run, monkeypatch, capsys):
    import huggingface_hub

    calls = []

    class FakeApi:  # huggingface_hub's client: everything up to it is ours and runs for real
        def create_repo(self, repo_id, repo_type, private, exist_ok):
            calls.append(("create_repo", repo_id, repo_type, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, repo_id, folder_path, repo_type, commit_message):
            files = sorted(p.name for p in Path(folder_path).iterdir())
            card = (Path(folder_path) / "README.md").read_text(encoding="utf-8")
            calls.append(("upload_folder", repo_id, files, "hf://someone/en-de-lstm" in card))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    assert main(["export", "--run", str(trained_run), "--push-to-hub", "someone/en-de-lstm", "--private"]) == 0
    assert calls == [("create_repo", "someone/en-de-lstm", "model", True, True),
                     ("upload_folder", "someone/en-de-lstm", ["README.md", "model.mt"], True)]
    assert "uploaded to https://huggingface.co/someone/en-de-lstm" in capsys.readouterr().out


def fill_hub_cache(cache: Path, repo: str, folder: Path) -> None:
    """huggingface_hub's cache layout, as a download leaves it: a snapshot per commit, refs/main naming it."""
    owner, name = repo.split("/")
    root = cache / f"models--{owner}--{name}"
    shutil.copytree(folder, root / "snapshots" / COMMIT)
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(COMMIT)


def test_a_hub_model_is_read_from_the_cache_offline(hub_folder, tmp_path):
    cache = tmp_path / "hub-cache"
    fill_hub_cache(cache, "someone/en-de-lstm", hub_folder)
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    for spec in ("hf://someone/en-de-lstm", f"hf://someone/en-de-lstm@{COMMIT}"):
        out = subprocess.run([sys.executable, "-m", "mt", "translate", "--model", spec, "--beam", "2"],
                             input="the dog runs\n", capture_output=True, text=True, env=env, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert out.stdout == Translator.from_file(hub_folder / "model.mt").translate("the dog runs", beam=2) + "\n"
    missing = subprocess.run([sys.executable, "-m", "mt", "translate", "--model", "hf://someone/other"],
                             input="x\n", capture_output=True, text=True, env=env, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip() == ("error: hf://someone/other: not in the Hub cache, and the Hub cannot be reached "
                                      "(offline, or HF_HUB_OFFLINE is set)")


def test_a_malformed_hub_name_and_a_damaged_download_are_one_line_errors(hub_folder, tmp_path, monkeypatch, capsys):
    assert main(["translate", "--model", "hf://just-a-name"]) == 2
    assert "a Hub model is hf://USER/NAME or hf://USER/NAME@REVISION" in capsys.readouterr().err
    damaged = tmp_path / "damaged"
    shutil.copytree(hub_folder, damaged)
    data = bytearray((damaged / "model.mt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (damaged / "model.mt").write_bytes(bytes(data))
    fill_hub_cache(tmp_path / "cache", "someone/broken", damaged)
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert main(["translate", "--model", "hf://someone/broken"]) == 2  # the same validated loader as any file
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "model.mt" in err and len(err.splitlines()) == 1
