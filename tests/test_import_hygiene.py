"""The engine never imports Textual: `salus_tui` depends on `salus_engine`, never the reverse."""

import subprocess
import sys

ENGINE_MODULES = [
    "salus_engine", "salus_engine.config", "salus_engine.events", "salus_engine.signals", "salus_engine.store",
    "salus_engine.store.verify", "salus_engine.jobs", "salus_engine.resources", "salus_engine.cli",
    "salus_engine.cli.collect", "salus_engine.cli.predictor", "salus_engine.cli.report", "salus_engine.cli.console",
    "salus_engine.sim", "salus_engine.policy", "salus_engine.predictor",
]


def test_engine_loads_no_textual_module():
    code = (
        "import importlib, sys\n"
        f"for name in {ENGINE_MODULES!r}: importlib.import_module(name)\n"
        "from salus_engine.cli import build_parser; build_parser()\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
