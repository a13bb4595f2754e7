"""Defects found by the fault-injection campaign (bench/faults.py), each as the real `salus` command
meets it: a user's mistake ends in one `salus: error:` line with exit code 2, nothing recorded is lost."""

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_empty_or_repeated_cameras_are_refused_before_anything_loads(tmp_path):
    for cameras, expected in (("", "sim.cameras"), ("front,front", "twice")):
        out = tmp_path / "store"
        line = one_line_error(salus("collect", "--episodes", "2", "--out", str(out), "--cameras", cameras, cwd=tmp_path))
        assert expected in line
        assert not out.exists()


RUN = ROOT / "tests" / "data" / "console_run"
"""A real `salus train` run folder with its `salus evaluate` output (evaluation/metrics.json)."""


def damaged_run(tmp_path: Path, name: str, damage) -> Path:
    import shutil

    run = tmp_path / name
    shutil.copytree(RUN, run)
    damage(run)
    return run


def edit_json(path: Path, change) -> None:
    import json

    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_damaged_model_settings_in_config_json_end_in_one_line(tmp_path):
    # impossible layer widths reached torch (RuntimeError/TypeError, exit 3); a config.json that is
    # not an object, or whose model or store entry is not one, ended in AttributeError or KeyError
    damages = {
        "negative-width": lambda run: edit_json(run / "config.json", lambda c: c["model"].update(hidden=[-3])),
        "text-width": lambda run: edit_json(run / "config.json", lambda c: c["model"].update(hidden=["x"])),
        "model-null": lambda run: edit_json(run / "config.json", lambda c: c.update(model=None)),
        "no-store": lambda run: edit_json(run / "config.json", lambda c: c.pop("store")),
        "a-list": lambda run: (run / "config.json").write_text("[1, 2]"),
    }
    for name, damage in damages.items():
        run = damaged_run(tmp_path, name, damage)
        (run / "evaluation" / "metrics.json").unlink()  # the report reads the run's own config.json
        line = one_line_error(salus("report", str(run), cwd=tmp_path))
        assert str(run / "config.json") in line and "train again" in line, (name, line)
    # evaluate reads the same file first (before the store): the same line, not a torch error
    line = one_line_error(salus("evaluate", "--checkpoint", str(tmp_path / "negative-width"), "--data",
                                str(tmp_path / "none"), "--out", str(tmp_path / "eval"), cwd=tmp_path))
    assert "hidden layer widths must be positive integers" in line


def test_weights_of_another_model_are_refused_by_evaluate_and_the_online_predictor(tmp_path):
    import torch
    from safetensors.torch import save_file

    from salus_engine.predictor.errors import PredictorError
    from salus_engine.predictor.online import OnlinePredictor

    def foreign(run: Path) -> None:
        save_file({"embedding.weight": torch.zeros(10, 4)}, str(run / "best.safetensors"))

    def wider(run: Path) -> None:
        edit_json(run / "config.json", lambda c: c["model"].update(hidden=[32]))

    for name, damage in (("foreign", foreign), ("wider", wider)):
        run = damaged_run(tmp_path, name, damage)
        # the console's player loads the weights through this numpy path: KeyError or a shape error before
        with pytest.raises(PredictorError, match="weights do not match the model in config.json"):
            OnlinePredictor.load(run)
    line = one_line_error(salus("evaluate", "--checkpoint", str(tmp_path / "wider"), "--data", str(tmp_path / "none"),
                                "--out", str(tmp_path / "eval"), cwd=tmp_path))
    assert "(net.0.bias is [64], the model needs [32])" in line, line


def test_damaged_metrics_json_is_one_line_in_report(tmp_path):
    # a JSON list (AttributeError), a missing scorers entry (KeyError) and a null checkpoint
    # (TypeError) were exit 3
    damages = {
        "a-list": lambda m: m.write_text("[]"),
        "no-scorers": lambda m: edit_json(m, lambda d: d.pop("scorers")),
        "checkpoint-null": lambda m: edit_json(m, lambda d: d.update(checkpoint=None)),
    }
    for name, damage in damages.items():
        run = damaged_run(tmp_path, name, lambda r: damage(r / "evaluation" / "metrics.json"))
        line = one_line_error(salus("report", str(run), cwd=tmp_path))
        assert "metrics.json" in line and "salus evaluate" in line, (name, line)
    line = one_line_error(salus("report", "--markdown", str(tmp_path / "no-scorers" / "evaluation"), cwd=tmp_path))
    assert "'scorers'" in line


def test_collect_table_holding_a_section_is_refused(tmp_path):
    # `[collect] sim = 5` was dropped silently whenever a flag or a [sim] table also set the section
    config = tmp_path / "salus.toml"
    config.write_text("[collect]\nsim = 5\n")
    out = tmp_path / "store"
    line = one_line_error(salus("collect", "--episodes", "2", "--out", str(out), "--image-size", "64", "--config",
                                str(config), cwd=tmp_path))
    assert "[collect]" in line and "'sim'" in line and "[sim] table" in line
    assert not out.exists()


def test_predictor_out_folders_that_cannot_be_written_are_one_line(tmp_path):
    # train --out under a file, and an --out whose folder cannot be created, were OSError tracebacks
    # (exit 3); evaluate found an --out under a file only after all its work
    from tests.test_predictor import write_store

    store = write_store(tmp_path / "store", 12)
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = one_line_error(salus("train", "--data", store, "--out", str(a_file / "run"), cwd=tmp_path))
    assert f"{a_file} is a file, not a folder" in line
    line = one_line_error(salus("train", "--data", store, "--out", "/proc/salus-no-such/run", "--epochs", "1",
                                cwd=tmp_path))
    assert "cannot write /proc/salus-no-such/run" in line and "writable --out" in line
    line = one_line_error(salus("evaluate", "--checkpoint", str(RUN), "--data", store, "--out", str(a_file / "eval"),
                                cwd=tmp_path))
    assert f"{a_file} is a file, not a folder" in line


def test_session_log_that_cannot_be_written_is_one_line(tmp_path):
    # --log naming a folder passed the folder check and failed at the first record, where logging
    # printed its own traceback; a log under a file was reported as "(File exists)"
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    line = one_line_error(salus("--log", str(tmp_path), "verify", str(tmp_path / "none"), cwd=tmp_path))
    assert f"cannot write the session log {tmp_path} (Is a directory)" in line
    line = one_line_error(salus("--log", str(a_file / "x.log"), "verify", str(tmp_path / "none"), cwd=tmp_path))
    assert f"({a_file} is a file, not a folder); give a writable --log FILE" in line


def test_policy_folder_mistakes_are_one_line(tmp_path):
    import shutil

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    out = tmp_path / "store"
    tiny = ["collect", "--episodes", "2", "--out", str(out), "--image-size", "64", "--max-steps", "10"]
    # a file was reported as a path that "does not exist"
    line = one_line_error(salus(*tiny, "--policy", str(a_file), cwd=tmp_path))
    assert f"policy path {a_file} is a file, not a policy folder" in line
    # a member saved by this project without its backbone copy: lerobot looked for a hub model named
    # "backbone" (12 lines of network retries on stderr before an unrelated error)
    policy = tmp_path / "policy"
    shutil.copytree(ROOT / "salus_engine" / "policy" / "default_ensemble" / "member_0", policy / "member_0")
    shutil.rmtree(policy / "member_0" / "backbone")
    line = one_line_error(salus(*tiny, "--policy", str(policy), "--ensemble-size", "1", cwd=tmp_path))
    assert "backbone folder" in line and "missing or incomplete" in line
    assert not out.exists()


@pytest.mark.slow
def test_a_hub_id_that_cannot_be_fetched_is_one_line(tmp_path):
    # offline (about 25 s of hub retries) or unknown online: the hub's retry warnings went to stderr
    # through huggingface_hub's own handler, 12 lines before the error; they belong in the session log
    out = tmp_path / "store"
    line = one_line_error(salus("--log", str(tmp_path / "session.log"), "collect", "--episodes", "2", "--out", str(out),
                                "--image-size", "64", "--policy", "salus-tests/no-such-policy", cwd=tmp_path))
    assert "salus-tests/no-such-policy" in line
    assert not out.exists()
