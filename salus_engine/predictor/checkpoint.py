"""A training run's folder on disk, and loading a trained predictor from it.

```
RUN/config.json          format, model spec, training settings, store identity, result summary (JSON)
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
from pathlib import Path
from typing import Any

from typing import TYPE_CHECKING

from safetensors import SafetensorError

from salus_engine import FAILURE_TYPES
from salus_engine.predictor.errors import PredictorError
from salus_engine.predictor.spec import ModelSpec
from salus_engine.signals import SIGNAL_NAMES

if TYPE_CHECKING:
    from salus_engine.predictor.models import SignalMLP

CHECKPOINT_FORMAT = "salus-predictor"
CHECKPOINT_VERSION = 1
WEIGHT_FILES = {"best": "best.safetensors", "final": "final.safetensors"}


def default_run_dir() -> str:
    """A new run folder name: `checkpoints/predictor-YYYYmmdd-HHMMSS` (UTC), relative to the working directory."""
    return str(Path("checkpoints") / f"predictor-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}")


def save_weights(model: SignalMLP, path: Path) -> None:
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
    except ValueError as err:
        raise PredictorError(f"{path} is damaged ({err}); train again with 'salus train'") from None
    if config.get("format") != CHECKPOINT_FORMAT:
        raise PredictorError(f"{run_dir}: not a SALUS predictor checkpoint (format={config.get('format')!r}); "
                             "give the --out folder of 'salus train'")
    if config.get("format_version") != CHECKPOINT_VERSION:
        raise PredictorError(f"{run_dir}: checkpoint format version {config.get('format_version')} is not "
                             f"supported (this SALUS reads {CHECKPOINT_VERSION}); train again")
    try:
        spec = ModelSpec.from_json(config["model"])
    except (KeyError, TypeError, ValueError) as err:
        raise PredictorError(f"{path}: damaged model settings ({err!s}); train again with 'salus train'") from None
    if spec.signal_names != SIGNAL_NAMES:
        raise PredictorError(f"{run_dir}: checkpoint trained on signals {list(spec.signal_names)}, but this SALUS "
                             f"computes {list(SIGNAL_NAMES)}; train a new predictor on a store from this version")
    if spec.failure_types != FAILURE_TYPES:
        raise PredictorError(f"{run_dir}: checkpoint predicts failure types {list(spec.failure_types)}, not "
                             f"{list(FAILURE_TYPES)}; train a new predictor")
    return config


def load_model(run_dir: str | Path, which: str = "best") -> tuple[SignalMLP, dict[str, Any]]:
    """Loads a trained predictor.

    Args:
        run_dir: the `--out` folder of `salus train`, or one of its `.safetensors` files.
        which: `best` (lowest validation loss) or `final`; ignored when a file is given.

    Returns:
        (model in eval mode, the run's config dict).

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

    from salus_engine.predictor.models import SignalMLP

    config = read_config(run_dir)
    spec = ModelSpec.from_json(config["model"])
    try:
        state = load_file(str(weights))
    except FileNotFoundError:
        raise PredictorError(f"{weights} not found; the run may have been stopped before its first epoch, "
                             "train again") from None
    except (SafetensorError, OSError) as err:
        raise PredictorError(f"{weights} is damaged ({err}); train again") from None
    model = SignalMLP(spec)
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    got = {name: tuple(t.shape) for name, t in state.items()}
    if expected != got:
        raise PredictorError(f"{weights}: weights do not match the model in config.json "
                             f"({len(got)} tensors vs {len(expected)} expected); train again")
    model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    model.eval()
    return model, config


def check_store_matches(config: dict[str, Any], horizons: tuple[int, ...], store_path: Path) -> None:
    """Checks that a store's horizons are the checkpoint's.

    Raises:
        PredictorError: the horizons differ.
    """
    spec = ModelSpec.from_json(config["model"])
    if tuple(spec.horizons) != tuple(horizons):
        raise PredictorError(f"{store_path}: horizons {list(horizons)} differ from the checkpoint's "
                             f"{list(spec.horizons)}; evaluate on a store collected with the same horizons")
