"""Load a trained RUN and translate strings: the one entry point for the CLI, evaluation and the demo.

    translator = Translator.from_run("runs/multi30k-en-de")
    translator.translate(["A dog runs on the beach."])[0].text
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mt.checkpoint import load_checkpoint
from mt.config import Config, config_from_dict
from mt.data.batching import collate, make_batches
from mt.data.tokenizer import Tokenizer
from mt.decode.beam import beam_search
from mt.decode.ensemble import Ensemble
from mt.decode.greedy import greedy_search
from mt.decode.search import Hypothesis
from mt.device import autocast, resolve_device, resolve_precision, use_threads
from mt.errors import MTError
from mt.model import Seq2Seq, build_model
from mt.run import FINAL, RunDir
from mt.text import normalize

__all__ = ["Translation", "Translator", "format_translations"]

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


class Translator:
    def __init__(self, model: Seq2Seq, tokenizer: Tokenizer, cfg: Config, device: torch.device | None = None):
        self.model = model.eval()
        self.tokenizer, self.cfg = tokenizer, cfg
        self.device = device or next(model.parameters()).device
        self.max_src_tokens = cfg.data.max_tokens
        # decode.precision: bf16 multiplies (autocast) where the hardware has bf16 units; scores stay fp32
        self.precision = resolve_precision(cfg.decode.precision, self.device)[0]
        self.facts: dict = {}  # what from_run knows about the checkpoint: languages, size, training progress

    @classmethod
    def from_run(cls, run: str | os.PathLike | RunDir, checkpoint: str = "final", device: str = "auto",
                 threads: int = 0, quantize: str | None = None, ensemble: list[str] | tuple = ()) -> Translator:
        """Load RUN's tokenizer and checkpoint (``best``, ``last``, another name in RUN/checkpoints or a path).
        ``quantize="int8"`` applies dynamic int8 quantisation (CPU only) to the linear layers and the encoder
        LSTM. ``ensemble``: more runs (their best checkpoint) or checkpoint files of the same prepared data,
        decoded together with this one (``mt.decode.ensemble``)."""
        run = run if isinstance(run, RunDir) else RunDir.of(run)
        meta = run.meta()
        dev = resolve_device(device)
        use_threads(dev, threads)
        path = _checkpoint_path(run, checkpoint)
        model, cfg, state = _load_model(path, meta, run, dev)
        n_params = model.num_parameters()
        members = [model] + [_load_model(_member_path(m), meta, run, dev)[0] for m in ensemble]
        if quantize:
            members = [_quantize(m, quantize, dev) for m in members]
        model = members[0] if len(members) == 1 else Ensemble(members)
        translator = cls(model.to(dev), run.tokenizer(), cfg, dev)
        if quantize:
            translator.precision = "fp32"  # int8 layers take fp32 inputs
        progress = state.get("progress", {})
        translator.facts = {"checkpoint": str(path), "src": meta["src"], "tgt": meta["tgt"],
                            "parameters": n_params, "ensemble": [str(m) for m in ensemble],
                            "step": progress.get("step"), "epoch": progress.get("epoch"),
                            "train_minutes": round(progress["train_seconds"] / 60, 1) if "train_seconds" in progress else None,
                            "best_val_bleu": progress.get("best_score", progress.get("best_bleu")),
                            "final": state.get("final")}  # the comparison that chose final.pt (mt.recipes.averaging)
        return translator

    def translate(self, texts: list[str], beam: int | None = None, nbest: int = 1, alpha: float | None = None,
                  return_attention: bool = False) -> list[Translation]:
        """Translate sentences; result i answers texts[i]. Empty or blank input gives an empty translation.
        beam, alpha: None = the run's decode.* setting."""
        d = self.cfg.decode
        beam = max(beam or d.beam, nbest)
        alpha = d.alpha if alpha is None else alpha
        sources = [normalize(t) for t in texts]
        ids = self.tokenizer.encode_src(sources)
        too_long = sum(len(x) > self.max_src_tokens for x in ids)
        if too_long:
            log.warning("%d input line(s) longer than %d subword tokens were truncated", too_long, self.max_src_tokens)
            ids = [x[: self.max_src_tokens] for x in ids]
        results: list[Translation | None] = [None] * len(texts)
        todo = [i for i, x in enumerate(ids) if x]
        for i in set(range(len(texts))) - set(todo):
            results[i] = Translation(texts[i], "", 0.0, [(0.0, "")])  # the empty translation is the only one
        for batch_idx in make_batches([len(ids[i]) for i in todo], None, d.batch_tokens):
            rows = [todo[j] for j in batch_idx]
            b = collate([ids[i] for i in rows], None, rows).to(self.device)
            with torch.inference_mode(), autocast(self.device, self.precision):
                if beam == 1:
                    found = [[h] for h in greedy_search(self.model, b.src, b.src_lens, d.max_len_ratio,
                                                        d.max_len_extra, return_attention)]
                else:
                    found = beam_search(self.model, b.src, b.src_lens, beam, alpha, d.max_len_ratio,
                                        d.max_len_extra, nbest, return_attention)
            for i, hyps in zip(rows, found):
                results[i] = self._translation(texts[i], sources[i], ids[i], hyps, return_attention)
        return results  # type: ignore[return-value]

    def _translation(self, raw: str, source: str, src_ids: list[int], hyps: list[Hypothesis],
                     with_pieces: bool) -> Translation:
        texts = self.tokenizer.decode_tgt([h.tokens for h in hyps])
        best = hyps[0]
        out = Translation(raw, texts[0], best.score, [(h.score, t) for h, t in zip(hyps, texts)])
        if with_pieces:
            out.src_pieces = [self.tokenizer.src.id_to_piece(i) for i in src_ids]
            out.tgt_pieces = self.tokenizer.tgt_pieces(best.tokens)
            if best.attention is not None and best.attention.shape[0] > len(best.tokens):
                out.tgt_pieces.append("</s>")
            out.attention = None if best.attention is None else best.attention.float()
        return out


def format_translations(results: list[Translation], nbest: int = 1) -> str:
    """What ``mt translate`` writes: one line per input; with ``nbest`` > 1 each input's best N (or fewer)
    ``score ||| translation`` lines, best first, then one empty line (an empty input: ``0.0000 ||| ``)."""
    if nbest > 1:
        return "".join("".join(f"{sc:.4f} ||| {text}\n" for sc, text in r.nbest) + "\n" for r in results)
    return "".join(r.text + "\n" for r in results)


def _checkpoint_path(run: RunDir, checkpoint: str) -> Path:
    if checkpoint == "final" and not (run.checkpoint_dir / FINAL).is_file():
        checkpoint = "best"  # training has not chosen (yet): its best checkpoint (or last.pt below)
    named = run.checkpoint_dir / f"{checkpoint}.pt"
    path = named if checkpoint in ("final", "best", "last") or named.is_file() else Path(checkpoint)
    if checkpoint == "best" and not path.is_file() and (run.checkpoint_dir / "last.pt").is_file():
        path = run.checkpoint_dir / "last.pt"
    if not path.is_file():
        raise MTError(f"no trained model in {run.root}: {path} not found (run `make train` or `mt train --run {run.root}`)")
    return path


def _member_path(member: str) -> Path:
    """An ensemble member: a RUN folder (its best checkpoint, else last) or a checkpoint file."""
    path = Path(member)
    if path.is_dir():
        return _checkpoint_path(RunDir.of(path), "final")
    if not path.is_file():
        raise MTError(f"ensemble member not found: {member} (give a run folder or a checkpoint file)")
    return path


def _load_model(path: Path, meta: dict, run: RunDir, device: torch.device) -> tuple[Seq2Seq, Config, dict]:
    """Checkpoint -> (model in eval mode, its config, the raw state); it must use ``run``'s tokenizer."""
    state = load_checkpoint(path, map_location=device)
    if state.get("tokenizer_sha256") != meta["tokenizer_sha256"]:
        raise MTError(f"checkpoint {path} was trained with a different tokenizer than {run.data_dir} "
                      "(another language pair, corpus or vocabulary); use a checkpoint of this run's prepared data")
    cfg = config_from_dict(state["config"], source=str(path), saved=True)
    src_vocab, tgt_vocab = state["vocab"]
    model = build_model(cfg.model, src_vocab, tgt_vocab)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise MTError(f"checkpoint {path} does not match its own model config: {str(e).splitlines()[0]}") from None
    return model.to(device).eval(), cfg, state


def _quantize(model: Seq2Seq, kind: str, device: torch.device) -> Seq2Seq:
    if kind != "int8":
        raise MTError(f"unknown quantisation '{kind}'; valid: int8")
    if device.type != "cpu":
        raise MTError("--quantize int8 is for CPU decoding; drop --quantize on a GPU")
    import warnings

    with warnings.catch_warnings():  # torch.ao's dynamic quantisation warns that it is deprecated; it still works
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model.eval(), {torch.nn.Linear, torch.nn.LSTM}, dtype=torch.qint8)
