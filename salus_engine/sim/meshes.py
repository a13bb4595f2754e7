"""Reduced visual meshes of the Panda and the Robotiq 2F-85, derived on first use into a cache.

The robot's meshes ship inside the installed `gym-hil` wheel (MuJoCo Menagerie's Franka Panda,
Apache-2.0; Robotiq 2F-85, BSD-2-Clause; see NOTICE). Rendering cost grows with the number of
triangles (~198k faces in the originals), so the visual meshes are simplified by vertex clustering
(every vertex snapped to the mean of its cell in a regular grid, collapsed faces dropped) and
written as OBJ files under the cache directory. Collision meshes are never reduced: physics uses
the originals. Bodies whose mass comes from their geoms (no `<inertial>` in panda.xml) would change
mass with a reduced visual mesh, so the cache also records every body's inertial as compiled from
the original files (`inertials.json`), and the scene pins them. Nothing here is copied into the
repository.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

CLUSTER_CELL_M = 0.006
"""Grid cell of the vertex clustering, m. 6 mm keeps every link's silhouette at 256x256 pixels (one
pixel covers ~3-4 mm at the front camera's distance) and cuts the rendered faces from ~198k to ~45k."""

MIN_FACES_TO_REDUCE = 600
"""Meshes with fewer faces than this are copied as they are (reducing them gains nothing)."""

_ALGORITHM = "vertex-clustering-1"
INERTIALS_FILE = "inertials.json"
"""Name of the cache file: body name -> {"mass", "pos", "quat", "diaginertia"} of the original model."""


def gym_hil_assets_dir() -> Path:
    """The `assets` folder of the installed `gym_hil` package (holds `panda.xml` and meshes).

    Raises:
        RuntimeError: gym-hil is not installed.
    """
    try:
        import gym_hil
    except ImportError:
        raise RuntimeError(
            "the gym-hil package (robot assets) is not installed; run scripts/ensure-env to install it"
        ) from None
    return Path(gym_hil.__file__).resolve().parent / "assets"


def cache_root() -> Path:
    """Cache folder of derived files: `$SALUS_CACHE_DIR`, else `$XDG_CACHE_HOME/salus`, else `~/.cache/salus`."""
    if os.environ.get("SALUS_CACHE_DIR"):
        return Path(os.environ["SALUS_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salus"


def read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Reads a triangle mesh from an OBJ (v/f lines) or a binary STL file.

    Returns:
        vertices (V, 3) float64 in the file's units, faces (F, 3) int64 (0-based).

    Raises:
        ValueError: the file is neither a triangle OBJ nor a binary STL.
    """
    data = path.read_bytes()
    if path.suffix.lower() == ".stl":
        count = int(np.frombuffer(data, dtype="<u4", count=1, offset=80)[0])
        if len(data) != 84 + 50 * count:
            raise ValueError(f"{path} is not a binary STL; reinstall gym-hil")
        record = np.dtype([("normal", "<f4", 3), ("tri", "<f4", (3, 3)), ("attr", "<u2")])
        tris = np.frombuffer(data, dtype=record, count=count, offset=84)["tri"].reshape(-1, 3)
        return tris.astype(np.float64), np.arange(3 * count, dtype=np.int64).reshape(-1, 3)
    verts: list[str] = []
    faces: list[str] = []
    for line in data.decode("ascii", errors="replace").splitlines():
        if line.startswith("v "):
            verts.append(line[2:])
        elif line.startswith("f "):
            faces.append(line[2:])
    vertices = np.array([v.split()[:3] for v in verts], dtype=np.float64)
    try:
        index = np.array([[c.split("/")[0] for c in f.split()] for f in faces], dtype=np.int64)
    except ValueError:
        raise ValueError(f"{path} has non-triangle faces; reinstall gym-hil") from None
    if index.ndim != 2 or index.shape[1] != 3:
        raise ValueError(f"{path} has non-triangle faces; reinstall gym-hil")
    return vertices, index - 1


def cluster_vertices(vertices: np.ndarray, faces: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """Simplifies a mesh by vertex clustering on a grid of `cell` (same units as `vertices`).

    Returns:
        vertices (V', 3) float64 (cell means), faces (F', 3) int64 without collapsed or repeated faces.
    """
    keys = np.floor(vertices / cell).astype(np.int64)
    _, cluster, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    cluster = cluster.reshape(-1)
    sums = np.zeros((counts.size, 3))
    np.add.at(sums, cluster, vertices)
    new_vertices = sums / counts[:, None]
    new_faces = cluster[faces]
    keep = (
        (new_faces[:, 0] != new_faces[:, 1])
        & (new_faces[:, 1] != new_faces[:, 2])
        & (new_faces[:, 0] != new_faces[:, 2])
    )
    new_faces = new_faces[keep]
    # Drop faces that repeat the same vertex triple (in any order).
    _, first = np.unique(np.sort(new_faces, axis=1), axis=0, return_index=True)
    new_faces = new_faces[np.sort(first)]
    used, remap = np.unique(new_faces, return_inverse=True)
    return new_vertices[used], remap.reshape(-1, 3)


def write_obj(path: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Writes vertices (V, 3) and 0-based faces (F, 3) as a plain OBJ file."""
    lines = [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in vertices]
    lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in faces]
    path.write_text("\n".join(lines) + "\n")


def _cache_key() -> str:
    version = importlib.metadata.version("gym-hil")
    text = f"{_ALGORITHM}|{CLUSTER_CELL_M}|{MIN_FACES_TO_REDUCE}|gym-hil={version}"
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def reduced_visual_meshes(mesh_files: dict[str, float]) -> Path:
    """Returns the cache folder holding a reduced OBJ for every given mesh file, building it once.

    Args:
        mesh_files: mesh path relative to `gym_hil_assets_dir()` -> the mesh's scale (file units to
            metres; 0.001 for the Robotiq STLs, 1.0 for the Panda OBJs), used to size the grid.

    Returns:
        A folder in which `<relative path with .obj suffix>` exists for every input mesh, and
        `INERTIALS_FILE` with the original panda.xml's compiled body inertials. Built in a temporary
        folder and renamed into place, so concurrent processes never see a partial cache.

    Raises:
        RuntimeError: gym-hil is not installed. OSError: the cache folder cannot be written.
    """
    root = cache_root() / "meshes" / _cache_key()
    names = sorted(mesh_files)
    wanted = [Path(n).with_suffix(".obj") for n in names] + [Path(INERTIALS_FILE)]
    if all((root / n).is_file() for n in wanted):
        return root
    assets = gym_hil_assets_dir()
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="build-", dir=root.parent))
    try:
        for name in names:
            vertices, faces = read_mesh(assets / name)
            if len(faces) >= MIN_FACES_TO_REDUCE:
                vertices, faces = cluster_vertices(vertices, faces, CLUSTER_CELL_M / mesh_files[name])
            out = work / Path(name).with_suffix(".obj")
            out.parent.mkdir(parents=True, exist_ok=True)
            write_obj(out, vertices, faces)
        (work / INERTIALS_FILE).write_text(json.dumps(_original_inertials(assets), indent=1))
        if all((root / n).is_file() for n in wanted):
            return root  # another process finished the same cache meanwhile; theirs is identical
        if root.exists():
            shutil.rmtree(root, ignore_errors=True)  # an incomplete cache from an interrupted build
        try:
            os.replace(work, root)
        except OSError:
            # Another process renamed its identical build into place first.
            if not all((root / n).is_file() for n in wanted):
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return root


def _original_inertials(assets: Path) -> dict[str, dict[str, list[float] | float]]:
    """Compiles the original panda.xml once and returns every named body's inertial."""
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(assets / "panda.xml"))
    out: dict[str, dict[str, list[float] | float]] = {}
    for b in range(1, model.nbody):
        out[model.body(b).name] = {
            "mass": float(model.body_mass[b]),
            "pos": [float(v) for v in model.body_ipos[b]],
            "quat": [float(v) for v in model.body_iquat[b]],
            "diaginertia": [float(v) for v in model.body_inertia[b]],
        }
    return out


def load_inertials(folder: Path) -> dict[str, dict[str, list[float] | float]]:
    """Reads `INERTIALS_FILE` from a folder made by `reduced_visual_meshes`."""
    return json.loads((folder / INERTIALS_FILE).read_text())
