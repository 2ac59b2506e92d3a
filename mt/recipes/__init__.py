"""The recipe's training rules, each a hook (``mt.train.hooks.Hook``) that a task plugs into the loop: R-Drop's
budget guard (``rdrop``), kept checkpoints and the final-model choice (``averaging``), and starting from
pre-trained language models with their weights frozen at first (``transfer``). The loop names none of them."""
