"""Benchmarks, run from the repository (not installed, not used by any `mt` command; public interfaces only):
``python -m bench`` measures training and decoding speed (``speed``, ``training``, ``decoding``, ``joey``),
``python -m bench.demo`` the web demo end to end, ``python -m bench.scale`` preparation and training on large
synthetic corpora, ``python -m bench.long_lines`` long inputs, ``python -m bench.precision_trajectory`` whether
bf16 learns like fp32."""
