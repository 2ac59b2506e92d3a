"""What the demo and `mt serve` show about the model: the evaluation reports of its run, or those its exported
file carries."""

from __future__ import annotations

from mt.run import RunDir

__all__ = ["evaluations"]


def evaluations(run: RunDir | None, facts: dict) -> dict:
    """Split name -> its `mt eval` report (RUN/eval/*.json; for a model file, those it carries)."""
    return run.evaluations() if run is not None else facts.get("evaluations") or {}
