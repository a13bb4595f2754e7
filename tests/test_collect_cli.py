"""`salus collect` / `salus verify` as a user runs them: SIGKILL + resume, one-line errors."""

import subprocess
import sys
from pathlib import Path

import pytest

from salus_engine.store import EpisodeStore
from tests.conftest import sigkill_after_first_episode, tiny_flags

ROOT = Path(__file__).resolve().parents[1]


def salus(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "salus_engine.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, **kwargs)


@pytest.mark.slow
def test_sigkill_then_resume_gives_exactly_n_unique_episodes(tmp_path):
    out = tmp_path / "store"
    total = 10  # killed after its first episode, the collection has nine to go however fast this machine is
    # killed once episode 0 is in the store, while it simulates episode 1: in the middle of the collection
    sigkill_after_first_episode([sys.executable, "-m", "salus_engine.cli", "collect", "--episodes", str(total),
                                 "--out", str(out), "--seed", "50", *tiny_flags()], tmp_path)
    killed_at = len(EpisodeStore.open(out))
    assert 1 <= killed_at < total
    result = salus("collect", "--episodes", str(total), "--out", str(out), "--resume", *tiny_flags())
    assert result.returncode == 0, result.stderr
    store = EpisodeStore.open(out)
    assert store.episode_ids == list(range(total))
    seeds = [m.seed for m in store.metas()]
    assert seeds == [50 + i for i in range(total)]
    assert not (out / ".staging").exists()
    verified = salus("verify", str(out))
    assert verified.returncode == 0, verified.stdout
    assert "verify: ok" in verified.stdout


def test_user_mistakes_end_in_one_line(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("not a store")
    cases = [
        (["collect", "--episodes", "2", "--out", str(tmp_path / "full")], "--resume"),
        (["collect", "--episodes", "2", "--out", str(tmp_path / "full"), "--resume"], "not a Zarr v3 store"),
        (["collect", "--episodes", "2", "--out", str(tmp_path / "a"), "--cameras", "top"], "unknown camera"),
        (["collect", "--episodes", "0", "--out", str(tmp_path / "a")], "episodes=0: Input should be greater than or equal to 1"),
        (["collect", "--episodes", "2", "--out", str(tmp_path / "a"), "--policy", str(tmp_path / "nope")], "nope"),
        (["collect", "--episodes", "2", "--out", str(tmp_path / "a"), "--config", str(tmp_path / "none.toml")], "not found"),
    ]
    for args, expected in cases:
        result = salus(*args)
        assert result.returncode == 2, (args, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("salus: error:") and expected in lines[0], (args, result.stderr)
    result = salus("verify", str(tmp_path / "missing"))
    assert result.returncode == 1 and "no such store" in result.stdout


def test_bad_config_key_is_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sim]\nmax_stepz = 10\n")
    result = salus("collect", "--episodes", "1", "--out", str(tmp_path / "a"), "--config", str(cfg))
    assert result.returncode == 2 and "max_stepz" in result.stderr and len(result.stderr.strip().splitlines()) == 1
