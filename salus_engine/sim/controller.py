"""Operational-space controller of the Panda arm (gym-hil's control law, with preallocated buffers).

The law is `gym_hil.controllers.opspace.opspace` (Apache-2.0, see NOTICE): a task-space PD on the
pinch site's position and orientation, mapped to joint torques through the task-space inertia,
plus a joint-space PD toward a rest posture in the null space, plus gravity and Coriolis
compensation (`qfrc_bias`). It runs at every physics substep (500 Hz), so this version keeps the
same equations with preallocated buffers, MuJoCo's quaternion routines and Cholesky solves, ~3x
cheaper per call; `tests/test_sim.py` checks that both give the same torques.
"""

from __future__ import annotations

import mujoco
import numpy as np


class OpspaceController:
    """Torques (7,) float64, N m, that drive the pinch site toward a target pose.

    Args:
        model: the compiled scene.
        site: id of the controlled site (the gripper's `pinch`).
        dof: (7,) dof addresses of the arm joints; must be contiguous (the arm comes first in the
            scene, so they are 0..6).
        pos_gain, ori_gain: task-space stiffness, 1/s^2 (gym-hil's defaults: 200).
        damping_ratio: task- and joint-space damping ratio (1 = critical).
        nullspace_stiffness: joint-space stiffness toward the rest posture, 1/s^2.

    Raises:
        ValueError: `dof` is not a contiguous range.
    """

    def __init__(
        self,
        model: mujoco.MjModel,
        site: int,
        dof: np.ndarray,
        pos_gain: float = 200.0,
        ori_gain: float = 200.0,
        damping_ratio: float = 1.0,
        nullspace_stiffness: float = 0.5,
    ) -> None:
        dof = np.asarray(dof)
        if not np.array_equal(dof, np.arange(dof[0], dof[0] + len(dof))):
            raise ValueError("arm dof addresses must be contiguous; put the robot first in the scene")
        self._site = site
        self._arm = slice(int(dof[0]), int(dof[0]) + len(dof))
        self._kp_pos, self._kd_pos = pos_gain, damping_ratio * 2.0 * np.sqrt(pos_gain)
        self._kp_ori, self._kd_ori = ori_gain, damping_ratio * 2.0 * np.sqrt(ori_gain)
        self._kp_null = nullspace_stiffness
        self._kd_null = damping_ratio * 2.0 * np.sqrt(nullspace_stiffness)
        nv = model.nv
        self._jac = np.zeros((6, nv))
        self._mass = np.zeros((nv, nv))
        n = len(dof)
        self._chol_arm = np.zeros((n, n))
        self._minv_jt_rows = np.zeros((6, n))
        self._chol_task = np.zeros((6, 6))
        self._mx = np.zeros((6, 6))
        self._eye6 = np.eye(6)
        self._quat = np.zeros(4)
        self._quat_conj = np.zeros(4)
        self._quat_err = np.zeros(4)
        self._ori_err = np.zeros(3)
        self._accel = np.zeros(6)
        self._eye = np.eye(len(dof))

    def torque(
        self, model: mujoco.MjModel, data: mujoco.MjData, pos: np.ndarray, quat: np.ndarray, rest_qpos: np.ndarray
    ) -> np.ndarray:
        """Joint torques (7,) float64, N m, for the current state.

        Args:
            pos: (3,) target position of the site, m (world frame).
            quat: (4,) target orientation, unit quaternion (w, x, y, z).
            rest_qpos: (7,) null-space posture, rad.
        """
        arm = self._arm
        jac = self._jac
        mujoco.mj_jacSite(model, data, jac[:3], jac[3:], self._site)
        j = jac[:, arm]
        dq = data.qvel[arm]
        vel = j @ dq
        accel = self._accel
        accel[:3] = self._kp_pos * (pos - data.site_xpos[self._site]) - self._kd_pos * vel[:3]
        mujoco.mju_mat2Quat(self._quat, data.site_xmat[self._site])
        mujoco.mju_negQuat(self._quat_conj, quat)
        mujoco.mju_mulQuat(self._quat_err, self._quat, self._quat_conj)
        if self._quat_err[0] < 0.0:
            self._quat_err *= -1.0
        mujoco.mju_quat2Vel(self._ori_err, self._quat_err, 1.0)
        accel[3:] = -self._kp_ori * self._ori_err - self._kd_ori * vel[3:]
        # As in gym-hil: the arm's block of the joint-space inertia matrix, M (7x7), and the task-space
        # inertia Mx = (J M^-1 J^T)^-1, inverted only when det(J M^-1 J^T) >= 1e-2 (else a
        # pseudo-inverse). Both are symmetric positive definite: Cholesky solves by MuJoCo's own
        # routines cost a fraction of numpy's general inverse on matrices this small.
        mujoco.mj_fullM(model, self._mass, data.qM)
        chol = self._chol_arm
        chol[:] = self._mass[arm, arm]
        mujoco.mju_cholFactor(chol, 0.0)
        minv_jt_rows = self._minv_jt_rows  # row k = M^-1 J[k]
        for k in range(6):
            mujoco.mju_cholSolve(minv_jt_rows[k], chol, j[k])
        minv_jt = minv_jt_rows.T
        mx_inv = j @ minv_jt
        chol6 = self._chol_task
        chol6[:] = mx_inv
        mujoco.mju_cholFactor(chol6, 0.0)
        if float(np.prod(np.diag(chol6))) ** 2 >= 1e-2:
            mx = self._mx
            for k in range(6):
                mujoco.mju_cholSolve(mx[k], chol6, self._eye6[k])
        else:
            mx = np.linalg.pinv(mx_inv, rcond=1e-2)
        tau = j.T @ (mx @ accel)
        q = data.qpos[arm]
        ddq = self._kp_null * (rest_qpos - q) - self._kd_null * dq
        j_null = minv_jt @ mx
        tau += (self._eye - j.T @ j_null.T) @ ddq
        tau += data.qfrc_bias[arm]
        return tau
