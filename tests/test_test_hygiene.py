"""The tests use Textual's public API only: private names change between Textual releases without
notice, and a test that reads them checks Textual's internals instead of what a user sees."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent

PRIVATE_TEXTUAL_NAMES = (
    "_compositor",  # the screen's text: App.export_screenshot (tests/test_console_support.screen_text)
    "_background_screens",
    "_notifications",  # notifications are on the screen: screen_text
    "_check_action_state",  # DOMNode.check_action with textual.actions.parse
    "_binding_chain",  # also matches _modal_binding_chain
    "_screen_stack",  # App.screen_stack
)


def test_no_test_reads_private_textual_names():
    pattern = re.compile("|".join(re.escape(name) + r"\b" for name in PRIVATE_TEXTUAL_NAMES))
    found = []
    for path in sorted(TESTS.rglob("*.py")):
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line):
                found.append(f"{path.relative_to(TESTS.parent)}:{number}: {line.strip()}")
    assert not found, "tests use private Textual names:\n" + "\n".join(found)
