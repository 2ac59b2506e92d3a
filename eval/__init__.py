"""Evaluation that `mt eval` and `mt score` run (``evaluate``, ``scoring``, their sub-commands in ``cli``).
Benchmarks and multi-run experiments live in the repository's ``bench/`` and ``experiments/``, not installed."""
