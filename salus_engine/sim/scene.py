"""The MuJoCo scene of the pick-and-place task: Panda + Robotiq 2F-85 from gym-hil, table, cube, bin, obstacle.

The robot comes from the installed `gym_hil/assets/panda.xml` (MuJoCo Menagerie's Franka Panda with
torque actuators and a Robotiq 2F-85 gripper; licences in NOTICE), read at run time. Its visual
meshes are replaced by reduced copies from the cache (`salus_engine.sim.meshes`); its collision
meshes are the originals. The task objects, cameras and lights are added here. World frame: origin
at the robot base on the table top, x away from the robot, z up; units m, kg, rad.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np

from salus_engine.sim.meshes import gym_hil_assets_dir, load_inertials, reduced_visual_meshes

CUBE_HALF_M = 0.02
"""Half edge of the red cube, m (4 cm cube; the 2F-85 opens to 85 mm)."""
BIN_INNER_HALF_M = 0.07
"""Half inner width of the square blue bin, m."""
BIN_WALL_HALF_THICKNESS_M = 0.005
"""Half thickness of the bin's walls and floor, m."""
BIN_WALL_HEIGHT_M = 0.06
"""Height of the bin's walls above the table, m."""
OBSTACLE_HALF_M = (0.02, 0.07, 0.07)
"""Half extents of the obstacle block (x, y, z), m: a 14 cm tall, 14 cm long wall segment that
stands between the cube and the bin."""
ARM_JOINTS = tuple(f"joint{i}" for i in range(1, 8))
"""The Panda's seven arm joints, in order."""
CAMERA_NAMES = ("front", "side", "wrist")
FRONT_CAMERA_POS = (1.15, 0.04, 0.78)
"""Front camera position, m: facing the robot across the table, looking down on the workspace."""
FRONT_CAMERA_TARGET = (0.45, 0.04, 0.08)
SIDE_CAMERA_POS = (0.5, -0.78, 0.72)
"""Side camera position, m: at the robot's right, looking across the cube toward the bin."""
SIDE_CAMERA_TARGET = (0.48, 0.06, 0.06)
"""Cameras the scene defines."""


@dataclass(frozen=True)
class SceneIds:
    """MuJoCo ids the environment and the outcome detector need (all int / int arrays)."""

    arm_qpos: np.ndarray
    """(7,) qpos addresses of the arm joints."""
    arm_dof: np.ndarray
    """(7,) dof addresses of the arm joints."""
    arm_actuators: np.ndarray
    """(7,) actuator ids of the arm torque motors."""
    gripper_actuator: int
    gripper_driver_qpos: int
    """qpos address of the right driver joint (0 open .. 0.8 rad closed)."""
    pinch_site: int
    cube_body: int
    cube_geom: int
    cube_qpos: int
    """qpos address of the cube's free joint (3 position + 4 quaternion)."""
    cube_dof: int
    bin_body: int
    obstacle_body: int
    obstacle_geom: int
    table_geom: int
    robot_geoms: np.ndarray
    """Collidable geoms of the moving robot (links 1-7 and the gripper)."""
    environment_geoms: np.ndarray
    """Table, bin and obstacle geoms: a robot geom pressing on one of them is a collision."""
    left_finger_geoms: np.ndarray
    right_finger_geoms: np.ndarray
    left_pad_geom: int
    right_pad_geom: int
    cameras: dict[str, int]


def _lookat_xyaxes(pos: tuple[float, float, float], target: tuple[float, float, float]) -> str:
    forward = np.subtract(target, pos, dtype=float)
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, (0.0, 0.0, 1.0))
    right /= np.linalg.norm(right)
    up = np.cross(right, forward)
    return " ".join(f"{v:.5f}" for v in (*right, *up))


def _task_xml(image_size: int, timestep: float) -> str:
    cx, cy, cz = CUBE_HALF_M, CUBE_HALF_M, CUBE_HALF_M
    inner, wall, height = BIN_INNER_HALF_M, BIN_WALL_HALF_THICKNESS_M, BIN_WALL_HEIGHT_M
    outer = inner + 2 * wall
    ox, oy, oz = OBSTACLE_HALF_M
    front = _lookat_xyaxes(FRONT_CAMERA_POS, FRONT_CAMERA_TARGET)
    side = _lookat_xyaxes(SIDE_CAMERA_POS, SIDE_CAMERA_TARGET)
    fx, fy, fz = FRONT_CAMERA_POS
    sx, sy, sz = SIDE_CAMERA_POS
    walls = "\n".join(
        f'<geom name="bin_wall_{name}" class="bin" pos="{x} {y} {height / 2}" size="{sx} {sy} {height / 2}"/>'
        for name, x, y, sx, sy in (
            ("px", inner + wall, 0, wall, outer),
            ("nx", -inner - wall, 0, wall, outer),
            ("py", 0, inner + wall, inner, wall),
            ("ny", 0, -inner - wall, inner, wall),
        )
    )
    return f"""
<mujoco>
  <option timestep="{timestep:.8f}" integrator="implicitfast"/>
  <visual>
    <global offwidth="{image_size}" offheight="{image_size}"/>
    <quality shadowsize="0" offsamples="0"/>
    <headlight ambient="0.35 0.35 0.35" diffuse="0.45 0.45 0.45" specular="0.05 0.05 0.05"/>
  </visual>
  <default>
    <default class="bin">
      <geom type="box" rgba="0.15 0.3 0.85 1" material="bin"/>
    </default>
  </default>
  <asset>
    <material name="table" rgba="0.62 0.52 0.40 1" specular="0.1"/>
    <material name="floor" rgba="0.30 0.31 0.33 1"/>
    <material name="cube" rgba="0.85 0.10 0.10 1" specular="0.2"/>
    <material name="bin" rgba="0.15 0.30 0.85 1" specular="0.2"/>
    <material name="obstacle" rgba="0.55 0.55 0.52 1" specular="0.1"/>
  </asset>
  <worldbody>
    <light name="top" pos="0.4 0 1.6" dir="0 0 -1" directional="true" castshadow="false"
      diffuse="0.45 0.45 0.45" specular="0.1 0.1 0.1"/>
    <camera name="front" pos="{fx} {fy} {fz}" xyaxes="{front}" fovy="50"/>
    <camera name="side" pos="{sx} {sy} {sz}" xyaxes="{side}" fovy="50"/>
    <geom name="floor" type="plane" size="3 3 0.1" pos="0 0 -0.75" material="floor" contype="0" conaffinity="0"/>
    <geom name="table" type="box" size="1.0 1.2 0.025" pos="0.6 0 -0.025" material="table"/>
    <body name="cube" pos="0.5 -0.15 {cz}">
      <freejoint name="cube"/>
      <geom name="cube" type="box" size="{cx} {cy} {cz}" mass="0.1" material="cube" condim="4"
        friction="1 0.005 0.0001"/>
    </body>
    <body name="bin" pos="0.5 0.2 0">
      <geom name="bin_floor" class="bin" pos="0 0 {wall}" size="{outer} {outer} {wall}"/>
      {walls}
    </body>
    <body name="obstacle" pos="0.5 0.02 0">
      <geom name="obstacle" type="box" pos="0 0 {oz}" size="{ox} {oy} {oz}" material="obstacle"/>
    </body>
  </worldbody>
</mujoco>
"""


def _robot_tree(assets: Path) -> ET.Element:
    """gym-hil's panda.xml with absolute mesh paths, reduced visual meshes and a `wrist` camera."""
    root = ET.parse(assets / "panda.xml").getroot()
    asset = root.find("asset")
    meshes = {}
    for mesh in asset.findall("mesh"):
        name = mesh.get("name") or Path(mesh.get("file")).stem
        mesh.set("name", name)
        meshes[name] = mesh
    visual_classes = {"panda/visual", "2f85/visual"}
    geoms = list(root.iter("geom"))
    visual_names = sorted({g.get("mesh") for g in geoms if g.get("class") in visual_classes and g.get("mesh")})
    scales = {
        meshes[n].get("file"): (0.001 if meshes[n].get("class") == "2f85" else 1.0) for n in visual_names
    }
    reduced = reduced_visual_meshes(scales)
    for name in visual_names:
        original = meshes[name]
        copy = ET.SubElement(asset, "mesh", {k: v for k, v in original.attrib.items() if k not in ("name", "file")})
        copy.set("name", f"{name}_visual")
        copy.set("file", str(reduced / Path(original.get("file")).with_suffix(".obj")))
    for geom in geoms:
        if geom.get("class") in visual_classes and geom.get("mesh"):
            geom.set("mesh", f"{geom.get('mesh')}_visual")
    used = {g.get("mesh") for g in root.iter("geom") if g.get("mesh")}
    for name, mesh in meshes.items():
        if name not in used:
            asset.remove(mesh)
        else:
            mesh.set("file", str(assets / mesh.get("file")))
    inertials = load_inertials(reduced)
    for body in root.iter("body"):
        if body.find("inertial") is None and body.get("name") in inertials:
            # Pin the inertial compiled from the original meshes (reduced visual meshes would shift it).
            values = inertials[body.get("name")]
            attrib = {key: " ".join(f"{v:.10g}" for v in np.atleast_1d(values[key])) for key in values}
            body.insert(0, ET.Element("inertial", attrib))
        if body.get("name") == "attachment":
            ET.SubElement(body, "camera", {"name": "wrist", "pos": "-0.05 0.015 0", "fovy": "60", "quat": "0 1 -1 0"})
    return root


def build_model(image_size: int, timestep: float) -> mujoco.MjModel:
    """Compiles the scene.

    Args:
        image_size: offscreen buffer size, pixels (>= every rendered camera's height and width).
        timestep: physics timestep, s.

    Raises:
        RuntimeError: gym-hil is missing. ValueError: MuJoCo cannot compile the scene.
    """
    robot = _robot_tree(gym_hil_assets_dir())
    task = ET.fromstring(_task_xml(image_size, timestep))
    # The robot's elements first, so that its joints own qpos/dof addresses 0..; then the task's.
    for child in list(task):
        robot.append(child)
    return mujoco.MjModel.from_xml_string(ET.tostring(robot, encoding="unicode"))


def _subtree_bodies(model: mujoco.MjModel, root_body: int) -> list[int]:
    return [b for b in range(model.nbody) if _is_descendant(model, b, root_body)]


def _is_descendant(model: mujoco.MjModel, body: int, ancestor: int) -> bool:
    while body != 0:
        if body == ancestor:
            return True
        body = int(model.body_parentid[body])
    return ancestor == 0


def _collidable_geoms(model: mujoco.MjModel, bodies: list[int]) -> np.ndarray:
    ids = [
        g
        for g in range(model.ngeom)
        if int(model.geom_bodyid[g]) in bodies and (model.geom_contype[g] or model.geom_conaffinity[g])
    ]
    return np.asarray(ids, dtype=np.int64)


def scene_ids(model: mujoco.MjModel) -> SceneIds:
    """Looks up every id the environment needs in a model made by `build_model`."""

    def body(name: str) -> int:
        return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name))

    def geom(name: str) -> int:
        return int(mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_GEOM, name))

    arm = [model.joint(name).id for name in ARM_JOINTS]
    bin_body, obstacle_body = body("bin"), body("obstacle")
    environment = [geom("table")]
    environment += [g for g in range(model.ngeom) if int(model.geom_bodyid[g]) in (bin_body, obstacle_body)]

    def finger(side: str) -> np.ndarray:
        bodies = [b for b in range(model.nbody) if model.body(b).name.startswith(f"{side}_")]
        return _collidable_geoms(model, bodies)

    cube_joint = model.joint("cube").id
    return SceneIds(
        arm_qpos=np.asarray([model.jnt_qposadr[j] for j in arm]),
        arm_dof=np.asarray([model.jnt_dofadr[j] for j in arm]),
        arm_actuators=np.asarray([model.actuator(f"actuator{i}").id for i in range(1, 8)]),
        gripper_actuator=int(model.actuator("fingers_actuator").id),
        gripper_driver_qpos=int(model.jnt_qposadr[model.joint("right_driver_joint").id]),
        pinch_site=int(model.site("pinch").id),
        cube_body=body("cube"),
        cube_geom=geom("cube"),
        cube_qpos=int(model.jnt_qposadr[cube_joint]),
        cube_dof=int(model.jnt_dofadr[cube_joint]),
        bin_body=bin_body,
        obstacle_body=obstacle_body,
        obstacle_geom=geom("obstacle"),
        table_geom=geom("table"),
        robot_geoms=_collidable_geoms(model, _subtree_bodies(model, body("link1"))),
        environment_geoms=np.asarray(sorted(environment), dtype=np.int64),
        left_finger_geoms=finger("left"),
        right_finger_geoms=finger("right"),
        left_pad_geom=geom("left_pad1"),
        right_pad_geom=geom("right_pad1"),
        cameras={name: int(model.camera(name).id) for name in CAMERA_NAMES},
    )
