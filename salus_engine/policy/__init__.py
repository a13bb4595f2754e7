"""The monitored policy: an ensemble of lerobot SmolVLA policies, its tiny backbone and its training.

- `ensemble.PolicyEnsemble`: M members queried for action chunks; per step the mean action and the
  (M, 7) member actions that the signals read.
- `checkpoint`: save / load one member with its processors (backbone re-pointing, weight check).
- `tiny_backbone`: the project-generated SmolVLM backbone directory (no download).
- `demonstrations` / `behaviour_cloning`: scripted-expert demonstrations and the training behind
  `salus policy train` (`train_default_ensemble`).
- `evaluation.evaluate_policy`: closed-loop outcome rates of an ensemble in the simulator.

lerobot and transformers are imported inside the functions that need them, so importing this
package stays cheap.
"""

from salus_engine.policy.behaviour_cloning import TrainResult, TrainSettings, train_default_ensemble
from salus_engine.policy.checkpoint import PolicyLoadError, load_member, save_member
from salus_engine.policy.ensemble import ChunkQuery, PolicyEnsemble

__all__ = [
    "ChunkQuery",
    "PolicyEnsemble",
    "PolicyLoadError",
    "TrainResult",
    "TrainSettings",
    "load_member",
    "save_member",
    "train_default_ensemble",
]
