"""The README's plain-transformers snippet runs as written (on a tiny model and a prompt file)."""

from __future__ import annotations

import re
from pathlib import Path

from rlprompt.artifact import PromptFile, TaskSpec

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("### Using a prompt file without rlprompt", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_plain_transformers_snippet_runs(tiny_llama_dir, tmp_path, capsys) -> None:
    prompt_file = tmp_path / "prompt.json"
    PromptFile(
        prompt="It was", token_ids=[1, 2], tokenizer="tiny", target_lm="tiny",
        task=TaskSpec("demo", "{sentence} {prompt} {mask}", [" terrible", " great"], ["negative", "positive"], "It was"),
        accuracy={"train": None, "dev": None, "test": None}, budget={"steps": 1}, seed=0, versions={},
    ).save(prompt_file)
    code = _snippet()
    # Only the two settings change: the file to read and a model that loads offline.
    code, files = re.subn(r'^PROMPT_FILE = ".*"$', f"PROMPT_FILE = {str(prompt_file)!r}", code, flags=re.M)
    code, models = re.subn(r'^MODEL = ".*"$', f"MODEL = {str(tiny_llama_dir)!r}", code, flags=re.M)
    assert files == 1 and models == 1
    exec(compile(code, "README.md", "exec"), {"__name__": "readme"})
    printed = capsys.readouterr().out.strip()

    from rlprompt.models import load_model
    from rlprompt.scoring import Scorer
    from rlprompt.template import Template

    scorer = Scorer(load_model(str(tiny_llama_dir)), Template("{sentence} {prompt} {mask}"), [" terrible", " great"])
    logits = scorer.class_logits(["It was"], ["A warm, funny and beautifully made film."])
    assert printed == ["negative", "positive"][int(logits[0, 0].argmax())]
