"""The typed configuration tree: data, model, train and decode sections. Its defaults ARE the recipe.

``Config()`` is the measured recipe (the evidence for every value: docs/recipe.md): ``mt prepare`` and
``mt train`` without ``--config``, ``make train`` and the Python API all start from it, and a config file only
lists what differs. A config is loaded from YAML (``load_config``), then adjusted with ``key=value`` overrides
that use the same dotted names as the YAML (``apply_overrides(cfg, ["model.cell=gru", "train.lr=5e-4"])``).
Unknown keys, wrong types and values outside their choices raise ``MTError`` naming the key and what would be
valid. Every key carries a one-line explanation (``describe``), which ``save_config`` writes beside it, so a
RUN/config.yaml explains itself.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mt.errors import MTError
from mt.files import atomic_write

__all__ = [
    "Config",
    "DataConfig",
    "DecodeConfig",
    "ModelConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "describe",
    "load_config",
    "save_config",
]


def _key(default: Any, doc: str) -> Any:
    """A config key: its default and the one line that explains it (written beside it in RUN/config.yaml)."""
    return field(default=default, metadata={"doc": doc})


@dataclass
class DataConfig:
    src: str = _key("en", "source language code: file suffix (train.en) or Hub column name")
    tgt: str = _key("de", "target language code")
    vocab_size: int = _key(8000, "SentencePiece pieces (per model); lowered with a warning for a corpus too small")
    joint_vocab: bool = _key(True, "one SentencePiece model for both languages (false: one per language; then "
                                   "also model.share_embeddings=false)")
    spm_model_type: Literal["unigram", "bpe", "char", "word"] = _key("unigram", "SentencePiece model type")
    character_coverage: float = _key(1.0, "share of characters the subword model covers (0.9995 for CJK scripts)")
    byte_fallback: bool = _key(True, "a character the tokenizer lacks becomes its UTF-8 bytes (256 pieces of the "
                                     "vocabulary), never <unk>: the model sees what it is given")
    max_tokens: int = _key(100, "training pairs with a side longer than this many subwords are dropped")
    max_ratio: float = _key(3.0, "training pairs whose longer side has over max_ratio x the other's tokens...")
    ratio_min_tokens: int = _key(10, "...are dropped, once the longer side has at least this many tokens")
    dedup: bool = _key(True, "drop exact duplicate training pairs")
    filter_copies: bool = _key(True, "drop training pairs whose target is a copy of the source")
    filter_numbers: bool = _key(False, "drop training pairs with numbers on both sides and none in common")
    filter_language: bool = _key(False, "drop training pairs with a side py3langid is sure is in another language "
                                        "than data.src/data.tgt (a language guess per side of every pair)")
    spm_sample_size: int = _key(1_000_000, "SentencePiece trains on a seeded sample of this many sentences (0: all)")


@dataclass
class ModelConfig:
    cell: Literal["lstm", "gru", "rnn"] = _key("lstm", "recurrent cell of encoder and decoder: lstm | gru | rnn")
    attention: Literal["bahdanau", "luong", "none"] = _key(
        "bahdanau", "bahdanau (additive) | luong (multiplicative) | none (the final encoder state only)")
    emb_dim: int = _key(256, "E: source and target embedding size")
    hidden_dim: int = _key(512, "H: decoder size = encoder output size (H/2 per direction when bidirectional)")
    layers: int = _key(1, "recurrent layers in the encoder and in the decoder")
    bidirectional: bool = _key(True, "the encoder reads the source in both directions")
    dropout: float = _key(0.4, "on embeddings, between layers and on the attentional vector")
    tie_embeddings: bool = _key(True, "output layer = target embeddings (through a readout H -> E when E != H)")
    share_embeddings: bool = _key(True, "source embeddings = target embeddings (needs data.joint_vocab)")
    init_encoder_from: str = _key("", "language-model checkpoint (mt pretrain) for the encoder (source side)")
    init_decoder_from: str = _key("", "language-model checkpoint (mt pretrain) for the decoder (target side)")
    init_from: str = _key("", "a translation run (its final model) or checkpoint to start from, with a fresh "
                               "optimizer and schedule: fine-tuning, parent->child transfer (mt train --init-from)")
    backend: Literal["auto", "reference", "fast"] = _key(
        "auto", "which implementation computes the model: reference (mt/model, written to be read) | fast "
                "(mt/fast, the same model with CPU speed paths, tested equal) | auto (fast); checkpoints fit both")


@dataclass
class TrainConfig:
    max_epochs: int = _key(100, "upper bound on passes over the training data")
    max_minutes: float = _key(60.0, "wall-clock budget; the run stops with complete checkpoints (0: none)")
    batch_tokens: int = _key(4000, "target tokens per batch, padding included (length-bucketed batches)")
    lr: float = _key(0.002, "Adam learning rate after warm-up")
    warmup_steps: int = _key(0, "linear warm-up updates from 0 to lr")
    schedule: Literal["plateau", "inverse_sqrt", "constant"] = _key(
        "plateau", "plateau (decay when validation stalls) | inverse_sqrt (after warm-up) | constant")
    lr_decay: float = _key(0.5, "plateau: factor applied to the learning rate")
    lr_patience: int = _key(2, "plateau: validations without progress before a decay")
    plateau_metric: Literal["loss", "bleu"] = _key("loss", "plateau: what it watches, validation loss | bleu")
    plateau_threshold: float = _key(0.01, "plateau: relative improvement that counts as progress (0.01 = 1%)")
    min_lr: float = _key(1e-5, "plateau: lower bound of the learning rate")
    patience: int = _key(5, "early stopping: validations in which neither BLEU nor the loss made progress")
    validate_every: int = _key(1000, "validate after this many updates, or at an epoch's end when sooner...")
    validate_min_steps: int = _key(100, "...but at an epoch's end only once this many updates followed the last")
    validate_minutes: float = _key(0.0, "also validate this many minutes after the last validation (0: off)")
    clip: float = _key(1.0, "gradient-norm clipping threshold (0: off)")
    label_smoothing: float = _key(0.1, "label-smoothed cross-entropy (0: plain)")
    weight_decay: float = _key(0.0, "AdamW weight decay (0: Adam)")
    seed: int = _key(42, "seeds data order, initialisation and dropout")
    precision: Literal["auto", "fp32", "bf16"] = _key(
        "auto", "auto (bf16 where the CPU/GPU has bf16 units, else fp32) | fp32 | bf16")
    device: Literal["auto", "cpu", "cuda"] = _key("auto", "auto (CUDA when present) | cpu | cuda")
    threads: int = _key(0, "CPU threads for torch (0: all cores)")
    checkpoint_minutes: float = _key(5.0, "also save last.pt this often within an epoch")
    keep_checkpoints: int = _key(5, "keep the weights of the last N validations (step-NNNNNNNN.pt) to average")
    average_last: int = _key(5, "at the end final.pt = best.pt or the average of the newest N kept checkpoints "
                                "(all kept, when fewer), the better on validation (0: best.pt)")
    freeze_pretrained_epochs: int = _key(0, "weights from model.init_*_from stay fixed for the first N epochs")
    log_every: int = _key(50, "updates between records in train_log.jsonl")
    log_to: Literal["none", "tensorboard"] = _key(
        "none", "also write the log's scalars for TensorBoard to RUN/tensorboard (needs the tensorboard extra)")
    val_max_sentences: int = _key(0, "validation BLEU on at most this many sentences (0: all)")
    rdrop_alpha: float = _key(1.0, "R-Drop: weight of the symmetric KL between two dropout passes (0: off; "
                                   "2x compute per update)")
    rdrop_min_updates: int = _key(3000, "with a time budget, R-Drop stays on only if the budget holds this many "
                                        "updates at its pace, measured over the first updates (0: always on)")


@dataclass
class DecodeConfig:
    beam: int = _key(5, "beam size (1: greedy)")
    alpha: float = _key(1.0, "length penalty exponent of Wu et al. (2016) (0: none)")
    max_len_ratio: float = _key(1.5, "outputs stop at max_len_ratio x source length + max_len_extra tokens")
    max_len_extra: int = _key(10, "see max_len_ratio")
    batch_tokens: int = _key(6000, "source tokens per decoding batch")
    precision: Literal["auto", "fp32", "bf16"] = _key(
        "auto", "auto (bf16 where the CPU/GPU has bf16 units, else fp32) | fp32 | bf16")
    candidates: Literal["approximate", "exact"] = _key(
        "approximate", "fast backend: each step's candidate tokens found by a bf16 (bf16 decoding) or int8 (fp32, "
                       "x86) multiply, rescored in fp32 (an approximation: docs/results.md) | exact (fp32)")
    lexical_shortlist: bool = _key(False, "score only each sentence's likely target subwords: the translations of "
                                          "its source subwords learned from the training pairs and the most frequent "
                                          "(mt.decode.lexical_shortlist; an approximation: docs/results.md)")
    lexical_words: int = _key(20, "lexical shortlist: target subwords taken per source subword")
    lexical_frequent: int = _key(100, "lexical shortlist: the most frequent target subwords, scored for every sentence")
    split_sentences: bool = _key(True, "translate each sentence of a text alone, its spacing and paragraphs kept; "
                                       "stretches without sentence ends cut near the training sentences' length")
    protect_spans: bool = _key(True, "copy links, e-mail addresses, numbers, codes and words in unseen characters "
                                     "instead of translating them (mt.decode.protect)")
    recase: bool = _key(True, "translate lines in CAPITALS or Title Case as sentence case and re-case the output")
    markup: Literal["none", "html", "markdown"] = _key(
        "none", "inline markup of the input, kept around the words it marks and never shown to the model "
                "(mt.decode.markup): none | html | markdown")


def _positive(v) -> bool:
    return v > 0


def _non_negative(v) -> bool:
    return v >= 0


def _fraction(v) -> bool:
    return 0 <= v < 1


# The rule of each key that has one beyond its type, and how the error message states it
_RULES: dict[str, tuple] = {
    **{key: (_positive, "> 0") for key in (
        "data.vocab_size", "data.max_tokens", "model.emb_dim", "model.hidden_dim", "model.layers", "train.max_epochs",
        "train.batch_tokens", "train.lr", "train.log_every", "train.validate_every", "decode.beam",
        "decode.max_len_ratio", "decode.batch_tokens")},
    **{key: (_fraction, "in [0, 1)") for key in ("model.dropout", "train.label_smoothing", "train.plateau_threshold")},
    # caps far above any model of this toolkit: a file someone else made may say anything (beam 10^9 ...)
    "decode.beam": (lambda v: 0 < v <= 1000, "in 1..1000"),
    "decode.max_len_ratio": (lambda v: 0 < v <= 100, "in (0, 100]"),
    "decode.max_len_extra": (lambda v: 0 <= v <= 10_000, "in 0..10000"),
    "decode.batch_tokens": (lambda v: 0 < v <= 10_000_000, "in 1..10000000"),
    "decode.lexical_words": (lambda v: 0 < v <= 1000, "in 1..1000"),
    "decode.lexical_frequent": (lambda v: 0 <= v <= 100_000, "in 0..100000"),
    "data.max_tokens": (lambda v: 0 < v <= 1_000_000, "in 1..1000000"),
    "model.layers": (lambda v: 0 < v <= 64, "in 1..64"),
    **{key: (_non_negative, ">= 0") for key in (
        "train.validate_min_steps", "train.validate_minutes", "train.keep_checkpoints", "train.average_last",
        "train.rdrop_alpha",
        "train.rdrop_min_updates")},
}


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def get(self, key: str) -> Any:
        section, _, name = key.partition(".")
        return getattr(getattr(self, section), name)

    def validate(self) -> Config:
        """The rules of single keys (``_RULES``) and the cross-field checks that types alone cannot express."""
        for key, (holds, rule) in _RULES.items():
            if not holds(self.get(key)):
                raise MTError(f"config key '{key}' must be {rule}, got {self.get(key)}")
        m = self.model
        if m.bidirectional and m.hidden_dim % 2:
            raise MTError(f"config key 'model.hidden_dim' must be even with a bidirectional encoder, got {m.hidden_dim}")
        if m.share_embeddings and not self.data.joint_vocab:
            raise MTError("config key 'model.share_embeddings' needs 'data.joint_vocab: true' (one vocabulary "
                          "for both sides); for a vocabulary per side also set model.share_embeddings=false")
        if m.share_embeddings and m.init_encoder_from and m.init_decoder_from:
            raise MTError("config key 'model.share_embeddings' with both 'model.init_encoder_from' and "
                          "'model.init_decoder_from': the two language models' embeddings would overwrite each "
                          "other; initialise one side only or set model.share_embeddings=false")
        if m.init_from and (m.init_encoder_from or m.init_decoder_from):
            raise MTError("config key 'model.init_from' (a whole translator) with 'model.init_encoder_from' or "
                          "'model.init_decoder_from' (language models): start from one or the other")
        if self.data.src == self.data.tgt:
            raise MTError(f"config keys 'data.src' and 'data.tgt' must differ, both are '{self.data.src}'")
        return self


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


def describe(section: str, key: str) -> str:
    """The one-line explanation of ``section.key``."""
    cls = type(getattr(Config(), section))
    return next(f.metadata.get("doc", "") for f in dataclasses.fields(cls) if f.name == key)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(c) for c in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotated type ``tp``; ints are accepted where floats are expected."""
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise MTError(f"config key '{key}' must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
        if value is None:
            return ""
    raise MTError(f"config key '{key}' must be {_type_name(tp)}; got {value!r} ({type(value).__name__})")


def _section_types(section_cls: type) -> dict[str, Any]:
    return typing.get_type_hints(section_cls, include_extras=False)


def config_from_dict(raw: dict[str, Any] | None, source: str = "config") -> Config:
    """Build a validated ``Config`` from nested dicts; missing keys keep their defaults (the recipe)."""
    raw = raw or {}
    if not isinstance(raw, dict):
        raise MTError(f"{source}: expected a mapping with sections {', '.join(_SECTIONS)}")
    cfg = Config()
    for section, values in raw.items():
        if section not in _SECTIONS:
            raise MTError(f"{source}: unknown config section '{section}'; valid: {', '.join(_SECTIONS)}")
        if values is None:
            continue
        if not isinstance(values, dict):
            raise MTError(f"{source}: config section '{section}' must be a mapping of keys to values")
        obj = getattr(cfg, section)
        types_ = _section_types(type(obj))
        for key, value in values.items():
            if key not in types_:
                raise MTError(
                    f"{source}: unknown config key '{section}.{key}'; valid keys in '{section}': {', '.join(types_)}"
                )
            setattr(obj, key, _coerce(f"{section}.{key}", value, types_[key]))
    return cfg.validate()


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MTError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MTError(f"cannot read config file {path}: {e}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise MTError(f"{path}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None
    return config_from_dict(raw, source=str(path))


def config_yaml(cfg: Config) -> str:
    """Every key of ``cfg`` as YAML, each with its explanation as a comment; the keys that differ from the
    recipe (``Config()``) are marked."""
    recipe = config_to_dict(Config())
    lines = ["# The resolved config of this run. Keys marked (changed) differ from the recipe, the package's",
             "# defaults (docs/recipe.md has the evidence for each). Override with key=value, e.g. train.lr=1e-3."]
    for section, values in config_to_dict(cfg).items():
        lines.append(f"{section}:")
        for key, value in values.items():
            text = yaml.safe_dump({key: value}, default_flow_style=True, width=1000).strip()[1:-1]
            mark = " (changed)" if value != recipe[section][key] else ""
            lines.append(f"  {text:<30} # {describe(section, key)}{mark}")
    return "\n".join(lines) + "\n"


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write(path, config_yaml(cfg), what="config")


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Apply ``section.key=value`` strings; values are parsed as YAML scalars (``1e-3``, ``true``, ``lstm``)."""
    raw = config_to_dict(cfg)
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or "." not in key:
            raise MTError(f"override '{item}' must look like section.key=value, e.g. model.cell=gru")
        section, _, name = key.partition(".")
        if section not in raw:
            raise MTError(f"unknown config section '{section}' in override '{item}'; valid: {', '.join(raw)}")
        if name not in raw[section]:
            raise MTError(
                f"unknown config key '{key}' in override '{item}'; valid keys in '{section}': {', '.join(raw[section])}"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError:
            value = text
        if isinstance(value, (dict, list)):
            value = text  # a bracketed string is still a string
        raw[section][name] = value
    return config_from_dict(raw, source="command line")
