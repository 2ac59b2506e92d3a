"""Model files and checkpoints as untrusted input: hundreds of damaged and crafted files, each a one-line error that
names what is wrong, or a model that loads; never a traceback, never gigabytes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from mt.cli import main

FUZZ = r'''
import collections, json, random, sys
import torch
from mt.checkpoint import load_checkpoint
from mt.decode.translator import model_from_state
from mt.errors import MTError
from mt.model_file import _weights_sha256, load_model_file, model_file_tokenizer

model_file, checkpoint, folder = sys.argv[1:4]
rng = random.Random(7)
counts = collections.Counter()


def load(path, kind):  # what Translator.from_file and from_run read, without their device set-up each time
    if kind == "file":
        contents = load_model_file(path)
        model_from_state(contents, str(path))
        model_file_tokenizer(contents, str(path))
    else:
        model_from_state(load_checkpoint(path), str(path))


def attempt(data, kind, expect=None, name="x"):
    """Write ``data`` (bytes or a dict to torch.save) and load it: a one-line MTError holding ``expect`` (any
    text where None), or a model; anything else escapes and fails the run."""
    path = f"{folder}/{name}.{kind}"
    if isinstance(data, bytes):
        open(path, "wb").write(data)
    else:
        torch.save(data, path)
    counts["tried"] += 1
    try:
        load(path, kind)
    except MTError as e:
        message = str(e)
        assert "\n" not in message and "Traceback" not in message, message
        assert expect is None or expect in message, (expect, message)
        counts["one-line errors"] += 1
        return
    assert expect is None, f"{expect!r} expected, but it loaded"
    counts["loaded"] += 1


for kind, source in (("file", model_file), ("ckpt", checkpoint)):
    raw = open(source, "rb").read()
    for _ in range(60):  # cut short anywhere
        attempt(raw[: rng.randrange(len(raw))], kind, "damaged")
    for _ in range(60):  # bytes flipped anywhere: a checksum, a zip record or the pickle says so, or it still loads
        data = bytearray(raw)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        attempt(bytes(data), kind)
    good = torch.load(source, weights_only=True)
    weights = good["model"]
    first = next(iter(weights))

    def variant(change):
        """``good`` changed by ``change``; a model file is signed again, as a deliberate forger would (the
        checksums inside a file detect damage, not tampering), so the checks after the checksum are reached."""
        state = {**good, "model": dict(weights), "config": json.loads(json.dumps(good["config"]))}
        change(state)
        signable = isinstance(state.get("model"), dict) and all(
            isinstance(t, torch.Tensor) and t.numel() < 10**7 for t in state["model"].values())
        if kind == "file" and signable and isinstance(state.get("checksums"), dict):
            state["checksums"] = {**state["checksums"], "weights_sha256": _weights_sha256(state["model"])}
        return state

    for key in [k for k in good if k not in ("format",)]:  # every field missing in turn
        needed = key in ("model", "config", "vocab", "tokenizer", "checksums", "languages", "int8")
        attempt(variant(lambda s: s.pop(key)), kind, "" if needed else None)  # "": an error, whatever its words
    for bad in (None, 3, "x", [1], {"a": 1}, b"x"):  # the weights of the wrong type
        attempt(variant(lambda s: s.update(model=bad)), kind, "model")
    attempt(variant(lambda s: s["model"].update({first: torch.zeros(1).expand(2_000_000_000)})), kind, "claims")
    attempt(variant(lambda s: s["model"].update({first: "not a tensor"})), kind, "not a tensor")
    attempt(variant(lambda s: s["model"].pop(first)), kind, "is missing")
    attempt(variant(lambda s: s["model"].update({"extra.weight": torch.zeros(2)})), kind, "not part of the model")
    attempt(variant(lambda s: s["model"].update({first: torch.zeros(3, 5)})), kind, "has shape")
    for vocab in ([2**31, 2**31], [0, 5], ["a", "b"], [1], None, [True, 5]):
        attempt(variant(lambda s: s.update(vocab=vocab)), kind, "vocab" if not (isinstance(vocab, list) and
                len(vocab) == 2 and all(type(v) is int and v > 0 for v in vocab)) else "has shape")
    for key, value, expect in (("model", "emb_dim", 1_000_000), ("model", "hidden_dim", 3),
                               ("model", "layers", 10**9), ("decode", "beam", 10**9),
                               ("decode", "max_len_ratio", 1e12), ("data", "max_tokens", -1),
                               ("model", "cell", "transformer"), ("model", "no_such_key", 1)):
        attempt(variant(lambda s: s["config"].setdefault(key, {}).update({value: expect})), kind, None)
    attempt(variant(lambda s: s.update(config=[1, 2])), kind, None)
    attempt([1, 2, 3], kind, "not")
    attempt(b"", kind, "damaged")

file_good = torch.load(model_file, weights_only=True)
for field, bad in (("languages", "en"), ("tokenizer", None), ("checksums", 5), ("training", []),
                   ("evaluations", "x"), ("int8", "yes")):
    attempt({**file_good, field: bad}, "file", f"field '{field}'")
for field, bad in (("src", 5), ("tgt", "x"), ("names", ["../../etc/passwd"]), ("names", "a")):
    attempt({**file_good, "tokenizer": {**file_good["tokenizer"], field: bad}}, "file", "tokenizer")
attempt({**file_good, "checksums": {**file_good["checksums"], "weights_sha256": "0" * 64}}, "file", "checksum")
attempt({**file_good, "format": "mt-model/9"}, "file", "not a model file")
# VmHWM, the peak of this process's own memory (ru_maxrss would carry the forking parent's peak across exec)
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({**counts, "peak_rss_mb": peak_kb // 1024}))
'''


def test_hundreds_of_damaged_and_crafted_files_are_one_line_errors(trained_run: Path, tmp_path: Path):
    model_file = tmp_path / "model.mt"
    assert main(["export", "--run", str(trained_run), "--output", str(model_file)]) == 0
    checkpoint = trained_run / "checkpoints" / "best.pt"
    folder = tmp_path / "mutants"
    folder.mkdir()
    result = subprocess.run([sys.executable, "-c", FUZZ, str(model_file), str(checkpoint), str(folder)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    counts = json.loads(result.stdout.strip().splitlines()[-1])
    print(counts)  # the numbers for the notes: files tried, one-line errors, loads, peak memory
    assert counts["tried"] >= 300 and counts["tried"] == counts["one-line errors"] + counts.get("loaded", 0)
    assert counts["peak_rss_mb"] < 1024  # a zero-stride tensor claiming 8 GB is refused before anything copies it
