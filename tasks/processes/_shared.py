"""What the geometry processes share: the loading policy, output names, small helpers.

`load_input`: readers built on native libraries (the registry's `isolated` formats)
run in a child process, so a file that crashes OpenCASCADE, OpenUSD or ufbx fails
its job instead of the Ray worker, and that child may open files in the job's
scratch folder only.
The module name starts with `_`, so the registry does not offer it as a process.
"""

from __future__ import annotations

from pathlib import Path


def load_input(path: str | Path, options=None):
    """Read an uploaded model into a `Scene`: native readers in a child process, others here.
    `options` (`LoadOptions`, e.g. from `ModelParams.load_options()`) say how.

    Raises `UnsupportedFormatError` listing what can be read for an unknown extension,
    and the readers' one-line `ReadError` (naming the file and format) otherwise.
    """
    from tasks.sandbox.scratch import current_folder
    from tasks.steps.io import load, load_isolated
    from tasks.steps.io.registry import is_isolated, readable_extensions, unsupported_format

    path = Path(path)
    extension = path.suffix.lower().lstrip(".")
    if extension not in readable_extensions():
        raise unsupported_format(path)
    if is_isolated(extension):
        # the reader child may open files in the job's folder only (Landlock)
        return load_isolated(path, options, confine_to=current_folder())
    return load(path, options)


def glb_bytes(scene) -> bytes:
    """The scene as one GLB file's bytes, for child tasks that send files back by value."""
    import tempfile

    from tasks.steps.io import save

    with tempfile.TemporaryDirectory(prefix="glb-") as folder:
        path = Path(folder) / "scene.glb"
        save(scene, path)
        return path.read_bytes()


def frames(scene, extension: str, options=None) -> dict:
    """The result's ``source_unit`` and ``output_unit``: each ``{"unit": "mm",
    "metres_per_unit": 0.001, "up_axis": "z"}``, for the file read and the file written."""
    from tasks.steps.io import output_frame
    from tasks.steps.units import describe_frame

    return {
        "source_unit": describe_frame(scene.source_unit or 1.0, scene.source_up_axis or "y"),
        "output_unit": describe_frame(*output_frame(scene, extension, options)),
    }


def describe_scene(scene) -> str:
    """``as1-oc-214.stp (STEP): 18 part(s), 6,544 triangles``, for progress steps."""
    from tasks.steps.io.common import format_name, geometry_counts

    parts = len(scene.trimesh_scene.graph.nodes_geometry)
    _, points = geometry_counts(scene.trimesh_scene)
    return (
        f"{scene.source_name} ({format_name(scene.source_format)}): "
        f"{parts:,} part(s), {scene.triangle_count:,} triangles"
    ) + (f", {points:,} points" if points else "")
