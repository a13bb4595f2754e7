"""Defects found by the fault-injection campaign (bench/faults.py), each as the real `salus` command
meets it: a user's mistake ends in one `salus: error:` line with exit code 2, nothing recorded is lost."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def salus(*args, cwd):
    return subprocess.run([sys.executable, "-m", "salus_engine.cli", *args], cwd=cwd, capture_output=True, text=True)


def one_line_error(result) -> str:
    """The single `salus: error:` line of a refused command (exit code 2, nothing else on stderr)."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert len(lines) == 1 and lines[0].startswith("salus: error: "), result.stderr
    return lines[0]


def test_a_refused_setting_and_verify_do_not_load_torch(tmp_path):
    # `salus policy train`'s defaults were read from salus_engine.policy, which imports torch: every
    # `salus` command, `salus verify` and a one-line settings error included, paid that start-up
    code = (
        "import sys\n"
        "from salus_engine.cli import main\n"
        f"rc = main(['collect', '--episodes', '0', '--out', {str(tmp_path / 'store')!r}])\n"
        f"rc2 = main(['verify', {str(tmp_path / 'none')!r}])\n"
        "print(rc, rc2, 'torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout.split()[-3:] == ["2", "1", "False"], proc.stdout + proc.stderr
    assert not (tmp_path / "store").exists()
