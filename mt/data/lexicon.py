"""A lexical table learned from the training pairs: for each source subword, the target subwords it most likely
translates to, and the most frequent target subwords. Decoding with ``decode.lexical_shortlist=true`` scores only
these for each sentence (``mt.decode.lexical_shortlist``), as Marian's lexical shortlists do.

The translation probabilities are IBM Model 1's (Brown et al. 1993): t(e | f), the probability that source
subword f produces target subword e, learned by expectation-maximisation. Each target subword of a pair is
explained by one of the pair's source subwords or by NULL (no source word); the E step shares each target
subword among the source subwords in proportion to t(e | f), the M step re-estimates t from those shares:

    share(e_j, f_i) = t(e_j | f_i) / sum_i' t(e_j | f_i')        over the source subwords of the pair, NULL included
    t(e | f)        = sum of share(e, f) over the corpus / sum over all e of the same

Only subword pairs that occur together in some training pair can have t > 0, so t is kept for those pairs alone
(``_Cooccurrences``), and the corpus is read in chunks: memory grows with the distinct pairs of the sample, not
with its length. A seeded sample of at most ``MAX_PAIRS`` training pairs is used (about 200 co-occurrences
each, 8 bytes apiece: 160 MB at most).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from mt.data.tokenizer import EOS_ID, UNK_ID
from mt.errors import MTError
from mt.files import atomic_write

if TYPE_CHECKING:
    from mt.run import RunDir

__all__ = ["Lexicon", "learn_lexicon", "run_lexicon"]

log = logging.getLogger(__name__)

VERSION = 1
KEEP_WORDS = 100  # targets kept per source subword, most likely first (decoding uses the first decode.lexical_words)
KEEP_FREQUENT = 1000  # most frequent targets kept (decoding uses the first decode.lexical_frequent)
MIN_PROBABILITY = 1e-4  # targets below this t(e | f) are dropped
MAX_PAIRS = 100_000  # training pairs sampled to learn from
CHUNK_PAIRS = 4096  # pairs per E-step chunk: (chunk, S + 1, T) co-occurrences at a time


@dataclass
class Lexicon:
    """What decoding needs: for source id s, ``targets[offsets[s]:offsets[s + 1]]`` are its likely target ids,
    most likely first; ``frequent`` the target ids by training frequency; ``copy``: the vocabulary is joint, so a
    source subword may be copied (names, numbers, links: ``candidates`` adds each source id itself)."""

    offsets: torch.Tensor  # (Vs + 1,) int64, non-decreasing, from 0 to len(targets)
    targets: torch.Tensor  # (N,) int64 target ids
    frequent: torch.Tensor  # (F,) int64 target ids, most frequent first
    copy: bool
    tgt_vocab: int

    def candidates(self, src: torch.Tensor, src_lens: torch.Tensor, words: int,
                   frequent: int) -> tuple[torch.Tensor, torch.Tensor]:
        """src (B, S) ids, src_lens (B,) -> the batch's candidate target ids (C,), sorted, and which are each
        sentence's (B, C) bool: the first ``words`` targets of each of its source ids, its source ids themselves
        (a joint vocabulary), the ``frequent`` most frequent targets, EOS and UNK."""
        src = src.cpu()
        batch, length = src.shape
        valid = torch.arange(length)[None, :] < src_lens.cpu()[:, None]  # (B, S)
        tokens = src[valid]  # (N,) every source token of the batch
        sentence = torch.arange(batch)[:, None].expand(batch, length)[valid]  # (N,) whose token it is
        ids = tokens.clamp(0, len(self.offsets) - 2)  # (N,)
        starts = self.offsets[ids]  # (N,)
        counts = (self.offsets[ids + 1] - starts).clamp(max=words)  # (N,)
        owner = torch.repeat_interleave(sentence, counts)  # (M,) one entry per (token, target)
        first = torch.repeat_interleave(starts - torch.cumsum(counts, 0) + counts, counts)  # (M,)
        found = self.targets[first + torch.arange(int(counts.sum()))]  # (M,)
        common = torch.cat([self.frequent[:frequent], torch.tensor([EOS_ID, UNK_ID])])  # (F',)
        own_ids, own_rows = [found], [owner]
        if self.copy:
            inside = tokens < self.tgt_vocab
            own_ids.append(tokens[inside])
            own_rows.append(sentence[inside])
        own_ids, own_rows = torch.cat(own_ids), torch.cat(own_rows)
        cand = torch.unique(torch.cat([own_ids, common]))  # (C,) sorted
        mask = torch.zeros(batch, len(cand), dtype=torch.bool)  # (B, C)
        mask[:, torch.searchsorted(cand, common)] = True
        mask[own_rows, torch.searchsorted(cand, own_ids)] = True
        return cand, mask

    def section(self) -> dict[str, Any]:
        """This table as an optional section of a model file (``mt.checkpoint.optional_section``)."""
        return {"version": VERSION, "offsets": self.offsets, "targets": self.targets, "frequent": self.frequent,
                "copy": self.copy, "tgt_vocab": self.tgt_vocab}

    @classmethod
    def from_section(cls, section: dict[str, Any], src_vocab: int, tgt_vocab: int, source: str) -> Lexicon:
        """A section read from a file someone else made -> a checked table (one-line errors naming the field)."""
        fields = {"offsets": torch.Tensor, "targets": torch.Tensor, "frequent": torch.Tensor, "copy": bool,
                  "tgt_vocab": int}
        for name, kind in fields.items():
            if not isinstance(section.get(name), kind):
                raise MTError(f"{source}: field 'lexicon.{name}' is missing or not a {kind.__name__}")
        offsets, targets, frequent = (section[k].long() for k in ("offsets", "targets", "frequent"))
        if offsets.dim() != 1 or len(offsets) != src_vocab + 1 or int(offsets[0]) != 0 \
                or int(offsets[-1]) != len(targets) or bool((offsets[1:] < offsets[:-1]).any()):
            raise MTError(f"{source}: field 'lexicon.offsets' must run from 0 to the number of targets, one entry "
                          f"per source id plus one ({src_vocab + 1})")
        for name, ids in (("targets", targets), ("frequent", frequent)):
            if ids.dim() != 1 or (len(ids) and (int(ids.min()) < 0 or int(ids.max()) >= tgt_vocab)):
                raise MTError(f"{source}: field 'lexicon.{name}' must hold target ids in [0, {tgt_vocab})")
        if section["tgt_vocab"] != tgt_vocab:
            raise MTError(f"{source}: field 'lexicon.tgt_vocab' is {section['tgt_vocab']}, the model's is {tgt_vocab}")
        return cls(offsets, targets, frequent, section["copy"], tgt_vocab)


def learn_lexicon(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]], src_vocab: int, tgt_vocab: int,
                  joint: bool, iterations: int = 5) -> Lexicon:
    """Training pairs of subword ids -> their lexical table (IBM Model 1 by EM, module docstring)."""
    pairs = [(s, t) for s, t in zip(src, tgt) if len(s) and len(t)]
    chunks = [_chunk(pairs[i:i + CHUNK_PAIRS], src_vocab, tgt_vocab) for i in range(0, len(pairs), CHUNK_PAIRS)]
    keys = torch.unique(torch.cat([c.keys for c in chunks])) if chunks else torch.zeros(0, dtype=torch.long)
    for c in chunks:  # each co-occurrence -> its pair's index in ``keys`` (sorted)
        c.index = torch.searchsorted(keys, c.keys).int()
        del c.keys
    source = keys // tgt_vocab  # (P,) f of each pair (src_vocab: NULL)
    prob = torch.ones(len(keys), dtype=torch.float64)  # t(e | f), uniform: the first E step counts co-occurrences
    for _ in range(iterations):
        counts = torch.zeros(len(keys), dtype=torch.float64)
        for c in chunks:
            p = prob[c.index]  # (N,) t(e_j | f_i) of each co-occurrence
            total = torch.zeros(c.groups, dtype=torch.float64).index_add_(0, c.group, p)  # per target token
            counts.index_add_(0, c.index, p / total[c.group])  # E step: each target token's shares
        per_source = torch.zeros(src_vocab + 1, dtype=torch.float64).index_add_(0, source, counts)
        prob = counts / per_source[source]  # M step
    return _table(keys, prob, source, pairs, src_vocab, tgt_vocab, joint)


@dataclass
class _Cooccurrences:
    keys: torch.Tensor  # (N,) f * tgt_vocab + e of every (source subword or NULL, target subword) of each pair
    group: torch.Tensor  # (N,) which target token of the chunk the co-occurrence explains
    groups: int  # target tokens in the chunk
    index: torch.Tensor | None = None  # (N,) the co-occurrence's pair in the sorted distinct keys


def _chunk(pairs: list[tuple[Sequence[int], Sequence[int]]], src_vocab: int, tgt_vocab: int) -> _Cooccurrences:
    s_len, t_len = max(len(s) for s, _ in pairs) + 1, max(len(t) for _, t in pairs)
    src = torch.full((len(pairs), s_len), -1, dtype=torch.long)  # (B, S + 1): NULL (= src_vocab) first
    tgt = torch.full((len(pairs), t_len), -1, dtype=torch.long)  # (B, T)
    for b, (s, t) in enumerate(pairs):
        src[b, 0], src[b, 1:len(s) + 1] = src_vocab, torch.tensor(s, dtype=torch.long)
        tgt[b, :len(t)] = torch.tensor(t, dtype=torch.long)
    if int(src.max()) > src_vocab or int(tgt.max()) >= tgt_vocab:
        raise MTError("the training data holds ids beyond the vocabulary: prepare it again (`mt prepare`)")
    valid = (src >= 0)[:, :, None] & (tgt >= 0)[:, None, :]  # (B, S + 1, T)
    keys = (src[:, :, None] * tgt_vocab + tgt[:, None, :])[valid]  # (N,)
    group = torch.arange(len(pairs) * t_len, dtype=torch.int32).view(len(pairs), 1, t_len).expand_as(valid)[valid]
    return _Cooccurrences(keys, group, len(pairs) * t_len)


def _table(keys: torch.Tensor, prob: torch.Tensor, source: torch.Tensor, pairs: list, src_vocab: int,
           tgt_vocab: int, joint: bool) -> Lexicon:
    """Each source id's KEEP_WORDS most likely targets (t >= MIN_PROBABILITY), NULL's left out, and the targets by
    frequency."""
    keep = (source < src_vocab) & (prob >= MIN_PROBABILITY)
    keys, prob, source = keys[keep], prob[keep], source[keep]
    order = torch.argsort(prob, descending=True, stable=True)
    order = order[torch.argsort(source[order], stable=True)]  # by source id, then most likely first
    keys, source = keys[order], source[order]
    per_source = torch.bincount(source, minlength=src_vocab)  # (Vs,)
    starts = torch.cumsum(per_source, 0) - per_source
    rank = torch.arange(len(keys)) - starts[source]  # (P,) place within its source id's list
    kept = rank < KEEP_WORDS
    targets = keys[kept] % tgt_vocab
    offsets = torch.zeros(src_vocab + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(per_source.clamp(max=KEEP_WORDS), 0)
    counts = torch.bincount(torch.tensor([e for _, t in pairs for e in t], dtype=torch.long), minlength=tgt_vocab)
    frequent = torch.argsort(counts, descending=True, stable=True)[:KEEP_FREQUENT]
    frequent = frequent[counts[frequent] > 0]
    return Lexicon(offsets, targets, frequent, joint, tgt_vocab)


def run_lexicon(run: RunDir) -> Lexicon:
    """RUN's lexical table: RUN/data/lexicon.pt, learned from its training split (and saved) when missing or
    made for other data."""
    meta = run.meta()
    path = Path(run.data_dir) / "lexicon.pt"
    settings = (VERSION, KEEP_WORDS, KEEP_FREQUENT, MIN_PROBABILITY, MAX_PAIRS)  # a table made otherwise is stale
    made_for = hashlib.sha256(f"{meta['tokenizer_sha256']} {meta.get('cache_key')} {settings}".encode()).hexdigest()
    if path.is_file():
        try:
            stored = torch.load(path, map_location="cpu", weights_only=True)
            if isinstance(stored, dict) and stored.get("made_for") == made_for:
                return Lexicon.from_section(stored, meta["src_vocab_size"], meta["tgt_vocab_size"], str(path))
        except Exception as e:  # noqa: BLE001 - a damaged or foreign cache (MTError included) is learned again
            log.warning("learning the lexical table again: %s is unreadable (%s)", path, str(e).splitlines()[0][:200])
    train = run.encoded()["train"]
    sample = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:MAX_PAIRS]
    train = train.select(sorted(sample.tolist()))
    log.info("learning the lexical table from %d training pairs (IBM Model 1)", len(train))
    lexicon = learn_lexicon(train["src_ids"], train["tgt_ids"], meta["src_vocab_size"], meta["tgt_vocab_size"],
                            joint=meta["src_model"] == meta["tgt_model"])
    atomic_write(path, lambda f: torch.save({**lexicon.section(), "made_for": made_for}, f), what="lexical table")
    return lexicon
