"""Turn a parallel corpus into what training needs: clean splits, SentencePiece models and an encoded Arrow cache.

``sources`` reads local files or a Hub dataset, ``clean`` normalises and filters, ``prepare`` runs it all.
"""
