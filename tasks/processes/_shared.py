"""What the geometry processes share: the loading policy, output names, small helpers.

`load_input`: readers built on native libraries run in a child process, so a file
that crashes OpenCASCADE, OpenUSD or ufbx fails its job instead of the Ray worker,
and that child may open files in the job's scratch folder only.
The module name starts with `_`, so the registry does not offer it as a process.
"""

from __future__ import annotations

import re
from pathlib import Path

ISOLATED_FORMATS = frozenset(
    {"step", "stp", "iges", "igs", "brep", "fbx", "usd", "usda", "usdc", "usdz", "ply"}
)
"""Extensions read in a child process. Their readers are native code (OCCT, OpenUSD, ufbx)
or have crashed native parsers before (PLY fuzz files); the child costs about 0.8 s, a
fraction of what a CAD read takes. The other readers are numpy and Python, read in place."""

_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,99}")


def load_input(path: str | Path):
    """Read an uploaded model into a `Scene`: native readers in a child process, others here.

    Raises `UnsupportedFormatError` listing what can be read for an unknown extension,
    and the readers' one-line `ReadError` (naming the file and format) otherwise.
    """
    from tasks.scratch import current_folder
    from tasks.steps.errors import UnsupportedFormatError
    from tasks.steps.io import load, load_isolated, readable_extensions

    path = Path(path)
    extension = path.suffix.lower().lstrip(".")
    readable = readable_extensions()
    if extension not in readable:
        shown = f"'.{extension}'" if extension else "(no extension)"
        raise UnsupportedFormatError(
            f"unsupported format {shown} for '{path.name}'; this server reads {', '.join(readable)}"
        )
    if extension in ISOLATED_FORMATS:
        # the reader child may open files in the job's folder only (Landlock)
        return load_isolated(path, confine_to=current_folder())
    return load(path)


def glb_bytes(scene) -> bytes:
    """The scene as one GLB file's bytes, for child tasks that send files back by value."""
    import tempfile

    from tasks.steps.io import save

    with tempfile.TemporaryDirectory(prefix="glb-") as folder:
        path = Path(folder) / "scene.glb"
        save(scene, path)
        return path.read_bytes()


def describe_scene(scene) -> str:
    """``as1-oc-214.stp (STEP): 18 part(s), 6,544 triangles``, for progress steps."""
    from tasks.steps.io.common import format_name

    parts = len(scene.trimesh_scene.graph.nodes_geometry)
    return (
        f"{scene.source_name} ({format_name(scene.source_format)}): "
        f"{parts:,} part(s), {scene.triangle_count:,} triangles"
    )


def output_extension(value) -> str:
    """`params.extension` checked against the writers; raises UnsupportedFormatError."""
    from tasks.steps.errors import OptionsError, UnsupportedFormatError
    from tasks.steps.io import writable_extensions

    if not isinstance(value, str) or not value.strip():
        raise OptionsError(f"params.extension must be a format name such as 'glb', got {value!r}")
    extension = value.strip().lstrip(".").lower()
    writable = writable_extensions()
    if extension not in writable:
        raise UnsupportedFormatError(
            f"unsupported format '.{extension}' for params.extension; "
            f"this server writes {', '.join(writable)}"
        )
    return extension


def output_stem(value, name: str = "filename") -> str:
    """`params.<name>` as a safe base name, any model extension removed; raises OptionsError."""
    from tasks.steps.errors import OptionsError
    from tasks.steps.io import readable_extensions, writable_extensions

    if not isinstance(value, str) or not _STEM.fullmatch(value.strip()):
        raise OptionsError(
            f"params.{name} must be 1-100 letters, digits, spaces or '_ . + -' starting with "
            f"a letter or digit, got {value!r}"
        )
    stem = value.strip()
    suffix = Path(stem).suffix.lower().lstrip(".")
    if suffix and suffix in {*readable_extensions(), *writable_extensions()}:
        stem = stem[: -len(suffix) - 1]
    if not stem:
        raise OptionsError(f"params.{name} needs a name before the extension, got {value!r}")
    return stem
