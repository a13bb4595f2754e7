"""The predictor's user-facing error type."""

from __future__ import annotations

from salus_engine.errors import SalusError


class PredictorError(SalusError):
    """A user-fixable problem with a store, a checkpoint or a predictor setting.

    The message is one line: what is wrong and what to do; the front ends show it without a traceback.
    """
