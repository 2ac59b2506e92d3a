"""Evaluation (sacreBLEU scoring and reports) and speed benchmarks."""
