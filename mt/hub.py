"""Models on the Hugging Face Hub: a folder ready to upload (the `mt export` file and a model card), the upload,
and ``hf://USER/NAME[@REVISION]`` wherever a model file is taken.

    mt export --run RUN --hub-dir out/en-de            # model.mt + README.md (the card)
    mt export --run RUN --push-to-hub USER/en-de-lstm  # the same, uploaded (huggingface_hub's login or HF_TOKEN)
    mt translate --model hf://USER/en-de-lstm          # downloaded once into the Hub cache, offline after

A downloaded file is untrusted input like any other model file: it goes through ``mt.model_file``'s validated
loader. With ``HF_HUB_OFFLINE=1`` the Hub cache alone answers.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from mt.errors import MTError
from mt.model_file import export_model
from mt.run import RunDir

__all__ = ["MODEL_FILE", "is_hub_name", "push_to_hub", "resolve_model", "write_hub_folder"]

MODEL_FILE = "model.mt"  # the exported model's name inside a Hub repository
PREFIX = "hf://"


def is_hub_name(spec: str) -> bool:
    return str(spec).startswith(PREFIX)


def resolve_model(spec: str | Path) -> Path:
    """A local path as it is; ``hf://USER/NAME[@REVISION]`` -> the model file in the Hub cache, downloaded when
    missing (one-line errors: unknown repository, no model file in it, offline and not cached)."""
    if not is_hub_name(str(spec)):
        return Path(spec)
    repo, _, revision = str(spec)[len(PREFIX):].partition("@")
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise MTError(f"{spec}: a Hub model is hf://USER/NAME or hf://USER/NAME@REVISION")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(hf_hub_download(repo, MODEL_FILE, revision=revision or None))
    except RepositoryNotFoundError:
        raise MTError(f"{spec}: no such model repository on the Hub (or it is private: log in)") from None
    except RevisionNotFoundError:
        raise MTError(f"{spec}: the repository has no revision '{revision}'") from None
    except LocalEntryNotFoundError:  # (a kind of EntryNotFoundError: first)
        raise MTError(f"{spec}: not in the Hub cache, and the Hub cannot be reached (offline, or HF_HUB_OFFLINE "
                      "is set)") from None
    except EntryNotFoundError:
        raise MTError(f"{spec}: the repository holds no {MODEL_FILE} (not a model from `mt export`)") from None
    except (HfHubHTTPError, OSError) as e:
        raise MTError(f"{spec}: cannot download it: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None


def write_hub_folder(run: RunDir, folder: str | Path, checkpoint: str = "final", int8: bool = False,
                     license: str = "cc-by-4.0", repo_id: str | None = None) -> dict[str, Any]:
    """``folder``/model.mt (as `mt export`) and ``folder``/README.md, the model card: languages, data, the recipe,
    evaluation results with their sacreBLEU signatures, usage. -> `export_model`'s facts and the card's path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = {**export_model(run, folder / MODEL_FILE, checkpoint, int8), "checkpoint": run.model_path(checkpoint).name}
    card = model_card(run, info, license, repo_id or f"USER/{run.root.name}")
    (folder / "README.md").write_text(card, encoding="utf-8")
    return {**info, "card": str(folder / "README.md")}


def push_to_hub(run: RunDir, repo_id: str, checkpoint: str = "final", int8: bool = False,
                license: str = "cc-by-4.0", private: bool = False) -> str:
    """Write the Hub folder to a temporary place and upload it to ``repo_id`` (created when missing) -> its URL."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError

    with tempfile.TemporaryDirectory() as tmp:
        write_hub_folder(run, tmp, checkpoint, int8, license, repo_id)
        api = HfApi()
        try:
            url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
            api.upload_folder(repo_id=repo_id, folder_path=tmp, repo_type="model",
                              commit_message=f"mt export of {run.root.name} ({checkpoint})")
        except (HfHubHTTPError, OSError) as e:
            raise MTError(f"cannot upload to {repo_id}: {str(e).splitlines()[0] if str(e) else type(e).__name__} "
                          "(log in with `hf auth login` or set HF_TOKEN)") from None
    return str(url)


def model_card(run: RunDir, info: dict[str, Any], license: str, repo_id: str) -> str:
    meta, cfg, stats = run.meta(), run.config(), run.stats()
    src, tgt = meta["src"], meta["tgt"]
    reports = {name: r for name, r in run.evaluations().items() if isinstance(r, dict) and "bleu" in r}
    front = _card_metadata(src, tgt, license, repo_id, str(stats.get("origin", "")), reports)
    m, t = cfg.model, cfg.train
    rows = "\n".join(f"| {name} | {r['bleu']:.2f} | {r.get('chrf', float('nan')):.2f} | {r.get('beam', '?')} | "
                     f"`{r.get('signature', {}).get('bleu', '')}` |" for name, r in reports.items())
    filtered = stats.get("filtered", {})
    return f"""---
{yaml.safe_dump(front, sort_keys=False, allow_unicode=True)}---

# {repo_id.split('/')[-1]}: {src} → {tgt}, an attentional LSTM translator

Trained with [mt-lstm](https://pypi.org/project/mt-lstm/): a bidirectional {m.cell.upper()} encoder and an
{m.cell.upper()} decoder with {m.attention} attention, {info['parameters']:,} parameters{' (int8 weights)' if
info['int8'] else ''}, in one file (`{MODEL_FILE}`, {info['bytes'] / 1e6:.1f} MB) with its SentencePiece tokenizer.

## Use

```bash
pip install mt-lstm
mt translate --model hf://{repo_id} < input.txt
mt serve --model hf://{repo_id}          # LibreTranslate's HTTP API on 127.0.0.1:8000
```
```python
from mt import Translator
translator = Translator.from_pretrained("hf://{repo_id}")
print(translator.translate("..."))
```

## Data

{_origin(stats)}: {filtered.get('kept_pairs', '?'):,} training pairs kept of {filtered.get('input_pairs', '?'):,}
(cleaning: `mt prepare`); SentencePiece {stats.get('tokenizer', {}).get('type', '?')},
{meta['src_vocab_size']:,} / {meta['tgt_vocab_size']:,} pieces.

## Recipe

Embeddings {m.emb_dim}, hidden {m.hidden_dim}, {m.layers} layer(s), dropout {m.dropout}; Adam at {t.lr},
{t.batch_tokens:,} tokens per batch, label smoothing {t.label_smoothing}, R-Drop alpha {t.rdrop_alpha},
{t.max_epochs} epochs or {t.max_minutes:g} minutes at most; the model file holds the checkpoint training chose
(`{info.get('checkpoint', 'final.pt')}`). The whole configuration travels inside the file.

## Evaluation

{('| test set | BLEU | chrF | beam | sacreBLEU signature (BLEU) |' + chr(10) + '|---|---|---|---|---|' + chr(10)
  + rows) if rows else 'No `mt eval` results were in the run when it was exported.'}

## Licence

The model is released under {license}; the data it was trained on has its own terms.
"""


def _card_metadata(src: str, tgt: str, license: str, repo_id: str, origin: str, reports: dict) -> dict[str, Any]:
    """The card's YAML header: what the Hub indexes (languages, licence, task) and the results as ``model-index``."""
    results = [{"task": {"type": "translation", "name": f"Translation {src}-{tgt}"},
                "dataset": {"name": name, "type": origin},
                "metrics": [{"type": metric, "value": r[metric], "name": {"bleu": "BLEU", "chrf": "chrF"}[metric],
                             "args": r.get("signature", {}).get(metric, "")} for metric in ("bleu", "chrf") if metric in r]}
               for name, r in reports.items()]
    return {"language": [src, tgt], "license": license, "library_name": "mt-lstm", "pipeline_tag": "translation",
            "tags": ["translation", "lstm", "seq2seq", "mt-lstm"],
            "model-index": [{"name": repo_id.split("/")[-1], "results": results}]}


def _origin(stats: dict[str, Any]) -> str:
    origin = str(stats.get("origin", "unknown data"))
    return f"The parallel corpus `{Path(origin).name if origin.startswith('/') else origin}`"
