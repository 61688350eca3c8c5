"""The ``rlprompt`` command: train, eval, export, transfer, models, env.

Bad input ends with one line on stderr naming the bad thing, and exit code 2.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import logging
import os
import sys
import typing
from dataclasses import MISSING, fields
from pathlib import Path

from rlprompt.errors import RLPromptError

EXIT_BAD_INPUT = 2


def _field_docs(cls: type) -> dict[str, str]:
    """The one-line docstrings under each dataclass field, for ``--help``."""
    docs: dict[str, str] = {}
    body = ast.parse(inspect.getsource(cls)).body[0].body
    for node, following in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant):
            docs[node.target.id] = str(following.value.value).strip()
    return docs


def _add_config_arguments(parser: argparse.ArgumentParser) -> None:
    from rlprompt.config import TrainConfig
    from rlprompt.search import SEARCH_METHODS

    choices = {"algo": list(SEARCH_METHODS)}  # the registry is the one list of valid names
    docs = _field_docs(TrainConfig)
    hints = typing.get_type_hints(TrainConfig)
    for item in fields(TrainConfig):
        flag = "--" + item.name.replace("_", "-")
        hint = hints[item.name]
        default = item.default if item.default is not MISSING else None
        help_text = f"{docs.get(item.name, '')} (default: {default})"
        if hint is bool:
            parser.add_argument(flag, dest=item.name, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        elif "list" in str(hint):
            parser.add_argument(flag, dest=item.name, nargs="+", default=None, help=help_text)
        else:
            base = next((t for t in (int, float, str) if t is hint or t in typing.get_args(hint)), str)
            parser.add_argument(
                flag, dest=item.name, type=base, default=None, choices=choices.get(item.name),
                metavar=item.name.upper() if item.name not in choices else None, help=help_text,
            )


def _add_hardware_arguments(parser: argparse.ArgumentParser) -> None:
    """``--device`` and ``--dtype`` for the commands that load models (train takes them from TrainConfig)."""
    from rlprompt.config import TrainConfig

    docs = _field_docs(TrainConfig)
    for name in ("device", "dtype"):
        parser.add_argument(f"--{name}", default="auto", help=f"{docs[name]} (default: auto)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlprompt", description="Find discrete text prompts for a frozen LM by RL.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every training step (default: only new best prompts)")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="learn a prompt (no arguments: the offline demo)")
    train.add_argument("--config", help="TOML file of training settings; flags override it")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument(
        "--resume", metavar="RUN", help="continue the run in folder RUN (e.g. one killed mid-way) from its checkpoint, "
        "with its own settings; only --steps may change"
    )
    _add_config_arguments(train)

    evaluate = commands.add_parser("eval", help="score a prompt file on a task and model, beside the empty and manual prompts")
    evaluate.add_argument("--prompt", required=True, help="a prompt file or run folder")
    evaluate.add_argument("--target-lm", required=True, help="model to score on (alias, .gguf, folder or hub id)")
    evaluate.add_argument("--task", help="task name (default: the prompt file's)")
    evaluate.add_argument("--data", help="task data: folder or one file (default: the demo data for the demo task)")
    evaluate.add_argument("--split", default="test", choices=["train", "dev", "test"], help="split to score (default: test)")
    evaluate.add_argument("--template", help="override the prompt file's template")
    evaluate.add_argument("--verbalizers", nargs="+", help="override the prompt file's verbalizers")
    evaluate.add_argument("--manual-prompt", help="override the manual baseline prompt")
    _add_hardware_arguments(evaluate)
    evaluate.add_argument("--output", help="also write the scores as JSON here")

    export = commands.add_parser("export", help="export a run's prompts")
    export.add_argument("run_or_file", help="a run folder or a prompt file")
    export.add_argument("--format", default="json", help="json, jsonl, csv or txt (default: json)")
    export.add_argument("--top-k", type=int, help="only the best K prompts")
    export.add_argument("--output", "-o", help="write here instead of stdout")

    transfer = commands.add_parser("transfer", help="score several prompt files on several models: table + heatmap")
    transfer.add_argument("--prompts", nargs="+", required=True, help="prompt files or run folders")
    transfer.add_argument("--target-lms", nargs="+", required=True, help="models to score on")
    transfer.add_argument("--task", help="task name (default: the first prompt file's)")
    transfer.add_argument("--data", help="task data: folder or one file")
    transfer.add_argument("--split", default="test", choices=["train", "dev", "test"], help="split to score (default: test)")
    transfer.add_argument("--output-dir", default="transfer", help="where transfer.md/.json/.png go (default: transfer)")
    _add_hardware_arguments(transfer)

    commands.add_parser("models", help="list the offline model aliases")
    commands.add_parser("env", help="versions, CPU bf16 flags, devices, what --device/--dtype auto mean here: paste it into bug reports")
    return parser


def _train(args: argparse.Namespace) -> int:
    from rlprompt.config import TrainConfig

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig)}
    if args.resume:
        others = sorted(f"--{name.replace('_', '-')}" for name, value in overrides.items() if value is not None and name != "steps")
        if others or args.config:
            raise RLPromptError(f"--resume continues a run with its own settings; drop {', '.join(others) or '--config'} (only --steps may change)")
        from rlprompt.train import resume_config

        config = resume_config(args.resume, args.steps)
    else:
        config = TrainConfig.from_toml(args.config, **overrides) if args.config else TrainConfig(
            **{k: v for k, v in overrides.items() if v is not None}
        )
    config.check()
    from rlprompt.evaluation import format_table, shorten
    from rlprompt.train import train

    result = train(config, progress_bar=not args.no_progress and sys.stderr.isatty(), resume=bool(args.resume))
    rows = []
    for name in ("empty", "manual", "learned"):
        scores = [result.baselines[s][name] for s in ("dev", "test") if s in result.baselines]
        rows.append([name, shorten(scores[0].prompt), *[s.accuracy for s in scores]])
    headers = ["prompt", "text", *[f"{s} acc" for s in ("dev", "test") if s in result.baselines]]
    state = "interrupted; best so far" if result.interrupted else "learned prompt"
    print(f"\n{state}: {shorten(result.prompt_file.prompt)}")
    print(format_table(headers, rows))
    budget = result.prompt_file.budget
    print(
        f"\n{budget['prompts_sampled']} prompts sampled, {budget['prompt_evaluations']} scored by the target LM "
        f"(the rest were repeats), {budget['seconds']:.0f} s; prompt file: {result.path}"
    )
    return 130 if result.interrupted else 0


def _eval(args: argparse.Namespace) -> int:
    from rlprompt.artifact import PromptFile, write_json_atomic
    from rlprompt.devices import check_dtype_name, dtype_name
    from rlprompt.evaluation import check_prompts_fit_before_loading, format_table, score_prompts, scorer_description, shorten
    from rlprompt.export import resolve_prompt_file
    from rlprompt.models import ModelPool
    from rlprompt.scoring.base import calibration_splits
    from rlprompt.scoring.factory import make_scorer

    check_dtype_name(args.dtype)  # bad values fail before any loading
    models = ModelPool(args.device, args.dtype)
    prompt_file = PromptFile.load(resolve_prompt_file(args.prompt))
    spec = prompt_file.task
    task = spec.to_task(args.data, name=args.task, template=args.template, verbalizers=args.verbalizers, manual_prompt=args.manual_prompt)
    task.require(args.split, *calibration_splits(spec.calibration))
    prompts = {"empty": "", "manual": task.manual_prompt, "learned": prompt_file.prompt}
    # A prompt past the target's context window is refused before the weights load (seconds, not minutes).
    check_prompts_fit_before_loading(args.target_lm, task, list(prompts.values()), [e.text for e in task.split(args.split)])
    scorer = make_scorer(args.target_lm, task, spec.calibration, models=models)
    scores = dict(zip(prompts, score_prompts(scorer, list(prompts.values()), task.split(args.split), progress=None)))
    headers = ["prompt", "text", "accuracy", *[f"acc[{n}]" for n in task.label_names]]
    rows = [[name, shorten(s.prompt), s.accuracy, *s.per_class_accuracy] for name, s in scores.items()]
    calibration = f", calibration {spec.calibration}" if spec.calibration != "none" else ""
    served = scorer_description(scorer)  # a served target: its model and URL, not this machine's dtype
    hardware = served or f"{dtype_name(models.dtype)} on {models.device}"
    print(f"{task.name} {args.split} ({len(task.split(args.split))} examples) on {args.target_lm} ({hardware}), template {task.template.text!r}{calibration}")
    print(format_table(headers, rows))
    if args.output:
        write_json_atomic(Path(args.output), {
            "target_lm": args.target_lm, "dtype": None if served else dtype_name(models.dtype), "task": task.name, "split": args.split,
            "scores": {name: {"prompt": s.prompt, "accuracy": s.accuracy, "per_class_accuracy": s.per_class_accuracy} for name, s in scores.items()},
        })
    return 0


def _export(args: argparse.Namespace) -> int:
    from rlprompt.artifact import PromptFile
    from rlprompt.export import export_prompts, resolve_prompt_file

    text = export_prompts(PromptFile.load(resolve_prompt_file(args.run_or_file)), args.format, args.top_k)
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def _transfer(args: argparse.Namespace) -> int:
    from rlprompt.artifact import PromptFile
    from rlprompt.export import resolve_prompt_file
    from rlprompt.transfer import markdown_table, transfer_matrix, write_transfer

    paths = [resolve_prompt_file(p) for p in args.prompts]
    files = [PromptFile.load(p) for p in paths]
    labels = [p.parent.name if p.name == "prompt.json" else p.stem for p in paths]
    rows = transfer_matrix(files, labels, args.target_lms, args.task, args.data, args.split, args.dtype, args.device)
    written = write_transfer(rows, args.target_lms, Path(args.output_dir))
    print(markdown_table(rows, args.target_lms))
    print("wrote " + ", ".join(str(p) for p in written.values()))
    return 0


def _models(args: argparse.Namespace) -> int:
    from rlprompt.models import OFFLINE_MODELS

    for alias, offline in OFFLINE_MODELS.items():
        try:
            where = str(offline.locate())
        except RLPromptError as error:
            where = f"not installed ({error})"
        print(f"{alias:14} {offline.description}\n{'':14} {where}")
    print("Any Hugging Face causal or masked LM also works: a hub id (online), a local folder, or a .gguf file.")
    return 0


def _env(args: argparse.Namespace) -> int:
    from rlprompt.environment import format_report, report

    print(format_report(report()))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    ours = logging.getLogger("rlprompt")
    if not ours.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        ours.addHandler(handler)
        ours.propagate = False
    ours.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _quiet_libraries()
    handlers = {"train": _train, "eval": _eval, "export": _export, "transfer": _transfer, "models": _models, "env": _env}
    try:
        return handlers[args.command](args)
    except RLPromptError as error:
        # One line whatever the message quotes (a column name or server answer with a line break in it).
        print("rlprompt: error: " + " ".join(str(error).splitlines()), file=sys.stderr)
        return EXIT_BAD_INPUT


def _quiet_libraries() -> None:
    import warnings

    warnings.filterwarnings("ignore", module="stable_baselines3")
    warnings.filterwarnings("ignore", module="gymnasium")
    try:
        import transformers

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:
        pass


if __name__ == "__main__":
    sys.exit(main())
