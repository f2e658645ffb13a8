"""What every process's `Params` model shares: the base class, reused field types, the errors.

A process declares `class Params(ProcessParams)` beside its `main`: typed fields with
bounds, defaults and a one-line description each (the "defaults object"). The API
validates a job's `params` against it before anything is stored (a 400 naming each
field), `GET /processes/{name}` publishes its JSON Schema, and `main` reads them typed:
`p = Params.model_validate(params)`. Names a model does not declare are kept and the job
warns about them, as the PiXYZ API always did; a process that wants them refused sets
`model_config = ConfigDict(extra="forbid")`.

The module name starts with `_`, so the registry does not offer it as a process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.+-]{0,99}")


class ProcessParams(BaseModel):
    """Base of every `Params`: exact JSON types (no "512" for 512), unknown names kept."""

    model_config = ConfigDict(extra="allow", strict=True, frozen=True)


def as_params_model(candidate) -> type[BaseModel] | None:
    """`candidate` (a module's `Params`) when it is a pydantic model class, else None."""
    return candidate if isinstance(candidate, type) and issubclass(candidate, BaseModel) else None


def _output_extension(value: str) -> str:
    from tasks.steps.io.registry import unsupported_format, writable_extensions

    extension = value.strip().lstrip(".").lower()
    if extension not in writable_extensions():
        raise ValueError(str(unsupported_format(extension, "write")))  # the registry's words
    return extension


def _output_stem(value: str) -> str:
    from tasks.steps.io.registry import readable_extensions, writable_extensions

    if not _STEM.fullmatch(value.strip()):
        raise ValueError(
            "must be 1-100 letters, digits, spaces or '_ . + -' starting with a letter or digit,"
            f" got {value!r}"
        )
    stem = value.strip()
    suffix = Path(stem).suffix.lower().lstrip(".")
    if suffix and suffix in {*readable_extensions(), *writable_extensions()}:
        stem = stem[: -len(suffix) - 1]
    if not stem:
        raise ValueError(f"needs a name before the extension, got {value!r}")
    return stem


OutputExtension = Annotated[
    str,
    Field(
        min_length=1, description="Output format, e.g. `glb` (with or without the dot, any case)"
    ),
    AfterValidator(_output_extension),
]
"""A format this server writes; normalised to lower case without the dot."""

OutputStem = Annotated[
    str,
    Field(description="Base name of the output file"),
    AfterValidator(_output_stem),
]
"""1-100 letters, digits, spaces or `_ . + -`, starting with a letter or digit; a trailing
model extension is dropped (`part.step` gives `part`)."""


LengthUnit = Literal["um", "mm", "cm", "dm", "m", "km", "in", "ft", "yd"]
"""A length unit by its symbol; `tasks.steps.units.UNITS` gives each one in metres."""


TessellationPreset = Literal["low", "medium", "high", "very_high"]
"""`tasks.steps.tessellate.PRESETS` by name, coarsest first."""


class TessellationParams(BaseModel):
    """Explicit CAD tessellation tolerances; a field left out takes the preset's value."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    preset: TessellationPreset = Field(
        "medium", description="The preset that fills every tolerance not given here"
    )
    max_sag: float | None = Field(
        None,
        gt=0,
        description="Largest distance between a triangle and the exact surface, in"
        " millimetres (OCCT reads CAD in mm); instead of the preset's, for every part",
    )
    relative_sag: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Largest distance between a triangle and the exact surface as a fraction"
        " of the model's bounding-box diagonal (0.001: 1 mm on a 1 m model)",
    )
    max_angle: float | None = Field(
        None,
        gt=0,
        le=90,
        description="Largest angle in degrees between the normals of neighbouring triangles on"
        " curved faces",
    )
    normals: bool = Field(True, description="Write each vertex's exact surface normal")
    uvs: bool = Field(
        False, description="Texture coordinates from each face's surface parameters, in [0, 1]"
    )

    @model_validator(mode="before")
    @classmethod
    def _known_limits(cls, value):
        if isinstance(value, dict) and "max_length" in value:
            raise ValueError(
                "max_length is not supported: OCCT's mesher (BRepMesh) has no largest edge"
                " length; use max_sag or max_angle"
            )
        if isinstance(value, dict) and value.get("max_sag") and value.get("relative_sag"):
            raise ValueError("give max_sag or relative_sag, not both")
        return value

    def options(self):
        """The `TessellateOptions` these tolerances ask for."""
        from tasks.steps.tessellate import TessellateOptions

        return TessellateOptions(
            preset=self.preset,
            max_sag=self.max_sag,
            relative_sag=self.relative_sag,
            max_angle=self.max_angle,
            normals=self.normals,
            uvs=self.uvs,
        )


Tessellation = Annotated[
    Annotated[TessellationPreset, Tag("preset")] | Annotated[TessellationParams, Tag("tolerances")],
    Discriminator(lambda value: "preset" if isinstance(value, str) else "tolerances"),
    Field(
        description="How CAD B-reps (STEP, IGES, BREP) become triangles: a preset (`low`,"
        " `medium`, `high`, `very_high`, each about twice the triangles of the one before) or"
        ' `{"max_sag": 0.05, "max_angle": 15, ...}`; other formats ignore it'
    ),
]
"""A preset name or `TessellationParams`; `tessellate_options` turns either into options."""


def tessellate_options(value: str | TessellationParams):
    """`TessellateOptions` for a `Tessellation` param."""
    from tasks.steps.tessellate import TessellateOptions

    return TessellateOptions(value) if isinstance(value, str) else value.options()


class ModelParams(ProcessParams):
    """Base of the processes that read an uploaded model: what its coordinates mean."""

    input_unit: LengthUnit | None = Field(
        None,
        description="The unit the file's coordinates are in, overriding what it declares"
        " (mm, cm, m, in, ...); default: the file's own unit, else metres for OBJ, STL, PLY"
        " and OFF, millimetres for STEP, IGES and 3MF, centimetres for FBX and USD",
    )
    up_axis: Literal["auto", "x", "y", "z"] = Field(
        "auto",
        description="The file's up axis, overriding what it declares; auto: the file's own,"
        " else Z for CAD, STL and 3MF and Y for the rest. Outputs are turned +Y up for glTF",
    )
    tessellation: Tessellation = "medium"
    max_points: int | None = Field(
        None,
        ge=1,
        description="Keep at most this many points of a point cloud (E57, LAS/LAZ, PTS, XYZ),"
        " chosen while the file is streamed; default: every point",
    )
    subsample: Literal["random", "voxel"] = Field(
        "random",
        description="How `max_points` are chosen: `random` (uniformly, density as scanned) or"
        " `voxel` (one point per grid cell: even spacing, at most `max_points`)",
    )

    def load_options(self):
        """The `LoadOptions` these params ask for."""
        from tasks.steps.io import LoadOptions
        from tasks.steps.units import UNITS

        return LoadOptions(
            input_unit=UNITS[self.input_unit] if self.input_unit else None,
            up_axis=None if self.up_axis == "auto" else self.up_axis,
            tessellation=tessellate_options(self.tessellation),
            max_points=self.max_points,
            subsample=self.subsample,
        )


OutputUnit = Annotated[
    LengthUnit | None,
    Field(
        description="The unit to write OBJ, STL, PLY, OFF and USD in (mm, cm, m, in, ...);"
        " default: the source file's unit. glTF and FBX are always metres, 3MF millimetres"
    ),
]
"""`SaveOptions.output_unit` by its symbol; None keeps the source's unit."""


MergeMode = Annotated[
    Literal["none", "by_material", "all"],
    Field(
        description="Join meshes before writing: `none` keeps every part, its name, its place"
        " in the tree and its instancing (a part placed N times stays one mesh placed N"
        " times); `by_material` gives one mesh per material, `all` one mesh, placements"
        " baked in"
    ),
]
"""`tasks.steps.merge.MergeOptions.mode`, or `none` to skip merging."""


Compression = Annotated[
    Literal["none", "meshopt", "draco"],
    Field(
        description="glTF geometry compression: `meshopt` (EXT_meshopt_compression, with"
        " KHR_mesh_quantization: about 4-8x smaller, fast to decode) or `draco`"
        " (KHR_draco_mesh_compression); other formats ignore it"
    ),
]
"""`SaveOptions.compression`."""

MaxTextureSize = Annotated[
    int | None,
    Field(
        ge=1,
        le=16384,
        description="glTF textures larger than this many pixels on their long side are"
        " downscaled, aspect kept; default: as they are",
    ),
]
"""`SaveOptions.max_texture_size`."""

TextureFormat = Annotated[
    Literal["keep", "webp", "ktx2"],
    Field(
        description="glTF texture encoding: `keep`, `webp` (EXT_texture_webp) or `ktx2`"
        " (KHR_texture_basisu, stays compressed on the GPU: ETC1S colour maps, UASTC normal"
        " and data maps, mipmapped; fails on a server without the basisu encoder)"
    ),
]
"""`SaveOptions.texture_format`."""


class WebPackagingParams(ProcessParams):
    """The web-packaging fields of a process that writes glTF (mix into its `Params`)."""

    compression: Compression = "none"
    max_texture_size: MaxTextureSize = None
    texture_format: TextureFormat = "keep"

    def web_save_options(self) -> dict:
        """The `SaveOptions` keywords these params ask for."""
        return {
            "compression": self.compression,
            "max_texture_size": self.max_texture_size,
            "texture_format": self.texture_format,
        }


def params_text(schema: dict | None) -> str:
    """The `Params:` list a docstring would have, written from the model's JSON Schema."""
    if not schema:
        return ""
    if not schema.get("properties"):  # a free-form model: its docstring says what it takes
        return f"\n\nParams: {schema['description']}" if schema.get("description") else ""
    lines = ["", "", "Params:"]
    if schema.get("description"):
        lines.append(schema["description"])
    for name, prop in schema["properties"].items():
        lines.append(f"- `{name}` ({_kind(prop)}{_default(prop)}): {prop.get('description', '')}")
    return "\n".join(lines).rstrip(": ")


def _kind(prop: dict) -> str:
    options = [p for p in prop.get("anyOf", [prop]) if p.get("type") != "null"]
    prop = {**prop, **(options[0] if options else {})}
    if "enum" in prop:
        return " or ".join(f'"{value}"' for value in prop["enum"])
    kind = prop.get("type", "any")
    if kind == "array":
        kind = f"list of ({_kind(prop.get('items', {}))})"
    low = prop.get("minimum", prop.get("exclusiveMinimum"))
    high = prop.get("maximum", prop.get("exclusiveMaximum"))
    if low is not None or high is not None:
        left = "[" if "minimum" in prop else "("
        right = "]" if "maximum" in prop else ")"
        kind += f" in {left}{_number(low)}, {_number(high)}{right}"
    return kind


def _number(value) -> str:
    if value is None:
        return ""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _default(prop: dict) -> str:
    if "default" not in prop or prop["default"] is None:
        return ""
    value = prop["default"]
    shown = json.dumps(value) if not isinstance(value, float) else f"{value:g}"
    return f", default {shown}"


def field_errors(exc: ValidationError, prefix: str = "params") -> str:
    """A ValidationError as one line naming each field: `params.width: ... (got 5000)`."""
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(part) for part in (prefix, *error["loc"]))
        message = error["msg"].removeprefix("Value error, ")
        # Our own checks (value_error) say what they got; pydantic's do not.
        plain = error["type"] in ("missing", "value_error")
        shown = "" if plain else f" (got {_short(error.get('input'))})"
        problems.append(f"{where}: {message}{shown}")
    return "; ".join(problems)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
