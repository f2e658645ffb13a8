"""Options for reading and writing files: one `LoadOptions` and one `SaveOptions` for every format.

Each reader and writer picks the fields it understands and ignores the rest, so a
process can pass the same options whatever file the user uploads.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tasks.steps.tessellate import TESSELLATE_DEFAULTS, TessellateOptions


@dataclass(frozen=True)
class LoadOptions:
    """How a file becomes a `Scene`."""

    tessellation: TessellateOptions = field(default=TESSELLATE_DEFAULTS)
    """How CAD B-reps (STEP, IGES, BREP) are cut into triangles. Default: ``medium`` preset."""

    format: str | None = None
    """Reader to use (``"stl"``, ``"step"``, ...) instead of the file extension. Default None."""

    read_pmi: bool = True
    """Read STEP AP242 dimensions, tolerances and saved views into ``scene.facts``. Default
    True; False skips OCCT's GD&T transfer, which is slow on heavily annotated parts."""

    read_metadata: bool = True
    """Read user-defined attributes (STEP property definitions) into ``scene.facts``. Default
    True."""

    input_unit: float | None = None
    """Metres per unit of the file, overriding what it declares (0.001: millimetres). Default
    None: the file's own unit, else its format's (metres for OBJ, STL, PLY, OFF)."""

    up_axis: str | None = None
    """``"x"``, ``"y"`` or ``"z"``: the file's up axis, overriding what it declares. Default
    None: the file's own, else its format's convention (Z for CAD, STL and 3MF)."""


LOAD_DEFAULTS = LoadOptions()


@dataclass(frozen=True)
class SaveOptions:
    """How a `Scene` becomes one or more files."""

    format: str | None = None
    """Writer to use (``"glb"``, ``"usdz"``, ...) instead of the file extension. Default None."""

    draco: bool = False
    """Compress GLB/glTF geometry with KHR_draco_mesh_compression. Default False: draco
    shrinks geometry 5-10x but viewers need a decoder and vertex order may change."""

    output_unit: float | None = None
    """Metres per unit to write formats that declare none (OBJ, STL, PLY, OFF) and USD
    (which declares it in ``metersPerUnit``). Default None: the source file's unit. glTF
    is always metres, 3MF millimetres."""

    include_normals: bool = True
    """Write vertex normals where the format has them. Default True."""

    blender_executable: str | None = None
    """Path to a Blender executable used to write FBX (no maintained Python FBX writer
    exists). Default None: FBX export raises a clear error. The server passes its
    configured path here; the toolbox reads no environment."""

    blender_timeout: float = 300.0
    """Seconds Blender may take to write an FBX before it is stopped. Default 300."""


SAVE_DEFAULTS = SaveOptions()
