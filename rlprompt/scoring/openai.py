"""A served target LM (``openai``): class scores from an OpenAI-compatible ``/v1/completions`` server.

Target spec: ``openai:MODEL@http://HOST:PORT/v1``, optionally followed by settings as a query,
``openai:MODEL@http://HOST:PORT/v1?concurrency=8&top_logprobs=20&api_key_env=MY_KEY``. The same
string works as ``--target-lm`` and as ``target_lm = "..."`` in a TOML config.

How a pair is scored. The template is filled with the pair and cut before ``{mask}`` (a causal
read-out: the next token after that text, see :mod:`rlprompt.template`); one completion request
with ``max_tokens=1, temperature=0, logprobs=N`` returns the server's top-N next-token
log-probabilities, and each class score is its verbalizer token's log-probability, looked up by
token *string* (``" great"``) in that top-N dictionary. These are log-softmax values over the
whole vocabulary: they differ from the ``local`` backend's raw logits by one constant per pair,
which every reward, accuracy and calibration here is blind to (all use softmax or argmax over
the classes).

A verbalizer missing from the top-N (default N=20): the request is repeated with N=1000, then
with ``max_top_logprobs`` (default 1,000,000: more than any vocabulary, which llama-cpp-python
clamps to the whole vocabulary, so the score is exact); after a miss the next pairs start at
1000. Only when the server refuses a larger N (vLLM answers 400 above its ``--max-logprobs``) is
a verbalizer left missing: its score is then the smallest returned log-probability minus
:data:`MISSING_MARGIN`, an upper-bound guess, and the pair is counted in
:attr:`OpenAIScorer.missing` and logged. For exact scores on vLLM, start it with
``--max-logprobs`` at the vocabulary size.

Verbalizers are checked to be single, distinct tokens of the *served* tokenizer: through the
server's tokenize endpoint when it has one (llama-cpp-python ``POST /extras/tokenize``,
llama.cpp ``POST /tokenize``, vLLM and SGLang ``POST /tokenize`` at the server root), else the
Hugging Face tokenizer of ``MODEL`` if it loads from the local cache, else the check is skipped
with a warning.

Server support (``logprobs`` on ``/v1/completions``):

* llama-cpp-python 0.3.x (``python -m llama_cpp.server``): verified here (0.3.36), see
  ``experiments/results/served.md``. ``logprobs`` is not capped (N above the vocabulary returns
  all of it, about 0.7 s a request for SmolLM2's 49,152 tokens against 0.1 s for N=1000). The ``model`` field
  of a request is ignored when one model is served, so a wrong name is caught by checking
  ``GET /v1/models`` first; ``echo`` prompt log-probabilities do not match the top-logprobs and are
  not used.
* vLLM: ``logprobs`` up to the server's ``--max-logprobs`` (default 20; vllm-project/vllm#5312
  made the OpenAI server respect it); a larger N answers 400, which this backend takes as the
  cap (read in its issues, not run here).
* SGLang: ``logprobs`` on ``/v1/completions`` returns top-N log-probabilities (read, not run).
* llama.cpp's own ``llama-server``: ``logprobs`` on ``/v1/completions`` in the OpenAI format
  since ggml-org/llama.cpp#10783 (pre-sampling probabilities; read, not run).

Behaviour against a server: at most ``concurrency`` requests in flight (a thread pool,
default 8); 429, 5xx, timeouts and dropped connections are retried with exponential backoff by
the ``openai`` client (``max_retries``, default 5); a wrong URL, model name or API key, or a
server without logprobs, is one :class:`RLPromptError` line, found by one request to
``/v1/models`` before any scoring. Every scored pair is appended to a JSON-lines cache as it
arrives (default ``<cache dir>/served/scores.jsonl``, ``cache=PATH`` or ``RLPROMPT_OPENAI_CACHE``
to move it, ``cache=off`` to disable), keyed by server, model, full text and verbalizers, so a
killed run keeps what it scored and a rerun does not request it again. :attr:`OpenAIScorer.requests`
counts the requests made; it is logged after every call.

The API key is read from the environment variable named by ``api_key_env=`` (or
``RLPROMPT_OPENAI_API_KEY_ENV``), ``OPENAI_API_KEY`` by default; never from a file. Needs
``pip install -e ".[served]"`` (the ``openai`` client), imported only when this backend is used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import torch

from rlprompt.errors import RLPromptError

if TYPE_CHECKING:
    from rlprompt.models import ModelPool
    from rlprompt.tasks import Task
    from rlprompt.template import Template

logger = logging.getLogger(__name__)

WIDER_TOP_LOGPROBS = 1000
"""The N of the first wider retry: enough for most misses, and quick to return (0.1 s on llama-cpp-python, against 0.7 s for the whole vocabulary)."""
MISSING_MARGIN = 1.0
"""How far below the smallest returned log-probability a verbalizer missing from the top-N is put."""
NOT_OPENAI_STATUSES = (405, 501)
"""Statuses that say the server does not have the OpenAI API at all (a plain web server answers 501 to a POST)."""
SERVERS = "llama-cpp-python, vLLM, SGLang or llama.cpp's llama-server"
SETTINGS = ("concurrency", "top_logprobs", "max_top_logprobs", "max_retries", "timeout", "api_key_env", "cache")
"""Settings a spec's query may carry (each also an ``RLPROMPT_OPENAI_<NAME>`` environment variable)."""


@dataclass(frozen=True)
class ServedTarget:
    """A parsed ``MODEL@URL[?settings]`` spec."""

    model: str
    base_url: str
    """The API root the client is given, e.g. ``http://127.0.0.1:8000/v1``."""
    concurrency: int = 8
    top_logprobs: int = 20
    max_top_logprobs: int = 1_000_000
    """The N of the last retry; larger than any vocabulary, so a server that clamps N to its vocabulary returns all of it."""
    max_retries: int = 5
    timeout: float = 60.0
    api_key_env: str = "OPENAI_API_KEY"
    cache: str | None = None
    """The cache file; None for the default location, ``"off"`` for none."""

    @classmethod
    def parse(cls, spec: str) -> ServedTarget:
        """``MODEL@URL[?key=value&...]``; settings not in the query come from ``RLPROMPT_OPENAI_<NAME>``.

        Raises:
            RLPromptError: On a spec without ``@URL``, or an unknown or malformed setting.
        """
        model, at, url = spec.partition("@")
        if not at or not model or not url.startswith(("http://", "https://")):
            raise RLPromptError(f"served target '{spec}' must read MODEL@http://HOST:PORT/v1, e.g. openai:my-model@http://127.0.0.1:8000/v1")
        parts = urlsplit(url)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        unknown = sorted(set(query) - set(SETTINGS))
        if unknown:
            raise RLPromptError(f"served target '{spec}': unknown setting(s) {', '.join(unknown)}; valid: {', '.join(SETTINGS)}")
        values: dict[str, object] = {}
        for name in SETTINGS:
            raw = query.get(name, os.environ.get(f"RLPROMPT_OPENAI_{name.upper()}"))
            if raw is None:
                continue
            kind = cls.__dataclass_fields__[name].type
            try:
                values[name] = int(raw) if kind == "int" else float(raw) if kind == "float" else raw
            except ValueError:
                raise RLPromptError(f"served target '{spec}': {name}={raw!r} is not a number") from None
        target = cls(model=model, base_url=urlunsplit(parts._replace(query="", fragment="")).rstrip("/"), **values)
        if target.concurrency < 1 or target.top_logprobs < 1 or target.max_top_logprobs < target.top_logprobs:
            raise RLPromptError(f"served target '{spec}': need concurrency >= 1 and 1 <= top_logprobs <= max_top_logprobs")
        return target

    @property
    def server_root(self) -> str:
        """The URL without its ``/v1`` API path: where tokenize endpoints live."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url


def readout_text(template: Template, sentence: str, prompt: str) -> str:
    """The filled template up to ``{mask}``: the text whose next token is read out.

    The whitespace before ``{mask}`` is dropped, as the verbalizer tokens carry it (``" great"``).
    """
    template.check_for("causal")
    text = []
    for kind, piece in template.segments(sentence, prompt):
        if kind == "mask":
            break
        text.append(piece)
    return "".join(text)


class ScoreCache:
    """Scored pairs in a JSON-lines file, one ``{"key", "scores", "missing"}`` object a line, appended as they arrive.

    A line cut short by a kill is skipped when the file is read back.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.entries: dict[str, tuple[list[float], int]] = {}
        if path is None:
            return
        if path.exists() and not path.is_file():
            raise RLPromptError(f"served score cache {path} is not a file; set cache=PATH to a file, or cache=off")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a+b") as handle:
                # A line cut by a kill has no newline: end it, so the next pair starts a line of its own.
                if handle.seek(0, os.SEEK_END) and (handle.seek(-1, os.SEEK_END) is None or handle.read(1) != b"\n"):
                    handle.write(b"\n")
        except OSError as error:
            raise RLPromptError(f"served score cache {path} cannot be written ({error.strerror or error}); set cache=PATH elsewhere, or cache=off") from None
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                    scores = [float(value) for value in row["scores"]]
                    self.entries[str(row["key"])] = (scores, int(row.get("missing", 0)))
                except (ValueError, KeyError, TypeError, AttributeError):
                    continue  # a line cut short, or not ours: that pair is scored again

    @staticmethod
    def key(base_url: str, model: str, text: str, verbalizers: Sequence[str]) -> str:
        return hashlib.sha256(json.dumps([base_url, model, text, list(verbalizers)]).encode()).hexdigest()

    def add(self, key: str, scores: list[float], missing: int) -> None:
        with self._lock:
            self.entries[key] = (scores, missing)
            if self.path is not None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                # One write of a whole line, flushed: a kill loses at most the line being written.
                with self.path.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps({"key": key, "scores": scores, "missing": missing}) + "\n")


class OpenAIScorer:
    """Verbalizer log-probabilities from an OpenAI-compatible completions server (see the module docstring).

    Args:
        target: The server, model and request settings.
        template: Where the sentence, prompt and mask go (read out as a causal LM).
        verbalizers: One single-token label word per class, e.g. ``[" terrible", " great"]``.
        cache_path: The JSON-lines cache of scored pairs; None keeps them in memory only.

    Raises:
        RLPromptError: When the ``openai`` package is missing, the server cannot be reached,
            refuses the API key, does not serve the model, returns no logprobs, or a verbalizer is
            not one token of the served tokenizer.
    """

    def __init__(self, target: ServedTarget, template: Template, verbalizers: Sequence[str], *, cache_path: Path | None = None) -> None:
        try:
            import openai
        except ImportError:
            raise RLPromptError('the served target backend needs the openai client: pip install -e ".[served]"') from None
        template.check_for("causal")
        self.target = target
        self.template = template
        self.verbalizers = list(verbalizers)
        self._openai = openai
        # A dummy key for servers that take none (llama.cpp, vLLM without --api-key): the client refuses an empty one.
        api_key = os.environ.get(target.api_key_env) or "no-key"
        self._client = openai.OpenAI(base_url=target.base_url, api_key=api_key, max_retries=target.max_retries, timeout=target.timeout)
        rungs = {target.top_logprobs, min(WIDER_TOP_LOGPROBS, target.max_top_logprobs), target.max_top_logprobs}
        self._ladder = sorted(n for n in rungs if n >= target.top_logprobs)
        """The N of the first request and of each wider retry (never below the N asked for)."""
        self._start = 0
        """Where on the ladder a pair's first request starts (raised after a miss)."""
        self._count_lock = threading.Lock()
        self.requests = 0
        """Completion requests made (retries by the client not counted), like the evaluation budget."""
        self.missing = 0
        """Pairs where a verbalizer was outside the returned top-N and got the fallback score."""
        self.cache = ScoreCache(cache_path)
        self.served: list[str] | None = None
        """The model ids the server's ``/v1/models`` lists (None if it has no such endpoint)."""
        self._check_server()
        self._check_verbalizers()

    @property
    def num_classes(self) -> int:
        return len(self.verbalizers)

    @property
    def description(self) -> str:
        """What scores, for report headers: the served model and where (no local dtype applies)."""
        return f"served model {self.target.model} at {self.target.base_url}"

    # -- errors -------------------------------------------------------------------------

    def _error(self, error: Exception) -> RLPromptError:
        """One line for what the client raised."""
        openai, where = self._openai, f"the target server at {self.target.base_url}"
        if isinstance(error, openai.APITimeoutError):
            return RLPromptError(f"{where} did not answer within {self.target.timeout:g} s (after {self.target.max_retries} retries)")
        if isinstance(error, openai.APIConnectionError):
            return RLPromptError(f"cannot connect to {where} (connection refused or unreachable); is the server running, and is the URL right?")
        if isinstance(error, openai.AuthenticationError):
            return RLPromptError(f"{where} refused the API key (401); set the environment variable {self.target.api_key_env} (or name another with api_key_env=)")
        if isinstance(error, openai.APIStatusError) and error.status_code in NOT_OPENAI_STATUSES:
            request = getattr(error, "request", None)
            what = f"{getattr(request, 'method', '')} {getattr(request, 'url', 'a request')}".strip()
            return self._not_openai(f"{what} answered {error.status_code} ({_content_type(error.response)})")
        if isinstance(error, openai.NotFoundError):
            return RLPromptError(f"{where} answered 404 for model '{self.target.model}': the model is not served there, or the URL lacks /v1")
        if isinstance(error, openai.APIStatusError):
            message = " ".join(str(getattr(error, "message", error)).split())[:300]
            return RLPromptError(f"{where} answered {error.status_code}: {message}")
        return RLPromptError(f"{where}: {type(error).__name__}: {error}")

    def _not_openai(self, what: str) -> RLPromptError:
        return RLPromptError(
            f"the target server at {self.target.base_url} is not an OpenAI-compatible server: {what}; "
            f"give the /v1 API root of a server such as {SERVERS}"
        )

    def _read_json(self, response: Any, what: str) -> Any:
        """The JSON body of a streamed ``response``, read within the timeout as a whole (a server that
        drips its answer a byte at a time is stopped), or one line saying why it is not JSON."""
        body = _read_within(response.iter_bytes(), time.monotonic() + self.target.timeout)
        if body is None:
            raise RLPromptError(
                f"the target server at {self.target.base_url} did not finish its answer to {what} within {self.target.timeout:g} s "
                "(it sends too slowly, or hangs mid-answer); raise timeout= if it is only slow"
            )
        kind = _content_type(response)
        try:
            return json.loads(body)
        except ValueError:
            snippet = " ".join(body[:80].decode("utf-8", errors="replace").split())
            shown = "an empty body" if not body.strip() else f"{kind}, not JSON ({snippet!r})"
            raise self._not_openai(f"{what} answered {response.status_code} with {shown}") from None

    def _check_server(self) -> None:
        """One request that finds a wrong URL, key or model name, or a server without the OpenAI API, before any scoring."""
        what = f"GET {self.target.base_url}/models"
        try:
            with self._client.with_options(max_retries=1).models.with_streaming_response.list() as response:
                body = self._read_json(response, what)
        except self._openai.NotFoundError as error:
            if "json" not in _content_type(error.response):
                # FastAPI servers (vLLM, SGLang, llama-cpp-python) and llama-server answer 404 in JSON; a web page is not one of them.
                raise self._not_openai(f"{what} answered 404 with {_content_type(error.response)}") from None
            return  # an API server without /v1/models: the first completion will tell
        except self._openai.OpenAIError as error:
            raise self._error(error) from None
        models = body.get("data") if isinstance(body, dict) else None
        if not isinstance(models, list) or not all(isinstance(m, dict) and isinstance(m.get("id"), str) for m in models):
            raise self._not_openai(f"{what} answered JSON without a list of models under 'data' ({json.dumps(body)[:80]!r})")
        self.served = [m["id"] for m in models]
        # llama-cpp-python answers any model name with its one model, so the name is checked here.
        if self.served and self.target.model not in self.served:
            raise RLPromptError(f"model '{self.target.model}' is not served at {self.target.base_url}; it serves: {', '.join(self.served)}")

    def _server_tokens(self, text: str) -> list[int] | None:
        """Ids of ``text`` from the server's tokenize endpoint, without special tokens; None if it has none."""
        root = self.target.server_root
        attempts = (
            (f"{root}/extras/tokenize", {"input": text, "model": self.target.model}),  # llama-cpp-python
            (f"{root}/tokenize", {"content": text, "prompt": text, "model": self.target.model, "add_special": False, "add_special_tokens": False}),
        )
        for url, body in attempts:
            request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=self.target.timeout) as response:
                    body = _read_within(iter(lambda: response.read1(65536), b""), time.monotonic() + self.target.timeout)
                tokens = json.loads(body).get("tokens") if body is not None else None
            except (urllib.error.URLError, OSError, ValueError, AttributeError):
                continue
            if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
                return tokens
        return None

    def _check_verbalizers(self) -> None:
        ids = []
        # llama-cpp-python adds BOS when the model asks for it: what the empty text gets is stripped.
        empty = self._server_tokens("")
        for word in self.verbalizers:
            tokens = self._server_tokens(word) if empty is not None else None
            if tokens is None:
                tokens = _local_tokens(self.target.model, word)
            elif tokens[: len(empty)] == empty:
                tokens = tokens[len(empty):]
            if tokens is None:
                logger.warning("served target: no tokenizer found for %s; verbalizers are not checked to be single tokens", self.target.model)
                return
            if len(tokens) != 1:
                raise RLPromptError(f"verbalizer {word!r} is {len(tokens)} tokens {tokens} for {self.target.model}'s tokenizer; each verbalizer must be a single token")
            ids.append(tokens[0])
        if len(set(ids)) != len(ids):
            raise RLPromptError(f"verbalizers {self.verbalizers} map to the same token for {self.target.model}; they must differ")

    # -- scoring ------------------------------------------------------------------------

    def class_logits(self, prompts: Sequence[str], sentences: Sequence[str]) -> torch.Tensor:
        """Verbalizer log-probabilities, shape ``[len(prompts), len(sentences), num_classes]``, float32."""
        texts = [readout_text(self.template, sentence, prompt) for prompt in prompts for sentence in sentences]
        keys = [ScoreCache.key(self.target.base_url, self.target.model, text, self.verbalizers) for text in texts]
        todo = {key: text for key, text in zip(keys, texts) if key not in self.cache.entries}
        before = self.requests
        if todo:
            pool = ThreadPoolExecutor(max_workers=min(self.target.concurrency, len(todo)))
            try:
                futures = [pool.submit(self._score, key, text) for key, text in todo.items()]
                done, _ = wait(futures, return_when=FIRST_EXCEPTION)
                for future in done:
                    # The first failure is raised; the pairs scored before it are already cached.
                    future.result()
            finally:
                # On a failure or Ctrl-C, requests not yet sent are dropped, not sent into a broken server.
                pool.shutdown(wait=True, cancel_futures=True)
        logger.info(
            "served target: %d pairs, %d requested (%d requests), %d from the cache; %d requests in all, %d pairs with a verbalizer outside the top-N",
            len(texts), len(todo), self.requests - before, len(texts) - len(todo), self.requests, self.missing,
        )
        values = [self.cache.entries[key][0] for key in keys]
        return torch.tensor(values, dtype=torch.float32).reshape(len(prompts), len(sentences), self.num_classes)

    def _score(self, key: str, text: str) -> None:
        level = self._start
        top = self._top_logprobs(text, self._ladder[level])
        # Widen while a verbalizer is missing and the server has not refused a larger N.
        while any(word not in top for word in self.verbalizers) and level + 1 < len(self._ladder):
            wider = self._top_logprobs(text, self._ladder[level + 1], probe=True)
            if wider is None:
                break
            level, top = level + 1, wider
            # The next pairs start one step up (not at the whole vocabulary, which is slow to return).
            self._start = max(self._start, min(level, 1))
        floor = min(top.values()) - MISSING_MARGIN
        missing = sum(word not in top for word in self.verbalizers)
        if missing:
            with self._count_lock:
                self.missing += 1
            logger.debug("served target: %d verbalizer(s) outside the top-%d for %r; scored %.3f", missing, len(top), text, floor)
        self.cache.add(key, [float(top.get(word, floor)) for word in self.verbalizers], missing)

    def _top_logprobs(self, text: str, n: int, probe: bool = False) -> dict[str, float] | None:
        """The top-``n`` next-token log-probabilities after ``text``; None when a ``probe`` with a larger N is refused."""
        with self._count_lock:
            self.requests += 1
        what = f"POST {self.target.base_url}/completions"
        try:
            with self._client.completions.with_streaming_response.create(
                model=self.target.model, prompt=text, max_tokens=1, temperature=0.0, logprobs=n
            ) as response:
                body = self._read_json(response, what)
        except self._openai.BadRequestError as error:
            if probe:
                # vLLM refuses N above --max-logprobs with 400: the ladder stops below it.
                with self._count_lock:
                    refused = n in self._ladder
                    self._ladder = [m for m in self._ladder if m < n]
                    self._start = min(self._start, len(self._ladder) - 1)
                if refused:
                    logger.warning(
                        "served target: the server refused logprobs=%d (%s); verbalizers outside the top-%d get a fallback score", n, error.status_code, self._ladder[-1]
                    )
                return None
            raise self._error(error) from None
        except self._openai.OpenAIError as error:
            raise self._error(error) from None
        return self._logprobs_of(body, what)

    def _logprobs_of(self, body: Any, what: str) -> dict[str, float]:
        """The first token's top log-probabilities in a completion answer: the completions format
        (``logprobs.top_logprobs[0]``, a token -> value object) or the chat format some servers
        return on ``/v1/completions`` too (``logprobs.content[0].top_logprobs``, a list of
        ``{"token", "logprob"}``); one line for anything else."""
        if not isinstance(body, dict):
            raise self._not_openai(f"{what} answered a JSON {type(body).__name__}, not a completion object")
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            error = body.get("error")
            if error:
                message = error.get("message", error) if isinstance(error, dict) else error
                raise RLPromptError(f"the target server at {self.target.base_url} answered {what} with an error: {' '.join(str(message).split())[:200]}")
            raise self._not_openai(f"{what} answered JSON without 'choices' ({json.dumps(body)[:80]!r})")
        logprobs = choices[0].get("logprobs")
        top: object = None
        if isinstance(logprobs, dict) and isinstance(logprobs.get("top_logprobs"), list) and logprobs["top_logprobs"]:
            top = logprobs["top_logprobs"][0]
        elif isinstance(logprobs, dict) and isinstance(logprobs.get("content"), list) and logprobs["content"]:
            first = logprobs["content"][0]
            entries = first.get("top_logprobs") if isinstance(first, dict) else None
            if isinstance(entries, list):
                top = {e["token"]: e["logprob"] for e in entries if isinstance(e, dict) and isinstance(e.get("token"), str) and "logprob" in e}
        values = {
            token: float(value) for token, value in (top.items() if isinstance(top, dict) else ())
            if isinstance(token, str) and isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        }
        if not values:
            raise RLPromptError(
                f"the target server at {self.target.base_url} returned no logprobs for /v1/completions; it must support logprobs=N ({SERVERS} do)"
            )
        return values


def _content_type(response: Any) -> str:
    """A response's media type (``text/html``), or ``no content type``."""
    headers = getattr(response, "headers", None) or {}
    return (headers.get("content-type") or "no content type").split(";")[0].strip()


def _read_within(chunks: Any, deadline: float) -> bytes | None:
    """The bytes of ``chunks`` (an iterator of what the socket delivers), or None once ``deadline``
    (a ``time.monotonic()``) passes: the client's timeout bounds each read, not a whole answer."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if time.monotonic() > deadline:
            return None
    return bytes(body)


def _local_tokens(model: str, text: str) -> list[int] | None:
    """Ids of ``text`` from the Hugging Face tokenizer of ``model`` when it loads offline; else None."""
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model, local_files_only=True)
    except Exception:  # any failure (not installed, not cached, no such id) means no local tokenizer
        return None
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def default_cache_path(target: ServedTarget) -> Path | None:
    """Where ``target``'s scored pairs are kept: its ``cache=`` setting, else ``<cache dir>/served/scores.jsonl``."""
    if target.cache == "off":
        return None
    if target.cache:
        return Path(target.cache).expanduser()
    from rlprompt.models import cache_dir

    return cache_dir() / "served" / "scores.jsonl"


def openai_backend(spec: str, task: Task, *, models: ModelPool, max_batch_tokens: int | None = None) -> OpenAIScorer:
    """The registered ``openai`` backend: ``spec`` is ``MODEL@URL[?settings]`` (``models`` and ``max_batch_tokens`` are unused)."""
    target = ServedTarget.parse(spec)
    return OpenAIScorer(target, task.template, task.verbalizers, cache_path=default_cache_path(target))
