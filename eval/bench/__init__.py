"""Benchmarks (not used by any `mt` command): ``python -m eval.bench`` measures training and decoding speed
(``speed``), ``python -m eval.bench.demo`` the web demo end to end (``demo``)."""
