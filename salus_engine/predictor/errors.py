"""The predictor's user-facing error type."""

from __future__ import annotations


class PredictorError(ValueError):
    """A user-fixable problem with a store, a checkpoint or a predictor setting.

    The message is one line: what is wrong and what to do. The CLI prints it without a traceback
    (it is a `ValueError`).
    """
