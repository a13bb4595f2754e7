"""The `grasp` input family: how the gripper's opening compares with the width of the object it holds.

A drop is the cube slipping out of a grasp that had lifted it. In the recorded stores the slip shows in
the gripper opening long before the cube falls: a successful grasp holds the finger pads 0.1-0.2 mm
inside the cube's 40 mm width for the whole carry, while about half of the dropped cubes (in the
2,000-episode store) turn between the pads, which close past the cube's width by a further 0.03-0.05 mm
per step (to 1-2 mm before the drop), and a few are held 0.5-1.5 mm wide of it for a while after the
pads close. A slip begins 30-40 steps before the drop. The `state` family holds the
opening too, but in metres beside joint angles: after standardisation over every step (open 85 mm,
closed on nothing 0 mm), a millimetre is a few hundredths of a standard deviation. This family gives
the same measurement at the scale of a grasp.

Per step, from the robot state of the step's observation (`salus_engine.store.layout.STATE_NAMES`):

======================  ===============================================================================
 column                  definition
======================  ===============================================================================
 grasp_width_error_mm    gripper opening minus the target object's width (the cube, 2 *
                         `scene.CUBE_HALF_M`), mm, clipped to +-`CLIP_MM` (the gripper open or closing:
                         +CLIP_MM; closed on nothing: -CLIP_MM)
======================  ===============================================================================

The object's width is the task's (the instruction names the cube); a runtime monitor reads the opening
from the same observation the policy gets, so the family is not privileged information. It keeps no
history: offline and online the same function maps each state to its row.
"""

from __future__ import annotations

import numpy as np

from salus_engine.sim import scene
from salus_engine.store.layout import STATE_NAMES

GRASP = "grasp"
GRASP_COLUMNS: tuple[str, ...] = ("grasp_width_error_mm",)
OBJECT_WIDTH_M = 2.0 * scene.CUBE_HALF_M
"""Width of the target object, m (the cube's side)."""
CLIP_MM = 3.0
"""The column's range, +-mm: beyond it the gripper is opening, open, or closed on nothing."""
HOLD_BAND_MM = 1.0
"""While the pads hold the object the column lies between -`CLIP_MM` and this, mm (at first contact the
pads stand up to 1 mm wide of it); the `slip` and `grip_depth` families count only such steps."""
OPENING_COLUMN = STATE_NAMES.index("gripper_opening")
"""Index of the gripper opening (m) in a robot state (`STATE_NAMES`)."""


_WIDTH_M = np.float32(OBJECT_WIDTH_M)
_MM_PER_M = np.float32(1000.0)
_LOW_MM, _HIGH_MM, _BAND_MM = np.float32(-CLIP_MM), np.float32(CLIP_MM), np.float32(HOLD_BAND_MM)


def grasp_mm(opening_m: np.ndarray | np.float32) -> np.ndarray | np.float32:
    """The `grasp` column of gripper openings: the opening minus `OBJECT_WIDTH_M`, in mm, clipped to
    +-`CLIP_MM`, computed in float32.

    Args:
        opening_m: float32 openings (m), any shape, or one `np.float32` (the online path, which then makes
            no array: well under a microsecond, where a one-row array takes several).

    Returns:
        float32 of the same shape (an `np.float32` for one).
    """
    error = (opening_m - _WIDTH_M) * _MM_PER_M
    if isinstance(error, np.ndarray):
        return np.minimum(np.maximum(error, _LOW_MM), _HIGH_MM)
    return min(max(error, _LOW_MM), _HIGH_MM)  # one opening: the builtins, far faster than a ufunc on a scalar


def grasp_columns(states: np.ndarray) -> np.ndarray:
    """The `grasp` columns of robot states (`grasp_mm` of their openings).

    Args:
        states: (N, 8) or (8,) robot states (`STATE_NAMES`: 7 joint angles in rad, then the gripper
            opening in m).

    Returns:
        (N, 1) float32 (or (1,) for one state): the opening minus `OBJECT_WIDTH_M`, in mm, clipped to
        +-`CLIP_MM`.
    """
    states = np.asarray(states, dtype=np.float32)
    return grasp_mm(states[..., OPENING_COLUMN:OPENING_COLUMN + 1])


def holds_object(grasp: np.ndarray | np.float32) -> np.ndarray | np.bool_:
    """Where the pads hold the object: the `grasp` column strictly between -`CLIP_MM` (closed on nothing)
    and `HOLD_BAND_MM`.

    Args:
        grasp: any shape, float32 `grasp` column values, mm (or one `np.float32`).

    Returns:
        bool array of the same shape (an `np.bool_` for one).
    """
    return (grasp > _LOW_MM) & (grasp < _BAND_MM)
