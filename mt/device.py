"""Where a command computes: the device, CPU threads, the process group under torchrun, bf16 autocast."""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from mt.errors import MTError

__all__ = ["autocast", "bf16_units", "resolve_device", "resolve_precision", "training_device", "use_threads"]


def resolve_device(choice: str) -> torch.device:
    """auto | cpu | cuda -> the device to use (under torchrun, this process's GPU)."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise MTError("device 'cuda' was asked for but no CUDA device is available; use auto or cpu")
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local)
    return torch.device("cpu")


# oneDNN (torch's CPU kernels for bf16 multiplies and the LSTM) keeps the kernels it compiled for each input shape
# it met, 1,024 by default. Training meets new shapes with almost every batch (the encoder runs one kernel per
# distinct sentence length), so the cache only grows, by hundreds of MB over an epoch, and few shapes come back;
# search meets the same shapes again and again, and a small cache slows it (docs/results.md, "Memory").
TRAINING_ONEDNN_CACHE = "64"


def use_threads(device: torch.device, threads: int = 0, processes: int = 1) -> None:
    """CPU: ``threads`` torch threads (0: ``OMP_NUM_THREADS`` where set for a single process, else the cores
    shared among ``processes``: torchrun sets OMP_NUM_THREADS=1 for each of its processes, which would leave cores
    idle); GPU: make it the current one."""
    if device.type == "cpu":
        from_env = _env_threads() if processes == 1 else 0
        torch.set_num_threads(threads or from_env or max(1, (os.cpu_count() or 1) // processes))
    else:
        torch.cuda.set_device(device)


def _env_threads() -> int:
    """OMP_NUM_THREADS, the usual way to give a process its share of the cores (0 where unset or not a number)."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() else 0


@contextlib.contextmanager
def training_device(device_choice: str, threads: int) -> Iterator[torch.device]:
    """The device of this process, for the ``with`` block that trains on it (on a CPU with a small oneDNN kernel
    cache, ``TRAINING_ONEDNN_CACHE``). Under ``torchrun`` (WORLD_SIZE > 1)
    the process also joins the process group (NCCL on GPUs, gloo on CPUs), and leaves it when the block ends.
    Threads are shared among one machine's processes. A group the caller had already joined stays theirs."""
    device = resolve_device(device_choice)
    if device.type == "cpu":  # read by oneDNN when it makes its first kernel; a value the user set wins
        os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", TRAINING_ONEDNN_CACHE)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    joined = world > 1 and not dist.is_initialized()
    if joined:
        # Imported before the group exists: its functions' `group=group.WORLD` defaults are evaluated at import,
        # and DDP imports it lazily, after which they would hold the group (and gloo's threads) until exit.
        import torch.distributed.nn.functional  # noqa: F401

        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        use_threads(device, threads, int(os.environ.get("LOCAL_WORLD_SIZE", world)))  # the processes on this machine
        yield device
    finally:
        if joined:
            _leave_process_group()


def _leave_process_group() -> None:
    """Destroy the process group and, with it, gloo's worker threads, while Python is still fully alive.

    A gloo worker frees each finished collective after its caller has moved on, and freeing a tensor that Python
    knows needs the GIL: if that happens once the interpreter is shutting down, the thread is killed and the
    process aborts ("terminate called without an active exception", SIGABRT; pytorch/pytorch#190489): 6 of
    219 two-process runs here. ``destroy_process_group`` only forgets the group; its threads stop when the
    last reference goes (the DDP wrapper's: the caller drops its trainer first), which ``gc.collect`` makes happen
    here rather than during shutdown; the group's destructor waits for the workers without holding the GIL."""
    dist.destroy_process_group()
    gc.collect()


def _cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (Linux; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    return next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())


@functools.cache
def _bf16_speedup() -> float:
    """How many times faster this CPU multiplies 512-square bf16 matrices than fp32 ones: a probe of about
    0.1-0.3 s, run once per process, for CPUs whose flags do not say (no /proc/cpuinfo flags: ARM, macOS)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)

    def rate(x: torch.Tensor, y: torch.Tensor) -> float:
        x @ y  # warm-up (kernel selection, packing buffers)
        start, n = time.perf_counter(), 0
        while n < 3 or time.perf_counter() - start < 0.05:
            x @ y
            n += 1
        return n / (time.perf_counter() - start)

    return rate(a.bfloat16(), b.bfloat16()) / rate(a, b)


def bf16_units(device: torch.device) -> str | None:
    """What multiplies bf16 faster than fp32 on ``device``: "AMX" (Intel Xeon, Sapphire Rapids on),
    "AVX512-BF16" (AMD Zen 4 on, Intel Cooper Lake), the GPU's name (compute capability 8.0 on), or None.
    A CPU without x86 flags to read (ARM, macOS) is measured instead: bf16 when its multiplies run at least
    1.3x faster than fp32."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device) if torch.cuda.get_device_capability(device)[0] >= 8 else None
    flags = _cpu_flags()
    if flags:  # x86: the flags say it
        return "AMX" if "amx_bf16" in flags else "AVX512-BF16" if "avx512_bf16" in flags else None
    speedup = _bf16_speedup()
    return f"bf16 multiplies measured {speedup:.1f}x faster" if speedup >= 1.3 else None


def resolve_precision(choice: str, device: torch.device) -> tuple[str, str]:
    """``train.precision`` (auto | fp32 | bf16) -> the precision to use and why, e.g. ("bf16", "AMX").
    auto takes bf16 only where the hardware has bf16 units: elsewhere bf16 multiplies are emulated and slower."""
    if choice != "auto":
        return choice, "as configured"
    units = bf16_units(device)
    return ("bf16", units) if units else ("fp32", "no bf16 units")


def autocast(device: torch.device, precision: str):
    """The autocast context of ``train.precision`` (auto, fp32 or bf16): bf16 mixed precision, or a no-op."""
    enabled = resolve_precision(precision, device)[0] == "bf16"
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=enabled)
