"""Train a prompt: the whole path from a config to a prompt file.

Read top to bottom: build the run's objects (:mod:`rlprompt.builder`: task, models, scorer,
policy backbone, vocabulary, cached reward), make the selector and the search method from its
registry, search (checkpointing after every batch, so ``--resume`` continues a killed run),
then score the empty, manual and learned prompts on dev and test and write
``runs/<run>/prompt.json``.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from rlprompt.artifact import Candidate, PromptFile, TaskSpec, library_versions, write_json_atomic
from rlprompt.builder import RunObjects, build
from rlprompt.config import TrainConfig
from rlprompt.devices import dtype_name
from rlprompt.envs.prompt_env import scored_info
from rlprompt.errors import RLPromptError
from rlprompt.evaluation import PromptScore, score_prompts
from rlprompt.perplexity import perplexity
from rlprompt.scoring.base import file_name_safe, server_requests, target_label
from rlprompt.search import search_method
from rlprompt.search.base import SearchContext, SearchMethod
from rlprompt.selection import PromptSelector
from rlprompt.tasks import task_name

logger = logging.getLogger(__name__)

STATE_FILE = "state.json"
"""The checkpoint ``--resume`` reads: the selector's state and the reward cache."""
STATE_VERSION = 1


@dataclass
class TrainResult:
    """What a run produced."""

    prompt_file: PromptFile
    path: Path
    """Where the prompt file was written."""
    baselines: dict[str, dict[str, PromptScore]]
    """Split -> {"empty", "manual", "learned"} -> score."""
    interrupted: bool = False


def run_dir(config: TrainConfig) -> Path:
    # The task's own name: with --data alone that is the preset the path names, not "demo".
    task = task_name(config.task, config.data)
    name = config.run_name or f"{file_name_safe(task)}-{target_label(config.target_lm)}-seed{config.seed}"
    return Path(config.runs_dir) / name


class _Run:
    """One training run's state between the builder and the prompt file."""

    def __init__(self, config: TrainConfig, objects: RunObjects, out_dir: Path, seconds_before: float = 0.0) -> None:
        self.config = config
        self.objects = objects
        self.out_dir = out_dir
        self.started = time.monotonic() - seconds_before
        self.requests_before = 0
        """Server requests of the earlier sessions of a resumed run (a served target only)."""
        self.selector = PromptSelector(
            config.top_k,
            self.dev_score,
            lambda ranked: self.prompt_file(ranked).save(out_dir / "prompt.json"),
            evaluations=lambda: objects.reward.evaluations,
            on_batch=self.after_batch,
        )
        context = SearchContext(
            config=config, reward=objects.reward, selector=self.selector, vocab=objects.vocab, backbone=objects.backbone,
            make_env=objects.vec_env, device=objects.models.device, out_dir=out_dir, task=objects.task,
        )
        self.method: SearchMethod = search_method(config.algo)(context)

    def dev_score(self, prompts: list[str]) -> list[float]:
        return [score.accuracy for score in score_prompts(self.objects.scorer, prompts, self.objects.task.dev)]

    def prompt_file(self, ranked: list[Candidate], test_accuracy: float | None = None) -> PromptFile:
        objects, best = self.objects, ranked[0]
        # Each candidate's perplexity is computed once, when it first reaches the file.
        unmeasured = [c for c in ranked if c.perplexity is None]
        backbone = objects.backbone
        for candidate, value in zip(unmeasured, perplexity(backbone.model, backbone.tokenizer, [c.prompt for c in unmeasured])):
            candidate.perplexity = round(float(value), 3)
        task = objects.task
        requests = self.server_requests  # a property that asks the scorer
        return PromptFile(
            prompt=best.prompt,
            token_ids=best.token_ids,
            tokenizer=backbone.name,
            target_lm=self.config.target_lm,
            task=TaskSpec(task.name, task.template.text, task.verbalizers, task.label_names, task.manual_prompt, self.config.calibration),
            accuracy={"train": best.train_accuracy, "dev": best.dev_accuracy, "test": test_accuracy},
            budget={
                "steps": self.selector.batches,
                "prompts_sampled": self.selector.prompts_sampled,
                "prompt_evaluations": objects.reward.evaluations,
                "seconds": round(time.monotonic() - self.started, 1),
                **({} if requests is None else {"server_requests": requests}),
            },
            seed=self.config.seed,
            versions=library_versions(),
            candidates=ranked,
            perplexity=best.perplexity,
            perplexity_lm=backbone.name,
            dtype=dtype_name(objects.models.dtype),
            writer=self.method.writer_record(),
        )

    def after_batch(self) -> None:
        """Every ``greedy_every`` batches the policy's greedy prompt is scored and enters the
        candidates; then the checkpoint."""
        every = self.config.greedy_every
        if every and self.selector.batches % every == 0:
            self.score_greedy()
        self.checkpoint()

    @property
    def server_requests(self) -> int | None:
        """Completion requests sent to a served target over the whole run (resumed sessions included); None in-process."""
        now = server_requests(self.objects.scorer)
        return None if now is None else self.requests_before + now

    def score_greedy(self) -> None:
        """Score the policy's greedy prompt on train (one evaluation of the budget, unless already
        scored) and dev, and hand it to the selector; nothing for a method without a policy."""
        greedy = self.method.greedy_prompt()
        if greedy is None:
            return
        candidate = self.selector.add_greedy(self._scored(*greedy))
        logger.debug("step %d: greedy prompt %r, dev %.3f", self.selector.batches, candidate.prompt, candidate.dev_accuracy or 0.0)

    def score_empty(self) -> None:
        """With ``min_length`` 0 the empty prompt is in the search space: score it first (one
        evaluation) so the selector can return it, and the result is never worse on dev."""
        self.selector.add_candidate(self._scored("", []))

    def _scored(self, prompt: str, token_ids: list[int]) -> dict:
        """``prompt`` scored on train as a batch of one, as the selector takes an episode."""
        return scored_info(prompt, token_ids, self.objects.reward([prompt]), 0)

    def checkpoint(self) -> None:
        """After every batch: what ``--resume`` needs, each file replaced atomically."""
        self.method.save(self.out_dir)
        self.write_state()

    def write_state(self) -> None:
        """The selector, the reward cache and the run's seconds and server requests so far."""
        write_json_atomic(self.out_dir / STATE_FILE, {
            "version": STATE_VERSION,
            "algo": self.config.algo,
            "seconds": time.monotonic() - self.started,
            "server_requests": self.server_requests,
            "selector": self.selector.state(),
            "reward": self.objects.reward.state(),
        })

    def restore(self, state: dict) -> None:
        """Continue from the run folder's checkpoint (``state``, as :func:`_read_state` read it)."""
        try:
            self.selector.load_state(state["selector"])
            self.objects.reward.load_state(state["reward"])
            self.requests_before = int(state.get("server_requests") or 0)
            self.method.load(self.out_dir)
        except RLPromptError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, RuntimeError) as error:
            # A hand-edited or foreign checkpoint: one line, and the run folder is left as it is.
            detail = " ".join(str(error).split())[:200]
            raise RLPromptError(f"cannot resume: the checkpoint in {self.out_dir} does not fit this run ({type(error).__name__}: {detail})") from None

    def search(self, progress_bar: bool) -> bool:
        """Search for the steps left; True when interrupted (Ctrl-C)."""
        try:
            self.method.run(max(self.config.steps - self.selector.batches, 0), progress_bar)
        except KeyboardInterrupt:
            logger.warning("interrupted: keeping the best prompt so far")
            return True
        finally:
            self.method.save(self.out_dir)
            write_json_atomic(self.out_dir / "history.json", self.selector.history)
        return False

    def finish(self, interrupted: bool) -> TrainResult:
        reward = self.objects.reward
        logger.info("reward cache: %d of %d sampled prompts were repeats (hit rate %.1f%%)", reward.hits, reward.lookups, 100 * reward.hit_rate)
        ranked = self.selector.ranked()
        if not ranked:
            raise RLPromptError("training stopped before any prompt was finished; nothing to save")
        task, learned = self.objects.task, ranked[0].prompt
        splits = ["dev", "test"] if self.config.evaluate_test and task.test and not interrupted else ["dev"]
        baselines = {
            split: dict(zip(["empty", "manual", "learned"], score_prompts(self.objects.scorer, ["", task.manual_prompt, learned], task.split(split))))
            for split in splits
        }
        path = self.out_dir / "prompt.json"
        result_file = self.prompt_file(ranked, baselines["test"]["learned"].accuracy if "test" in baselines else None)
        result_file.save(path)
        write_json_atomic(
            self.out_dir / "baselines.json",
            {split: {name: asdict(score) for name, score in scores.items()} for split, scores in baselines.items()},
        )
        # The final scoring's seconds and requests count too when the run is resumed for more steps.
        self.write_state()
        return TrainResult(result_file, path, baselines, interrupted)


def _read_run_file(path: Path, missing: str) -> dict:
    """A run folder's JSON object, or a one-line error; ``missing`` says what to do when it is absent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise RLPromptError(f"cannot resume: {path} does not exist; {missing}") from error
    except IsADirectoryError as error:
        raise RLPromptError(f"cannot resume: {path} is a folder, not the JSON file rlprompt train writes") from error
    except UnicodeDecodeError as error:
        raise RLPromptError(f"cannot resume: {path} is not UTF-8 text ({error.reason})") from error
    except OSError as error:
        raise RLPromptError(f"cannot resume: {path} cannot be read ({error.strerror or error})") from error
    except json.JSONDecodeError as error:
        raise RLPromptError(f"cannot resume: {path} is not valid JSON ({error.msg}; cut short or edited?)") from error
    if not isinstance(data, dict):
        raise RLPromptError(f"cannot resume: {path} holds a JSON {type(data).__name__}, not the object rlprompt train writes")
    return data


def _read_state(out_dir: Path) -> dict:
    """The checkpoint of the run in ``out_dir``, checked before anything loads: a one-line error
    for a missing, cut, foreign or newer checkpoint, and the run folder is left as it is."""
    from rlprompt.search.base import POLICY_FILE

    path = out_dir / STATE_FILE
    if not path.exists() and (out_dir / "config.json").is_file():
        raise RLPromptError(
            f"cannot resume: {path} does not exist: the run stopped before its first step finished, "
            "so there is no checkpoint to continue from; start it again without --resume"
        )
    state = _read_run_file(path, "was the run started by this rlprompt version?")
    if state.get("version") != STATE_VERSION:
        raise RLPromptError(f"cannot resume: {path} has version {state.get('version')!r}; this rlprompt reads {STATE_VERSION}")
    for key, kinds in (("seconds", (int, float)), ("selector", dict), ("reward", dict)):
        if not isinstance(state.get(key), kinds) or isinstance(state.get(key), bool):
            raise RLPromptError(f"cannot resume: {path} has no valid '{key}' (cut short or edited?)")
    policy = out_dir / POLICY_FILE
    if policy.is_dir():
        raise RLPromptError(f"cannot resume: {policy} is a folder, not the policy weights rlprompt train writes")
    if policy.exists():
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(policy), framework="pt") as weights:
                list(weights.keys())
        except (SafetensorError, OSError, ValueError) as error:
            detail = " ".join(str(error).split())[:160]
            raise RLPromptError(f"cannot resume: {policy} is not readable safetensors ({detail}; cut short or edited?)") from None
    return state


def train(config: TrainConfig, progress_bar: bool = True, *, resume: bool = False) -> TrainResult:
    """Learn a prompt for ``config``; see the module docstring for the steps.

    Args:
        config: The run's settings.
        progress_bar: Show a progress bar.
        resume: Continue the run in ``run_dir(config)`` from its checkpoint: its policy, the
            selector's candidates and history, and the reward cache (prompts already scored are
            never scored again); ``config.steps`` counts the steps of both parts.

    Returns:
        The prompt file (also written to ``runs/<run>/prompt.json``) and the baseline scores.
        A Ctrl-C stops training early; the best prompt so far is still written and returned.
    """
    out_dir = run_dir(config)
    state = _read_state(out_dir) if resume else None
    objects = build(config)
    out_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        write_json_atomic(out_dir / "config.json", asdict(config))
    run = _Run(config, objects, out_dir, seconds_before=state["seconds"] if state else 0.0)
    if config.shortest_prompt == 0 and not resume:
        run.score_empty()
    if resume:
        run.restore(state)
        # Only once the checkpoint has been read: a resume that fails leaves the run folder as it was.
        write_json_atomic(out_dir / "config.json", asdict(config))
        logger.info("resuming %s at step %d of %d (%d prompts already scored)", out_dir, run.selector.batches, config.steps, objects.reward.evaluations)
    return run.finish(run.search(progress_bar))


def resume_config(folder: str | Path, steps: int | None = None) -> TrainConfig:
    """The config of the run in ``folder`` (its ``config.json``), to pass to ``train(..., resume=True)``.

    Args:
        folder: The run folder.
        steps: A new total step count (to run longer than first planned).
    """
    folder = Path(folder)
    if folder.is_file():
        raise RLPromptError(f"cannot resume: '{folder}' is a file; --resume takes the run folder rlprompt train wrote (runs/<run>, with config.json and state.json)")
    path = folder / "config.json"
    config = TrainConfig.from_mapping(_read_run_file(path, "give a run folder made by rlprompt train"), str(path))
    # The run folder may have moved since: resume where it is now.
    config.runs_dir, config.run_name = str(folder.parent), folder.name
    if steps is not None:
        config.steps = steps
    return config
