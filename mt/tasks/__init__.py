"""What the training commands train: the translator (``translation``, ``mt train``) and the language model
(``language_model``, ``mt pretrain`` / ``mt generate``), each a ``mt.train.task.TrainingTask`` with its hooks;
``validation`` scores a translator on the validation split (greedy BLEU)."""
