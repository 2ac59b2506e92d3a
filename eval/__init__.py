"""Evaluation that `mt eval` and `mt score` run (``evaluate``, ``scoring``, their sub-commands in ``cli``);
benchmarks in ``eval.bench`` and multi-run experiments in ``eval.experiments`` sit apart from it."""
