"""`mt serve`: the translator behind an HTTP JSON API (FastAPI), for programs rather than people.

- ``POST /translate``: LibreTranslate's request and response, so its clients (``libretranslatepy``, browser
  extensions, document tools) work unchanged: ``q`` a string or a list, ``source`` (the model's or ``auto``),
  ``target``, ``format`` (``text`` or ``html``: tags kept), ``alternatives``; a JSON or a form-encoded body.
- ``GET /languages``, ``POST /detect`` (LibreTranslate's): the model's languages; detection answers the model's
  source language, with py3langid's confidence that the text is in it.
- ``POST /translate_batch``: texts -> each one's `mt translate --format jsonl` object (score, n-best, alignment,
  protected spans).
- ``GET /health``, ``GET /models``; OpenAPI documentation at ``/docs``.

Every translation goes through one ``demo.batcher.Batcher``, which merges concurrent requests into decode batches.
Errors are ``{"error": "one line"}``: 400 a malformed request, 413 too large (body bytes, texts or characters per
request), 503 the queue full or a translation past its timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware import Middleware

from data_prep.clean import language_identifier
from demo.batcher import Batcher, Options, QueueFull
from demo.limits import BodyLimit
from demo.model_info import evaluations
from mt.decode.formats import record
from mt.decode.translator import Translation, Translator
from mt.run import RunDir

__all__ = ["Limits", "build_api"]

log = logging.getLogger("mt")


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 1_000_000  # request body
    max_texts: int = 128  # texts per request
    max_chars: int = 20_000  # characters per request, all texts together
    max_queue: int = 256  # requests waiting for the translator
    timeout_s: float = 60.0  # from arrival to answer
    max_beam: int = 16  # beam and n-best a request may ask for


class LibreTranslateRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")  # api_key and the like: accepted, unused
    q: str | list[str] = Field(description="the text, or a list of texts")
    source: str = Field("auto", description="the source language code, or auto")
    target: str | None = Field(None, description="the target language code (default: the model's)")
    format: Literal["text", "html"] = Field("text", description="html: tags are kept in place")
    alternatives: int = Field(0, ge=0, description="alternative translations besides the best")


class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    q: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: list[str]
    beam: int | None = Field(None, ge=1, description="beam size (default: the model's decode.beam; 1 = greedy)")
    nbest: int = Field(1, ge=1, description="best translations returned per text")
    alignment: bool = Field(False, description="subword alignments, s-t pairs, as `mt translate --alignment`")
    markup: Literal["none", "html", "markdown"] = "none"


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


class Service:
    """What every endpoint uses: the translator, the batcher in front of it (made when the server starts: it
    needs the running event loop), the limits, and the language identifier."""

    def __init__(self, translator: Translator, run: RunDir | None, limits: Limits, batching: bool, max_wait_s: float):
        self.translator, self.run, self.limits = translator, run, limits
        self.batching, self.max_wait_s = batching, max_wait_s
        self.src, self.tgt = translator.facts.get("src", ""), translator.facts.get("tgt", "")
        self.identify = _language_identifier()
        self.batcher: Batcher | None = None

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: FastAPI):
        """Start the batcher; at shutdown, once uvicorn has stopped taking requests, let it finish what it holds."""
        encode = self.translator.tokenizer.encode_src
        self.batcher = Batcher(self._translate, lambda texts: sum(map(len, encode(texts))),
                               self.translator.cfg.decode.batch_tokens, self.max_wait_s, self.limits.max_queue,
                               self.batching)
        self.batcher.start()
        yield
        await self.batcher.stop()

    def _translate(self, texts: list[str], options: Options) -> list[Translation]:  # on the batcher's thread
        return self.translator.translate_batch(texts, beam=options.beam, nbest=options.nbest,
                                               return_attention=options.attention, markup=options.markup)

    async def translate(self, texts: list[str], options: Options) -> list[Translation]:
        """Within the limits (else ``ApiError``), through the batcher."""
        limits = self.limits
        if len(texts) > limits.max_texts:
            raise ApiError(413, f"{len(texts)} texts in one request; the limit is {limits.max_texts}")
        chars = sum(map(len, texts))
        if chars > limits.max_chars:
            raise ApiError(413, f"{chars:,} characters in one request; the limit is {limits.max_chars:,}")
        if options.nbest > limits.max_beam or (options.beam or 1) > limits.max_beam:
            raise ApiError(400, f"beam and nbest are at most {limits.max_beam} here")
        try:
            return await self.batcher.submit(texts, options, limits.timeout_s)
        except QueueFull:
            raise ApiError(503, f"the server is busy ({limits.max_queue} requests waiting); retry shortly",
                           {"Retry-After": "1"}) from None
        except asyncio.TimeoutError:
            raise ApiError(503, f"the translation took longer than {limits.timeout_s:g} s") from None

    def check_languages(self, source: str, target: str | None) -> None:
        for side, asked, served in (("source", source, (self.src, "auto")), ("target", target, (self.tgt, None))):
            if asked not in served:
                raise ApiError(400, f"{side} language '{asked}' is not served; this model translates "
                                    f"{self.src} → {self.tgt}")

    def model_card(self) -> dict:
        facts, checkpoint = self.translator.facts, Path(self.translator.facts.get("checkpoint", ""))
        reports = evaluations(self.run, facts)
        return {"id": self.run.root.name if self.run else checkpoint.stem, "source": self.src, "target": self.tgt,
                "parameters": facts.get("parameters"), "checkpoint": checkpoint.name, "backend": facts.get("backend"),
                "quantize": facts.get("quantize"), "beam": self.translator.cfg.decode.beam,
                "training": {k: facts.get(k) for k in ("step", "epoch", "train_minutes")},
                "evaluations": {split: {k: r.get(k) for k in ("bleu", "chrf", "beam", "signature") if k in r}
                                for split, r in reports.items() if isinstance(r, dict)}}


def build_api(translator: Translator, run: RunDir | None = None, limits: Limits = Limits(), batching: bool = True,
              max_wait_s: float = 0.005) -> FastAPI:
    """The app: LibreTranslate's endpoints, the native ones, one-line JSON errors."""
    service = Service(translator, run, limits, batching, max_wait_s)
    app = FastAPI(title=f"mt serve: {service.src} → {service.tgt}", version="1", lifespan=service.lifespan,
                  middleware=[Middleware(BodyLimit, max_bytes=limits.max_bytes)],
                  description="An LSTM translator. `POST /translate` speaks LibreTranslate's API.")

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, e: ApiError) -> JSONResponse:
        return JSONResponse({"error": e.message}, e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, e: StarletteHTTPException) -> JSONResponse:  # 404, 405 ...
        return JSONResponse({"error": str(e.detail)}, e.status_code, headers=getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(_request: Request, e: Exception) -> JSONResponse:
        log.exception("request failed")
        return JSONResponse({"error": "the translation failed inside the server; its log has the details"}, 500)

    _libretranslate_routes(app, service)
    _native_routes(app, service)
    return app


def _libretranslate_routes(app: FastAPI, service: Service) -> None:
    @app.post("/translate", openapi_extra=_body_schema(LibreTranslateRequest, form=True),
              summary="Translate (LibreTranslate's request and response)")
    async def libretranslate(request: Request) -> dict:
        body = _parse(LibreTranslateRequest, await _fields(request))
        service.check_languages(body.source, body.target)
        texts = [body.q] if isinstance(body.q, str) else body.q
        options = Options(nbest=body.alternatives + 1, markup="html" if body.format == "html" else "none")
        results = await service.translate(texts, options)
        best = [r.text for r in results]
        others = [[text for _, text in r.nbest[1:body.alternatives + 1]] for r in results]
        one = isinstance(body.q, str)
        answer: dict[str, Any] = {"translatedText": best[0] if one else best}
        if body.alternatives:
            answer["alternatives"] = others[0] if one else others
        if body.source == "auto":
            answer["detectedLanguage"] = {"language": service.src,
                                          "confidence": service.identify(" ".join(texts), service.src)}
        return answer

    @app.post("/detect", openapi_extra=_body_schema(DetectRequest, form=True),
              summary="The model's source language, with the confidence that the text is in it")
    async def detect(request: Request) -> list[dict]:
        body = _parse(DetectRequest, await _fields(request))
        return [{"language": service.src, "confidence": service.identify(body.q, service.src)}]

    @app.get("/languages", summary="The model's languages (LibreTranslate's format)")
    async def languages() -> list[dict]:
        return [{"code": service.src, "name": _language_name(service.src), "targets": [service.tgt]},
                {"code": service.tgt, "name": _language_name(service.tgt), "targets": []}]


def _native_routes(app: FastAPI, service: Service) -> None:
    @app.post("/translate_batch", openapi_extra=_body_schema(BatchRequest),
              summary="Texts -> translations with scores, n-best lists and alignments")
    async def translate_batch(request: Request) -> dict:
        body = _parse(BatchRequest, await _fields(request, form=False))
        results = await service.translate(body.texts, Options(body.beam, body.nbest, body.markup, body.alignment))
        return {"translations": [record(i, t, body.nbest, body.alignment) for i, t in enumerate(results)]}

    @app.get("/health", summary="Up, with the queue and what was translated since the start")
    async def health() -> dict:
        return {"status": "ok", "queued": service.batcher.queued, **service.batcher.stats}

    @app.get("/models", summary="The model served: languages, size, training, evaluation results")
    async def models() -> list[dict]:
        return [service.model_card()]


async def _fields(request: Request, form: bool = True) -> dict:
    """The request's fields: a JSON object, or (``form``) a form-encoded body; a repeated form field is a list."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if form and kind in ("application/x-www-form-urlencoded", "multipart/form-data"):
        data = await request.form()
        return {key: (values if len(values := data.getlist(key)) > 1 else values[0]) for key in data.keys()}
    raw = await request.body()
    try:
        fields = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the body is not valid JSON: {e}") from None
    if not isinstance(fields, dict):
        raise ApiError(400, "the body must be a JSON object")
    return fields


def _parse(model: type[BaseModel], fields: dict) -> Any:
    try:
        return model.model_validate(fields)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "body"
        raise ApiError(400, f"field '{where}': {first['msg']}") from None


def _body_schema(model: type[BaseModel], form: bool = False) -> dict:
    """OpenAPI documentation of a body this module parses itself (JSON, and form-encoded where LibreTranslate takes
    it)."""
    schema = {"schema": model.model_json_schema()}
    content = {"application/json": schema, **({"application/x-www-form-urlencoded": schema} if form else {})}
    return {"requestBody": {"required": True, "content": content}}


def _language_name(code: str) -> str:
    import langcodes

    try:
        return langcodes.Language.get(code).display_name()
    except (ValueError, LookupError):
        return code


def _language_identifier():
    """(text, language) -> py3langid's confidence, in percent, that ``text`` is in ``language`` (100 where
    py3langid does not know the language: the model's source is the only answer there is)."""
    identifier = language_identifier()
    known = set(identifier.nb_classes)

    def confidence(text: str, language: str) -> float:
        if language not in known or not text.strip():
            return 100.0
        return round(100.0 * dict(identifier.rank(text))[language], 1)

    return confidence
