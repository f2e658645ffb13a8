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

    lod_tessellations: tuple[TessellateOptions, ...] = ()
    """Further tessellations of CAD B-reps made in the same read, each a `Scene` (same tree,
    names and materials) in ``scene.lods`` in this order; mesh formats ignore it. Default
    (): none."""

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

    max_points: int | None = None
    """Keep at most this many points of a point-cloud file (E57, LAS/LAZ, PTS, XYZ),
    chosen while it is streamed so a huge scan never sits in memory whole; an E57's
    scans share it by their sizes. Default None: every point."""

    subsample: str = "random"
    """How `max_points` are chosen: ``"random"`` (exactly that many, uniformly, so density
    stays as scanned) or ``"voxel"`` (one point per cell of a grid coarsened until at most
    that many remain: even spacing, between about half of and `max_points`). Default
    ``"random"``."""


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

    compression: str = "none"
    """GLB/glTF geometry compression: ``none``, ``meshopt`` (EXT_meshopt_compression: fast
    to decode, three.js/Babylon/gltf-transform read it) or ``draco``
    (KHR_draco_mesh_compression, same as ``draco=True``). Default ``none``."""

    quantize: bool | None = None
    """GLB/glTF attributes as integers, as gltfpack's defaults (KHR_mesh_quantization:
    positions int16 on a grid of 1/16,383 of the scene's extent, normals 8 bits, UVs 12
    bits of their material's range through KHR_texture_transform). Default None: on with
    ``meshopt``, off otherwise (draco quantizes on its own)."""

    max_texture_size: int | None = None
    """GLB/glTF textures larger than this many pixels on their long side are downscaled,
    aspect kept. Default None: as they are."""

    texture_format: str = "keep"
    """GLB/glTF texture encoding: ``keep``, ``webp`` (EXT_texture_webp, 25-35 % of PNG's
    size) or ``ktx2`` (KHR_texture_basisu, stays compressed on the GPU: ETC1S colour maps,
    UASTC normal and data maps, mipmapped; needs Binomial's ``basisu`` encoder, see
    `basisu_executable`). Default ``keep``."""

    basisu_executable: str | None = None
    """Path of the ``basisu`` encoder for ``texture_format="ktx2"``. Default None:
    ``basisu`` on PATH, else the copy scripts/setup.sh installs in ``.tools/``; without
    either, KTX2 output raises a clear OptionsError. The server passes ``PIXYZ_BASISU``."""


SAVE_DEFAULTS = SaveOptions()
