"""Text to tensors: SentencePiece tokenizers (``tokenizer``) and length-bucketed token-budget batches
(``batching``)."""
