"""Does bf16 learn like fp32? Three copies of one freshly initialised model trained on the same batches, step by
step: fp32 and bf16 in the fast backend (the same dropout masks), and bf16 in the reference backend. Prints each
arm's mean training loss every 10 steps and each bf16 arm's mean gap to fp32. Whole training runs drift apart through rounding alone within a few hundred updates,
so their per-epoch figures differ by chance; this comparison removes every other source of difference.

    python -m bench.precision_trajectory --run RUN --steps 60 [key=value ...]
"""

from __future__ import annotations

import argparse
import copy

import torch

from bench.training import TrainingSetup
from mt.backends import resolve_backend
from mt.device import autocast
from mt.run import RunDir
from mt.train.step import make_optimizer, train_step

ARMS = (("fp32", "fast", "fp32"), ("bf16-fast", "fast", "bf16"), ("bf16-reference", "reference", "bf16"))


def trajectories(run: RunDir, steps: int, overrides: list[str], every: int = 10) -> dict[str, list[float]]:
    setup = TrainingSetup(run, overrides)
    t = setup.train
    weights = setup.model(resolve_backend("reference")).state_dict()
    arms = {}
    for name, backend_name, precision in ARMS:
        backend = resolve_backend(backend_name)
        model = backend.build_model(setup.cfg.model, setup.meta["src_vocab_size"], setup.meta["tgt_vocab_size"],
                                    init_weights=False)
        model.load_state_dict(copy.deepcopy(weights))
        model.to(setup.device).train()
        arms[name] = (backend.loss(model, t.label_smoothing), make_optimizer(model.parameters(), t.lr, t.weight_decay),
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
    p = argparse.ArgumentParser(prog="python -m bench.precision_trajectory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a prepared RUN (its config and training split)")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    args = p.parse_args(argv)
    losses = trajectories(RunDir.of(args.run), args.steps, args.overrides)
    for name in ("bf16-fast", "bf16-reference"):
        gap = [a - b for a, b in zip(losses[name], losses["fp32"])]
        print(f"{name}: mean loss minus fp32's {sum(gap) / len(gap):+.4f} over {len(gap)} steps, "
              f"largest gap in one step {max(gap, key=abs):+.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
