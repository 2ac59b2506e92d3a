"""The lexical table (IBM Model 1 over the training pairs) and decoding restricted to it."""

from __future__ import annotations

import random

import pytest
import torch

from mt.data.lexicon import Lexicon, learn_lexicon
from mt.data.tokenizer import EOS_ID, UNK_ID
from mt.decode.beam import beam_search
from mt.decode.greedy import greedy_search
from mt.decode.lexical_shortlist import LexicallyShortlisted, can_shortlist
from mt.errors import MTError
from mt.fast import FastSeq2Seq
from tests.test_search import SENTENCES, V, batch_of, trained_ish_model

# a toy pair of languages over ids: source word w (4..11) translates to 20 + w, and "the" (12) to "der" (32) or
# nothing; targets are in another order than sources
WORDS = list(range(4, 12))


def toy_pairs(n: int, seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    rng = random.Random(seed)
    src, tgt = [], []
    for _ in range(n):
        words = rng.sample(WORDS, rng.randint(1, 4))
        with_the = rng.random() < 0.7
        src.append(([12] if with_the else []) + words)
        translated = [20 + w for w in words][::-1]
        tgt.append(translated + ([32] if with_the and rng.random() < 0.5 else []))
    return src, tgt


def test_model_one_learns_which_target_each_source_word_translates_to():
    lexicon = learn_lexicon(*toy_pairs(300), src_vocab=40, tgt_vocab=40, joint=False)
    for w in WORDS:
        assert int(lexicon.targets[lexicon.offsets[w]]) == 20 + w  # the most likely target first
    assert int(lexicon.targets[lexicon.offsets[12]]) == 32
    assert lexicon.offsets[0] == 0 and lexicon.offsets[-1] == len(lexicon.targets)
    assert bool((lexicon.offsets[1:] >= lexicon.offsets[:-1]).all())
    counts = torch.bincount(torch.tensor([e for t in toy_pairs(300)[1] for e in t]), minlength=40)
    assert lexicon.frequent[0] == int(counts.argmax())  # the most frequent target first


def test_each_sentence_gets_its_own_candidates_and_the_common_ones():
    lexicon = learn_lexicon(*toy_pairs(300), src_vocab=40, tgt_vocab=40, joint=True)
    src, lens = batch_of([[5, 6], [9]])
    ids, allowed = lexicon.candidates(src, lens, words=1, frequent=2)
    assert ids.tolist() == sorted(set(ids.tolist()))
    own = [set(ids[allowed[b]].tolist()) for b in range(2)]
    common = {EOS_ID, UNK_ID, *lexicon.frequent[:2].tolist()}
    assert own[0] == common | {25, 26} | {5, 6}  # its words' best translations, and the words themselves (joint)
    assert own[1] == common | {29} | {9}
    alone, allowed_alone = lexicon.candidates(*batch_of([[9]]), words=1, frequent=2)
    assert set(alone[allowed_alone[0]].tolist()) == own[1]  # batch mates do not change a sentence's list


def whole_vocabulary() -> Lexicon:
    """A table that lists every target for every source: the shortlist then changes nothing."""
    return Lexicon(torch.arange(V + 1) * V, torch.arange(V).repeat(V), torch.arange(V), False, V)


@pytest.mark.parametrize("build", [None, FastSeq2Seq.build], ids=["reference", "fast"])
def test_a_shortlist_of_the_whole_vocabulary_changes_no_search(build):
    model = trained_ish_model(5, **({"build": build} if build else {}))
    if build:  # the fast backend's whole-vocabulary search in fp32, as the shortlist's
        model.use_candidates("exact")
    assert can_shortlist(model)
    shortlisted = LexicallyShortlisted(model, whole_vocabulary(), words=V, frequent=V)
    src, lens = batch_of(SENTENCES)
    for search in (lambda m: [[h] for h in greedy_search(m, src, lens, 1.5, 3)],
                   lambda m: beam_search(m, src, lens, 4, 1.0, 1.5, 3, nbest=2)):
        full, short = search(model), search(shortlisted)
        assert [[h.tokens for h in hs] for hs in full] == [[h.tokens for h in hs] for hs in short]
        assert [[round(h.log_prob, 4) for h in hs] for hs in full] == \
               [[round(h.log_prob, 4) for h in hs] for hs in short]


def test_shortlisted_search_produces_only_each_sentences_candidates_whatever_its_batch():
    model = trained_ish_model(6)
    rng = random.Random(0)
    src_ids, tgt_ids = [], []
    for _ in range(200):  # a random table over the model's vocabulary: 3 targets per source
        s = [rng.randrange(4, V) for _ in range(3)]
        src_ids.append(s)
        tgt_ids.append([rng.randrange(4, V) for _ in range(3)])
    lexicon = learn_lexicon(src_ids, tgt_ids, V, V, joint=False)
    shortlisted = LexicallyShortlisted(model, lexicon, words=2, frequent=1)

    def run(sentences, beam):
        src, lens = batch_of(sentences)
        if beam == 1:
            return [h.tokens for h in greedy_search(shortlisted, src, lens, 2.0, 4)]
        return [b[0].tokens for b in beam_search(shortlisted, src, lens, beam, 1.0, 2.0, 4)]

    for beam in (1, 3):
        together = run(SENTENCES, beam)
        assert together == [run([s], beam)[0] for s in SENTENCES]
        for sentence, tokens in zip(SENTENCES, together):
            ids, allowed = lexicon.candidates(*batch_of([sentence]), words=2, frequent=1)
            assert set(tokens) <= set(ids[allowed[0]].tolist())


def test_a_damaged_table_from_a_model_file_is_a_one_line_error():
    section = learn_lexicon(*toy_pairs(100), src_vocab=40, tgt_vocab=40, joint=False).section()
    Lexicon.from_section(section, 40, 40, "m.mt")
    bad = [({"offsets": section["offsets"].flip(0)}, "lexicon.offsets"),
           ({"targets": section["targets"] + 100}, "lexicon.targets"),
           ({"frequent": "many"}, "lexicon.frequent"),
           ({"tgt_vocab": 41}, "lexicon.tgt_vocab")]
    for change, field in bad:
        with pytest.raises(MTError, match=field) as error:
            Lexicon.from_section({**section, **change}, 40, 40, "m.mt")
        assert "\n" not in str(error.value) and "m.mt" in str(error.value)
    with pytest.raises(MTError, match="lexicon.offsets"):
        Lexicon.from_section(section, 41, 40, "m.mt")  # another source vocabulary


def test_the_tiny_model_translates_alike_with_its_shortlist_and_ships_it_in_its_model_file(trained_run, tmp_path):
    from mt.decode.translator import Translator
    from mt.model_file import export_model
    from mt.run import RunDir

    sources, _ = RunDir.of(trained_run).split_texts("test_toy")
    translator = Translator.from_run(trained_run)
    full = translator.translate(list(sources), beam=1)
    settings = ["decode.lexical_shortlist=true", "decode.lexical_words=10", "decode.lexical_frequent=10"]
    translator.set_decoding(settings)
    short = translator.translate(list(sources), beam=1)
    assert (trained_run / "data" / "lexicon.pt").is_file()  # learned once, kept with the prepared data
    assert sum(a == b for a, b in zip(full, short)) >= 0.9 * len(full)  # 29 of 30 when written
    export_model(RunDir.of(trained_run), tmp_path / "m.mt")
    shipped = Translator.from_file(tmp_path / "m.mt")
    shipped.set_decoding(settings)
    assert shipped.translate(list(sources), beam=1) == short
