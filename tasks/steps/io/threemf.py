"""3MF in and out (the 3D-printing package): named objects placed by build items.

trimesh (5.2) reads the core spec (objects, components, build transforms and the
model's unit, kept in the scene's metadata; not base materials) and writes meshes
with their names and transforms.
"""

from __future__ import annotations

from pathlib import Path

from tasks.steps.io.common import load_with_trimesh
from tasks.steps.io.options import LoadOptions, SaveOptions
from tasks.steps.scene import Scene


def read_3mf(path: Path, options: LoadOptions) -> Scene:
    """Read a .3mf package into a Scene (one node per build item and component)."""
    return Scene(trimesh_scene=load_with_trimesh(path, "3mf"))


def write_3mf(scene: Scene, path: Path, options: SaveOptions) -> list[Path]:
    """Write the scene's meshes and transforms as a .3mf package."""
    from trimesh.exchange.threemf import export_3MF

    path.write_bytes(export_3MF(scene.trimesh_scene))
    return [path]


READERS = {"3mf": read_3mf}
WRITERS = {"3mf": write_3mf}
