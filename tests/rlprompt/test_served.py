"""The served target backend (``openai:MODEL@URL``) against a stdlib fake server: parsing, errors,
retries, the on-disk cache, and a killed run.

These need the ``openai`` client only (skipped without it) and run in the default suite; the
tests against a real llama-cpp-python server are in ``test_served_llama.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rlprompt.errors import RLPromptError
from rlprompt.scoring.base import split_target_spec
from rlprompt.scoring.openai import ServedTarget, readout_text
from rlprompt.tasks import load_task
from rlprompt.template import Template

ROOT = Path(__file__).resolve().parents[2]
VERBALIZERS = [" terrible", " great"]


def fake_logprobs(text: str) -> dict[str, float]:
    """A fixed top-5 for ``text``: the two verbalizers plus three fillers, as a server would return."""
    digest = hashlib.sha256(text.encode()).digest()
    return {" terrible": -1.0 - digest[0] / 100, " great": -1.0 - digest[1] / 100, " the": -0.5, " a": -3.5, ".": -4.0}


class FakeServer:
    """An OpenAI-compatible ``/v1`` server in a thread: ``/v1/models`` and ``/v1/completions``.

    Args:
        model: The one model it serves.
        fail_first: Completion requests answered 500 before any succeeds.
        delay: Seconds each completion takes.
        status: If set, every completion is answered with this status.
        logprobs: Whether completions carry logprobs.
        max_logprobs: If set, a request for more logprobs is answered 400 (as vLLM does).
    """

    def __init__(
        self, model: str = "fake-model", fail_first: int = 0, delay: float = 0.0, status: int | None = None, logprobs: bool = True, max_logprobs: int | None = None
    ) -> None:
        self.model, self.fail_first, self.delay, self.status, self.logprobs, self.max_logprobs = model, fail_first, delay, status, logprobs, max_logprobs
        self.logprobs_asked: list[int] = []
        self.completions = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                if self.path == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": server.model, "object": "model", "owned_by": "me"}]})
                else:
                    self._send(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if self.path != "/v1/completions":
                    self._send(404, {"error": {"message": "not found"}})
                    return
                with server.lock:
                    server.completions += 1
                    count = server.completions
                    server.logprobs_asked.append(body.get("logprobs"))
                if server.max_logprobs and body.get("logprobs", 0) > server.max_logprobs:
                    self._send(400, {"error": {"message": f"logprobs must be at most {server.max_logprobs}"}})
                    return
                time.sleep(server.delay)
                if server.status:
                    self._send(server.status, {"error": {"message": f"status {server.status}"}})
                    return
                if count <= server.fail_first:
                    self._send(500, {"error": {"message": "internal error"}})
                    return
                top = fake_logprobs(body["prompt"])
                logprobs = {"tokens": [" the"], "token_logprobs": [-0.5], "top_logprobs": [top], "text_offset": [0]} if server.logprobs else None
                self._send(200, {
                    "id": "cmpl-1", "object": "text_completion", "created": 0, "model": server.model,
                    "choices": [{"text": " the", "index": 0, "logprobs": logprobs, "finish_reason": "length"}],
                })

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def spec(self, model: str | None = None, **settings) -> str:
        query = "&".join(f"{k}={v}" for k, v in settings.items())
        return f"openai:{model or self.model}@http://127.0.0.1:{self.port}/v1" + (f"?{query}" if query else "")


@pytest.fixture(autouse=True)
def _needs_openai() -> None:
    pytest.importorskip("openai", reason="the served backend needs the openai client (pip install -e '.[served]')")


def scorer_for(spec: str, cache: Path | None = None):
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer

    if cache is not None:
        spec += ("&" if "?" in spec else "?") + f"cache={cache}"
    return make_scorer(spec, load_task("demo"), models=ModelPool("cpu", "fp32"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_spec_reaches_the_backend_and_parses() -> None:
    assert split_target_spec("openai:m@http://h:1/v1") == ("openai", "m@http://h:1/v1")
    target = ServedTarget.parse("org/m@http://h:1/v1?concurrency=2&top_logprobs=5&api_key_env=MY_KEY")
    assert (target.model, target.base_url, target.concurrency, target.top_logprobs, target.api_key_env) == ("org/m", "http://h:1/v1", 2, 5, "MY_KEY")
    assert target.server_root == "http://h:1"
    with pytest.raises(RLPromptError, match="MODEL@http"):
        ServedTarget.parse("just-a-model")
    with pytest.raises(RLPromptError, match="unknown setting"):
        ServedTarget.parse("m@http://h:1/v1?colour=red")


def test_readout_text_is_the_text_before_the_mask() -> None:
    assert readout_text(Template("{sentence} {prompt} {mask}"), "Fine film.", "It was") == "Fine film. It was"
    assert readout_text(Template("Review: {sentence} {prompt}\nSentiment: {mask}"), " Good. ", "") == "Review: Good.\nSentiment:"


def test_scores_are_the_verbalizer_logprobs(tmp_path) -> None:
    task = load_task("demo")
    with FakeServer() as server:
        scorer = scorer_for(server.spec(), tmp_path / "c.jsonl")
        sentences = [e.text for e in task.train[:3]]
        logits = scorer.class_logits(["It was", "Overall"], sentences)
    assert logits.shape == (2, 3, 2) and scorer.requests == 6
    text = readout_text(task.template, sentences[1], "Overall")
    assert logits[1, 1].tolist() == pytest.approx([fake_logprobs(text)[v] for v in VERBALIZERS])


def test_wrong_port_is_one_line(tmp_path) -> None:
    port = free_port()
    with pytest.raises(RLPromptError) as caught:
        scorer_for(f"openai:m@http://127.0.0.1:{port}/v1?max_retries=0", tmp_path / "c.jsonl")
    assert str(caught.value) == (
        f"cannot connect to the target server at http://127.0.0.1:{port}/v1 (connection refused or unreachable); is the server running, and is the URL right?"
    )


def test_wrong_model_name_names_the_served_ones(tmp_path) -> None:
    with FakeServer() as server, pytest.raises(RLPromptError) as caught:
        scorer_for(server.spec(model="nope"), tmp_path / "c.jsonl")
    assert str(caught.value) == f"model 'nope' is not served at http://127.0.0.1:{server.port}/v1; it serves: fake-model"


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (401, "refused the API key (401); set the environment variable OPENAI_API_KEY"),
        (404, "answered 404 for model 'fake-model': the model is not served there, or the URL lacks /v1"),
    ],
)
def test_status_errors_are_one_line(tmp_path, status, message) -> None:
    with FakeServer(status=status) as server:
        scorer = scorer_for(server.spec(max_retries=0), tmp_path / "c.jsonl")
        with pytest.raises(RLPromptError, match=re.escape(message)) as caught:
            scorer.class_logits(["It was"], ["Fine."])
    assert "\n" not in str(caught.value)


def test_server_without_logprobs(tmp_path) -> None:
    with FakeServer(logprobs=False) as server:
        scorer = scorer_for(server.spec(), tmp_path / "c.jsonl")
        with pytest.raises(RLPromptError, match="returned no logprobs"):
            scorer.class_logits(["It was"], ["Fine."])


def test_500_twice_then_success_is_retried(tmp_path) -> None:
    with FakeServer(fail_first=2) as server:
        scorer = scorer_for(server.spec(concurrency=1), tmp_path / "c.jsonl")
        logits = scorer.class_logits(["It was"], ["Fine."])
        assert server.completions == 3
    assert scorer.requests == 1
    assert logits[0, 0].tolist() == pytest.approx([fake_logprobs("Fine. It was")[v] for v in VERBALIZERS])


def test_cache_makes_a_rerun_free(tmp_path) -> None:
    cache = tmp_path / "c.jsonl"
    with FakeServer() as server:
        first = scorer_for(server.spec(), cache).class_logits(["It was"], ["Fine.", "Bad."])
        again = scorer_for(server.spec(), cache)
        assert again.class_logits(["It was"], ["Fine.", "Bad."]).tolist() == first.tolist()
        assert again.requests == 0 and server.completions == 2


def test_killed_run_keeps_what_it_scored(tmp_path) -> None:
    """A scoring process killed with SIGKILL mid-run leaves its scored pairs in the cache; a rerun requests only the rest."""
    cache = tmp_path / "c.jsonl"
    task = load_task("demo")
    sentences = [e.text for e in task.train[:20]]
    with FakeServer(delay=0.05) as server:
        code = (
            "import sys; from rlprompt.models import ModelPool; from rlprompt.scoring import make_scorer; from rlprompt.tasks import load_task\n"
            "task = load_task('demo')\n"
            f"scorer = make_scorer({server.spec(concurrency=2) + '&cache=' + str(cache)!r}, task, models=ModelPool('cpu', 'fp32'))\n"
            f"scorer.class_logits(['It was', 'Overall'], [e.text for e in task.train[:20]])\n"
        )
        process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        deadline = time.monotonic() + 120
        while server.completions < 10 and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        scored = len(cache.read_text().splitlines())
        assert 5 <= scored < 40
        before = server.completions
        scorer = scorer_for(server.spec(), cache)
        logits = scorer.class_logits(["It was", "Overall"], sentences)
        assert scorer.requests == server.completions - before == 40 - scored
    assert logits[1, 3].tolist() == pytest.approx([fake_logprobs(readout_text(task.template, sentences[3], "Overall"))[v] for v in VERBALIZERS])


def test_missing_verbalizer_widens_then_falls_back(tmp_path) -> None:
    with FakeServer() as server:
        task = load_task("demo", verbalizers=[" great", " okay"])
        from rlprompt.models import ModelPool
        from rlprompt.scoring import make_scorer

        scorer = make_scorer(server.spec(top_logprobs=5, cache="off"), task, models=ModelPool("cpu", "fp32"))
        logits = scorer.class_logits(["It was"], ["Fine."])
        # Widened to N=1000, then to max_top_logprobs, still missing: the smallest returned value minus the margin.
        assert scorer.requests == 3 and scorer.missing == 1
        assert server.logprobs_asked == [5, 1000, 1_000_000]
    assert logits[0, 0, 1].item() == pytest.approx(-4.0 - 1.0)


def test_refused_wider_n_is_the_cap(tmp_path) -> None:
    """A vLLM-like server refusing N above 20 with 400: the ladder stops at 20, scoring goes on with the fallback."""
    with FakeServer(max_logprobs=20) as server:
        task = load_task("demo", verbalizers=[" great", " okay"])
        from rlprompt.models import ModelPool
        from rlprompt.scoring import make_scorer

        scorer = make_scorer(server.spec(cache="off", concurrency=1), task, models=ModelPool("cpu", "fp32"))
        scorer.class_logits(["It was"], ["Fine.", "Bad."])
        assert server.logprobs_asked == [20, 1000, 20] and scorer.missing == 2


def test_top_logprobs_above_1000_is_the_first_request(tmp_path) -> None:
    """``top_logprobs=1000000`` asks for the whole vocabulary at once, not 1000 first."""
    with FakeServer() as server:
        task = load_task("demo", verbalizers=[" great", " okay"])
        from rlprompt.models import ModelPool
        from rlprompt.scoring import make_scorer

        scorer = make_scorer(server.spec(top_logprobs=1_000_000, cache="off"), task, models=ModelPool("cpu", "fp32"))
        scorer.class_logits(["It was"], ["Fine."])
        assert server.logprobs_asked == [1_000_000] and scorer.requests == 1 and scorer.missing == 1


@pytest.mark.parametrize(("spec", "label"), [
    ("openai:my-model@http://127.0.0.1:8000/v1?cache=off", "openai_my-model"),
    ("openai:org/model-7b@https://host/v1", "openai_org_model-7b"),
    ("smollm2-135m", "smollm2-135m"),
    ("/models/tiny-gpt2", "tiny-gpt2"),
])
def test_run_folders_name_the_served_model_not_its_url(spec, label) -> None:
    from rlprompt.scoring.base import target_label

    assert target_label(spec) == label


def test_a_run_against_a_server_reports_its_requests(tiny_llama_dir, tmp_path) -> None:
    """A training run on a served target: the run folder names the model, and the prompt file's
    budget counts the completion requests, kept across ``--resume``."""
    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    with FakeServer() as server:
        config = TrainConfig(
            target_lm=server.spec(cache="off", concurrency=2), policy_lm=str(tiny_llama_dir), steps=2, num_prompts=2, prompt_length=2,
            top_k=3, adapter_hidden=16, runs_dir=str(tmp_path), seed=1, evaluate_test=False, greedy_every=0,
        )
        first = train(config, progress_bar=False)
        assert first.path.parent.name == "demo-openai_fake-model-seed1"
        assert first.prompt_file.budget["server_requests"] == server.completions > 0
        after_first = server.completions
        resumed = train(replace(config, steps=3), progress_bar=False, resume=True)
        assert resumed.prompt_file.budget["server_requests"] == server.completions > after_first


def test_eval_header_names_the_served_model_not_a_local_dtype(tmp_path) -> None:
    from rlprompt.artifact import PromptFile, TaskSpec
    from tests.rlprompt.test_cli import run_cli

    prompt = tmp_path / "p.json"
    PromptFile(
        prompt="It was", token_ids=[1], tokenizer="t", target_lm="t", task=TaskSpec("demo", "{sentence} {prompt} {mask}", VERBALIZERS, ["negative", "positive"], "It was"),
        accuracy={}, budget={}, seed=0, versions={},
    ).save(prompt)
    with FakeServer() as server:
        result = run_cli("eval", "--prompt", prompt, "--target-lm", server.spec(cache="off"), "--split", "dev", "--output", tmp_path / "scores.json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    header = result.stdout.splitlines()[0]
    assert header.startswith(f"demo dev (32 examples) on {server.spec(cache='off')} (served model fake-model at http://127.0.0.1:{server.port}/v1), template")
    assert "fp32" not in header and "bf16" not in header
    assert json.loads((tmp_path / "scores.json").read_text())["dtype"] is None
