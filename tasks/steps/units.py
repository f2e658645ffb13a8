"""Length units and up axes: what a scene's coordinates mean, and turning them into another frame.

Every reader records what its file declares (`Scene.unit`, metres per unit, and
`Scene.up_axis`); `io.load` turns the scene into metres and +Y up, the frame of glTF,
so every step measures in metres. `io.save` turns it into the target's convention:
glTF metres and +Y, USD the unit it declares in ``metersPerUnit`` and +Y, 3MF
millimetres and +Z, and the unitless formats (OBJ, STL, PLY, OFF) the source's own
unit and up axis unless the caller names another unit.

    to_frame(scene, unit=1.0, up_axis="y")        # in place; returns the scene

A change of frame is a similarity `C` (uniform scale times a rotation): vertices
become ``C v`` and each node transform ``C T C^-1``, so a mesh placed N times is
still stored once, and no scale node is added above the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tasks.steps.scene import Scene

UNITS: dict[str, float] = {
    "um": 1e-6,
    "mm": 0.001,
    "cm": 0.01,
    "dm": 0.1,
    "m": 1.0,
    "km": 1000.0,
    "in": 0.0254,
    "ft": 0.3048,
    "yd": 0.9144,
}
"""Length units callers may name (``params.input_unit``, ``params.output_unit``), in metres."""

UNIT_NAMES = {
    "um": "micrometre",
    "mm": "millimetre",
    "cm": "centimetre",
    "dm": "decimetre",
    "m": "metre",
    "km": "kilometre",
    "in": "inch",
    "ft": "foot",
    "yd": "yard",
}

UP_AXES = ("x", "y", "z")

# rotations that take a right-handed frame with the named axis up to the Y-up frame
# (Z-up: Z becomes Y and Y becomes -Z, as Blender's glTF exporter does; X-up: X becomes Y)
_TO_Y_UP = {
    "x": np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]),
    "y": np.eye(3),
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
}


def unit_symbol(metres: float) -> str:
    """``"mm"`` for 0.001; a unit not in `UNITS` is written in metres (``"0.5 m"``)."""
    for symbol, value in UNITS.items():
        if np.isclose(metres, value, rtol=1e-9, atol=0.0):
            return symbol
    return f"{metres:g} m"


def describe_frame(unit: float, up_axis: str) -> dict:
    """The unit and up axis as a job result shows them:
    ``{"unit": "mm", "metres_per_unit": 0.001, "up_axis": "z"}``."""
    return {"unit": unit_symbol(unit), "metres_per_unit": float(unit), "up_axis": up_axis}


def frame_matrix(unit: float, up_axis: str, to_unit: float, to_up_axis: str) -> np.ndarray:
    """The 4x4 similarity taking coordinates in (unit, up_axis) to (to_unit, to_up_axis)."""
    for axis in (up_axis, to_up_axis):
        if axis not in _TO_Y_UP:
            raise ValueError(f"up axis must be one of {', '.join(UP_AXES)}, got {axis!r}")
    if not (unit > 0 and to_unit > 0):
        raise ValueError(f"units must be positive metres, got {unit!r} and {to_unit!r}")
    matrix = np.eye(4)
    rotation = _TO_Y_UP[to_up_axis].T @ _TO_Y_UP[up_axis]
    matrix[:3, :3] = rotation * (unit / to_unit)
    return matrix


def to_frame(scene: Scene, unit: float, up_axis: str) -> Scene:
    """Turn `scene` (in place) into coordinates of `unit` metres with `up_axis` up and return
    it. The scene's own `unit` and `up_axis` must be known (as after `io.load`)."""
    if scene.unit is None or scene.up_axis is None:
        raise ValueError("the scene's unit and up axis are not known yet")
    change = frame_matrix(scene.unit, scene.up_axis, unit, up_axis)
    if not np.allclose(change, np.eye(4), rtol=0.0, atol=1e-15):
        _apply(scene.trimesh_scene, change)
    scene.unit, scene.up_axis = float(unit), up_axis
    return scene


def _apply(trimesh_scene, change: np.ndarray) -> None:
    """Vertices become ``C v`` and node transforms ``C T C^-1``: world placements follow."""
    inverse = np.linalg.inv(change)
    for geometry in trimesh_scene.geometry.values():
        if hasattr(geometry, "apply_transform"):
            geometry.apply_transform(change)
    graph = trimesh_scene.graph
    for data in graph.transforms.edge_data.values():
        matrix = data.get("matrix")
        if matrix is None:
            continue
        data["matrix"] = change @ np.asarray(matrix, dtype=np.float64) @ inverse
    graph._cache.clear()
    graph.transforms._hash = None
    trimesh_scene._cache.clear()


__all__ = ["UNITS", "UNIT_NAMES", "UP_AXES", "describe_frame", "frame_matrix", "to_frame"]
