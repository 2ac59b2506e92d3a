"""Translation from a trained model: the search interface (``search``), greedy and beam search, ensembles, and
``translator.Translator``, the one facade that the CLI, evaluation and the demo use."""
