"""train.precision: auto takes bf16 exactly where the hardware has bf16 units, and says so."""

from __future__ import annotations

import pytest
import torch

import mt.device
from mt.config import TrainConfig, load_config
from mt.device import autocast, bf16_units, resolve_precision

CPU = torch.device("cpu")


@pytest.mark.parametrize(
    "flags, expected",
    [({"avx2", "amx_bf16", "amx_tile", "avx512_bf16"}, ("bf16", "AMX")),
     ({"avx2", "avx512f", "avx512_bf16"}, ("bf16", "AVX512-BF16")),
     ({"avx2", "avx512f"}, ("fp32", "no bf16 units"))],
)
def test_auto_follows_the_cpu_flags(monkeypatch, flags, expected):
    monkeypatch.setattr(mt.device, "_cpu_flags", lambda: flags)
    monkeypatch.setattr(mt.device, "_bf16_speedup", lambda: pytest.fail("x86 flags need no probe"))
    assert resolve_precision("auto", CPU) == expected
    assert torch.is_autocast_enabled("cpu") is False
    with autocast(CPU, "auto"):
        assert torch.is_autocast_enabled("cpu") is (expected[0] == "bf16")


@pytest.mark.parametrize("speedup, expected", [(2.4, ("bf16", "bf16 multiplies measured 2.4x faster")),
                                                (1.1, ("fp32", "no bf16 units")),
                                                (0.1, ("fp32", "no bf16 units"))])
def test_without_flags_a_probe_decides(monkeypatch, speedup, expected):
    """ARM and macOS have no x86 flags to read: a multiply probe measures whether bf16 pays."""
    monkeypatch.setattr(mt.device, "_cpu_flags", lambda: set())
    monkeypatch.setattr(mt.device, "_bf16_speedup", lambda: speedup)
    assert resolve_precision("auto", CPU) == expected


def test_the_probe_measures_a_plausible_ratio_quickly():
    import time
    mt.device._bf16_speedup.cache_clear()
    start = time.perf_counter()
    ratio = mt.device._bf16_speedup()
    assert time.perf_counter() - start < 2.0  # sub-second on every CPU we know; slack for a loaded CI machine
    assert 0.001 < ratio < 50  # emulated bf16 on AMD Zen 3 measured ~0.01 (100x slower than fp32)
    assert mt.device._bf16_speedup() == ratio  # measured once per process


def test_an_explicit_choice_is_kept(monkeypatch):
    monkeypatch.setattr(mt.device, "_cpu_flags", lambda: {"amx_bf16"})
    assert resolve_precision("fp32", CPU) == ("fp32", "as configured")
    monkeypatch.setattr(mt.device, "_cpu_flags", lambda: set())
    monkeypatch.setattr(mt.device, "_bf16_speedup", lambda: 0.2)
    assert resolve_precision("bf16", CPU) == ("bf16", "as configured")  # runs anywhere, only slowly


def test_this_machine_is_read_without_error():
    units = bf16_units(CPU)
    assert units in (None, "AMX", "AVX512-BF16") or units.startswith("bf16 multiplies measured")


def test_auto_is_the_default():
    assert TrainConfig().precision == "auto"
    assert load_config("configs/multi30k_en_de.yaml").train.precision == "auto"


def test_decoding_follows_decode_precision(trained_run):
    """decode.precision: greedy and beam search under bf16 autocast give (nearly always) the fp32 translations,
    attention comes back fp32 for the heatmaps, and int8 decoding stays fp32."""
    from mt.decode.translator import Translator
    from mt.run import RunDir

    translator = Translator.from_run(trained_run)
    assert translator.precision == "fp32"  # configs/tiny.yaml fixes it
    sources = RunDir.of(trained_run).encoded()["val"]["src"][:20]
    for beam in (1, 3):
        fp32 = [t.text for t in translator.translate_batch(sources, beam=beam)]
        translator.precision = "bf16"
        bf16 = translator.translate_batch(sources, beam=beam, return_attention=True)
        translator.precision = "fp32"
        assert sum(a == b.text for a, b in zip(fp32, bf16)) >= 14
        assert bf16[0].attention.dtype == torch.float32
    assert Translator.from_run(trained_run, quantize="int8").precision == "fp32"


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_validation_decodes_in_decode_precision(trained_run, monkeypatch, precision):
    """The greedy validation BLEU that picks best.pt during training (and the final choice between best.pt and the
    average) decodes in decode.precision, as `mt eval` does: otherwise the score training logs for best.pt is not
    the score it gets when it is used (they differed by 0.16 BLEU on a Multi30k run)."""
    import mt.tasks.validation
    from mt.config import apply_overrides
    from mt.model import build_model
    from mt.run import RunDir
    from mt.tasks.translation import TranslationTask

    autocast_dtypes = []
    real_search = mt.tasks.validation.greedy_search

    def spy(*args, **kwargs):
        autocast_dtypes.append(torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else None)
        return real_search(*args, **kwargs)

    monkeypatch.setattr(mt.tasks.validation, "greedy_search", spy)
    run = RunDir.of(trained_run)
    cfg = apply_overrides(run.config(), [f"decode.precision={precision}"])
    model = build_model(cfg.model, run.meta()["src_vocab_size"], run.meta()["tgt_vocab_size"])
    validation = TranslationTask(run, cfg, model, "cpu").validate(loss=1.0)
    assert autocast_dtypes and set(autocast_dtypes) == {torch.bfloat16 if precision == "bf16" else None}
    assert validation.record["val_bleu"] >= 0
