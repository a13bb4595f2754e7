"""The online monitor path: one predictor step per control step in plain numpy (no torch).

`OnlinePredictor.load(RUN)` reads a checkpoint's safetensors weights; `step(signals, features,
hidden, state, frame, previous_action)` takes the current step's six signals (and signal-family columns,
declared once with `bind`, the robot state, the front camera's frame and the action executed at the
previous step) and returns the 16 probabilities as (H, 4). The `target_view`, `motion`, `command`,
`grasp`, `grip_depth` and `slip` columns are computed here by the same code as offline
(`salus_engine.target_view`, `salus_engine.predictor.inputs.MotionTracker`, `salus_engine.command`,
`salus_engine.grasp`, `salus_engine.grip_depth`, `salus_engine.slip`). For an MLP the input
standardisation is folded into the first layer; with a window > 1 the last `window` steps are kept;
the `outcome` model keeps the running sum and maximum of the episode's inputs. The temporal model keeps
each convolution's last inputs and computes only the newest output. Before the episode's first step
the first step is repeated, as in training (`dataset.window_features`, the convolutions' padding).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file

from salus_engine.command import COMMAND, CommandTracker
from salus_engine.grasp import GRASP, OPENING_COLUMN, grasp_mm
from salus_engine.grip_depth import GRIP_DEPTH, grip_depth_mm
from salus_engine.predictor.checkpoint import WEIGHT_FILES, check_weights, read_config, weights_spec
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.inputs import MOTION, MotionTracker, available_columns, input_names, resolve_families
from salus_engine.predictor.spec import ModelSpec
from salus_engine.slip import SLIP, SlipTracker
from salus_engine.target_view import TARGET_VIEW, TargetView


class _StreamingConv:
    """One causal dilated convolution evaluated a step at a time: keeps the last (kernel - 1) *
    dilation + 1 inputs; before the first step the first input is repeated (the training padding)."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray, dilation: int) -> None:
        out_channels, in_channels, kernel = weight.shape
        self._taps = [np.ascontiguousarray(weight[:, :, j].T) for j in range(kernel)]  # (in, out) each
        self._lags = [(kernel - 1 - j) * dilation for j in range(kernel)]
        self._bias = np.asarray(bias, dtype=np.float64)
        self._buffer = np.zeros(((kernel - 1) * dilation + 1, in_channels))
        self._started = False

    def reset(self) -> None:
        self._started = False

    def step(self, x: np.ndarray) -> np.ndarray:
        if self._started:
            self._buffer[:-1] = self._buffer[1:]
            self._buffer[-1] = x
        else:
            self._buffer[:] = x
            self._started = True
        out = self._bias.copy()
        last = len(self._buffer) - 1
        for tap, lag in zip(self._taps, self._lags):
            out += self._buffer[last - lag] @ tap
        return out


class OnlinePredictor:
    """Per-step failure probabilities from a trained predictor.

    Call `reset()` at the start of each episode, then `step(...)` once per step with that step's six
    signals and, for a model that reads them, its signal-family columns and hidden features.
    """

    def __init__(self, spec: ModelSpec, state: dict[str, np.ndarray]) -> None:
        """Args: spec, and the checkpoint's state dict as numpy arrays (`input_mean`, `input_std`, and
        `net.<i>.weight` (out, in) / `net.<i>.bias` for an MLP ((M, in, out) / (M, out) for one of
        M > 1 members, whose probabilities are averaged), `convs.<i>.weight` (out, in, kernel),
        `convs.<i>.bias`, `head.weight`, `head.bias` for the temporal model)."""
        self.spec = spec
        mean = np.asarray(state["input_mean"], dtype=np.float64)
        std = np.asarray(state["input_std"], dtype=np.float64)
        self._temporal = spec.kind == "temporal"
        if self._temporal:
            self._mean, self._std = mean, std
            self._convs = [_StreamingConv(np.asarray(state[f"convs.{i}.weight"], dtype=np.float64),
                                          np.asarray(state[f"convs.{i}.bias"], dtype=np.float64), 2 ** i)
                           for i in range(len(spec.hidden))]
            self._head = np.asarray(state["head.weight"], dtype=np.float64)[:, :, 0].T
            self._head_bias = np.asarray(state["head.bias"], dtype=np.float64)
        else:
            layer_ids = sorted({int(k.split(".")[1]) for k in state if k.startswith("net.") and k.endswith(".weight")})
            members = spec.members
            # (M, in, out) weights and (M, out) biases; one member: M = 1
            weights = [np.asarray(state[f"net.{i}.weight"], dtype=np.float64).reshape(members, *state[f"net.{i}.weight"].shape[-2:])
                       for i in layer_ids]
            if members == 1:
                weights = [w[0].T[None] for w in weights]  # nn.Linear stores (out, in)
            biases = [np.asarray(state[f"net.{i}.bias"], dtype=np.float64).reshape(members, -1) for i in layer_ids]
            # (x - mean) / std @ W + b  ==  x @ (W / std[:, None]) + (b - (mean / std) @ W)
            biases[0] = biases[0] - np.einsum("i,mio->mo", mean / std, weights[0])
            weights[0] = weights[0] / std[None, :, None]
            # x @ W + b  ==  [x, 1] @ [W; b]: each layer's input ends with a constant 1 (one numpy call per
            # layer); the last layer is negated: it gives -z, so the sigmoid 1 / (1 + exp(-z)) needs no negation
            biases[-1], weights[-1] = -biases[-1], -weights[-1]
            layers = [np.concatenate([w, b[:, None, :]], axis=1) for w, b in zip(weights, biases)]  # (M, in + 1, out)
            # the first layer reads the same input for every member: its outputs side by side, (in + 1, M x out);
            # the later layers, member by member, one batched product (M, 1, in + 1) @ (M, in + 1, out)
            self._layers = [np.ascontiguousarray(np.concatenate(list(layers[0]), axis=1))]
            self._layers += [np.ascontiguousarray(layer[0] if members == 1 else layer) for layer in layers[1:]]
            # each hidden layer's output, followed by the constant 1 that the next layer reads
            self._activations = [np.ones((members, w.shape[2] + 1)) for w in weights[:-1]]
            self._units = [a[:, :-1] for a in self._activations]  # the outputs alone, written by the layers
            if members == 1:
                self._activations = [a[0] for a in self._activations]
                self._units = [u[0] for u in self._units]
        self._members = spec.members
        self._member_mean = np.full(spec.members, 1.0 / spec.members)
        self._signals = len(spec.signal_names)
        self._history = spec.kind == "outcome"
        self._input = np.ones(spec.n_inputs + 1, dtype=np.float64)  # the MLP's input, then the constant 1
        self._buffer = self._input[:-1]
        s = self._signals
        self._sum = np.zeros(s, dtype=np.float64)
        # `step` writes the step's inputs to `_now`: the first third of the outcome model's input (then the
        # running mean and maximum), else a row of its own (moved into the window, or standardised)
        self._now = self._buffer[:s] if self._history else np.zeros(s, dtype=np.float64)
        self._running_mean, self._running_max = self._buffer[s:2 * s], self._buffer[2 * s:]
        self._started = False
        self._step = 0
        self._horizons = len(spec.horizons)
        self._types = len(spec.failure_types)
        self._columns: dict[str, list[str]] | None = None
        # where each input column comes from: (source, columns of `_now` it fills, indices into `features`)
        self._plan: list[tuple[str, slice, np.ndarray | None]] = [("signals", slice(0, s), None)]
        self._view: TargetView | None = None
        self._motion = MotionTracker()
        self._slip = SlipTracker()
        self._command: CommandTracker | None = None

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
        spec = weights_spec(config, which)
        check_weights(path, {name: tuple(t.shape) for name, t in state.items()}, spec)
        return cls(spec, state)

    def bind(self, feature_families: dict[str, list[str]], hidden_dim: int,
             cameras: tuple[str, ...] | list[str] = ()) -> None:
        """Declares the columns of the `features` and `hidden` vectors that `step` will receive (a
        store's or a collection's signal families) and the cameras of its observations.

        Raises:
            PredictorError: the model reads a family that these columns or cameras do not hold.
        """
        columns = available_columns(feature_families, hidden_dim, cameras)
        resolve_families(self.spec.features, columns, "this episode source")
        if input_names(self.spec.features, columns) != tuple(self.spec.signal_names):
            raise PredictorError("the signal families' columns differ from those the predictor was trained on; "
                                 "collect with the same SALUS version as the training store")
        names = [c for group in feature_families.values() for c in group]
        sources = {"six": "signals", "time": "time", "hidden_state": "hidden", "state": "state", MOTION: "motion",
                   TARGET_VIEW: "view", COMMAND: "command", GRASP: "grasp",
                   GRIP_DEPTH: "grip_depth", SLIP: "slip"}
        # where each input column comes from, resolved once, not per step
        self._plan = []
        start = 0
        for family in self.spec.features:
            width = len(columns[family])
            source = sources.get(family, "features")
            index = None if source != "features" else np.array([names.index(c) for c in columns[family]], np.intp)
            self._plan.append((source, slice(start, start + width), index))
            start += width
        self._columns = columns

    def reset(self) -> None:
        """Starts a new episode (forgets the window, the convolutions' history, the previous state and the
        step count)."""
        self._started = False
        self._step = 0
        self._motion.reset()
        self._slip.reset()
        if self._view is not None:
            self._view.reset()
        if self._command is not None:
            self._command.reset()
        if self._temporal:
            for conv in self._convs:
                conv.reset()

    def step(self, signals: np.ndarray, features: np.ndarray | None = None,
             hidden: np.ndarray | None = None, state: np.ndarray | None = None,
             frame: np.ndarray | None = None, previous_action: np.ndarray | None = None) -> np.ndarray:
        """Failure probabilities after this step.

        Args:
            signals: (6,) the step's signals, order of `SIGNAL_NAMES`.
            features: (F,) the step's signal-family columns (order declared with `bind`), or None for
                a model that reads the six signals (and time) only.
            hidden: (D,) the step's hidden features, or None likewise.
            state: (8,) the robot state of the step's observation (`STATE_NAMES`), or None for a model
                that reads none of `state`, `motion`, `command`, `grasp`, `grip_depth`, `slip` and
                `target_view`.
            frame: (S, S, 3) uint8 front-camera frame of the step's observation (or (3, S, S)), or
                None for a model that does not read `target_view`.
            previous_action: (7,) the action executed at the previous step (None at an episode's first
                step, and for a model that does not read `command`).

        Returns:
            (H, 4) float64: [h, k] = probability that failure type k happens within horizons[h]
            steps (a `single-horizon` model's 4 outputs repeated for every horizon; an `outcome`
            model's probability that the episode ends in failure type k, repeated likewise).

        Raises:
            PredictorError: the model reads signal families and `bind` was not called.
        """
        if self._columns is None and self.spec.features != ("six",):
            self.bind({}, 0)
        x_now = self._now
        grasp = None  # the step's grasp column, computed once for `grasp` and `grip_depth`
        for source, where, index in self._plan:
            if source == "signals":
                x_now[where] = signals
            elif source == "time":
                x_now[where] = self._step
            elif source == "hidden":
                x_now[where] = hidden
            elif source == "state":
                x_now[where] = state
            elif source == "motion":
                x_now[where] = self._motion.update(state)
            elif source in ("grasp", "grip_depth"):  # one float32 opening, the same values as offline
                if grasp is None:
                    grasp = grasp_mm(np.float32(state[OPENING_COLUMN]))
                x_now[where] = grasp if source == "grasp" else grip_depth_mm(grasp)
            elif source == "slip":
                x_now[where] = self._slip.update(state)
            elif source == "command":
                if self._command is None:
                    self._command = CommandTracker()
                x_now[where] = self._command.update(state, previous_action)
            elif source == "view":
                if self._view is None:
                    self._view = TargetView(np.asarray(frame).shape[1])
                x_now[where] = self._view.update(frame, state)
            else:
                x_now[where] = np.asarray(features)[index]
        self._step += 1
        if self._temporal:
            h = (x_now - self._mean) / self._std
            for conv in self._convs:
                h = np.maximum(conv.step(h), 0.0)
            p = 1.0 / (1.0 + np.exp(-(h @ self._head + self._head_bias)))
            return p.reshape(self._horizons, self._types)
        s = self._signals
        if self._history:  # [inputs (x_now), running mean, running max] (dataset.history_features)
            total, peak = self._sum, self._running_max
            if self._started:
                total += x_now
                np.maximum(peak, x_now, out=peak)
            else:
                total[:] = x_now
                peak[:] = x_now
                self._started = True
            np.divide(total, self._step, out=self._running_mean)
        elif self._started:
            self._buffer[:-s] = self._buffer[s:]
            self._buffer[-s:] = x_now
        else:
            self._buffer.reshape(-1, s)[:] = x_now
            self._started = True
        x = self._input
        if self._members == 1:
            for layer, units, activation in zip(self._layers, self._units, self._activations):
                x.dot(layer, out=units)
                np.maximum(units, 0.0, out=units)
                x = activation
            p = x.dot(self._layers[-1])  # minus the logits (a new array: the caller may keep it)
        else:
            p = x.dot(self._layers[0]).reshape(self._members, -1)
            for layer, units, activation in zip(self._layers[1:], self._units, self._activations):
                np.maximum(p, 0.0, out=units)
                p = np.matmul(activation[:, None, :], layer)[:, 0]  # (M, out)
        np.exp(p, out=p)
        p += 1.0
        np.divide(1.0, p, out=p)
        if self._members > 1:  # the mean of the members' probabilities, one product
            p = self._member_mean.dot(p)
        if self.spec.same_at_every_horizon:
            return p[None].repeat(self._horizons, axis=0)
        return p.reshape(self._horizons, self._types)

    def episode(self, signals: np.ndarray, features: np.ndarray | None = None,
                hidden: np.ndarray | None = None, states: np.ndarray | None = None,
                frames: np.ndarray | None = None, actions: np.ndarray | None = None) -> np.ndarray:
        """(T, H, 4) probabilities of a recorded episode, step by step as online (after `bind`);
        `frames` (T, 3, S, S) or (T, S, S, 3) uint8 front-camera frames, for a model reading `target_view`;
        `actions` (T, 7) executed actions, for a model reading `command`."""
        self.reset()
        rows = [self.step(signals[t], None if features is None else features[t], None if hidden is None else hidden[t],
                          None if states is None else states[t], None if frames is None else frames[t],
                          None if actions is None or t == 0 else actions[t - 1])
                for t in range(len(signals))]
        return np.stack(rows) if rows else np.zeros((0, self._horizons, self._types))


def alarm_settings(metrics_path: str | Path, scorer: str = "model", alpha: float | None = None) -> tuple[float, int]:
    """The conformal alarm threshold and alarm horizon (steps) that `salus evaluate` calibrated.

    The monitor raises an alarm when the alarm score of `step(...)[horizons.index(horizon)]` (the
    checkpoint's rule, `salus_engine.predictor.alarm_score`) exceeds the threshold.

    Args:
        metrics_path: the evaluation's metrics.json or its folder.
        scorer: the scorer whose threshold is read.
        alpha: read the threshold calibrated for this false-alarm rate, one of the alphas of the
            evaluation's detection-vs-lead-time curve; None: the evaluation's own alpha.

    Raises:
        PredictorError: missing or unreadable metrics.json; an alpha the evaluation did not calibrate.
    """
    path = Path(metrics_path)
    if path.is_dir():
        path = path / "metrics.json"
    try:
        metrics = json.loads(path.read_text())
        episode = metrics["scorers"][scorer]["episode"]
        horizon = int(metrics["alarm_horizon"])
        if alpha is None:
            return float(episode["threshold"]), horizon
        curve = {float(row["alpha"]): float(row["threshold"]) for row in episode.get("alpha_curve", [])}
    except FileNotFoundError:
        raise PredictorError(f"{path} not found; run 'salus evaluate' first") from None
    except (ValueError, KeyError, TypeError) as err:
        raise PredictorError(f"{path} is damaged ({err!s}); run 'salus evaluate' again") from None
    match = [a for a in curve if abs(a - alpha) < 1e-9]
    if not match:
        offered = ", ".join(f"{a:g}" for a in sorted(curve)) or "none"
        raise PredictorError(f"{path} holds no threshold calibrated for alpha {alpha:g} (it has: {offered}); choose "
                             "one of those or give the threshold itself (--monitor-threshold)")
    return curve[match[0]], horizon
