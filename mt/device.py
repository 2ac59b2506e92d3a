"""Where a command computes: the device, CPU threads, the process group under torchrun, bf16 autocast."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from mt.errors import MTError

__all__ = ["autocast", "resolve_device", "setup_training", "use_threads"]


def resolve_device(choice: str) -> torch.device:
    """auto | cpu | cuda -> the device to use (under torchrun, this process's GPU)."""
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise MTError("device 'cuda' was asked for but no CUDA device is available; use auto or cpu")
        local = int(os.environ.get("LOCAL_RANK", 0))
        return torch.device("cuda", local)
    return torch.device("cpu")


def use_threads(device: torch.device, threads: int = 0, processes: int = 1) -> None:
    """CPU: ``threads`` torch threads (0: the cores shared among ``processes``); GPU: make it the current one."""
    if device.type == "cpu":
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 1) // processes))
    else:
        torch.cuda.set_device(device)


def setup_training(device_choice: str, threads: int) -> torch.device:
    """The device of this process; under ``torchrun`` (WORLD_SIZE > 1) it also joins the process group (NCCL on
    GPUs, gloo on CPUs). Threads are shared among the processes of one machine."""
    device = resolve_device(device_choice)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    use_threads(device, threads, int(os.environ.get("LOCAL_WORLD_SIZE", world)))  # the processes on this machine
    return device


def autocast(device: torch.device, precision: str):
    """The autocast context of ``train.precision``: bf16 mixed precision, or a no-op for fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
