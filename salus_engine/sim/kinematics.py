"""Forward kinematics of the task's robot: where the pinch point between the fingers is for given arm
joint angles (on a real robot, its URDF does this)."""

from __future__ import annotations

import mujoco
import numpy as np

from salus_engine.sim import scene


class PinchPoint:
    """The pinch point from the arm's joint angles, by MuJoCo's forward kinematics of the task's scene.

    `model` and `data` are the scene's own (built once); `position` overwrites the arm's joint angles in
    `data` and runs `mj_kinematics`, so the other bodies and sites of `data` follow too.
    """

    def __init__(self, image_size: int = 64) -> None:
        """Args: image_size: offscreen frame side the scene is built for, pixels (cameras only).

        Raises:
            RuntimeError / ValueError: as `scene.build_model` (gym-hil missing, scene not compiling).
        """
        self.model = scene.build_model(int(image_size), 0.002)
        self.data = mujoco.MjData(self.model)
        self.ids = scene.scene_ids(self.model)
        # a view of the arm's joint angles (a slice when their qpos are consecutive) and of the pinch site
        arm = [int(i) for i in self.ids.arm_qpos]
        consecutive = arm == list(range(arm[0], arm[0] + len(arm)))
        self._arm_qpos = self.data.qpos[arm[0]:arm[-1] + 1] if consecutive else None
        self._pinch = self.data.site_xpos[self.ids.pinch_site]

    def position(self, joints: np.ndarray) -> tuple[float, float, float]:
        """World position (x, y, z) of the pinch point, m (z above the table top), as floats.

        Args:
            joints: (7,) arm joint angles, rad (a state's first 7 values).
        """
        if self._arm_qpos is not None:
            self._arm_qpos[:] = joints
        else:
            self.data.qpos[self.ids.arm_qpos] = joints
        mujoco.mj_kinematics(self.model, self.data)
        x, y, z = self._pinch.tolist()
        return x, y, z
