"""The typed configuration tree: data, model, train and decode sections.

A config is loaded from YAML (``load_config``), then adjusted with ``key=value`` overrides that use the same
dotted names as the YAML (``apply_overrides(cfg, ["model.cell=gru", "train.lr=5e-4"])``). Unknown keys, wrong
types and values outside their choices raise ``MTError`` naming the key and what would be valid.
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
    "load_config",
    "save_config",
]


@dataclass
class DataConfig:
    src: str = "en"  # source language code (file suffix / column name)
    tgt: str = "de"  # target language code
    vocab_size: int = 8000  # SentencePiece pieces (per model); lowered with a warning for tiny corpora
    joint_vocab: bool = True  # one SentencePiece model for both sides (else one per side)
    spm_model_type: Literal["unigram", "bpe", "char", "word"] = "unigram"
    character_coverage: float = 1.0  # share of characters the SentencePiece model must cover
    max_tokens: int = 100  # training pairs with a side longer than this (subwords) are dropped
    max_ratio: float = 3.0  # training pairs whose longer side has over this many times the tokens of the other
    ratio_min_tokens: int = 10  # ...are dropped, but only when the longer side has at least this many tokens
    dedup: bool = True  # drop exact duplicate training pairs
    spm_sample_size: int = 1_000_000  # SentencePiece trains on a seeded random sample of this many sentences (0 = all)


@dataclass
class ModelConfig:
    cell: Literal["lstm", "gru", "rnn"] = "lstm"  # recurrent cell of encoder and decoder
    attention: Literal["bahdanau", "luong", "none"] = "bahdanau"
    emb_dim: int = 256  # E, source and target embeddings
    hidden_dim: int = 512  # H: decoder state size and encoder output size (both directions together)
    layers: int = 1  # L, recurrent layers in encoder and in decoder
    bidirectional: bool = True  # encoder reads both directions (each direction has H/2 units)
    dropout: float = 0.3  # on embeddings, between layers and on the attentional hidden state
    word_dropout: float = 0.0  # training only: share of input tokens whose embedding is zeroed (word dropout)
    word_dropout_sides: Literal["both", "source", "target"] = "both"  # where word dropout acts: source and/or target
    recurrent_weight_dropout: float = 0.0  # training only: DropConnect on the hidden-to-hidden weight matrices
    tie_embeddings: bool = False  # output layer = target embeddings (E != H: through a readout H -> E)
    share_embeddings: bool = False  # source embeddings = target embeddings (needs data.joint_vocab)
    init_encoder_from: str = ""  # language-model checkpoint to initialise the encoder from (source side)
    init_decoder_from: str = ""  # language-model checkpoint to initialise the decoder from (target side)


@dataclass
class TrainConfig:
    max_epochs: int = 30
    max_minutes: float = 0.0  # wall-clock budget for training; 0 means no limit
    batch_tokens: int = 4000  # target tokens per batch (padding included)
    lr: float = 1e-3  # Adam learning rate after warm-up
    warmup_steps: int = 0  # linear warm-up from 0 to lr
    schedule: Literal["plateau", "inverse_sqrt", "constant"] = "plateau"
    lr_decay: float = 0.5  # plateau: multiply lr by this when the watched validation metric stalls
    lr_patience: int = 1  # plateau: validations without improvement before decaying
    plateau_metric: Literal["loss", "bleu"] = "loss"  # plateau: what it watches (validation loss or BLEU)
    plateau_threshold: float = 0.01  # plateau: relative improvement that counts (0.01: 1% better than the best)
    min_lr: float = 1e-5  # plateau: never go below
    patience: int = 5  # early stopping: validations in which neither BLEU nor the loss (by plateau_threshold) improved
    validate_every: int = 1000  # validate after this many updates, or at the end of an epoch when that comes sooner...
    validate_min_steps: int = 100  # ...but at an epoch's end only once this many updates followed the last validation
    validate_minutes: float = 0.0  # also validate after this many minutes of training since the last one (0: off)
    clip: float = 1.0  # gradient-norm clipping (0 disables)
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    seed: int = 42
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the CPU/GPU has bf16 units, else fp32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0  # CPU threads for torch; 0 = all cores
    checkpoint_minutes: float = 5.0  # also save last.pt mid-epoch this often
    keep_checkpoints: int = 0  # keep the weights of the last N validations (step-NNNNNNNN.pt) for `mt average`
    average_last: int = 0  # at the end, average the newest N kept checkpoints; final.pt = it or best.pt, the better on val
    freeze_pretrained_epochs: int = 0  # keep weights from model.init_*_from fixed for the first N epochs
    log_every: int = 50  # steps between train_log.jsonl records
    val_max_sentences: int = 0  # validate BLEU on at most this many sentences (0 = whole split)
    subword_alpha: float = 0.0  # subword regularisation: SentencePiece sampling smoothing for training pairs (0 = off)
    subword_nbest: int = 64  # ...sampled from the n best segmentations (-1 = all); BPE models ignore it
    ema_decay: float = 0.0  # keep an exponential moving average of the weights with this decay (0 = off; mt.ema)
    rdrop_alpha: float = 0.0  # R-Drop: weight of the symmetric KL between two dropout passes (0 = off; 2x compute)
    rdrop_min_epochs: int = 0  # with a time budget, R-Drop stays on only if the budget holds this many epochs at
                               # its pace, measured between the first two validations (0 = always on)
    rdrop_from_epoch: int = 1  # R-Drop only from this epoch on (1 = from the start): the first epochs train at the
                               # plain pace


@dataclass
class DecodeConfig:
    beam: int = 5
    alpha: float = 1.0  # length penalty exponent of Wu et al. (2016); 0 disables
    coverage: float = 0.0  # coverage penalty weight beta of Wu et al. (2016) in beam search; 0 disables
    max_len_ratio: float = 1.5  # hypotheses stop at max_len_ratio * source length + max_len_extra
    max_len_extra: int = 10
    batch_tokens: int = 6000  # source tokens per decoding batch
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the CPU/GPU has bf16 units, else fp32


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)

    def validate(self) -> Config:
        """Cross-field checks that types alone cannot express."""
        m, t, d = self.model, self.train, self.decode
        positive = {
            "data.vocab_size": self.data.vocab_size,
            "data.max_tokens": self.data.max_tokens,
            "model.emb_dim": m.emb_dim,
            "model.hidden_dim": m.hidden_dim,
            "model.layers": m.layers,
            "train.max_epochs": t.max_epochs,
            "train.batch_tokens": t.batch_tokens,
            "train.lr": t.lr,
            "train.log_every": t.log_every,
            "train.validate_every": t.validate_every,
            "decode.beam": d.beam,
            "decode.max_len_ratio": d.max_len_ratio,
            "decode.batch_tokens": d.batch_tokens,
        }
        for key, value in positive.items():
            if value <= 0:
                raise MTError(f"config key '{key}' must be > 0, got {value}")
        for key in ("dropout", "word_dropout", "recurrent_weight_dropout"):
            if not 0.0 <= getattr(m, key) < 1.0:
                raise MTError(f"config key 'model.{key}' must be in [0, 1), got {getattr(m, key)}")
        for key in ("validate_min_steps", "validate_minutes"):
            if getattr(t, key) < 0:
                raise MTError(f"config key 'train.{key}' must be >= 0, got {getattr(t, key)}")
        if not 0.0 <= t.plateau_threshold < 1.0:
            raise MTError(f"config key 'train.plateau_threshold' must be in [0, 1), got {t.plateau_threshold}")
        if t.average_last > max(t.keep_checkpoints, 1) or t.average_last < 0:
            raise MTError(f"config key 'train.average_last' must be between 0 and train.keep_checkpoints "
                          f"({t.keep_checkpoints}), got {t.average_last}")
        if not 0.0 <= t.subword_alpha <= 1.0:
            raise MTError(f"config key 'train.subword_alpha' must be in [0, 1], got {t.subword_alpha}")
        if t.subword_nbest == 0 or t.subword_nbest < -1:
            raise MTError(f"config key 'train.subword_nbest' must be -1 (all) or >= 1, got {t.subword_nbest}")
        if not 0.0 <= t.ema_decay < 1.0:
            raise MTError(f"config key 'train.ema_decay' must be in [0, 1), got {t.ema_decay}")
        if d.coverage < 0:
            raise MTError(f"config key 'decode.coverage' must be >= 0, got {d.coverage}")
        if t.rdrop_alpha < 0:
            raise MTError(f"config key 'train.rdrop_alpha' must be >= 0, got {t.rdrop_alpha}")
        if t.rdrop_min_epochs < 0:
            raise MTError(f"config key 'train.rdrop_min_epochs' must be >= 0, got {t.rdrop_min_epochs}")
        if t.rdrop_from_epoch < 1:
            raise MTError(f"config key 'train.rdrop_from_epoch' must be >= 1, got {t.rdrop_from_epoch}")
        if not 0.0 <= t.label_smoothing < 1.0:
            raise MTError(f"config key 'train.label_smoothing' must be in [0, 1), got {t.label_smoothing}")
        if m.bidirectional and m.hidden_dim % 2:
            raise MTError(f"config key 'model.hidden_dim' must be even with a bidirectional encoder, got {m.hidden_dim}")
        if m.share_embeddings and not self.data.joint_vocab:
            raise MTError("config key 'model.share_embeddings' needs 'data.joint_vocab: true' (one vocabulary "
                          "for both sides); for a vocabulary per side also set model.share_embeddings=false")
        if m.share_embeddings and m.init_encoder_from and m.init_decoder_from:
            raise MTError("config key 'model.share_embeddings' with both 'model.init_encoder_from' and "
                          "'model.init_decoder_from': the two language models' embeddings would overwrite each "
                          "other; initialise one side only or set model.share_embeddings=false")
        if self.data.src == self.data.tgt:
            raise MTError(f"config keys 'data.src' and 'data.tgt' must differ, both are '{self.data.src}'")
        return self


_SECTIONS = {f.name: f.type for f in dataclasses.fields(Config)}


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
    """Build a validated ``Config`` from nested dicts; missing keys keep their defaults."""
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


def save_config(cfg: Config, path: str | Path) -> None:
    atomic_write(path, yaml.safe_dump(config_to_dict(cfg), sort_keys=False), what="config")


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

