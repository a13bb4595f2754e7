"""A training run's folder on disk, and loading a trained predictor from it.

```
RUN/config.json          format, model spec, training settings, store identity, result summary (JSON);
                         for an alarm score with a success profile, each weights file's profile
                         (`success_profiles`; the model spec holds best's)
RUN/best.safetensors     weights with the lowest validation loss (+ input standardisation buffers)
RUN/final.safetensors    weights after the last epoch run
RUN/splits.json          episode ids of the train / val / calibration / test splits and the split seed
RUN/history.jsonl        one JSON object per epoch: epoch, train_loss, val_loss, lr, seconds, best
```
Weights are safetensors, settings JSON; nothing is pickled.
"""

from __future__ import annotations

import datetime as dt
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from safetensors import SafetensorError

from salus_engine import FAILURE_TYPES
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.spec import TEMPORAL_KERNEL, ModelSpec
from salus_engine.signals import SIGNAL_NAMES

CHECKPOINT_FORMAT = "salus-predictor"
CHECKPOINT_VERSION = 1
WEIGHT_FILES = {"best": "best.safetensors", "final": "final.safetensors"}


def default_run_dir() -> str:
    """A new run folder name: `checkpoints/predictor-YYYYmmdd-HHMMSS` (UTC), relative to the working directory."""
    return str(Path("checkpoints") / f"predictor-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}")


def check_out_folder(out: Path) -> None:
    """Refuses an --out folder that cannot be created: a file, or a path under a file.

    Raises:
        PredictorError: one line naming the file and what to do.
    """
    if out.exists() and not out.is_dir():
        raise PredictorError(f"{out} is a file, not a folder; choose another --out")
    for ancestor in out.parents:
        if ancestor.exists():
            if not ancestor.is_dir():
                raise PredictorError(f"cannot create {out}: {ancestor} is a file, not a folder; choose another --out")
            break


@contextmanager
def folder_writes(out: Path):
    """Turns a failed write into an output folder (read-only, full disk, no permission) into one line."""
    try:
        yield
    except OSError as err:
        where = err.filename or out
        raise PredictorError(f"cannot write {out} ({err.strerror or err} at {where}); free space or choose a "
                             "writable --out") from None


def save_weights(model: Any, path: Path) -> None:
    """Writes the model's parameters and standardisation buffers as safetensors."""
    from safetensors.torch import save_file

    tensors = {name: t.detach().contiguous().clone() for name, t in model.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": CHECKPOINT_FORMAT, "spec": json.dumps(model.spec.to_json())})


def write_config(run_dir: Path, config: dict[str, Any]) -> None:
    """Writes `config.json` (adds the format name and version)."""
    payload = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, **config}
    (run_dir / "config.json").write_text(json.dumps(payload, indent=1) + "\n")


def read_config(run_dir: str | Path) -> dict[str, Any]:
    """Reads and checks a run's `config.json`.

    Raises:
        PredictorError: missing folder or file, not a predictor checkpoint, another format version, or
            a checkpoint trained on another signal set or other failure types.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise PredictorError(f"{run_dir}: no such checkpoint folder; give the --out folder of 'salus train'")
    path = run_dir / "config.json"
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise PredictorError(f"{run_dir}: no config.json, not a predictor checkpoint; give the --out folder of "
                             "'salus train'") from None
    except (ValueError, OSError) as err:
        raise PredictorError(f"{path} is damaged ({err}); train again with 'salus train'") from None
    if not isinstance(config, dict):
        raise PredictorError(f"{path} is damaged (a JSON {type(config).__name__}, not an object); train again with "
                             "'salus train'")
    if config.get("format") != CHECKPOINT_FORMAT:
        raise PredictorError(f"{run_dir}: not a SALUS predictor checkpoint (format={config.get('format')!r}); "
                             "give the --out folder of 'salus train'")
    if config.get("format_version") != CHECKPOINT_VERSION:
        raise PredictorError(f"{run_dir}: checkpoint format version {config.get('format_version')} is not "
                             f"supported (this SALUS reads {CHECKPOINT_VERSION}); train again")
    try:
        spec = ModelSpec.from_json(config["model"])
    except KeyError:
        raise PredictorError(f"{path}: no model settings; train again with 'salus train'") from None
    except (TypeError, ValueError, PredictorError) as err:
        raise PredictorError(f"{path}: damaged model settings ({err!s}); train again with 'salus train'") from None
    if not isinstance(config.get("store"), dict) or not isinstance(config["store"].get("path"), str):
        raise PredictorError(f"{path}: damaged or missing 'store' entry (the store it was trained on); train again "
                             "with 'salus train'")
    if "six" in spec.features and spec.signal_names[:len(SIGNAL_NAMES)] != SIGNAL_NAMES:
        raise PredictorError(f"{run_dir}: checkpoint trained on signals {list(spec.signal_names)}, but this SALUS "
                             f"computes {list(SIGNAL_NAMES)}; train a new predictor on a store from this version")
    if spec.failure_types != FAILURE_TYPES:
        raise PredictorError(f"{run_dir}: checkpoint predicts failure types {list(spec.failure_types)}, not "
                             f"{list(FAILURE_TYPES)}; train a new predictor")
    return config


def weights_spec(config: dict[str, Any], which: str) -> ModelSpec:
    """The spec of a run's `best` or `final` weights: the config's model entry, with those weights' own
    success profile (`success_profiles`) where the run stored one.

    Raises:
        PredictorError: an impossible model entry or profile.
    """
    spec = ModelSpec.from_json(config["model"])
    profile = (config.get("success_profiles") or {}).get(which)
    if profile is None:
        return spec
    return ModelSpec.from_json({**spec.to_json(), "success_profile": profile})


def load_model(run_dir: str | Path, which: str = "best") -> tuple[Any, dict[str, Any]]:
    """Loads a trained predictor.

    Args:
        run_dir: the `--out` folder of `salus train`, or one of its `.safetensors` files.
        which: `best` (lowest validation loss) or `final`; ignored when a file is given.

    Returns:
        (model in eval mode: a `SignalMLP` or `TemporalConvNet` whose spec holds the success profile of
        these weights, the run's config dict).

    Raises:
        PredictorError: see `read_config`; missing or damaged weights; weights of another shape.
    """
    path = Path(run_dir)
    if path.suffix == ".safetensors":
        weights, run_dir = path, path.parent
    else:
        if which not in WEIGHT_FILES:
            raise PredictorError(f"unknown weights {which!r}; choose best or final")
        weights, run_dir = path / WEIGHT_FILES[which], path
    import torch
    from safetensors.torch import load_file

    from salus_engine.predictor.models import build_model

    config = read_config(run_dir)
    spec = weights_spec(config, next((name for name, file in WEIGHT_FILES.items() if file == weights.name), which))
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise PredictorError(f"{weights} not found; the run may have been stopped before its first epoch, "
                             "train again") from None
    except (SafetensorError, OSError) as err:
        raise PredictorError(f"{weights} is damaged ({err}); train again") from None
    check_weights(weights, {name: tuple(t.shape) for name, t in state.items()}, spec)
    model = build_model(spec)
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    model.eval()
    return model, config


def weight_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the network built from `spec` (computed without torch): the
    input standardisation buffers, then for an MLP the Linear layers at even indices of `net` (ReLUs
    between; (members, in, out) weights and (members, out) biases for more than one member), for the temporal model `convs.<i>` (out, in, kernel) and the 1x1 `head`."""
    shapes: dict[str, tuple[int, ...]] = {"input_mean": (spec.n_inputs,), "input_std": (spec.n_inputs,)}
    width = spec.n_inputs
    if spec.kind == "temporal":
        for i, channels in enumerate(spec.hidden):
            shapes[f"convs.{i}.weight"] = (channels, width, TEMPORAL_KERNEL)
            shapes[f"convs.{i}.bias"] = (channels,)
            width = channels
        shapes["head.weight"] = (spec.n_outputs, width, 1)
        shapes["head.bias"] = (spec.n_outputs,)
        return shapes
    for i, size in enumerate((*spec.hidden, spec.n_outputs)):
        if spec.members == 1:
            shapes[f"net.{2 * i}.weight"] = (size, width)
            shapes[f"net.{2 * i}.bias"] = (size,)
        else:  # models.MemberLinear
            shapes[f"net.{2 * i}.weight"] = (spec.members, width, size)
            shapes[f"net.{2 * i}.bias"] = (spec.members, size)
        width = size
    return shapes


def check_weights(path: Path, shapes: dict[str, tuple[int, ...]], spec: ModelSpec) -> None:
    """Checks that a weight file's tensors (name -> shape) are those of the model in config.json.

    Raises:
        PredictorError: a tensor is missing, extra or of another shape (a foreign file, or weights
            and config.json from different runs).
    """
    expected = weight_shapes(spec)
    if shapes == expected:
        return
    missing = sorted(set(expected) - set(shapes))
    extra = sorted(set(shapes) - set(expected))
    wrong = sorted(k for k in set(expected) & set(shapes) if expected[k] != shapes[k])
    detail = (f"{wrong[0]} is {list(shapes[wrong[0]])}, the model needs {list(expected[wrong[0]])}" if wrong else
              f"missing {missing[0]}" if missing else f"unexpected {extra[0]}")
    raise PredictorError(f"{path}: weights do not match the model in config.json ({detail}); train again")


def check_store_matches(config: dict[str, Any], horizons: tuple[int, ...], store_path: Path) -> None:
    """Checks that a store's horizons are the checkpoint's.

    Raises:
        PredictorError: the horizons differ.
    """
    spec = ModelSpec.from_json(config["model"])
    if tuple(spec.horizons) != tuple(horizons):
        raise PredictorError(f"{store_path}: horizons {list(horizons)} differ from the checkpoint's "
                             f"{list(spec.horizons)}; evaluate on a store collected with the same horizons")
