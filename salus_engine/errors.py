"""The one base class of every error a user can cause and fix.

Front ends (the `salus` command line and the console) catch `SalusError` alone and show its message,
one line that says what is wrong and what to do. Any other exception is a bug: its whole traceback
goes to the session log, and the user sees one line that says so and names the log.
"""

from __future__ import annotations


class SalusError(Exception):
    """A user-fixable problem: a bad setting, path, store, policy or predictor checkpoint.

    The message is one line: what is wrong and what to do.
    """
