"""Where the resident memory of `mt train` goes, over a run: ``python -m bench.train_memory --run RUN --out DIR``.

Trains a copy of RUN's model with the real loop (``mt.train.loop.Trainer``, the recipe's hooks, validation,
checkpoints into DIR) and after every ``--every`` updates writes one JSON line to DIR/memory.jsonl:

- ``rss_anon_mib``, ``rss_file_mib``: resident memory that is anonymous (tensors, the allocator's heap) and
  file-backed (the memory-mapped corpus, libraries), from /proc/self/status;
- ``tensors_mib``: the storages of the tensors Python can reach (weights, gradients, optimizer state, the fast
  backend's reused workspaces and search tables), each counted once;
- ``heap_in_use_mib``, ``heap_free_mib``, ``mmapped_mib``: glibc's own account (``mallinfo2``): what its heap
  hands out, what it holds free without returning it to the system, and what it serves by mmap.

    python -m bench.train_memory --run runs/multi30k-en-de --out /tmp/mem --every 25 train.max_epochs=3
    python -m bench.train_memory --plot docs/memory.png /tmp/mem/memory.jsonl:label ...   # anonymous RSS curves
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import time
import warnings
from pathlib import Path

import torch

from bench.memory import status_kib
from mt.backends import resolve_backend
from mt.cli import resolve_config
from mt.device import training_device
from mt.run import RunDir
from mt.tasks.translation import TranslationTask, recipe_hooks
from mt.train.hooks import Hook
from mt.train.loop import Trainer
from mt.train.step import seed_everything

__all__ = ["MemoryProbe", "heap", "tensor_bytes"]

MIB = 2**20


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                      "fsmblks", "uordblks", "fordblks", "keepcost")]


def heap() -> dict[str, float]:
    """glibc's account of its heap (MiB), or nothing where there is no mallinfo2 (not glibc 2.33+)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return {}
    info = libc.mallinfo2()
    return {"heap_in_use_mib": round(info.uordblks / MIB, 1), "heap_free_mib": round(info.fordblks / MIB, 1),
            "mmapped_mib": round(info.hblkhd / MIB, 1)}


def tensor_bytes() -> int:
    """Bytes of the distinct storages of every tensor the garbage collector can reach."""
    seen: dict[int, int] = {}
    with warnings.catch_warnings():  # isinstance on some of torch's deprecated objects warns
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            if isinstance(obj, torch.Tensor) and not obj.is_meta:
                storage = obj.untyped_storage()
                seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


class MemoryProbe(Hook):
    def __init__(self, out: Path, every: int, trim_every: int = 0):
        self.out, self.every, self.trim_every, self.started = out, every, trim_every, time.perf_counter()

    def after_step(self, trainer) -> None:
        if trainer.progress.step % self.every == 0:
            self.record(trainer, "step")
        if self.trim_every and trainer.progress.step % self.trim_every == 0:
            started = time.perf_counter()
            ctypes.CDLL("libc.so.6").malloc_trim(0)
            self.record(trainer, f"trimmed in {time.perf_counter() - started:.3f} s")

    def after_validation(self, trainer) -> None:
        self.record(trainer, "validated")

    def record(self, trainer, when: str) -> None:
        row = {"when": when, "step": trainer.progress.step, "minutes": round((time.perf_counter() - self.started) / 60, 2),
               "rss_anon_mib": round(status_kib("self", "RssAnon") / 1024, 1),
               "rss_file_mib": round(status_kib("self", "RssFile") / 1024, 1),
               "peak_rss_mib": round(status_kib("self", "VmHWM") / 1024, 1),
               "tensors_mib": round(tensor_bytes() / MIB, 1), **heap()}
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def plot(out: Path, curves: list[str]) -> None:
    """curves: ``FILE:LABEL``, each a memory.jsonl -> one line of anonymous RSS against updates per file (not
    minutes: runs that shared the cores with others stay comparable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from mt.plots import save_figure

    fig, ax = plt.subplots(figsize=(10, 3.6))
    for spec in curves:
        path, _, label = spec.partition(":")
        rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
        ax.plot([r["step"] for r in rows], [r["rss_anon_mib"] / 1024 for r in rows], label=label or path)
    ax.axhline(1.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("updates")
    ax.set_ylabel("anonymous resident memory, GiB")
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    save_figure(fig, out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.train_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plot", nargs="+", metavar="PNG FILE:LABEL", help="draw curves of earlier records and exit")
    p.add_argument("--run", help="a prepared RUN (its data and config; its checkpoints untouched)")
    p.add_argument("--out", help="a new folder for the copy's checkpoints, log and memory.jsonl")
    p.add_argument("--every", type=int, default=25, help="updates between records")
    p.add_argument("--trim-every", type=int, default=0, help="glibc malloc_trim(0) after every N updates (0: never)")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    if args.plot:
        plot(Path(args.plot[0]), args.plot[1:])
        return 0
    if not (args.run and args.out):
        p.error("--run and --out are needed to measure")
    source, out = RunDir.of(args.run), Path(args.out)
    out.mkdir(parents=True, exist_ok=False)
    (out / "data").symlink_to((source.root / "data").resolve())
    copy = RunDir.of(out)
    cfg = resolve_config(source, None, args.overrides)
    with training_device(cfg.train.device, cfg.train.threads) as device:
        meta = copy.meta()
        seed_everything(cfg.train.seed)
        model = resolve_backend(cfg.model.backend).build_model(cfg.model, meta["src_vocab_size"],
                                                               meta["tgt_vocab_size"]).to(device)
        task = TranslationTask(copy, cfg, model, device)
        trainer = Trainer(task, cfg, copy, device, hooks=[*recipe_hooks(task, cfg),
                                                           MemoryProbe(out / "memory.jsonl", args.every,
                                                                       args.trim_every)])
        trainer.fit()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
