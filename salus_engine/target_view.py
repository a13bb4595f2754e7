"""The `target_view` input family: where the gripper is relative to the target object, as the front
camera sees it.

A miss is the gripper closing beside the cube. The robot's joint angles say where the gripper is, but
not where the cube is: that is only in the image. In the recorded stores the horizontal distance
between the gripper and the cube separates the episodes that end in a miss from the successful ones
10 steps before the gripper first closes (ROC-AUC 0.95 on 400 episodes of the 2,000-episode store;
README, "The signal families").

Per step, from the front camera frame and the robot state:

1. the target's pixels: the red cube of the instruction ("pick up the red cube"), found by colour,
   r >= `RED_MIN` and r >= 2 g + `RED_MARGIN` and r >= 2 b + `RED_MARGIN` (uint8 RGB), searched at
   `SEARCH_SIDE` pixels: every (S // `SEARCH_SIDE`)-th row and column of an S-pixel frame, first in a
   window of +-`WINDOW` sampled pixels around the last sighting, and in the whole frame when fewer
   than `VISIBLE_FRACTION` of the first frame's pixels are in that window (the scene holds no other
   red object, so both searches find the same pixels while the cube is inside the window);
2. the target's position: the centroid of those pixels cast through the calibrated camera (pinhole,
   the MuJoCo camera's pose and field of view) onto the horizontal plane of the cube's centre when it
   rests on the table (z = `scene.CUBE_HALF_M`). It is updated only while at least `VISIBLE_FRACTION`
   of the pixels seen in the episode's first frame are visible, and held otherwise (the gripper
   hides the cube when it reaches for it);
3. the gripper's position: the pinch point between the fingers, from the joint angles by forward
   kinematics of the robot model (on a real robot, its URDF and the camera calibration).

======================  ===============================================================================
 column                  definition
======================  ===============================================================================
 target_distance_xy      horizontal distance between the pinch point and the target's position, m
 target_dz               pinch point height minus the target's centre height, m
 target_visible          target pixels now / target pixels in the episode's first frame (0 when the
                         first frame shows none)
======================  ===============================================================================

The offset's direction (world x and y) is left out: it depends on where the cube was put, not on
whether the grasp will hold (on the validation split, the model without it ranked episodes as well).
Before the target is seen at all, the distance and height are 0. Offline (`episode`) and online
(`update`, one frame at a time) run the same code, so a recorded episode gives the same columns both
ways.
"""

from __future__ import annotations

import math

import mujoco
import numpy as np

from salus_engine.sim import scene
from salus_engine.sim.kinematics import PinchPoint

TARGET_VIEW = "target_view"
TARGET_VIEW_COLUMNS: tuple[str, ...] = ("target_distance_xy", "target_dz", "target_visible")
CAMERA = "front"
"""The camera the family reads; a store offers the family only when it records this camera."""
RED_MIN = 90
RED_MARGIN = 20
SEARCH_SIDE = 128
"""A 256-pixel frame is searched on every second row and column (the cube spans about 10 pixels at
256); frames of 128 pixels or fewer on every pixel."""
VISIBLE_FRACTION = 0.8
WINDOW = 16
"""Half side, in sampled pixels, of the window around the last sighting that is searched first (the cube
spans about 5 sampled pixels and moves at most 1-2 per step)."""

_GREEN_BLUE_BOUND = np.array([(r - RED_MARGIN) // 2 + 1 if r >= RED_MIN else 0 for r in range(256)], np.uint8)
"""Per red value r (uint8): a pixel is the target's where max(g, b) < this. For integers,
r >= 2 g + margin <=> g <= (r - margin) // 2; 0 where r < `RED_MIN` (no pixel)."""
_sum = np.add.reduce


def recorded_frames(store, episode_id: int) -> np.ndarray:
    """(T, 3, S, S) uint8 front-camera frames of a recorded episode of an `EpisodeStore` that records
    the front camera (read from its `images` array on call).

    Raises:
        StoreError: a damaged image chunk (one line naming the episode).
    """
    return store.episode_by_id(episode_id).array("images")[:, store.cameras.index(CAMERA)]


class TargetView:
    """Stateful per-episode locator of the target relative to the gripper.

    Call `reset()` at the start of every episode, then `update(frame, state)` once per step.
    """

    def __init__(self, image_size: int) -> None:
        """Args: image_size: side S of the square front-camera frames, pixels.

        Raises:
            RuntimeError / ValueError: as `scene.build_model` (gym-hil missing, scene not compiling).
        """
        self.image_size = int(image_size)
        self._kinematics = PinchPoint(self.image_size)
        self._model, self._data = self._kinematics.model, self._kinematics.data
        mujoco.mj_forward(self._model, self._data)  # camera poses (mj_kinematics alone leaves them unset)
        camera = self._kinematics.ids.cameras[CAMERA]
        # the pose and focal length as Python floats: a ray costs less in plain arithmetic than in numpy calls
        self._camera_pos = tuple(self._data.cam_xpos[camera].tolist())
        self._camera_mat = tuple(tuple(row) for row in self._data.cam_xmat[camera].reshape(3, 3).tolist())
        self._focal = float((self.image_size / 2) / np.tan(np.deg2rad(float(self._model.cam_fovy[camera])) / 2))
        self._stride = max(1, self.image_size // SEARCH_SIDE)
        self.reset()

    def reset(self) -> None:
        """Forgets the target's position and first-frame pixel count."""
        self._first_pixels: int | None = None
        self._target: tuple[float, float, float] | None = None
        self._sighting: tuple[int, int] | None = None

    @staticmethod
    def _red(region: np.ndarray, top: int, left: int) -> tuple[int, float, float]:
        """(target pixels, their mean row, mean column) in a (h, w, 3) uint8 region of the sampled frame
        whose first pixel is sampled pixel (top, left); rows and columns in sampled pixels."""
        mask = np.maximum(region[..., 1], region[..., 2]) < _GREEN_BLUE_BOUND.take(region[..., 0])
        hits = mask.ravel().nonzero()[0]  # flat indices (the 1-D search costs less than the 2-D one)
        pixels = len(hits)
        if not pixels:
            return 0, 0.0, 0.0
        width = mask.shape[1]
        row_sum = int(_sum(hits // width))
        return pixels, top + row_sum / pixels, left + (int(_sum(hits)) - row_sum * width) / pixels

    def locate(self, u: float, v: float, height: float = scene.CUBE_HALF_M) -> np.ndarray:
        """(3,) float64 world point (m) where the ray through pixel (u, v) (column, row; pixel centres at
        +0.5) meets the plane z = height."""
        return np.array(self._locate(u, v, height))

    def _locate(self, u: float, v: float, height: float = scene.CUBE_HALF_M) -> tuple[float, float, float]:
        """`locate` as a tuple of floats."""
        half = self.image_size / 2
        x, y = (u - half) / self._focal, -(v - half) / self._focal
        # direction = camera_mat @ (x, y, -1)
        (a, b, c), (d, e, f), (g, h, i) = self._camera_mat
        dx, dy, dz = a * x + b * y - c, d * x + e * y - f, g * x + h * y - i
        px, py, pz = self._camera_pos
        scale = (height - pz) / dz
        return px + scale * dx, py + scale * dy, pz + scale * dz

    def update(self, frame: np.ndarray, state: np.ndarray) -> np.ndarray:
        """The columns of one step.

        Args:
            frame: (S, S, 3) uint8 RGB front-camera frame of the step's observation (a (3, S, S)
                channels-first frame, as stored, is accepted too).
            state: (8,) robot state (7 joint angles in rad, then the gripper opening).

        Returns:
            (3,) float32 in `TARGET_VIEW_COLUMNS` order.
        """
        image = np.asarray(frame)
        if image.shape[0] == 3 and image.shape[-1] != 3:
            image = image.transpose(1, 2, 0)
        stride = self._stride
        sample = image[::stride, ::stride]
        found = None
        if self._sighting is not None:  # the window around the last sighting first: a tenth of the pixels
            row, col = self._sighting
            top, left = max(0, row - WINDOW), max(0, col - WINDOW)
            found = self._red(sample[top:row + WINDOW + 1, left:col + WINDOW + 1], top, left)
            if self._first_pixels and found[0] < VISIBLE_FRACTION * self._first_pixels:
                found = None  # partly outside the window or hidden: the whole frame decides
        if found is None:
            found = self._red(sample, 0, 0)
        pixels, row, col = found
        if self._first_pixels is None:
            self._first_pixels = pixels
        if pixels and pixels >= VISIBLE_FRACTION * self._first_pixels:
            self._sighting = (int(round(row)), int(round(col)))
            # sampled pixel c is pixel c * stride of the frame, centred at + 0.5
            self._target = self._locate(col * stride + 0.5, row * stride + 0.5)
        visible = pixels / self._first_pixels if self._first_pixels else 0.0
        if self._target is None:
            return np.array([0.0, 0.0, visible], np.float32)
        x, y, z = self._kinematics.position(np.asarray(state)[:7])
        tx, ty, tz = self._target
        return np.array([math.hypot(x - tx, y - ty), z - tz, visible], np.float32)

    def episode(self, frames: np.ndarray, states: np.ndarray) -> np.ndarray:
        """(T, 3) float32 columns of a recorded episode: `reset`, then `update` per step.

        Args:
            frames: (T, 3, S, S) or (T, S, S, 3) uint8 front-camera frames.
            states: (T, 8) robot states.
        """
        self.reset()
        rows = [self.update(frames[t], states[t]) for t in range(len(states))]
        return np.stack(rows) if rows else np.zeros((0, len(TARGET_VIEW_COLUMNS)), np.float32)
