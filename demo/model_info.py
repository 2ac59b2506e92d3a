"""What the demo and `mt serve` show about the model: the evaluation reports of its run, or those its exported
file carries."""

from __future__ import annotations

import json
import logging

from mt.run import RunDir

__all__ = ["evaluations"]

log = logging.getLogger("mt")


def evaluations(run: RunDir | None, facts: dict) -> dict:
    """Split name -> its `mt eval` report (RUN/eval/*.json; for a model file, those it carries)."""
    if run is None:
        return facts.get("evaluations") or {}
    found = {}
    for report in sorted(run.eval_dir.glob("*.json")) if run.eval_dir.is_dir() else []:
        try:
            found[report.stem] = json.loads(report.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("skipping unreadable evaluation report %s", report)
    return found
