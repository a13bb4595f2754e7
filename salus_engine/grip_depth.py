"""The `grip_depth` input family: how far inside the held object's width the finger pads are.

A successful grasp holds the cube with the pads a steady 0.1-0.2 mm inside its 40 mm width. Most
drops in the recorded stores are held deeper: the cube sits turned between the pads, which stand
0.4-0.8 mm inside its width soon after they close and slide further (to 1-2 mm) over the 25-40 steps
before it falls (`salus_engine.grasp`). The `grasp` column holds that depth, but beside the +-3 mm of an
open gripper and of one closed on nothing; this family gives the depth alone, 0 whenever the pads do
not hold an object, so that a model reads it at its own scale.

Per step, from the `grasp` column g of the step's robot state (the opening less the object's width, mm,
clipped to +-`CLIP_MM`):

======================  ===============================================================================
 column                  definition
======================  ===============================================================================
 grip_depth_mm           max(0, -g), mm, when -`CLIP_MM` < g < `HOLD_BAND_MM` (the pads on the
                         object, `salus_engine.grasp`); 0 otherwise (open, closing, or closed on
                         nothing); in [0, `CLIP_MM`)
======================  ===============================================================================

On the training and validation episodes of the 2,000-episode store (the test split and the fresh seeds
not read), the column passes 0.5 mm before the drop in 14 of 22 drops, a median 27 steps before it, and
at some step of 42 of 424 successful episodes. Chosen as an input by 5-fold cross-validation there
(README "Measured", `bench/feature_choice.py`).

It keeps no history: offline and online the same function maps each state to its row. A runtime
monitor reads the opening from the observation the policy gets: no privileged information.
"""

from __future__ import annotations

import numpy as np

from salus_engine.grasp import grasp_columns, holds_object

GRIP_DEPTH = "grip_depth"
GRIP_DEPTH_COLUMNS: tuple[str, ...] = ("grip_depth_mm",)


_ZERO = np.float32(0.0)


def grip_depth_mm(grasp: np.ndarray | np.float32) -> np.ndarray | np.float32:
    """The `grip_depth` column of `grasp` column values: max(0, -g) where the pads hold the object
    (`holds_object`), 0 elsewhere, mm, float32.

    Args:
        grasp: float32 `grasp` values (mm, `salus_engine.grasp.grasp_mm`), any shape, or one `np.float32`
            (the online path: no array made).

    Returns:
        float32 of the same shape (an `np.float32` for one).
    """
    held = holds_object(grasp)
    if isinstance(grasp, np.ndarray):
        return held * np.maximum(-grasp, _ZERO)
    return max(_ZERO, -grasp) if held else _ZERO  # one value: the builtin, far faster than a ufunc on a scalar


def grip_depth_columns(states: np.ndarray) -> np.ndarray:
    """The `grip_depth` column of robot states.

    Args:
        states: (N, 8) or (8,) robot states (`salus_engine.store.layout.STATE_NAMES`).

    Returns:
        (N, 1) float32 (or (1,) for one state): how far the pads stand inside the object's width, mm,
        0 when they do not hold it.
    """
    return grip_depth_mm(grasp_columns(states))
