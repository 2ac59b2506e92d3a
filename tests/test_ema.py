"""train.ema_decay: the moving average of the weights (mt.ema), validated beside the trained weights and offered
as the final model."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_OVERRIDES, prepare_and_train

from mt.checkpoint import load_checkpoint
from mt.cli import main
from mt.config import ModelConfig, apply_overrides, load_config
from mt.ema import WeightAverage
from mt.errors import MTError
from mt.files import read_jsonl
from mt.model import build_model
from mt.run import RunDir
from mt.train import TranslationTask
from mt.translator import Translator
from mt.validate import validation_bleu


def test_average_follows_the_ramped_decay():
    layer = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    average = WeightAverage(layer, decay=0.9)
    expected = torch.ones(1, 2)
    for t, value in enumerate([3.0, -1.0, 5.0, 2.0, 7.0], start=1):
        with torch.no_grad():
            layer.weight.fill_(value)
        average.update()
        d = min(0.9, (1 + t) / (10 + t))  # 0.18, 0.25, ...: the cap 0.9 is reached at t = 80
        expected = d * expected + (1 - d) * value
        assert average.current_decay() == pytest.approx(d)
        assert torch.allclose(average.shadow[0], expected)
    with average.applied():
        assert torch.allclose(layer.weight, expected)
    assert torch.equal(layer.weight, torch.full((1, 2), 7.0))  # the trained weights are back


def test_tied_weights_are_averaged_once_and_saved_under_each_name():
    model = build_model(ModelConfig(emb_dim=8, hidden_dim=8, tie_embeddings=True), 20, 20)
    average = WeightAverage(model, decay=0.99)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    average.update()
    state = average.model_state()
    tied = ["decoder.embed.weight", "decoder.output.weight"]
    assert model.decoder.embed.weight is model.decoder.output.weight
    assert torch.equal(state[tied[0]], state[tied[1]])
    assert not torch.equal(state[tied[0]], model.state_dict()[tied[0]])  # averaged, not the trained weights
    restored = WeightAverage(model, decay=0.99)
    restored.load_state_dict(average.state_dict())
    assert restored.updates == 1 and all(torch.equal(a, b) for a, b in zip(restored.shadow, average.shadow))


def test_training_validates_the_average_and_offers_it_as_final(tmp_path, capsys):
    run = prepare_and_train(tmp_path, epochs=4, extra=["train.ema_decay=0.999", "train.keep_checkpoints=3",
                                                        "train.average_last=3"])
    out = capsys.readouterr().out
    valid = read_jsonl(run / "train_log.jsonl", "valid")
    assert all({"ema_val_loss", "ema_val_bleu", "val_bleu"} <= set(r) for r in valid)
    assert "| average: val loss" in out
    folder = run / "checkpoints"
    last = load_checkpoint(folder / "last.pt")
    assert last["ema"]["updates"] == valid[-1]["step"]
    assert "ema" not in load_checkpoint(folder / "best-ema.pt")  # weights only, like the kept checkpoints
    # best-ema.pt holds the average at its best validation: re-scored, it gives that validation's BLEU
    cfg = RunDir.of(run).config()
    translator = Translator.from_run(run, checkpoint="best-ema")
    task = TranslationTask(RunDir.of(run), cfg, translator.model, "cpu")
    bleu, _ = validation_bleu(translator.model, task.val_src, task.val_refs, task.tokenizer.decode_tgt, cfg.decode,
                              torch.device("cpu"))
    assert bleu == pytest.approx(max(r["ema_val_bleu"] for r in valid), abs=1e-6)
    final = load_checkpoint(folder / "final.pt")["final"]
    assert set(final["val_bleu"]) == {"best", "averaged", "ema"}
    assert final["val_bleu"]["ema"] == round(bleu, 2)
    assert final["chosen"] == max(final["val_bleu"], key=lambda k: (final["val_bleu"][k], k == "best"))
    assert "final model: " in out and "best-ema.pt" in out
    assert (run / "plots" / "curves.png").stat().st_size > 0


def test_a_resumed_average_equals_an_uninterrupted_one(tmp_path):
    straight = prepare_and_train(tmp_path / "a", epochs=2, extra=["train.ema_decay=0.999"])
    resumed = prepare_and_train(tmp_path / "b", epochs=1, extra=["train.ema_decay=0.999"])
    assert main(["train", "--run", str(resumed), *TINY_OVERRIDES, "train.max_epochs=2", "train.ema_decay=0.999"]) == 0
    a, b = (load_checkpoint(r / "checkpoints" / "last.pt")["ema"] for r in (straight, resumed))
    assert a["updates"] == b["updates"] > 0
    for name, tensor in a["weights"].items():
        assert torch.allclose(tensor, b["weights"][name], atol=1e-6), name


def test_ema_decay_outside_0_1_is_refused():
    with pytest.raises(MTError, match="train.ema_decay"):
        apply_overrides(load_config("configs/multi30k_en_de.yaml"), ["train.ema_decay=1.0"])
