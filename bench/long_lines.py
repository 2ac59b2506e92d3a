"""Long lines whole: documents of N consecutive sentences of a split, one document per line, translated three ways.

    python -m bench.long_lines --run runs/multi30k-en-de [--split test_2016_flickr] [--sentences 10]

Prints BLEU of the joined outputs against the joined references and the ratio of output to reference words for
(1) `Translator.translate` on the long lines (split at sentence ends, `mt.decode.segment`), (2) each line cut at
the model's limit (what `mt translate` did before), (3) the sentences translated one by one (the ceiling).
"""

from __future__ import annotations

import argparse
import time

from sacrebleu.metrics import BLEU

from mt.decode.translator import Translator
from mt.run import RunDir
from mt.text import normalize


def documents(texts: list[str], size: int) -> list[str]:
    return [" ".join(texts[i:i + size]) for i in range(0, len(texts), size)]


def report(name: str, hyps: list[str], refs: list[str]) -> None:
    words = sum(len(h.split()) for h in hyps) / sum(len(r.split()) for r in refs)
    print(f"{name:<38} BLEU {BLEU().corpus_score(hyps, [refs]).score:6.2f}   output/reference words {words:.2f}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True)
    parser.add_argument("--split", default="test_2016_flickr")
    parser.add_argument("--sentences", type=int, default=10, help="sentences per document line")
    args = parser.parse_args(argv)
    sources, references = RunDir.of(args.run).split_texts(args.split)
    translator = Translator.from_run(args.run)
    docs, refs = documents(sources, args.sentences), documents(references, args.sentences)
    ids = translator.tokenizer.encode_src([normalize(d) for d in docs])
    limit = translator.max_src_tokens
    print(f"{len(docs)} lines of {args.sentences} sentences of {args.split}: {min(map(len, ids))}-"
          f"{max(map(len, ids))} subwords, {sum(len(x) > limit for x in ids)} over the limit of {limit}")
    start = time.perf_counter()
    whole = translator.translate(docs)
    seconds = time.perf_counter() - start
    cfg = translator.cfg.decode
    cut = translator.tokenizer.decode_tgt(
        [h[0].tokens for h in translator._search([x[:limit] for x in ids], cfg.beam, 1, cfg.alpha, False)])
    one_by_one = documents(translator.translate(sources), args.sentences)
    report("split at sentence ends (mt translate)", whole, refs)
    report("cut at the limit (before)", cut, refs)
    report("sentence by sentence (ceiling)", one_by_one, refs)
    print(f"the long lines took {seconds:.1f} s")


if __name__ == "__main__":
    main()
