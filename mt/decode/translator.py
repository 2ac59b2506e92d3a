"""Load a trained RUN or a model file and translate strings: the one entry point for the CLI, evaluation, the demo
and the HTTP server.

    translator = Translator.from_run("runs/multi30k-en-de")      # or Translator.from_file("en-de.mt")
    translator.translate("A dog runs on the beach.")              # -> "Ein Hund rennt am Strand."
    translator.translate(["A dog.", "A cat."])                    # -> a list of strings
    translator.translate_batch(["A dog."], nbest=3, return_attention=True)  # -> Translation objects
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mt.backends import resolve_backend, use_decoding
from mt.checkpoint import load_checkpoint, optional_section
from mt.config import Config, apply_overrides, config_from_dict
from mt.data.batching import collate, make_batches
from mt.data.lexicon import Lexicon, run_lexicon
from mt.data.tokenizer import Tokenizer
from mt.decode.beam import beam_search
from mt.decode.ensemble import Ensemble
from mt.decode.greedy import greedy_search
from mt.decode.lexical_shortlist import LexicallyShortlisted, can_shortlist
from mt.decode.pipeline import Sentence, TextPipeline
from mt.decode.protect import Glossary, known_characters
from mt.decode.sampling import Sampling, sample_search
from mt.decode.search import Hypothesis
from mt.decode.segment import split_to_fit
from mt.decode.sentences import LONG, cut_to_length
from mt.device import autocast, resolve_device, resolve_precision, use_threads
from mt.errors import MTError
from mt.model import Seq2Seq
from mt.model_file import load_model_file, model_file_tokenizer
from mt.run import RunDir

__all__ = ["Translation", "Translator"]

log = logging.getLogger("mt")


@dataclass
class Translation:
    source: str
    text: str
    score: float  # length-normalised log-probability (greedy: plain log-probability)
    nbest: list[tuple[float, str]] = field(default_factory=list)  # (score, text), best first
    src_pieces: list[str] = field(default_factory=list)
    tgt_pieces: list[str] = field(default_factory=list)  # output pieces, then "</s>" when EOS was produced
    attention: torch.Tensor | None = field(default=None, repr=False)  # (len(tgt_pieces), len(src_pieces))
    model_input: str | None = None  # what the model read, where the pipeline changed the sentence (pieces, attention)
    sentences: list[str] = field(default_factory=list)  # the source's sentences, where it had several
    spans: list[dict] = field(default_factory=list)  # protected spans copied: {"text", "kind"}
    fallbacks: int = 0  # spans placed by relative position (no attention to go by)


class Translator:
    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, cfg: Config, device: torch.device | None = None,
                 src_language: str = "", sentence_tokens: int | None = None):
        """``src_language``: the source's ISO code (the sentence splitter's rules); ``sentence_tokens``: the mean
        length of the training sources in subwords (longer stretches without sentence ends are cut near it)."""
        self.model = model.eval()
        self.tokenizer, self.cfg = tokenizer, cfg
        self.device = device or next(model.parameters()).device
        self.max_src_tokens = cfg.data.max_tokens
        # decode.precision: bf16 multiplies (autocast) where the hardware has bf16 units; scores stay fp32
        self.precision = resolve_precision(cfg.decode.precision, self.device)[0]
        use_decoding(self.model, cfg.decode)
        self.src_language, self.sentence_tokens = src_language, sentence_tokens
        self._known = known_characters(tokenizer.src)
        self.glossary: Glossary | None = None
        self.pipeline = self._pipeline()
        self.facts: dict = {}  # what from_run knows about the checkpoint: languages, size, training progress
        self.lexicon_source: Callable[[], Lexicon | None] = lambda: None  # decode.lexical_shortlist's table
        self._lexicon: Lexicon | None = None
        self._shortlist_refused = False

    def _pipeline(self, markup: str | None = None) -> TextPipeline:
        d = self.cfg.decode
        return TextPipeline(self.src_language, self._known, d.split_sentences, d.protect_spans, d.recase,
                            self._one_piece, markup or d.markup, self.glossary)

    def set_glossary(self, glossary: Glossary | None) -> None:
        """Terms every translation must use (``mt.decode.protect.load_glossary``), or None."""
        self.glossary = glossary
        self.pipeline = self._pipeline()

    def _one_piece(self, text: str) -> bool:
        """Whether the source vocabulary holds ``text`` as one piece (a bare word-start piece aside; not <unk>)."""
        sp = self.tokenizer.src
        ids = [i for i in sp.encode(text) if sp.id_to_piece(i) != "▁"]
        return len(ids) == 1 and not (sp.is_unknown(ids[0]) or sp.is_byte(ids[0]))

    @classmethod
    def from_run(cls, run: str | os.PathLike | RunDir, checkpoint: str = "final", device: str = "auto",
                 threads: int = 0, quantize: str | None = None, ensemble: list[str] | tuple = (),
                 backend: str | None = None) -> Translator:
        """Load RUN's tokenizer and checkpoint (``best``, ``last``, another name in RUN/checkpoints or a path).
        ``quantize="int8"`` applies dynamic int8 quantisation (CPU only) to the linear layers and the encoder
        LSTM. ``ensemble``: more runs (their best checkpoint) or checkpoint files of the same prepared data,
        decoded together with this one (``mt.decode.ensemble``). ``backend``: auto, reference or fast (None:
        the checkpoint's ``model.backend``, ``mt.backends``)."""
        run = run if isinstance(run, RunDir) else RunDir.of(run)
        meta = run.meta()
        dev = resolve_device(device)
        use_threads(dev, threads)
        path = run.model_path(checkpoint)
        model, cfg, state = _load_model(path, meta, run, dev, backend)
        n_params = model.num_parameters()
        members = [model] + [_load_model(_member_path(m), meta, run, dev, backend)[0] for m in ensemble]
        if quantize:
            members = [_quantize(m, quantize, dev) for m in members]
        model = members[0] if len(members) == 1 else Ensemble(members)
        translator = cls(model.to(dev), run.tokenizer(), cfg, dev, meta["src"], run.sentence_tokens())
        translator.lexicon_source = lambda: run_lexicon(run)  # learned from RUN's training pairs on first use
        if quantize:
            translator.precision = "fp32"  # int8 layers take fp32 inputs
        progress = state.get("progress", {})
        translator.facts = {"checkpoint": str(path), "src": meta["src"], "tgt": meta["tgt"],
                            "backend": resolve_backend(backend or cfg.model.backend).name, "parameters": n_params,
                            "ensemble": [str(m) for m in ensemble], "quantize": quantize,
                            "step": progress.get("step"), "epoch": progress.get("epoch"),
                            "train_minutes": round(progress["train_seconds"] / 60, 1) if "train_seconds" in progress else None,
                            "best_val_bleu": progress.get("best_score"),
                            "final": state.get("final")}  # the comparison that chose final.pt (mt.recipes.averaging)
        return translator

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", threads: int = 0,
                  quantize: str | None = None, backend: str | None = None) -> Translator:
        """A model written by ``mt export`` (``mt.model_file``): one file, no run folder needed; ``path`` may be
        ``hf://USER/NAME[@REVISION]``, a model on the Hugging Face Hub (``mt.hub``)."""
        from mt.hub import resolve_model

        path = resolve_model(path)
        contents = load_model_file(path)
        dev = resolve_device(device)
        use_threads(dev, threads)
        model, cfg = model_from_state(contents, str(path), backend)
        n_params = model.num_parameters()
        if quantize:
            model = _quantize(model, quantize, dev)
        lengths = optional_section(contents, "lengths", 1) or {}
        translator = cls(model.to(dev), model_file_tokenizer(contents, str(path)), cfg, dev,
                         contents["languages"]["src"], lengths.get("src_tokens_mean"))
        lexicon = optional_section(contents, "lexicon", 1)
        if lexicon is not None:
            table = Lexicon.from_section(lexicon, *contents["vocab"], source=str(path))
            translator.lexicon_source = lambda: table
        if quantize:
            translator.precision = "fp32"  # int8 layers take fp32 inputs
        translator.facts = {**contents["languages"], **contents["training"], "checkpoint": str(path),
                            "backend": resolve_backend(backend or cfg.model.backend).name, "parameters": n_params, "ensemble": [],
                            "quantize": quantize, "evaluations": contents["evaluations"]}
        return translator

    @classmethod
    def from_pretrained(cls, name: str | os.PathLike, **options) -> Translator:
        """``hf://USER/NAME[@REVISION]`` (downloaded once into the Hub cache) or a local model file; ``options`` as
        ``from_file``'s."""
        return cls.from_file(name, **options)

    def set_decoding(self, overrides: list[str]) -> None:
        """``decode.key=value`` overrides (``decode.batch_tokens=8000``, ``decode.max_len_ratio=2`` ...) for this
        translator; any other section is refused: the model and its data are fixed by the checkpoint."""
        other = [o for o in overrides if not o.strip().startswith("decode.")]
        if other:
            raise MTError(f"override '{other[0]}': only decode.* keys apply when translating (the model, its data "
                          "and its training are fixed by the checkpoint)")
        self.cfg = apply_overrides(self.cfg, overrides)
        if any(o.strip().startswith("decode.precision=") for o in overrides) and not self.facts.get("quantize"):
            self.precision = resolve_precision(self.cfg.decode.precision, self.device)[0]
        use_decoding(self.model, self.cfg.decode)
        self.pipeline = self._pipeline()

    def translate(self, text: str | list[str], beam: int | None = None, markup: str | None = None) -> str | list[str]:
        """A text's translation (a string for a string, a list for a list): ``translate_batch``'s texts alone."""
        if isinstance(text, str):
            return self.translate_batch([text], beam=beam, markup=markup)[0].text
        return [t.text for t in self.translate_batch(list(text), beam=beam, markup=markup)]

    def translate_batch(self, texts: list[str], beam: int | None = None, nbest: int = 1, alpha: float | None = None,
                  return_attention: bool = False, sampling: Sampling | None = None,
                  first_line: int = 0, markup: str | None = None) -> list[Translation]:
        """Translate texts; result i answers texts[i]. A text goes through ``mt.decode.pipeline``: split into
        sentences (its spacing and blank lines kept), spans the model cannot translate (links, numbers, unseen
        scripts) taken out and put back, headlines in capitals re-cased; blank input gives an empty translation.
        A sentence far longer than the model's training sentences, or over ``data.max_tokens`` subwords, is
        translated in parts (``mt.decode.sentences``, ``mt.decode.segment``) joined by spaces. A text of several
        sentences or parts has one n-best entry and no attention. beam, alpha: None = the run's decode.*.
        ``sampling``: draw each translation instead of searching (``mt.decode.sampling``; beam and nbest do not
        apply); texts[i] is line ``first_line + i`` of the input, which names its random stream. ``markup``: this
        call's ``decode.markup`` (none, html, markdown; None: the translator's)."""
        d = self.cfg.decode
        pipeline = self.pipeline if markup is None else self._pipeline(markup)
        beam = max(beam or d.beam, nbest)
        alpha = d.alpha if alpha is None else alpha
        if sampling is not None and nbest > 1:
            raise MTError("sampling draws one translation per line: n-best lists come from beam search")
        documents = [pipeline.prepare(t) for t in texts]
        sentences = [s for doc in documents for s in doc.sentences]
        model_texts = [s.protected.text for s in sentences]
        owner, parts, ids = self._parts(model_texts, pipeline.split)  # part k belongs to sentence owner[k]
        attention = return_attention or any(pipeline.aligns(s) for s in sentences)
        if sampling is None:
            found = self._search(ids, beam, nbest, alpha, attention)
        else:
            found = self._search(ids, 1, 1, alpha, attention, sampling, owner.keys(first_line))
        done = [self._sentence(pipeline, owner, n, s, ids, found, return_attention) for n, s in enumerate(sentences)]
        results: list[Translation] = []
        n = 0
        for text, doc in zip(texts, documents):
            mine, n = done[n:n + len(doc.sentences)], n + len(doc.sentences)
            if len(mine) == 1 and not doc.layout.gaps[0] and not doc.layout.gaps[-1]:  # one sentence, nothing around it
                mine[0].source = text
                results.append(mine[0])
                continue
            joined = doc.layout.join([m.text for m in mine])
            score = sum(m.score for m in mine) / len(mine) if mine else 0.0
            results.append(Translation(text, joined, score, [(score, joined)], sentences=doc.layout.sentences,
                                       spans=[x for m in mine for x in m.spans],
                                       fallbacks=sum(m.fallbacks for m in mine)))
        return results

    def _sentence(self, pipeline: TextPipeline, owner: _Owners, n: int, sentence: Sentence, ids: list[list[int]],
                  found: list[list[Hypothesis]], return_attention: bool) -> Translation:
        """Sentence n's translation from its parts' hypotheses, re-cased and with its spans back."""
        mine = list(range(owner.start(n), owner.stop(n)))
        model_text = sentence.protected.text
        if not mine or not ids[mine[0]]:  # nothing for the model: the spans alone (or the empty translation)
            text = pipeline.finish(sentence, "", [], None, [])
            out = Translation(sentence.source, text, 0.0, [(0.0, text)])
        elif len(mine) == 1:
            out = self._translation(pipeline, sentence, ids[mine[0]], found[mine[0]], return_attention)
        else:
            joined = " ".join(self.tokenizer.decode_tgt([found[k][0].tokens for k in mine]))
            text = pipeline.finish(sentence, joined, [], None, [])
            score = sum(found[k][0].score for k in mine) / len(mine)
            out = Translation(sentence.source, text, score, [(score, text)])
        if model_text != sentence.source:
            out.model_input = model_text
        out.spans = [{"text": s.text, "kind": s.kind, **({"output": s.replacement} if s.replacement else {})}
                     for s in sentence.protected.spans]
        out.fallbacks = sentence.protected.fallbacks
        return out

    def _parts(self, sources: list[str], split: bool = True) -> tuple[_Owners, list[str], list[list[int]]]:
        """Sentences -> (which sentence each part belongs to, the parts, their subword ids): a sentence is one part
        unless it is over ``LONG`` x the training sentences' mean length (``cut_to_length``) or over the limit
        (``split_to_fit``)."""
        limit = self.max_src_tokens
        ids = self.tokenizer.encode_src(sources)
        typical = self.sentence_tokens if split else None
        long_lines = [i for i, x in enumerate(ids) if len(x) > limit or (typical and len(x) > LONG * typical)]
        if not long_lines:
            return _Owners([1] * len(sources)), sources, ids
        count = lambda texts: [len(x) for x in self.tokenizer.encode_src(texts)]  # noqa: E731
        split = {}
        for i in long_lines:
            cut = cut_to_length(sources[i], count, typical) if typical else [sources[i]]
            sizes = count(cut)  # one tokenizer call for all the parts; only those over the limit are cut again
            split[i] = [p for c, n in zip(cut, sizes) for p in (split_to_fit(c, count, limit) if n > limit else [c])]
        log.info("%d sentence(s) longer than %s subword tokens: translated in %d parts", len(split),
                 f"{LONG * typical}" if typical else limit, sum(map(len, split.values())))
        parts = [p for i, s in enumerate(sources) for p in split.get(i, [s])]
        part_ids = [x[:limit] for x in self.tokenizer.encode_src(parts)]  # the cut never bites: parts fit
        return _Owners([len(split.get(i, [s])) for i, s in enumerate(sources)]), parts, part_ids

    def _search(self, ids: list[list[int]], beam: int, nbest: int, alpha: float, return_attention: bool,
                sampling: Sampling | None = None, keys: list[tuple[int, int]] = ()) -> list[list[Hypothesis]]:
        """Subword ids of sentences -> their best ``nbest`` hypotheses each (none for an empty one), searched in
        length-sorted batches of ``decode.batch_tokens`` source tokens; with ``sampling``, one sample each, drawn
        from the random stream of ``keys[i]``."""
        d = self.cfg.decode
        found: list[list[Hypothesis]] = [[] for _ in ids]
        todo = [i for i, x in enumerate(ids) if x]
        for batch_idx in make_batches([len(ids[i]) for i in todo], None, d.batch_tokens):
            rows = [todo[j] for j in batch_idx]
            b = collate([ids[i] for i in rows], None, rows).to(self.device)
            model = self._search_model() if sampling is None else self.model
            with torch.inference_mode(), autocast(self.device, self.precision):
                if sampling is not None:
                    hyps = [[h] for h in sample_search(self.model, b.src, b.src_lens, sampling,
                                                       [keys[i] for i in rows], d.max_len_ratio, d.max_len_extra,
                                                       return_attention)]
                elif beam == 1:
                    hyps = [[h] for h in greedy_search(model, b.src, b.src_lens, d.max_len_ratio,
                                                       d.max_len_extra, return_attention)]
                else:
                    hyps = beam_search(model, b.src, b.src_lens, beam, alpha, d.max_len_ratio,
                                       d.max_len_extra, nbest, return_attention)
            for i, h in zip(rows, hyps):
                found[i] = h
        return found

    def _search_model(self):
        """What greedy and beam search decode with: the model, restricted to a lexical shortlist where
        ``decode.lexical_shortlist`` asks for one and the model allows it (a single model with a table)."""
        d = self.cfg.decode
        if not d.lexical_shortlist:
            return self.model
        if self._lexicon is None and can_shortlist(self.model):
            self._lexicon = self.lexicon_source()
        if self._lexicon is None:
            if not self._shortlist_refused:
                self._shortlist_refused = True
                log.warning("decode.lexical_shortlist ignored: %s", "this model file has no lexical table (export "
                            "it again)" if can_shortlist(self.model) else "an ensemble or an int8 output layer "
                            "scores the whole vocabulary")
            return self.model
        return LexicallyShortlisted(self.model, self._lexicon, d.lexical_words, d.lexical_frequent)

    def _translation(self, pipeline: TextPipeline, sentence: Sentence, src_ids: list[int], hyps: list[Hypothesis],
                     with_pieces: bool) -> Translation:
        texts = self.tokenizer.decode_tgt([h.tokens for h in hyps])
        src_pieces = [self.tokenizer.src.id_to_piece(i) for i in src_ids]
        if pipeline.changes(sentence):
            texts = [pipeline.finish(sentence, t, self.tokenizer.tgt_pieces(h.tokens), h.attention, src_pieces)
                     for h, t in zip(hyps, texts)]
        best = hyps[0]
        out = Translation(sentence.source, texts[0], best.score, [(h.score, t) for h, t in zip(hyps, texts)])
        if with_pieces:
            out.src_pieces = src_pieces
            out.tgt_pieces = self.tokenizer.tgt_pieces(best.tokens)
            if best.attention is not None and best.attention.shape[0] > len(best.tokens):
                out.tgt_pieces.append("</s>")
            out.attention = None if best.attention is None else best.attention.float()
        return out


class _Owners:
    """Line i owns parts start(i) .. stop(i)-1 of the flat list of parts."""

    def __init__(self, counts: list[int]):
        self.starts = [0]
        for n in counts:
            self.starts.append(self.starts[-1] + n)

    def start(self, i: int) -> int:
        return self.starts[i]

    def stop(self, i: int) -> int:
        return self.starts[i + 1]

    def keys(self, first_line: int) -> list[tuple[int, int]]:
        """(line in the input, part within the line) of every part: what names a sampled part's random stream."""
        return [(first_line + i, k) for i in range(len(self.starts) - 1) for k in range(self.stop(i) - self.start(i))]


def _member_path(member: str) -> Path:
    """An ensemble member: a RUN folder (its best checkpoint, else last) or a checkpoint file."""
    path = Path(member)
    if path.is_dir():
        return RunDir.of(path).model_path("final")
    if not path.is_file():
        raise MTError(f"ensemble member not found: {member} (give a run folder or a checkpoint file)")
    return path


def _load_model(path: Path, meta: dict, run: RunDir, device: torch.device,
                backend: str | None) -> tuple[Seq2Seq, Config, dict]:
    """Checkpoint -> (model in eval mode, its config, the raw state); it must use ``run``'s tokenizer."""
    state = load_checkpoint(path, map_location=device)
    if state.get("tokenizer_sha256") != meta["tokenizer_sha256"]:
        raise MTError(f"checkpoint {path} was trained with a different tokenizer than {run.data_dir} "
                      "(another language pair, corpus or vocabulary); use a checkpoint of this run's prepared data")
    model, cfg = model_from_state(state, str(path), backend)
    return model.to(device).eval(), cfg, state


def model_from_state(state: dict, source: str, backend: str | None = None) -> tuple[Seq2Seq, Config]:
    """A checkpoint's (or exported file's) ``config``, ``vocab`` and ``model`` -> the model in eval mode, its
    config. ``backend``: as ``Translator.from_run``. ``source`` names the file in errors."""
    cfg = config_from_dict(state["config"], source=source)
    vocab = state.get("vocab")
    if not (isinstance(vocab, (list, tuple)) and len(vocab) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in vocab)):
        raise MTError(f"{source}: field 'vocab' must be two positive sizes, got {str(vocab)[:60]}")
    src_vocab, tgt_vocab = vocab
    build = resolve_backend(backend or cfg.model.backend).build_model
    with torch.device("meta"):  # shapes first, nothing allocated: a config may claim any size
        expected = {k: tuple(v.shape) for k, v in build(cfg.model, src_vocab, tgt_vocab, init_weights=False)
                    .state_dict().items()}
    _check_shapes(state["model"], expected, source)
    model = build(cfg.model, src_vocab, tgt_vocab, init_weights=False)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise MTError(f"{source} does not match its own model config: {str(e).splitlines()[0]}") from None
    return model.eval(), cfg


def _check_shapes(weights: dict, expected: dict[str, tuple], source: str) -> None:
    """The file's tensors against the shapes its config gives, parameter by parameter (one line naming the first
    that differs), before the model is built for real."""
    for name, shape in expected.items():
        if name not in weights:
            raise MTError(f"{source}: parameter '{name}' is missing")
        if tuple(weights[name].shape) != shape:
            raise MTError(f"{source}: parameter '{name}' has shape {tuple(weights[name].shape)} but its config "
                          f"gives {shape}")
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise MTError(f"{source}: parameter '{extra[0]}' is not part of the model its config describes")


def _quantize(model: Seq2Seq, kind: str, device: torch.device) -> Seq2Seq:
    if kind != "int8":
        raise MTError(f"unknown quantisation '{kind}'; valid: int8")
    if device.type != "cpu":
        raise MTError("--quantize int8 is for CPU decoding; drop --quantize on a GPU")
    import warnings

    # Every linear layer and LSTM but the output layer, whose search already multiplies in int8 and rescores its
    # candidates in fp32 (mt.fast.top_tokens), and the attention's energy vector, used in cache-sized blocks.
    keep = {"decoder.output", "decoder.attention.energy"}
    spec = {name: torch.ao.quantization.default_dynamic_qconfig for name, m in model.named_modules()
            if isinstance(m, (torch.nn.Linear, torch.nn.LSTM)) and name not in keep}
    with warnings.catch_warnings():  # torch.ao's dynamic quantisation warns that it is deprecated; it still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), spec, dtype=torch.qint8)
