"""Training end to end on a synthetic corpus: loss falls, files appear, checkpoints round-trip, resume continues."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TINY_OVERRIDES, free_port

from mt.checkpoint import load_checkpoint, save_checkpoint
from mt.cli import main
from mt.config import TrainConfig, config_to_dict, load_config
from mt.data.batching import collate, make_batches
from mt.decode.translator import Translator
from mt.device import training_device
from mt.errors import MTError
from mt.files import read_jsonl
from mt.model import build_model
from mt.model.loss import SummedLoss
from mt.plots import LiveCurves
from mt.recipes.rdrop import PROBE, updates_in_budget
from mt.run import RunDir
from mt.tasks.translation import TranslationTask
from mt.train.loop import Trainer
from mt.train.progress import Progress
from mt.train.stopping import any_rank, rank0_decides, rank_values, same_resumed_step, stop_reason


def records(run: Path, kind: str) -> list[dict]:
    return read_jsonl(run / "train_log.jsonl", kind)


def test_training_learns_and_writes_everything(trained_run):
    train, valid = records(trained_run, "train"), records(trained_run, "valid")
    assert len(valid) == 8
    assert train[-1]["loss"] < 0.5 * train[0]["loss"]
    assert valid[-1]["val_loss"] < valid[0]["val_loss"]
    assert valid[-1]["val_bleu"] > 30, "the toy task (reverse + word-by-word translation) should be learnt"
    for name in ("checkpoints/best.pt", "checkpoints/last.pt", "plots/curves.png", "config.yaml"):
        assert (trained_run / name).is_file(), name
    state = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] == 8 and state["progress"]["step"] == valid[-1]["step"]
    assert state["config"]["model"]["hidden_dim"] == 64
    facts = Translator.from_run(trained_run).facts  # what the demo's model panel shows
    assert facts["best_val_bleu"] == max(r["val_bleu"] for r in valid) and facts["epoch"] == 8


def test_curves_are_redrawn_at_most_once_a_minute_and_at_the_end(trained_run, tmp_path):
    out = tmp_path / "curves.png"
    curves = LiveCurves(trained_run / "train_log.jsonl", out, every_seconds=3600)
    curves.flush()
    assert not out.exists()  # nothing validated: nothing new to draw
    curves.validated()
    assert not out.exists()  # within the minute: not yet
    curves.flush()  # the session's end
    assert out.stat().st_size > 10_000
    out.unlink()
    curves.flush()
    assert not out.exists()  # drawn already
    LiveCurves(trained_run / "train_log.jsonl", out, every_seconds=0).validated()
    assert out.is_file()  # the minute has passed: drawn at the validation


def replay_plateau(valid: list[dict], limits: TrainConfig) -> list[float]:
    """The learning rate after each validation that the plateau rule of ``limits`` gives for the logged values:
    decay by lr_decay after lr_patience validations without beating the best by plateau_threshold (relative),
    never below min_lr."""
    lr, best, bad, rates = limits.lr, -math.inf, 0, []
    for record in valid:
        x = -record["val_loss"] if limits.plateau_metric == "loss" else record["val_bleu"]
        if best == -math.inf or x > best + limits.plateau_threshold * abs(best):
            best, bad = x, 0
        else:
            bad += 1
            if bad >= limits.lr_patience and lr > limits.min_lr:
                lr, bad = lr * limits.lr_decay, 0
        rates.append(max(lr, limits.min_lr))
    return rates


def test_default_plateau_schedule_follows_its_rule(trained_run):
    """The shared fixture trains with the default schedule: the learning rate after each validation is what the
    plateau rule gives for the values logged (the trainer feeds it the configured metric, once per validation)."""
    limits = load_config(trained_run / "config.yaml").train
    assert limits.schedule == "plateau"
    valid = records(trained_run, "valid")
    assert [r["lr"] for r in valid] == pytest.approx(replay_plateau(valid, limits))


def test_plateau_decays_when_the_validation_loss_stalls(tmp_path, train_tiny):
    """A rate too small to move the model: the loss stands still, so each validation is a plateau."""
    run = train_tiny(3, extra=["train.schedule=plateau", "train.plateau_metric=loss", "train.lr_patience=1",
                                                       "train.plateau_threshold=0.01", "train.lr=1e-6",
                                                       "train.min_lr=1e-9"])
    valid = records(run, "valid")
    losses = [r["val_loss"] for r in valid]
    assert max(losses) - min(losses) < 0.01 * losses[0]
    assert [r["lr"] for r in valid] == pytest.approx([1e-6, 5e-7, 2.5e-7])


def test_default_schedule_never_decays_while_the_loss_improves_by_1_percent(trained_run):
    """The plateau rule, on the fixture's log: a validation whose loss is 1% below the best that counted as
    progress never decays the rate. The fixture's rule is the default of the code and of the shipped config."""
    limits = load_config(trained_run / "config.yaml").train
    for rule in (limits, TrainConfig(), load_config("configs/multi30k_en_de.yaml").train):
        assert (rule.schedule, rule.plateau_metric, rule.plateau_threshold) == ("plateau", "loss", 0.01)
    lr_before, best = limits.lr, math.inf
    for record in records(trained_run, "valid"):
        if record["val_loss"] < 0.99 * best:
            best = record["val_loss"]
            assert record["lr"] == pytest.approx(lr_before), record
        lr_before = record["lr"]


def test_tiny_epochs_validate_only_after_validate_min_steps(tmp_path, train_tiny):
    """A corpus whose epochs are a few updates long: validations wait for 40 updates (at an epoch's end), and the
    run still validates when it stops."""
    run = train_tiny(6, extra=["train.validate_min_steps=40"])
    train, valid = records(run, "train"), records(run, "valid")
    steps = [r["step"] for r in valid]
    assert 1 < len(steps) < 6, steps
    assert all(b - a >= 40 for a, b in zip([0] + steps[:-2], steps[:-1])), steps
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["progress"]["epoch"] == 6 and steps[-1] == state["progress"]["step"] == train[-1]["step"]


def test_validate_every_validates_within_an_epoch_and_resumes_there(tmp_path, train_tiny, monkeypatch):
    """Validation every 4 updates in a longer epoch: each one is seen by the plateau rule; a run stopped mid-epoch
    (Ctrl-C after update 10) and resumed continues at the batch it had reached: the same final weights."""
    extra = ["train.validate_every=4", "train.schedule=plateau", "train.lr=1e-4", "train.plateau_threshold=0.5",
             "train.lr_patience=1", "train.min_lr=1e-9"]
    run = train_tiny(1, extra=extra)
    valid = records(run, "valid")
    steps = [r["step"] for r in valid]
    assert steps[:3] == [4, 8, 12] and all(r["epoch"] == 0 for r in valid[:-1]), steps
    assert [r["lr"] for r in valid[:3]] == pytest.approx([1e-4, 5e-5, 2.5e-5])  # no 50% progress: plateaus
    again = tmp_path / "again"
    shutil.copytree(run / "data", again / "data")
    shutil.copy(run / "config.yaml", again / "config.yaml")
    step = Trainer._step

    def ctrl_c_after_update_10(self, batch, bar):
        step(self, batch, bar)
        self.stop.requested = self.stop.requested or self.progress.step == 10

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "_step", ctrl_c_after_update_10)
        assert main(["train", "--run", str(again), *TINY_OVERRIDES, "train.max_epochs=1", *extra]) == 130
    middle = load_checkpoint(again / "checkpoints" / "last.pt")["progress"]
    assert (middle["step"], middle["epoch"], middle["batch_in_epoch"]) == (10, 0, 10)
    assert main(["train", "--run", str(again), *TINY_OVERRIDES, "train.max_epochs=1", *extra]) == 0
    resumed, full = (load_checkpoint(r / "checkpoints" / "last.pt") for r in (again, run))
    assert resumed["progress"]["step"] == full["progress"]["step"]
    for name, weight in full["model"].items():
        assert torch.equal(resumed["model"][name], weight), name


def test_validate_minutes_validates_within_an_epoch(tmp_path, train_tiny):
    """train.validate_minutes, the alternative for steps of unknown length: a few milliseconds make every update
    a validation, mid-epoch."""
    run = train_tiny(1, extra=["train.validate_minutes=0.00001", "train.batch_tokens=1500"])
    last = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"]
    steps = [r["step"] for r in records(run, "valid")]
    assert last > 2 and steps == list(range(1, last + 1)), steps


def test_memory_mapped_batches_equal_the_in_memory_ones(trained_run):
    """The training split is read batch by batch from the Arrow files: the lengths, the epoch's batches and
    every padded batch equal what the whole split loaded as Python lists gives."""
    run = RunDir.of(trained_run)
    cfg = run.config()
    task = TranslationTask(run, cfg, build_model(cfg.model, *(run.meta()[k] for k in ("src_vocab_size",
                                                                                      "tgt_vocab_size"))), "cpu")
    split = run.encoded()["train"]
    src, tgt = list(split["src_ids"]), list(split["tgt_ids"])
    assert task.src_lens.tolist() == [len(s) for s in src] and task.tgt_lens.tolist() == [len(t) for t in tgt]
    batches = task.epoch_batches(seed=5)
    assert batches == make_batches([len(s) for s in src], [len(t) for t in tgt], cfg.train.batch_tokens, True, 5)
    for indices in batches:
        got, expected = task.batch(indices), collate([src[i] for i in indices], [tgt[i] for i in indices], indices)
        for name in ("src", "src_lens", "tgt_in", "tgt_out"):
            assert torch.equal(getattr(got, name), getattr(expected, name)), name
        assert got.n_tokens == expected.n_tokens


def test_checkpoint_round_trip(trained_run, tmp_path):
    translator = Translator.from_run(trained_run, checkpoint="last")
    state = load_checkpoint(trained_run / "checkpoints" / "last.pt")
    copy = tmp_path / "copy.pt"
    save_checkpoint({k: v for k, v in state.items() if k != "format"}, copy)
    again = Translator.from_run(trained_run, checkpoint=str(copy))
    src = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        a = translator.model(src, torch.tensor([4]), torch.tensor([[2, 9, 10]]))
        b = again.model(src, torch.tensor([4]), torch.tensor([[2, 9, 10]]))
    assert torch.equal(a, b)
    sentences = ["the dog runs", "a red cat sits near the man"]
    assert [t.text for t in translator.translate_batch(sentences)] == [t.text for t in again.translate_batch(sentences)]


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_is_one_line_error(trained_run, tmp_path, damage):
    path = tmp_path / "bad.pt"
    data = (trained_run / "checkpoints" / "last.pt").read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(MTError, match="bad.pt is damaged or not a checkpoint") as err:
        load_checkpoint(path)
    assert "\n" not in str(err.value)


def test_resume_continues_step_count(tmp_path, capsys, train_tiny):
    run = train_tiny(1)
    first = records(run, "valid")[-1]["step"]
    capsys.readouterr()
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0
    out = capsys.readouterr().out
    assert f"resuming from last.pt: step {first}, epoch 2" in out
    valid = records(run, "valid")
    assert [r["epoch"] for r in valid] == [1, 2]
    assert valid[1]["step"] == 2 * first  # the same number of batches again, counting on
    saved = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]
    assert saved["val_seconds"] == pytest.approx(valid[1]["seconds"])  # a resumed budget reserves it
    # already finished: nothing more to do
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0
    assert "stopped (max_epochs) at step" in capsys.readouterr().out
    assert len(records(run, "valid")) == 2


def test_model_config_change_on_resume_is_refused(tmp_path, capsys, train_tiny):
    run = train_tiny(1)
    capsys.readouterr()
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "model.hidden_dim=48", "train.max_epochs=2"]) == 2
    assert "has a different model config" in capsys.readouterr().err


def test_a_run_saved_before_a_model_key_existed_resumes(tmp_path, capsys, train_tiny):
    """A checkpoint's model config lacks a key added to the toolkit later: it has that key's default, so the run
    resumes (it used to be refused as a different model)."""
    run = train_tiny(1)
    path = run / "checkpoints" / "last.pt"
    state = load_checkpoint(path)
    del state["config"]["model"]["init_encoder_from"]
    save_checkpoint(state, path)
    capsys.readouterr()
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=2"]) == 0
    assert "resuming from last.pt" in capsys.readouterr().out
    assert [r["epoch"] for r in records(run, "valid")] == [1, 2]


def test_a_checkpoint_of_another_format_version_is_a_one_line_error(tmp_path, prepared_tiny):
    """Checkpoint format 1 is what this version reads; another version, or a config with a key that does not exist,
    is refused in one line naming the file."""
    run = tmp_path / "run"
    shutil.copytree(prepared_tiny, run)
    meta = RunDir.of(run).meta()
    cfg = RunDir.of(run).config()
    model = build_model(cfg.model, meta["src_vocab_size"], meta["tgt_vocab_size"])
    state = {"model": model.state_dict(), "config": config_to_dict(cfg), "tokenizer_sha256": meta["tokenizer_sha256"],
             "vocab": [meta["src_vocab_size"], meta["tgt_vocab_size"]]}
    torch.save({**state, "format": 2}, run / "newer.pt")
    with pytest.raises(MTError, match=r"newer.pt has checkpoint format 2; this version of mt reads format 1"):
        Translator.from_run(run, checkpoint=str(run / "newer.pt"))
    old = config_to_dict(cfg)
    old["model"]["word_dropout"] = 0.1  # a key of an earlier version
    save_checkpoint({**state, "config": old}, run / "old.pt")
    with pytest.raises(MTError, match=r"old.pt: unknown config key 'model.word_dropout'"):
        Translator.from_run(run, checkpoint=str(run / "old.pt"))


def test_time_budget_stops_before_validations_a_step_apart():
    """A 12-minute run whose epoch ended at 11.74 minutes, validation taking 15 s, once validated after each of
    the next two steps, and each of those validations halved the learning rate: it must stop there instead, also
    when resumed (the validation time travels in the checkpoint's progress)."""
    limits = TrainConfig(max_epochs=100, patience=5)
    assert stop_reason(Progress(epoch=3, val_seconds=15), limits, 11.74 * 60, 12 * 60) == "max_minutes"
    assert stop_reason(Progress(epoch=3, val_seconds=15), limits, 10.0 * 60, 12 * 60) is None  # a minute to train
    assert stop_reason(Progress(epoch=3, val_seconds=15), limits, 10.0 * 60, 0) is None  # no budget
    assert stop_reason(Progress(epoch=100), limits, 0.0, 0) == "max_epochs"
    assert stop_reason(Progress(bad_validations=5), limits, 0.0, 0) == "early_stopping"


def test_train_without_prepared_run_is_one_line(tmp_path, capsys):
    assert main(["train", "--run", str(tmp_path / "nothing")]) == 2
    assert capsys.readouterr().err.strip().startswith("error: run folder not found")


def _two_node_launch(run: Path, port: int, extra: list[str]) -> subprocess.Popen:
    """One "machine" of a two-node torchrun: one process, c10d rendezvous on 127.0.0.1:port."""
    return subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1", "--rdzv_backend",
         "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "two-nodes", "--max_restarts", "0",
         "-m", "mt", "train", "--run-dir", str(run), *TINY_OVERRIDES, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_nodes_with_a_c10d_rendezvous(tmp_path, train_tiny):
    """torchrun --nnodes 2 (one process per "node", each with its own copy of RUN, as on two machines without a
    shared filesystem): DistributedDataParallel over gloo, each rank takes half the batches, both ranks end with
    the same weights, which learnt; rank 0 alone writes (a resume there would find no checkpoint on the other
    node: test_ranks_agree_when_to_stop)."""
    single = train_tiny(1, name="single")
    runs = [tmp_path / f"node{n}" / "run" for n in (0, 1)]
    for run in runs:
        shutil.copytree(single / "data", run / "data")
        shutil.copy(single / "config.yaml", run / "config.yaml")
    port = free_port()
    nodes = [_two_node_launch(run, port, ["train.max_epochs=1"]) for run in runs]
    outputs = [node.communicate(timeout=300) for node in nodes]
    for node, (_, err) in zip(nodes, outputs):
        assert node.returncode == 0, err[-2000:]
    writers = [n for n, run in enumerate(runs) if (run / "checkpoints" / "last.pt").is_file()]
    assert len(writers) == 1 and not (runs[1 - writers[0]] / "checkpoints").exists()  # rank 0 alone writes
    out = outputs[writers[0]][0]
    assert "x 2 processes" in out and "the weights of all 2 processes are identical" in out
    valid = records(runs[writers[0]], "valid")
    steps_single = records(single, "valid")[-1]["step"]
    assert len(valid) == 1 and valid[0]["step"] in (steps_single // 2, (steps_single + 1) // 2)
    assert valid[0]["val_loss"] < 3.5  # below log(60): both ranks' updates reached the one model that learnt
    assert Translator.from_run(runs[writers[0]]).facts["step"] == valid[0]["step"]  # rank 0's checkpoint is logged
    assert not list((runs[writers[0]] / "checkpoints").glob(".*tmp*"))


def test_every_session_checks_that_the_ranks_resumed_at_one_step(train_tiny, monkeypatch):
    """The check of test_ranks_agree_when_to_stop runs when a session starts, with the step it resumed at."""
    import mt.train.loop as loop

    run = train_tiny(1)
    checked = []
    monkeypatch.setattr(loop, "same_resumed_step", lambda device, step, root: checked.append((step, root)))
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=1"]) == 0  # nothing left to train
    assert checked == [(load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"], run)]


def _rank_votes(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        # Only rank 1 was interrupted; only rank 0's clock says the budget is spent.
        votes = (any_rank(torch.device("cpu"), rank == 1, rank == 0, False),
                 rank0_decides("max_minutes" if rank == 0 else None))
        same_resumed_step(torch.device("cpu"), 7, Path("runs/x"))  # both at step 7: nothing to say
        try:  # two machines that do not share RUN: only rank 0's has the checkpoints it wrote
            same_resumed_step(torch.device("cpu"), 20 if rank == 0 else 0, Path("runs/x"))
            results[rank] = (*votes, None)
        except MTError as e:
            results[rank] = (*votes, str(e))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_ranks_agree_when_to_stop():
    """A stop seen by one rank (its Ctrl-C, its clock) stops every rank, for the same reason, at the same step;
    ranks that resumed at different steps (machines without a shared RUN) all stop, with one line that says why."""
    assert any_rank(torch.device("cpu"), True, False) == (True, False)  # not distributed: the flags themselves
    assert rank0_decides("early_stopping") == "early_stopping"
    same_resumed_step(torch.device("cpu"), 20, Path("runs/x"))  # not distributed: nothing to compare
    with torch.multiprocessing.Manager() as manager:
        results = manager.dict()
        torch.multiprocessing.spawn(_rank_votes, args=(free_port(), results), nprocs=2, join=True)
        results = dict(results)
    why = "the processes resumed at different steps (20, 0 by rank): every machine must see the same runs/x " \
          "(a shared filesystem)"
    assert results == {0: ((True, True, False), "max_minutes", why), 1: ((True, True, False), "max_minutes", why)}


def _gloo_threads() -> int:
    """Threads of this process that gloo started ("pt_gloo_runloop", "gloo_tcp_loop")."""
    return sum("gloo" in (task / "comm").read_text() for task in Path("/proc/self/task").iterdir())


def _rank_trains_and_leaves(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_WORLD_SIZE="2")
    with training_device("cpu", 1) as device:
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 3))
        model(torch.randn(2, 3)).sum().backward()
        rank_values(device, 1.0)  # the collectives that end a training run
        dist.barrier()
        inside = _gloo_threads()
        del model  # as train() drops its trainer before leaving
    results[rank] = (inside, _gloo_threads(), dist.is_initialized())


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads in /proc")
def test_ranks_leave_the_process_group_with_its_threads():
    """After training, each rank destroys its process group and gloo's threads with it, before Python shuts
    down: a gloo thread still freeing a collective's tensors then aborted the process (6 runs in 219)
    (SIGABRT, "terminate called without an active exception"), which the DDP test above caught in CI."""
    with torch.multiprocessing.Manager() as manager:
        results = manager.dict()
        torch.multiprocessing.spawn(_rank_trains_and_leaves, args=(free_port(), results), nprocs=2, join=True)
        results = dict(results)
    for rank in (0, 1):
        inside, after, still_joined = results[rank]
        assert inside > 0  # there were threads to stop
        assert after == 0 and not still_joined


def test_bf16_autocast_trains(tmp_path, capsys, train_tiny):
    """train.precision=bf16 runs the same loop under autocast (the loss's multiplies in bf16, its sums in fp32);
    checkpoints stay fp32."""
    run = train_tiny(1, extra=["train.precision=bf16"])
    assert "precision: bf16 (as configured)" in capsys.readouterr().out
    valid = records(run, "valid")
    assert len(valid) == 1 and valid[0]["val_loss"] < 4.2  # below log(60): it learnt something
    state = load_checkpoint(run / "checkpoints" / "best.pt")
    assert {w.dtype for w in state["model"].values() if w.is_floating_point()} == {torch.float32}


def test_shared_embeddings_train_save_and_load_as_one_matrix(tmp_path, capsys, train_tiny):
    """model.share_embeddings through the whole pipeline: the checkpoint holds the one matrix under both names,
    and the translator that loads it shares it again."""
    run = train_tiny(1, extra=["model.share_embeddings=true", "model.tie_embeddings=true"])
    assert records(run, "valid")[0]["val_loss"] < 4.2  # below log(60): it learnt something
    weights = load_checkpoint(run / "checkpoints" / "best.pt")["model"]
    assert torch.equal(weights["encoder.embed.weight"], weights["decoder.embed.weight"])
    model = Translator.from_run(run).model
    assert model.encoder.embed.weight is model.decoder.embed.weight is model.decoder.output.weight
    assert Translator.from_run(run).translate_batch(["the dog runs"])[0].text


def test_validation_checkpoints_kept_and_averaged(tmp_path, capsys, train_tiny):
    run = train_tiny(4, extra=["train.keep_checkpoints=3"])
    steps = [r["step"] for r in records(run, "valid")]
    kept = sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))
    assert len(steps) == 4 and kept == [f"step-{s:08d}.pt" for s in steps[1:]]
    assert main(["average", "--run", str(run), "--last", "3"]) == 0
    averaged = load_checkpoint(run / "checkpoints" / "averaged.pt")
    parts = [load_checkpoint(run / "checkpoints" / name)["model"] for name in kept]
    name = "decoder.output.weight"
    assert torch.allclose(averaged["model"][name], sum(p[name] for p in parts) / 3, atol=1e-6)
    assert Translator.from_run(run, checkpoint="averaged").translate_batch(["the dog runs"])[0].text
    assert main(["average", "--run", str(run), "--last", "5"]) == 2
    assert "fewer than --last 5" in capsys.readouterr().err


def test_rdrop_guard_projects_updates_at_the_measured_pace():
    # 30 s an update after 60 updates and 90 s: the other 3,510 s of an hour hold 117 more
    assert updates_in_budget(60, 90.0, 3600.0, 30.0) == pytest.approx(177)
    assert updates_in_budget(60, 4000.0, 3600.0, 30.0) == 60  # past the budget: what it has


@pytest.fixture
def rdrop_passes(monkeypatch) -> list[float]:
    """The R-Drop weight of every training forward pass of SummedLoss, in order."""
    passes = []
    plain_forward = SummedLoss.forward

    def counting_forward(self, *inputs, targets):
        if self.model.training:
            passes.append(self.rdrop)
        return plain_forward(self, *inputs, targets=targets)

    monkeypatch.setattr(SummedLoss, "forward", counting_forward)
    return passes


@pytest.mark.parametrize("min_updates, on", [(10**9, False), (1, True)])
def test_rdrop_stays_on_only_when_the_budget_holds_enough_updates(train_tiny, capsys, rdrop_passes, min_updates,
                                                                  on):
    """train.rdrop_min_updates: after update 60 the pace of updates 11-60 gives the updates the 60-minute budget
    holds (a tiny run: hundreds of thousands, never a billion); below the minimum the rest of the run, and a
    resumed run, trains without R-Drop. The choice is printed once, logged, and saved in the checkpoint."""
    extra = ["train.rdrop_alpha=1", f"train.rdrop_min_updates={min_updates}", "train.max_minutes=60"]
    run = train_tiny(4, extra=extra)
    out = capsys.readouterr().out
    steps = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"]
    assert steps > PROBE[1] and rdrop_passes[:PROBE[1]] == [1.0] * PROBE[1]  # R-Drop while the pace is measured
    assert rdrop_passes[PROBE[1]:] == [1.0 if on else 0.0] * (steps - PROBE[1])
    (decision,) = records(run, "rdrop")
    assert decision["step"] == PROBE[1] and decision["on"] is on and 1e4 < decision["updates_in_budget"] < 1e9
    assert out.count("R-Drop") == 1 and ("R-Drop stays on" in out) is on
    assert load_checkpoint(run / "checkpoints" / "last.pt")["hooks"]["rdrop"] == {"decided": True, "on": on}
    rdrop_passes.clear()  # resumed, the choice holds without being made again
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, *extra, "train.max_epochs=5"]) == 0
    assert set(rdrop_passes) == {1.0 if on else 0.0} and "R-Drop" not in capsys.readouterr().out


@pytest.mark.parametrize("setting", ["train.max_minutes=0", "train.rdrop_min_updates=0"])
def test_rdrop_without_a_budget_or_a_minimum_stays_on(train_tiny, capsys, rdrop_passes, setting):
    run = train_tiny(3, extra=["train.rdrop_alpha=1", "train.rdrop_min_updates=1000000000",
                               "train.max_minutes=60", setting])
    assert set(rdrop_passes) == {1.0} and records(run, "rdrop") == [] and "R-Drop" not in capsys.readouterr().out


def test_training_with_rdrop_learns(tmp_path, train_tiny):
    run = train_tiny(3, extra=["train.rdrop_alpha=5", "train.schedule=constant"])
    losses = [r["loss"] for r in read_jsonl(run / "train_log.jsonl") if r.get("kind") == "train"]
    assert losses[-1] < losses[0]


def test_training_ends_with_the_better_of_best_and_averaged_on_validation(capsys, train_tiny, monkeypatch):
    """train.average_last: at the end the newest kept checkpoints are averaged and compared with best.pt on the
    validation split; final.pt is the winner, with the comparison in it, and eval/translate load it by default.
    Training on drops the stale final.pt until it has chosen again."""
    from mt.tasks.validation import validation_bleu

    run = train_tiny(4, extra=["train.keep_checkpoints=3", "train.average_last=3"])
    out = capsys.readouterr().out
    state = load_checkpoint(run / "checkpoints" / "final.pt")
    final = state["final"]
    assert final["averaged"] == sorted(p.name for p in (run / "checkpoints").glob("step-*.pt"))
    assert set(final["val_bleu"]) == {"best", "averaged"}
    assert final["chosen"] == max(final["val_bleu"], key=lambda k: (final["val_bleu"][k], k == "best"))
    assert "final model: " in out
    chosen = load_checkpoint(run / "checkpoints" / ("averaged.pt" if final["chosen"] == "averaged" else "best.pt"))
    for name, tensor in state["model"].items():
        assert torch.equal(tensor, chosen["model"][name]), name
    # the recorded score is what the saved weights give
    translator = Translator.from_run(run)
    assert translator.facts["checkpoint"].endswith("final.pt") and translator.facts["final"] == final
    task_cfg = RunDir.of(run).config()
    task = TranslationTask(RunDir.of(run), task_cfg, translator.model, "cpu")
    bleu, _ = validation_bleu(translator.model, task.val_src, task.val_refs, task.tokenizer.decode_tgt,
                              task_cfg.decode, torch.device("cpu"))
    assert round(bleu, 2) == final["val_bleu"][final["chosen"]]
    assert main(["eval", "--run", str(run), "--split", "test_toy"]) == 0
    report = json.loads((run / "eval" / "test_toy.json").read_text())
    assert report["checkpoint"].endswith("final.pt") and report["final"]["chosen"] == final["chosen"]
    # training on: the stale final.pt is gone while it trains, and a new one, chosen among the new kept
    # checkpoints, comes back at the end
    present_at_validation = []
    validate = Trainer._validate
    monkeypatch.setattr(Trainer, "_validate", lambda self: present_at_validation.append(
        (run / "checkpoints" / "final.pt").exists()) or validate(self))
    assert main(["train", "--run", str(run), *TINY_OVERRIDES, "train.max_epochs=5", "train.keep_checkpoints=3",
                 "train.average_last=3"]) == 0
    assert present_at_validation == [False]
    again = load_checkpoint(run / "checkpoints" / "final.pt")["final"]
    step = load_checkpoint(run / "checkpoints" / "last.pt")["progress"]["step"]
    assert again["averaged"][-1] == f"step-{step:08d}.pt" != final["averaged"][-1]


def test_without_a_final_model_best_is_loaded(tmp_path, trained_run):
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    (run / "checkpoints" / "final.pt").unlink()  # as after a Ctrl-C: training has not chosen
    translator = Translator.from_run(run)
    assert translator.facts["checkpoint"].endswith("best.pt") and translator.facts["final"] is None


def test_optional_sections_of_a_known_version_are_read_and_others_left_aside(caplog):
    """Later additions to checkpoints and model files come as versioned sections: a reader takes the version it
    knows and loads the rest of the file without the others."""
    from mt.checkpoint import optional_section

    state = {"format": 1, "sections": {"lexicon": {"version": 1, "pairs": [[4, 5]]}, "card": {"version": 3}}}
    assert optional_section(state, "lexicon", 1) == {"version": 1, "pairs": [[4, 5]]}
    assert optional_section(state, "card", 1) is None and "card section of version 3 ignored" in caplog.text
    assert optional_section(state, "lengths", 1) is None and optional_section({"format": 1}, "card", 1) is None


def test_a_huge_validation_line_is_translated_in_parts_that_fit(trained_run):
    """A validation line over data.max_tokens is cut as `mt translate` cuts it, so each validation decodes a few
    sentences' worth instead of one search over all of it; its translation is its parts' joined."""
    from mt.tasks.validation import parts_that_fit, validation_bleu

    translator = Translator.from_run(trained_run)
    tok, limit = translator.tokenizer, 20
    lines = ["the dog runs", "the big red dog runs near the small cat " * 300]
    ids = tok.encode_src(lines)
    parts = parts_that_fit(lines, ids, tok.encode_src, limit)
    assert parts[0] == [ids[0]]
    assert len(parts[1]) > 100 and all(0 < len(p) <= limit for p in parts[1])
    assert sum(map(len, parts[1])) == len(ids[1])  # cut at spaces: the same subwords, none lost
    bleu, hyps = validation_bleu(translator.model, parts, ["der hund rennt", "x"], tok.decode_tgt,
                                 translator.cfg.decode, torch.device("cpu"))
    assert len(hyps) == 2 and len(hyps[1].split()) > 3 * len(parts[1])


def test_tensorboard_gets_the_logs_numbers_at_their_steps(train_tiny):
    """train.log_to=tensorboard: each record of train_log.jsonl is also a TensorBoard scalar at its step, read
    back from the event file with TensorBoard's own reader."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = train_tiny(4, extra=["train.log_to=tensorboard", "train.rdrop_alpha=1", "train.max_minutes=5"])  # R-Drop's
    # guard decides after its probe's updates
    events = EventAccumulator(str(run / "tensorboard")).Reload()
    log = read_jsonl(run / "train_log.jsonl")
    for kind, field, tag in (("train", "loss", "train/loss"), ("train", "lr", "train/lr"),
                             ("valid", "val_bleu", "valid/bleu"), ("valid", "val_loss", "valid/loss"),
                             ("rdrop", "on", "rdrop/on")):
        expected = [(r["step"], float(r[field])) for r in log if r["kind"] == kind]
        assert expected, kind
        assert [(e.step, pytest.approx(e.value)) for e in events.Scalars(tag)] == expected, tag
    assert not (train_tiny(1, name="plain") / "tensorboard").exists()  # off by default


def test_averaging_keeps_tied_weights_one_tensor(tmp_path):
    """The mean of checkpoints of a model whose embeddings and output layer are one matrix is one matrix too: an
    averaged final.pt (and its model file) is not larger than the checkpoints."""
    from mt.checkpoint import average_checkpoints
    from mt.config import ModelConfig

    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = build_model(ModelConfig(emb_dim=8, hidden_dim=8), 30, 30)
        paths.append(tmp_path / f"step-{seed}.pt")
        save_checkpoint({"model": model.state_dict(), "config": {}}, paths[-1])
    state = load_checkpoint(paths[0])["model"]
    shared = {name for name, t in state.items() if t.data_ptr() == state["decoder.output.weight"].data_ptr()}
    assert len(shared) >= 2  # tied (and shared with the source embeddings)
    mean = average_checkpoints(paths)
    assert len({mean[name].data_ptr() for name in shared}) == 1
    expected = (load_checkpoint(paths[0])["model"]["decoder.output.weight"].double()
                + load_checkpoint(paths[1])["model"]["decoder.output.weight"].double()) / 2
    assert torch.allclose(mean["decoder.output.weight"].double(), expected)
    save_checkpoint({"model": mean, "config": {}}, tmp_path / "averaged.pt")
    assert (tmp_path / "averaged.pt").stat().st_size <= paths[0].stat().st_size + 1024
