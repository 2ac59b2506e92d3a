"""Experiments that train several runs and tabulate them (not used by any `mt` command): ``sweep`` compares
settings at equal minutes (``make sweep``), ``transfer`` compares LM pre-training with training from scratch
(``make transfer-experiment``), ``precision_trajectory`` compares bf16 with fp32 on identical batches."""
