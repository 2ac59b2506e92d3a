"""Experiments that train several runs and tabulate them, run from the repository (not installed, not used by any
`mt` command; public interfaces only): ``sweep`` compares settings at equal minutes (``make sweep``), ``compare``
tabulates finished runs (``make compare``), ``transfer`` compares LM pre-training, a parent model and
back-translation with training from scratch (``make transfer-experiment``)."""
