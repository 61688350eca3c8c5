"""What `pip install .` puts in site-packages, and the registered env id from a foreign working directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_installs_only_the_rlprompt_namespace(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True, timeout=300,
    )
    names = zipfile.ZipFile(next(tmp_path.glob("rlprompt-*.whl"))).namelist()
    top_level = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert top_level == {"rlprompt"}
    for module in ("envs/prompt_env.py", "envs/vocab.py", "policies/lm_adapter.py", "rewards/classification.py", "search/sb3.py"):
        assert f"rlprompt/{module}" in names
    assert "rlprompt/data/demo_sentiment/train.tsv" in names


def test_registered_id_works_beside_a_users_own_envs_package(tmp_path: Path, tiny_llama_dir: Path) -> None:
    """A script run from a folder with its own envs/, policies/ and rewards/ still gets ours."""
    for name in ("envs", "policies", "rewards"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(f"raise ImportError('the user\\'s own {name} package was imported')\n")
    script = (
        "import gymnasium as gym\n"
        "import rlprompt.envs\n"
        f"env = gym.make(rlprompt.envs.ENV_ID, target_lm='fake', policy_lm={str(tiny_llama_dir)!r}, prompt_length=2)\n"
        "obs, _ = env.reset(seed=0)\n"
        "obs, _, _, _, _ = env.step(1)\n"
        "obs, reward, terminated, _, info = env.step(2)\n"
        "print(type(env.unwrapped).__module__, obs.tolist(), terminated, sorted(info))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "rlprompt.envs.prompt_env [1, 2, 2] True ['metrics', 'prompt', 'raw_reward', 'token_ids']"
