"""Saving and loading one lerobot policy (an ensemble member) with its processors.

A member folder is what lerobot's `save_pretrained` writes (`config.json`, `model.safetensors`,
`policy_preprocessor.json`, `policy_postprocessor.json` and the normaliser statistics) plus, for
policies on the project's tiny SmolVLM backbone, a copy of the backbone directory in `backbone/`.
lerobot stores the backbone as an absolute path (`vlm_model_name` in `config.json`, `tokenizer_name`
in `policy_preprocessor.json`), which is wrong on any other machine or checkout: `save_member`
replaces it with `backbone` (the copy) and `load_member` re-points both at the copy's absolute path
(lerobot 0.6.1 `SmolVLAConfig.vlm_model_name`, `TokenizerProcessorStep.tokenizer_name`).

The config is read by `read_policy_config`, not by lerobot's `PreTrainedConfig.from_pretrained`, which
writes the parsed config to a temporary JSON file and never deletes it (lerobot 0.6.1; one file in the
system's temp folder per member load, so a long-lived console or a cluster worker fills /tmp). The
result is the same config object (tested against lerobot's own).

`from_pretrained` loads weights non-strictly (missing tensors keep their random initialisation);
`load_member` therefore checks the loaded state against the saved file for project-saved members.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from salus_engine.errors import SalusError
from salus_engine.policy.tiny_backbone import is_backbone_dir

log = logging.getLogger(__name__)

BACKBONE_SUBDIR = "backbone"
"""Folder inside a member folder holding its copy of the tiny SmolVLM backbone."""
WEIGHTS_FILE = "model.safetensors"
"""lerobot's weight file name inside a saved policy folder."""


class PolicyLoadError(SalusError):
    """A policy path or device cannot be used; the message says what is wrong and what to do."""


@dataclass
class LoadedMember:
    """One loaded policy with the processors that go with it."""

    policy: Any
    """A lerobot `PreTrainedPolicy` (e.g. `SmolVLAPolicy`) in eval mode on the requested device."""
    preprocessor: Any
    """lerobot `PolicyProcessorPipeline`: raw observation dict -> normalised, tokenised batch."""
    postprocessor: Any
    """lerobot `PolicyProcessorPipeline`: normalised action tensor -> action in dataset units (CPU)."""
    source: str
    """The folder or hub id it came from."""


def check_device(device: str) -> None:
    """Raises `PolicyLoadError` if `device` is not usable by torch on this machine.

    lerobot silently switches an unavailable device to another one; SALUS refuses instead so that
    `--device` means what it says.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise PolicyLoadError(f"device {device!r} is not a torch device; use e.g. cpu, cuda or cuda:1") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise PolicyLoadError(f"device {device!r} requested but CUDA is not available here; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise PolicyLoadError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) exist; "
                "pick an existing index"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise PolicyLoadError(f"device {device!r} requested but MPS is not available here; use --device cpu")


def save_member(policy: Any, preprocessor: Any, postprocessor: Any, directory: str | Path) -> Path:
    """Saves a policy, its processors and (if local) its backbone directory into `directory`.

    Returns:
        The member folder as an absolute `Path`.
    """
    out = Path(directory).resolve()
    out.mkdir(parents=True, exist_ok=True)
    policy.save_pretrained(out)
    preprocessor.save_pretrained(out)
    postprocessor.save_pretrained(out)
    backbone = Path(getattr(policy.config, "vlm_model_name", "") or "")
    target = out / BACKBONE_SUBDIR
    if backbone.is_dir() and is_backbone_dir(backbone):
        if backbone.resolve() != target.resolve():
            if target.exists():
                shutil.rmtree(target)
            shutil.copytree(backbone, target)
        _store_relative_backbone(out, str(backbone))
    return out


def _store_relative_backbone(folder: Path, absolute: str) -> None:
    """Replaces the machine-specific backbone path lerobot wrote into the member's JSON files with
    `backbone` (the copy inside the folder); `load_member` re-points it to an absolute path."""
    for name in ("config.json", "policy_preprocessor.json"):
        path = folder / name
        data = json.loads(path.read_text())
        if name == "config.json":
            data["vlm_model_name"] = BACKBONE_SUBDIR
        else:
            for step in data.get("steps", []):
                if step.get("config", {}).get("tokenizer_name") == absolute:
                    step["config"]["tokenizer_name"] = BACKBONE_SUBDIR
        path.write_text(json.dumps(data, indent=4) + "\n")


LIBRARY_LOGGERS = ("huggingface_hub", "transformers")
"""Libraries that print their warnings to stderr through a handler of their own (huggingface_hub: two
lines per retry of an unreachable hub, 12 lines before a one-line error)."""


@contextlib.contextmanager
def _library_warnings_to_session_log():
    """While lerobot loads, the warnings of `LIBRARY_LOGGERS` go to the session log (the root logger's
    handlers) instead of their own stderr handlers: a user's mistake ends in one line."""
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        streams = [h for h in logger.handlers if type(h) is logging.StreamHandler]
        saved.append((logger, streams, logger.propagate))
        for handler in streams:
            logger.removeHandler(handler)
        logger.propagate = True
    try:
        yield
    finally:
        for logger, streams, propagate in saved:
            for handler in streams:
                logger.addHandler(handler)
            logger.propagate = propagate


def quiet(fn, *args, **kwargs):
    """Calls `fn`, routing what lerobot prints to stdout into the debug log (the console owns stdout)
    and the hub's and transformers' warnings into the session log."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), _library_warnings_to_session_log():
        result = fn(*args, **kwargs)
    for line in buffer.getvalue().splitlines():
        if line.strip():
            log.debug("lerobot: %s", line.strip())
    return result


def read_policy_config(name: str) -> Any:
    """The lerobot policy config (e.g. `SmolVLAConfig`) of a saved policy folder or a hub id.

    The same steps as lerobot 0.6.1's `PreTrainedConfig.from_pretrained` without CLI overrides (read
    `config.json`, locally or through the Hub's cache; pick the config class by its `type` tag; decode
    the rest with draccus), minus the temporary file it leaves behind.

    Args:
        name: an absolute policy folder or a Hugging Face Hub id.

    Raises:
        FileNotFoundError: no `config.json` in the folder or on the Hub.
        ValueError: the config names no policy type, or one lerobot does not know.
    """
    import draccus
    from lerobot.configs import PreTrainedConfig

    local = Path(name)
    if local.is_dir():
        config_file = local / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"config.json not found in {local}")
    else:
        from huggingface_hub import hf_hub_download

        config_file = Path(hf_hub_download(repo_id=name, filename="config.json"))
    raw = json.loads(config_file.read_text())
    policy_type = raw.pop("type", None)
    if policy_type is None:
        raise ValueError(f"config.json of {name} names no policy 'type'")
    config_cls = PreTrainedConfig.get_choice_class(policy_type)
    with draccus.config_type("json"):
        return draccus.decode(config_cls, raw)


def load_member(path: str | Path, device: str = "cpu") -> LoadedMember:
    """Loads one lerobot policy with its pre/post processors through lerobot's own classes.

    Args:
        path: a saved policy folder (ours or any lerobot one) or a Hugging Face Hub id.
        device: torch device for the policy and the preprocessor output.

    Raises:
        PolicyLoadError: the path is neither a policy folder nor a reachable hub id, the device is
            unavailable, or a project-saved member's weights do not all load.
    """
    from lerobot.policies.factory import get_policy_class, make_pre_post_processors

    check_device(device)
    source = str(path)
    local = Path(source).expanduser()
    is_local = local.is_dir()
    if is_local and not (local / "config.json").is_file():
        raise PolicyLoadError(f"{local} is not a lerobot policy folder (no config.json); give a saved policy folder")
    if local.exists() and not is_local:
        raise PolicyLoadError(f"policy path {source} is a file, not a policy folder; give a saved policy folder or a "
                              "hub id")
    if not is_local and source.startswith((".", "/", "~")):
        raise PolicyLoadError(f"policy path {source} does not exist; give a saved policy folder or a hub id")
    name = str(local.resolve()) if is_local else source
    try:
        cfg = quiet(read_policy_config, name)
    except Exception as err:  # hub errors come in many types (offline, 404, auth)
        raise PolicyLoadError(
            f"cannot read policy config of {source} ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
            "give a local policy folder, or run `salus policy train` for the embedded default"
        ) from None
    cfg.device = device
    overrides: dict[str, dict[str, Any]] = {"device_processor": {"device": device}}
    backbone = local / BACKBONE_SUBDIR
    project_saved = is_local and is_backbone_dir(backbone)
    if is_local and getattr(cfg, "vlm_model_name", None) == BACKBONE_SUBDIR and not project_saved:
        # a member saved by this project names its own backbone copy; without it lerobot would look for a
        # hub model called "backbone" (network retries on stderr, then an unrelated error)
        raise PolicyLoadError(f"{local}: its backbone folder {backbone} is missing or incomplete; restore the member "
                              "folder or retrain with `salus policy train`")
    if project_saved:
        cfg.vlm_model_name = str(backbone.resolve())
        overrides["tokenizer_processor"] = {"tokenizer_name": str(backbone.resolve())}
    policy_cls = get_policy_class(cfg.type)
    try:
        policy = quiet(policy_cls.from_pretrained, name, config=cfg)
    except Exception as err:
        raise PolicyLoadError(
            f"cannot load policy weights of {source} ({type(err).__name__}: {str(err).splitlines()[0][:160]}); "
            "check the folder or the hub id and that its backbone is available offline"
        ) from None
    if project_saved:
        _check_weights_loaded(policy, local / WEIGHTS_FILE)
    try:
        preprocessor, postprocessor = quiet(
            make_pre_post_processors,
            cfg,
            pretrained_path=name,
            preprocessor_overrides=overrides,
            postprocessor_overrides={"device_processor": {"device": "cpu"}},
        )
    except FileNotFoundError:
        if project_saved:
            raise PolicyLoadError(f"{local} has no saved processors; retrain it with `salus policy train`") from None
        log.warning("%s has no saved processors: building them from its config without dataset statistics, "
                    "so states are not normalised and actions not unnormalised", source)
        preprocessor, postprocessor = quiet(make_pre_post_processors, cfg)
    except Exception as err:
        raise PolicyLoadError(
            f"cannot load the processors of {source} ({type(err).__name__}: {str(err).splitlines()[0][:160]})"
        ) from None
    policy.eval()
    return LoadedMember(policy=policy, preprocessor=preprocessor, postprocessor=postprocessor, source=source)


def _check_weights_loaded(policy: Any, weights_file: Path) -> None:
    """Raises `PolicyLoadError` unless every saved tensor was loaded into `policy` unchanged."""
    from safetensors.torch import load_file

    saved = load_file(str(weights_file))
    state = policy.state_dict()
    missing = [k for k in state if k not in saved]
    if missing:
        raise PolicyLoadError(
            f"{weights_file} lacks {len(missing)} tensors the policy needs (e.g. {missing[0]}); "
            "retrain it with `salus policy train`"
        )
    for key, tensor in saved.items():
        if key in state and not torch.equal(state[key].detach().cpu(), tensor):
            raise PolicyLoadError(f"{weights_file}: tensor {key} did not load; retrain with `salus policy train`")
