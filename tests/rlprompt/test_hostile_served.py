"""Served answers that are not what an OpenAI-compatible server sends: one line naming the URL and
the problem, and the served score cache left as it was.

Each case runs a fake server on 127.0.0.1 that answers ``GET /v1/models`` and ``POST
/v1/completions`` the hostile way (HTML, an empty body, non-JSON, JSON without ``choices``, a 200
carrying an error, a hang past the timeout, a slow drip, 501 everywhere as ``python -m
http.server`` does); the server stops by itself when the test ends, a hung handler included.
Generated completion bodies (Hypothesis) go through the parser without a server.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

pytest.importorskip("openai", reason="the served backend needs the openai client (pip install -e '.[served]')")
hypothesis = pytest.importorskip("hypothesis", reason="the hostile-input suite needs hypothesis (pip install -e '.[test]')")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rlprompt.errors import RLPromptError  # noqa: E402
from tests.rlprompt.test_cli import assert_bad_input, run_cli  # noqa: E402
from tests.rlprompt.test_hostile_inputs import JSON_VALUES, fuzz_settings, one_line_naming, snapshot  # noqa: E402

BODY_CASES = 60
"""Generated completion bodies tried on the parser."""
MODELS_OK = (200, "application/json", json.dumps({"object": "list", "data": [{"id": "m", "object": "model"}]}).encode())
GOOD_COMPLETION = {"choices": [{"text": " a", "index": 0, "logprobs": {"top_logprobs": [{" terrible": -2.0, " great": -0.5}]}}]}


def answer(body: object, status: int = 200, kind: str = "application/json") -> tuple[int, str, bytes]:
    return status, kind, body if isinstance(body, bytes) else json.dumps(body).encode()


class HostileServer:
    """A server whose ``/v1/models`` and ``/v1/completions`` answers are given as (status, content type, body).

    ``hang`` makes completions wait until the server stops; ``drip`` sends a completion's body one
    byte every ``drip`` seconds. Handler threads are daemons and a hung one is released on exit,
    so the server always stops with the test.
    """

    def __init__(self, models=MODELS_OK, completion=None, hang: bool = False, drip: float = 0.0, every_path=None) -> None:
        completion = completion or answer(GOOD_COMPLETION)
        self.released = threading.Event()
        self.completions = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, status: int, kind: str, body: bytes, drip: float = 0.0) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not drip:
                    self.wfile.write(body)
                    return
                for byte in body:
                    if server.released.wait(drip):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

            def do_GET(self) -> None:
                self._send(*(every_path or (models if self.path == "/v1/models" else (404, "application/json", b'{"error": "no"}'))))

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if every_path:
                    self._send(*every_path)
                    return
                if self.path != "/v1/completions":
                    self._send(404, "application/json", b'{"error": "no"}')
                    return
                server.completions += 1
                if hang:
                    server.released.wait(30)
                    return
                self._send(*completion, drip=drip)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> HostileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def spec(self, **settings) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"max_retries": 0, **settings}.items())
        return f"openai:m@{self.url}?{query}"


@pytest.fixture
def cache(tmp_path) -> Path:
    """A served score cache holding one earlier pair, which no failure may change."""
    path = tmp_path / "scores.jsonl"
    path.write_text(json.dumps({"key": "earlier", "scores": [-1.0, -2.0], "missing": 0}) + "\n")
    return path


def scored(spec: str, cache: Path):
    """Build the served scorer (its /v1/models check) and score one pair."""
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer
    from rlprompt.tasks import load_task

    scorer = make_scorer(f"{spec}&cache={cache}", load_task("demo"), models=ModelPool("cpu", "fp32"))
    return scorer.class_logits(["It was"], ["Fine."])


def refused(server: HostileServer, cache: Path, **settings) -> str:
    before = snapshot(cache.parent)
    with pytest.raises(RLPromptError) as caught:
        scored(server.spec(**settings), cache)
    assert snapshot(cache.parent) == before
    return one_line_naming(caught.value, server.url)


NOT_OPENAI = "is not an OpenAI-compatible server: "
GIVE_ROOT = "; give the /v1 API root of a server such as llama-cpp-python, vLLM, SGLang or llama.cpp's llama-server"


@pytest.mark.parametrize(
    ("server", "message"),
    [
        (dict(every_path=answer(b"<!DOCTYPE html><html><body>Welcome</body></html>", kind="text/html")),
         f"{NOT_OPENAI}GET {{url}}/models answered 200 with text/html, not JSON ('<!DOCTYPE html><html><body>Welcome</body></html>'){GIVE_ROOT}"),
        (dict(models=answer(b"")), f"{NOT_OPENAI}GET {{url}}/models answered 200 with an empty body{GIVE_ROOT}"),
        (dict(models=answer(b"{'data': [", kind="application/json")), f"{NOT_OPENAI}GET {{url}}/models answered 200 with application/json, not JSON (\"{{'data': [\"){GIVE_ROOT}"),
        (dict(models=answer({"models": ["m"]})), f"{NOT_OPENAI}GET {{url}}/models answered JSON without a list of models under 'data'"),
        (dict(every_path=answer(b"<html>501</html>", status=501, kind="text/html")), f"{NOT_OPENAI}GET {{url}}/models answered 501 (text/html){GIVE_ROOT}"),
        (dict(models=answer(b"<html>404</html>", status=404, kind="text/html"), completion=answer(b"", status=501, kind="text/html")),
         f"{NOT_OPENAI}GET {{url}}/models answered 404 with text/html{GIVE_ROOT}"),
        (dict(completion=answer(b"<html>ok</html>", kind="text/html")), f"{NOT_OPENAI}POST {{url}}/completions answered 200 with text/html, not JSON ('<html>ok</html>')"),
        (dict(completion=answer(b"")), f"{NOT_OPENAI}POST {{url}}/completions answered 200 with an empty body"),
        (dict(completion=answer({"id": "x", "object": "text_completion"})), f"{NOT_OPENAI}POST {{url}}/completions answered JSON without 'choices'"),
        (dict(completion=answer({"error": {"message": "model is\nloading"}})), "the target server at {url} answered POST {url}/completions with an error: model is loading"),
        (dict(completion=answer({"choices": [{"text": "a", "logprobs": None}]})), "the target server at {url} returned no logprobs for /v1/completions"),
    ],
    ids=["html-everywhere", "empty-models", "non-json-models", "models-without-data", "501-everywhere", "http.server", "html-completion",
         "empty-completion", "no-choices", "200-with-error", "no-logprobs"],
)
def test_hostile_answers_are_one_line(cache, server: dict, message: str) -> None:
    with HostileServer(**server) as hostile:
        line = refused(hostile, cache)
    assert message.replace("{url}", hostile.url) in line


def test_a_hang_past_the_timeout(cache) -> None:
    with HostileServer(hang=True) as hostile:
        started = time.monotonic()
        line = refused(hostile, cache, timeout=0.5)
    assert line == f"the target server at {hostile.url} did not answer within 0.5 s (after 0 retries)"
    assert time.monotonic() - started < 10


def test_a_slow_drip_is_stopped_at_the_timeout(cache) -> None:
    """Each byte arrives well within the read timeout, the whole answer would take 20 s: stopped after about 1 s."""
    with HostileServer(drip=0.1) as hostile:
        started = time.monotonic()
        line = refused(hostile, cache, timeout=1)
    assert line == (
        f"the target server at {hostile.url} did not finish its answer to POST {hostile.url}/completions within 1 s "
        "(it sends too slowly, or hangs mid-answer); raise timeout= if it is only slow"
    )
    assert time.monotonic() - started < 5


def test_logprobs_in_the_chat_format_are_read(cache) -> None:
    """Some servers answer /v1/completions with the chat format's logprobs: the same top-N, read the same."""
    chat = {"choices": [{"text": " a", "logprobs": {"content": [{"token": " a", "logprob": -0.1, "top_logprobs": [
        {"token": " great", "logprob": -0.5}, {"token": " terrible", "logprob": -2.0}, {"token": " a", "logprob": -0.1}]}]}}]}
    with HostileServer(completion=answer(chat)) as hostile:
        logits = scored(hostile.spec(), cache)
    assert logits[0, 0].tolist() == [-2.0, -0.5]
    lines = cache.read_text().splitlines()
    assert lines[0] == json.dumps({"key": "earlier", "scores": [-1.0, -2.0], "missing": 0}) and len(lines) == 2


def test_a_cache_cut_mid_line_keeps_every_whole_line(tmp_path) -> None:
    """A kill mid-write leaves a line without its newline: the next pair starts a line of its own, so nothing scored is lost."""
    cache = tmp_path / "scores.jsonl"
    whole = json.dumps({"key": "earlier", "scores": [-1.0, -2.0], "missing": 0})
    cache.write_text(whole + "\n" + whole[:20])
    with HostileServer() as hostile:
        scored(hostile.spec(), cache)
    lines = cache.read_text().splitlines()
    assert lines[0] == whole and lines[1] == whole[:20] and json.loads(lines[2])["scores"] == [-2.0, -0.5]


@pytest.mark.parametrize("damage", ["folder", "binary"])
def test_a_broken_cache_file(tmp_path, damage: str) -> None:
    cache = tmp_path / "scores.jsonl"
    if damage == "folder":
        cache.mkdir()
        with HostileServer() as hostile, pytest.raises(RLPromptError) as caught:
            scored(hostile.spec(), cache)
        assert str(caught.value) == f"served score cache {cache} is not a file; set cache=PATH to a file, or cache=off"
    else:
        cache.write_bytes(b"\xff\xfe\x00garbage\n")
        with HostileServer() as hostile:
            assert scored(hostile.spec(), cache)[0, 0].tolist() == [-2.0, -0.5]
        assert cache.read_bytes().startswith(b"\xff\xfe\x00garbage\n")


COMPLETION_BODIES = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"choices": st.lists(JSON_VALUES, max_size=2)}),
    st.fixed_dictionaries({"choices": st.lists(st.fixed_dictionaries({"logprobs": JSON_VALUES}), min_size=1, max_size=2)}),
    st.fixed_dictionaries({"choices": st.just([{"logprobs": {"top_logprobs": [{" great": -1.0}]}}]), "error": JSON_VALUES}),
    st.builds(lambda top: {"choices": [{"logprobs": {"top_logprobs": [top]}}]}, st.dictionaries(st.text(max_size=6), JSON_VALUES, max_size=4)),
    st.builds(lambda items: {"choices": [{"logprobs": {"content": [{"top_logprobs": items}]}}]}, st.lists(JSON_VALUES, max_size=3)),
)


def test_generated_completion_bodies(cache) -> None:
    """Any JSON a server may answer is either read as finite log-probabilities by token, or one line naming the server."""
    with HostileServer() as hostile:
        from rlprompt.models import ModelPool
        from rlprompt.scoring import make_scorer
        from rlprompt.tasks import load_task

        scorer = make_scorer(f"{hostile.spec()}&cache={cache}", load_task("demo"), models=ModelPool("cpu", "fp32"))

    @fuzz_settings(BODY_CASES)
    @given(COMPLETION_BODIES)
    def case(body: object) -> None:
        try:
            top = scorer._logprobs_of(body, f"POST {hostile.url}/completions")
        except RLPromptError as error:
            one_line_naming(error, hostile.url)
            return
        assert top and all(isinstance(token, str) and isinstance(value, float) for token, value in top.items())

    case()


def test_cli_html_server_fails_before_the_policy_loads_and_leaves_no_run_folder(tmp_path) -> None:
    """The issue's row: 200 text/html to every path, through ``rlprompt train``."""
    with HostileServer(every_path=answer(b"<html>hello</html>", kind="text/html")) as hostile:
        result = run_cli("train", "--target-lm", f"openai:m@{hostile.url}", "--policy-lm", tmp_path / "no-such-policy", "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    # The policy backbone does not exist: reaching it would give another message.
    assert_bad_input(result, f"the target server at {hostile.url} {NOT_OPENAI}GET {hostile.url}/models answered 200 with text/html")
    assert not (tmp_path / "runs").exists()


def test_cli_501_everywhere_says_it_is_not_an_openai_server(tmp_path) -> None:
    with HostileServer(every_path=answer(b"", status=501, kind="text/html")) as hostile:
        started = time.monotonic()
        result = run_cli("train", "--target-lm", f"openai:m@{hostile.url}", "--policy-lm", tmp_path / "no-such-policy", "--runs-dir", tmp_path / "runs", cwd=tmp_path)
    assert_bad_input(result, f"the target server at {hostile.url} {NOT_OPENAI}GET {hostile.url}/models answered 501")
    assert not (tmp_path / "runs").exists()
    assert time.monotonic() - started < 30
