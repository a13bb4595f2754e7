"""The online monitor path: one predictor step per control step in plain numpy (no torch).

`OnlinePredictor.load(RUN)` reads a checkpoint's safetensors weights; `step(signals)` takes the six
signals of the current step and returns the 16 probabilities as (H, 4). The input standardisation
is folded into the first layer. With a window > 1 the last `window` steps are kept; before the
episode's first step the first step is repeated, as in training (`dataset.window_features`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from salus_engine.predictor.checkpoint import WEIGHT_FILES, check_weights, read_config
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.spec import ModelSpec


class OnlinePredictor:
    """Per-step failure probabilities from a trained predictor.

    Call `reset()` at the start of each episode, then `step(signals)` once per step.
    """

    def __init__(self, spec: ModelSpec, state: dict[str, np.ndarray]) -> None:
        """Args: spec, and the checkpoint's state dict as numpy arrays (`input_mean`, `input_std`,
        `net.<i>.weight` (out, in), `net.<i>.bias`)."""
        self.spec = spec
        layer_ids = sorted({int(k.split(".")[1]) for k in state if k.startswith("net.") and k.endswith(".weight")})
        weights = [np.asarray(state[f"net.{i}.weight"], dtype=np.float64).T for i in layer_ids]
        biases = [np.asarray(state[f"net.{i}.bias"], dtype=np.float64) for i in layer_ids]
        mean = np.asarray(state["input_mean"], dtype=np.float64)
        std = np.asarray(state["input_std"], dtype=np.float64)
        # (x - mean) / std @ W + b  ==  x @ (W / std[:, None]) + (b - (mean / std) @ W)
        biases[0] = biases[0] - (mean / std) @ weights[0]
        weights[0] = weights[0] / std[:, None]
        self._weights = [np.ascontiguousarray(w) for w in weights]
        self._biases = biases
        self._signals = len(spec.signal_names)
        self._buffer = np.zeros(spec.n_inputs, dtype=np.float64)
        self._started = False
        self._horizons = len(spec.horizons)
        self._types = len(spec.failure_types)

    @classmethod
    def load(cls, run_dir: str | Path, which: str = "best") -> OnlinePredictor:
        """Loads the `best` or `final` weights of a `salus train` run folder.

        Raises:
            PredictorError: see `checkpoint.read_config`; missing or damaged weights.
        """
        config = read_config(run_dir)
        if which not in WEIGHT_FILES:
            raise PredictorError(f"unknown weights {which!r}; choose best or final")
        path = Path(run_dir) / WEIGHT_FILES[which]
        try:
            state = load_file(str(path))
        except FileNotFoundError:
            raise PredictorError(f"{path} not found; train the predictor first ('salus train')") from None
        except (SafetensorError, OSError) as err:
            raise PredictorError(f"{path} is damaged ({err}); train again") from None
        spec = ModelSpec.from_json(config["model"])
        check_weights(path, {name: tuple(t.shape) for name, t in state.items()}, spec)
        return cls(spec, state)

    def reset(self) -> None:
        """Starts a new episode (forgets the window)."""
        self._started = False

    def step(self, signals: np.ndarray) -> np.ndarray:
        """Failure probabilities after this step.

        Args:
            signals: (6,) the step's signals, order of `SIGNAL_NAMES`.

        Returns:
            (H, 4) float64: [h, k] = probability that failure type k happens within horizons[h]
            steps (a `single-horizon` model's 4 outputs repeated for every horizon).
        """
        s = self._signals
        if self._started:
            self._buffer[:-s] = self._buffer[s:]
            self._buffer[-s:] = signals
        else:
            self._buffer.reshape(-1, s)[:] = signals
            self._started = True
        x = self._buffer
        last = len(self._weights) - 1
        for i, (w, b) in enumerate(zip(self._weights, self._biases)):
            x = x @ w + b
            if i < last:
                np.maximum(x, 0.0, out=x)
        p = 1.0 / (1.0 + np.exp(-x))
        if self.spec.kind == "single-horizon":
            return np.broadcast_to(p, (self._horizons, self._types))
        return p.reshape(self._horizons, self._types)


def alarm_settings(metrics_path: str | Path, scorer: str = "model") -> tuple[float, int]:
    """The conformal alarm threshold and alarm horizon (steps) that `salus evaluate` calibrated.

    The monitor raises an alarm when max over types of `step(...)[horizons.index(horizon)]` exceeds
    the threshold.

    Raises:
        PredictorError: missing or unreadable metrics.json.
    """
    path = Path(metrics_path)
    if path.is_dir():
        path = path / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
        return float(metrics["scorers"][scorer]["episode"]["threshold"]), int(metrics["alarm_horizon"])
    except FileNotFoundError:
        raise PredictorError(f"{path} not found; run 'salus evaluate' first") from None
    except (ValueError, KeyError, TypeError) as err:
        raise PredictorError(f"{path} is damaged ({err!s}); run 'salus evaluate' again") from None
