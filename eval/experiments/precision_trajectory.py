"""Does bf16 learn like fp32? Three copies of one freshly initialised model trained on the same batches with
the same dropout masks, step by step: fp32, bf16 through the fused paths (the default under bf16), and bf16
through the generic step-by-step decoder. Prints each arm's mean training loss every 10 steps and each bf16
arm's mean gap to fp32. Whole training runs drift apart through rounding alone within a few hundred updates,
so their per-epoch figures differ by chance; this comparison removes every other source of difference.

    python -m eval.experiments.precision_trajectory --run RUN --steps 60 [key=value ...]
"""

from __future__ import annotations

import argparse
import copy

import torch

from eval.bench.speed import _Setup
from mt.device import autocast
from mt.model.loss import SummedLoss
from mt.run import RunDir
from mt.train.step import make_optimizer, train_step

ARMS = (("fp32", True, "fp32"), ("bf16-fused", True, "bf16"), ("bf16-generic", False, "bf16"))


def trajectories(run: RunDir, steps: int, overrides: list[str], every: int = 10) -> dict[str, list[float]]:
    setup = _Setup(run, overrides)
    t = setup.train
    base = setup.model().train()
    arms = {}
    for name, fused, precision in ARMS:
        model = copy.deepcopy(base)
        model.decoder.fused = fused
        arms[name] = (SummedLoss(model, t.label_smoothing), make_optimizer(model.parameters(), t.lr, t.weight_decay),
                      autocast(setup.device, precision))
    losses: dict[str, list[float]] = {name: [] for name in arms}
    for i, idx in enumerate(setup.batches[:steps]):
        b = setup.batch(idx)
        for name, (module, optimizer, context) in arms.items():
            torch.manual_seed(1000 + i)  # the same dropout masks in every arm
            losses[name].append(float(train_step(lambda: module(*b.model_inputs, targets=b.targets),  # noqa: B023
                                                 b.n_tokens, optimizer, setup.schedule, i + 1, t.clip, context)))
        if (i + 1) % every == 0:
            print(f"steps {i + 2 - every}-{i + 1}: mean loss " + ", ".join(
                f"{name} {sum(v[-every:]) / every:.4f}" for name, v in losses.items()), flush=True)
    return losses


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eval.experiments.precision_trajectory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a prepared RUN (its config and training split)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    losses = trajectories(RunDir.of(args.run), args.steps, args.overrides)
    for name in ("bf16-fused", "bf16-generic"):
        gap = [a - b for a, b in zip(losses[name], losses["fp32"])]
        print(f"{name}: mean loss minus fp32's {sum(gap) / len(gap):+.4f} over {len(gap)} steps, "
              f"largest gap in one step {max(gap, key=abs):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
