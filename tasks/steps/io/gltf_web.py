"""Web-ready glTF packaging, applied to the GLB trimesh exports, as gltfpack does.

Four independent stages, each a function of ``(document, views)`` where ``views`` holds
the bytes of every buffer view (buffer 0), chosen by `SaveOptions`:

* `resize_textures` / `encode_textures`: textures no larger than ``max_texture_size``,
  re-encoded as WebP (EXT_texture_webp, Pillow) or KTX2/Basis (KHR_texture_basisu,
  Binomial's ``basisu`` encoder, see `basisu`: ETC1S for colour maps, UASTC for
  normal and data maps);
* `quantize`: KHR_mesh_quantization as gltfpack's defaults, positions to int16 on the
  scene's 14-bit grid with the dequantization (a uniform scale and an offset) moved to
  the nodes, normals and tangents to 8 bits (octahedral, meshopt's filter, when meshopt
  follows), UVs to 12 bits across their material's bounds with a KHR_texture_transform
  to map them back;
* `compress_meshopt`: EXT_meshopt_compression, after reordering each primitive's
  vertices for the vertex cache and fetch (meshoptimizer's ``optimizeVertexCacheStrip``
  and ``optimizeVertexFetch``, which is what makes the codec effective), one view a
  kind of stream as gltfpack ``-cc`` lays them out.

`pack` writes the views back into one binary chunk, dropping those nothing uses, and
`compact_json` shortens the JSON. With these, ``compression="meshopt"`` output is the size
of ``gltfpack -cc``'s at the same error, short of what gltfpack gains by merging meshes
and dropping names, which this keeps.
References: https://github.com/KhronosGroup/glTF/tree/main/extensions/2.0 (the three
extensions) and gltfpack (https://github.com/zeux/meshoptimizer/tree/master/gltf).
"""

from __future__ import annotations

import io
import logging

import numpy as np

logger = logging.getLogger(__name__)

MESHOPT = "EXT_meshopt_compression"
QUANTIZATION = "KHR_mesh_quantization"
WEBP = "EXT_texture_webp"
BASISU = "KHR_texture_basisu"
TEXTURE_TRANSFORM = "KHR_texture_transform"

_ARRAY_BUFFER = 34962
_ELEMENT_ARRAY_BUFFER = 34963
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {5120: "i1", 5121: "u1", 5122: "i2", 5123: "u2", 5125: "u4", 5126: "f4"}
_SRGB_SLOTS = ("baseColorTexture", "emissiveTexture")
"""Material slots whose images hold colours (sRGB); every other map holds data (linear)."""


# -- container ---------------------------------------------------------------------------


def unpack(document: dict, binary: bytes) -> list[bytes]:
    """The bytes of every buffer view (all in buffer 0, as trimesh writes them)."""
    views = []
    for view in document.get("bufferViews", []):
        start = view.get("byteOffset", 0)
        views.append(binary[start : start + view["byteLength"]])
    return views


def pack(document: dict, views: list[bytes]) -> bytes:
    """One binary chunk of the views still referenced; meshopt views point into a fallback
    buffer 1 that holds no bytes (their data lives compressed in buffer 0)."""
    views = _prune(document, views)
    packed = bytearray()
    fallback = 0
    for view, data in zip(document.get("bufferViews", []), views, strict=True):
        packed += b"\0" * (-len(packed) % 4)
        compressed = view.get("extensions", {}).get(MESHOPT)
        if compressed is not None and "mode" in compressed:  # not a filter yet to compress
            compressed.update(buffer=0, byteOffset=len(packed), byteLength=len(data))
            fallback += -fallback % 4
            view.update(buffer=1, byteOffset=fallback)
            fallback += view["byteLength"]
        else:
            view.update(buffer=0, byteOffset=len(packed), byteLength=len(data))
        packed += data
    buffers = [{"byteLength": len(packed)}]
    if fallback:
        buffers.append({"byteLength": fallback, "extensions": {MESHOPT: {"fallback": True}}})
    document["buffers"] = buffers
    compact_json(document)
    return bytes(packed)


def compact_json(document: dict) -> None:
    """Shorten the JSON chunk as gltfpack writes it, without changing what it means: drop
    properties at their specified defaults (offsets 0, triangle mode, opaque single-sided
    materials, ...) and the optional bounds of indices, write whole numbers as integers and
    float32 values as their shortest repr, and node rotations and scales (matrix columns
    0-2) to 9 significant digits, float32's precision (Python writes 17). Translations keep
    12 digits: geo-referenced coordinates far from the origin must not move. For an
    assembly of hundreds of placed parts the nodes outweigh the compressed geometry."""
    for key in ("accessors", "bufferViews"):
        for item in document.get(key, []):
            if item.get("byteOffset") == 0:
                del item["byteOffset"]
    indices = set()
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            if primitive.get("mode") == 4:
                del primitive["mode"]
            if primitive.get("indices") is not None:
                indices.add(primitive["indices"])
    for index in indices:
        _drop_bounds(document["accessors"][index])
    for material in document.get("materials", []):
        for key, default in _MATERIAL_DEFAULTS.items():
            if key in material and material[key] == default:
                del material[key]
        pbr = material.get("pbrMetallicRoughness", {})
        for key, default in _PBR_DEFAULTS.items():
            if key in pbr and pbr[key] == default:
                del pbr[key]
    for node in document.get("nodes", []):
        if "matrix" in node:
            m = node["matrix"]
            node["matrix"] = [_digits(v, 9 if i < 12 else 12) for i, v in enumerate(m)]
        for key, digits in (("rotation", 9), ("scale", 9), ("translation", 12)):
            if key in node:
                node[key] = [_digits(v, digits) for v in node[key]]
    for key, value in document.items():
        document[key] = _shortest(value)


_MATERIAL_DEFAULTS = {
    "alphaMode": "OPAQUE",
    "doubleSided": False,
    "emissiveFactor": [0, 0, 0],
}
_PBR_DEFAULTS = {"baseColorFactor": [1, 1, 1, 1], "metallicFactor": 1, "roughnessFactor": 1}


def _digits(value, digits: int):
    if not isinstance(value, float) or float(np.float32(value)) == value:
        return value  # `_shortest` writes float32 values exactly
    return float(f"{value:.{digits}g}")


def _shortest(value):
    """Whole floats as ints, float32 values as float32's shortest repr (both exact), in
    everything but ``extras`` (application data, left as written)."""
    if isinstance(value, dict):
        return {k: v if k == "extras" else _shortest(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_shortest(v) for v in value]
    if isinstance(value, float) and np.isfinite(value):
        if value.is_integer() and abs(value) < 2**53:
            return int(value)
        single = np.float32(value)
        if float(single) == value:
            return float(str(single))
    return value


def _prune(document: dict, views: list[bytes]) -> list[bytes]:
    """Drop buffer views nothing references and renumber the rest."""
    from tasks.steps.io.gltf import renumber_views, view_references

    used = {holder[key] for holder, key in view_references(document)}
    old = document.get("bufferViews", [])
    remap = {index: new for new, index in enumerate(i for i in range(len(old)) if i in used)}
    document["bufferViews"] = [old[i] for i in sorted(remap)]
    kept = [views[i] for i in sorted(remap)]
    renumber_views(document, remap)
    if not document["bufferViews"]:
        document.pop("bufferViews")
    return kept


def _use_extension(document: dict, name: str, required: bool = True) -> None:
    keys = ("extensionsUsed", "extensionsRequired") if required else ("extensionsUsed",)
    for key in keys:
        names = document.setdefault(key, [])
        if name not in names:
            names.append(name)


def _read(document: dict, views: list[bytes], index: int) -> np.ndarray:
    """An accessor's values as an (count, components) array of its component type."""
    accessor = document["accessors"][index]
    width = _COMPONENTS[accessor["type"]]
    dtype = np.dtype("<" + _DTYPES[accessor["componentType"]])
    view = document["bufferViews"][accessor["bufferView"]]
    data = np.frombuffer(views[accessor["bufferView"]], dtype=np.uint8)
    stride = view.get("byteStride", width * dtype.itemsize)
    rows = np.lib.stride_tricks.as_strided(
        data[accessor.get("byteOffset", 0) :],
        shape=(accessor["count"], width * dtype.itemsize),
        strides=(stride, 1),
    )
    return np.ascontiguousarray(rows).view(dtype).reshape(accessor["count"], width)


def _write(
    document: dict,
    views: list[bytes],
    index: int,
    values: np.ndarray,
    component_type: int,
    normalized: bool = False,
    pad_to: int | None = None,
    target: int = _ARRAY_BUFFER,
) -> None:
    """Point accessor ``index`` at a new view holding ``values`` (rows padded to ``pad_to``
    components so every vertex starts on 4 bytes)."""
    accessor = document["accessors"][index]
    width = values.shape[1]
    stored = values
    if pad_to and pad_to > width:
        stored = np.zeros((len(values), pad_to), dtype=values.dtype)
        stored[:, :width] = values
    stored = np.ascontiguousarray(stored)
    view = {"buffer": 0, "byteLength": stored.nbytes, "target": target}
    if target == _ARRAY_BUFFER:
        view["byteStride"] = stored.itemsize * stored.shape[1]
    document["bufferViews"].append(view)
    views.append(stored.tobytes())
    accessor.update(bufferView=len(views) - 1, byteOffset=0, componentType=component_type)
    if ("min" in accessor or "max" in accessor) and len(values):
        # bounds must match the stored values exactly (the validator checks them)
        accessor.update(min=values.min(axis=0).tolist(), max=values.max(axis=0).tolist())
    if normalized:
        accessor["normalized"] = True
    else:
        accessor.pop("normalized", None)


# -- textures --------------------------------------------------------------------------


def texture_images(document: dict) -> tuple[set[int], set[int]]:
    """(images used as colour maps, images used as data maps) by the materials."""
    textures = document.get("textures", [])

    def source(info) -> int | None:
        if not isinstance(info, dict) or info.get("index") is None:
            return None
        texture = textures[info["index"]]
        return texture.get("source")

    colour, data = set(), set()
    for material in document.get("materials", []):
        slots = dict(material.get("pbrMetallicRoughness", {}))
        slots.update(
            {
                k: material[k]
                for k in ("normalTexture", "occlusionTexture", "emissiveTexture")
                if k in material
            }
        )
        for slot, info in slots.items():
            image = source(info)
            if image is not None:
                (colour if slot in _SRGB_SLOTS else data).add(image)
    return colour, data


def normal_images(document: dict) -> set[int]:
    """Images the materials use as normal maps."""
    textures = document.get("textures", [])
    found = set()
    for material in document.get("materials", []):
        info = material.get("normalTexture")
        if isinstance(info, dict) and info.get("index") is not None:
            source = textures[info["index"]].get("source")
            if source is not None:
                found.add(source)
    return found


def process_textures(
    document: dict,
    views: list[bytes],
    max_size: int | None,
    image_format: str,
    basisu_executable: str | None = None,
) -> int:
    """Resize embedded images to ``max_size`` (long side, aspect kept) and re-encode them as
    ``image_format`` (``keep``, ``webp`` or ``ktx2``, through ``basisu_executable`` or the
    basisu `basisu.find_basisu` finds); returns how many images changed."""
    from PIL import Image

    if image_format == "ktx2":
        from tasks.steps.io.basisu import encoder

        encode_ktx2 = encoder(basisu_executable)
    colour, _ = texture_images(document)
    normal = normal_images(document)
    images = document.get("images", [])
    # images may share a buffer view (trimesh writes identical pixels once): encode it once
    by_view: dict[int, list[int]] = {}
    for index, image in enumerate(images):
        if "bufferView" in image:
            by_view.setdefault(image["bufferView"], []).append(index)
    changed: dict[int, str] = {}
    for view_index, indices in by_view.items():
        picture = Image.open(io.BytesIO(views[view_index]))
        picture.load()
        resized = False
        if max_size and max(picture.size) > max_size:
            scale = max_size / max(picture.size)
            size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
            picture = picture.resize(size, Image.Resampling.LANCZOS)
            resized = True
        mime = images[indices[0]].get("mimeType", "image/png")
        if image_format == "webp":
            out, mime = _encode(picture, "WEBP", quality=90, method=4), "image/webp"
        elif image_format == "ktx2":
            use = "data"
            if any(index in colour for index in indices):
                use = "colour"
            elif any(index in normal for index in indices):
                use = "normal"
            out, mime = encode_ktx2(picture, use), "image/ktx2"
        elif resized:
            out = _encode(picture, "JPEG" if mime == "image/jpeg" else "PNG")
        else:
            continue
        views[view_index] = out
        document["bufferViews"][view_index]["byteLength"] = len(out)
        for index in indices:
            images[index]["mimeType"] = mime
            changed[index] = mime
    extension = {"image/webp": WEBP, "image/ktx2": BASISU}
    for texture in document.get("textures", []):
        mime = changed.get(texture.get("source"))
        if mime in extension:
            # the new image replaces the old one, so the extension is required
            texture.setdefault("extensions", {})[extension[mime]] = {
                "source": texture.pop("source")
            }
            _use_extension(document, extension[mime])
    logger.debug("textures: %d images resized or re-encoded (%s)", len(changed), image_format)
    return len(changed)


def _encode(picture, kind: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    if kind == "JPEG" and picture.mode not in ("RGB", "L"):
        picture = picture.convert("RGB")
    picture.save(buffer, format=kind, **kwargs)
    return buffer.getvalue()


# -- KHR_mesh_quantization ---------------------------------------------------------------


_POSITION_BITS = 14
"""Positions on a grid of 2^14 - 1 steps across the scene's largest extent (gltfpack's
``-vp`` default), stored in int16: the unused high bits, and the fewer still of parts
smaller than the scene, make meshopt's delta coding smaller."""

_UV_BITS = 12
"""UVs: 12 bits across their material's UV bounds (gltfpack's ``-vt`` default): a texel of
a 4096-pixel texture spanning them."""

_NORMAL_BITS = 8
"""Normals and tangents: 8 bits a component (gltfpack's ``-vn`` default); octahedral
8 bits is about 1 degree off at worst."""


def quantize(
    document: dict, views: list[bytes], warnings: list[str], octahedral: bool = False
) -> int:
    """Store positions, normals, tangents and UVs as integers; returns the meshes quantized.

    Positions become int16 steps from the centre of each mesh's bounds, the step that of
    gltfpack's grid: 1/16,383 of the placed scene's largest extent, in the mesh's units
    (`_position_steps`), so a part keeps the precision its place in the scene shows and
    small parts take few bits. Every node placing the mesh takes that dequantization
    transform, a uniform scale and an offset (a node with children passes its mesh to a
    new child node). Skinned or morphed meshes keep float positions. Normals
    and tangents take 8 bits a component; with ``octahedral`` (meshopt compression follows)
    their views hold the input of meshopt's OCTAHEDRAL filter instead, as gltfpack ``-cc``
    writes them (see `encode_filter_oct`), and `compress_meshopt` declares the filter.
    UVs take 12 bits across the bounds of their material's UVs, which a KHR_texture_transform
    on each of its textures maps back, as gltfpack does (`_uv_ranges`); UVs no such
    transform can serve (no textured material, one shared with unquantized meshes) take
    16 bits when in [0, 1] and stay floats otherwise.
    """
    meshes = document.get("meshes", [])
    unquantized_uv = 0
    done = 0
    positions = _float_positions(document, views)
    steps = _position_steps(document, positions)
    uv_ranges = _uv_ranges(document, views, set(positions))
    uv_range = {}  # UV accessor -> its material's (low, size)
    for low, size, accessors in uv_ranges.values():
        uv_range.update(dict.fromkeys(accessors, (low, size)))
    for mesh_index, values in positions.items():
        primitives = meshes[mesh_index].get("primitives", [])
        # 1. one dequantization transform per mesh: all its primitives share the nodes
        low = np.min([v.min(axis=0) for v in values.values()], axis=0)
        high = np.max([v.max(axis=0) for v in values.values()], axis=0)
        centre = (low + high) / 2
        step = steps[mesh_index]
        # 2. attributes
        for index, points in values.items():
            q = np.round((points - centre) / step).astype(np.int16)
            _write(document, views, index, q, 5122, pad_to=4)
        for primitive in primitives:
            attributes = primitive.get("attributes", {})
            for name, index in attributes.items():
                accessor = document["accessors"][index]
                if accessor["componentType"] != 5126:
                    continue
                if name in ("NORMAL", "TANGENT"):
                    _quantize_unit_vectors(document, views, index, octahedral)
                elif name.startswith("TEXCOORD_"):
                    uv = _read(document, views, index)
                    if index in uv_range:
                        low, size = uv_range[index]
                        unit = np.clip((uv - low) / size, 0, 1)
                        q = np.floor(unit * ((1 << _UV_BITS) - 1) + 0.5).astype(np.uint16)
                        _write(document, views, index, q, 5123, normalized=True)
                        _drop_bounds(accessor)
                        continue
                    if uv.size and (uv.min() < 0 or uv.max() > 1):
                        unquantized_uv += 1  # would need KHR_texture_transform to dequantize
                        continue
                    q = np.round(uv * 65535).astype(np.uint16)
                    _write(document, views, index, q, 5123, normalized=True)
                    _drop_bounds(accessor)
        # 3. the nodes undo the quantization
        dequantize = np.eye(4)
        dequantize[:3, :3] *= step  # back to stored * step + centre
        dequantize[:3, 3] = centre
        _place_dequantized(document, mesh_index, dequantize)
        done += 1
    if done:
        _use_extension(document, QUANTIZATION)
    for material_index, (low, size, _) in uv_ranges.items():
        # normalized uint16 reads q / 65535: back to low + q / (2^bits - 1) * size
        scale = size * 65535 / ((1 << _UV_BITS) - 1)
        transform = {"offset": low.tolist(), "scale": scale.tolist()}
        for info in texture_infos(document["materials"][material_index]):
            info.setdefault("extensions", {})[TEXTURE_TRANSFORM] = dict(transform)
    if uv_ranges:
        _use_extension(document, TEXTURE_TRANSFORM, required=False)
    if unquantized_uv:
        warnings.append(
            f"quantize: kept {unquantized_uv} UV set(s) as floats (coordinates outside [0, 1])"
        )
    logger.debug("quantized %d of %d meshes", done, len(meshes))
    return done


def _uv_ranges(document: dict, views: list[bytes], meshes: set[int]) -> dict:
    """{material: (low, size, its UV accessors)}: the bounds of all the UVs of the
    primitives using each textured material, for the materials whose every textureInfo can
    take the dequantization transform: all their primitives in ``meshes`` (quantized),
    float UVs of their own (an accessor shared with another material would need two
    transforms), no texture transform already."""
    materials = document.get("materials", [])
    users: dict[int, set[int]] = {}
    owner: dict[int, int] = {}
    blocked: set[int] = set()
    for mesh_index, mesh in enumerate(document.get("meshes", [])):
        for primitive in mesh.get("primitives", []):
            material = primitive.get("material")
            if material is None:
                continue
            uvs = {
                index
                for name, index in primitive.get("attributes", {}).items()
                if name.startswith("TEXCOORD_")
            }
            users.setdefault(material, set()).update(uvs)
            if mesh_index not in meshes:
                blocked.add(material)
            for index in uvs:
                if owner.setdefault(index, material) != material:
                    blocked |= {material, owner[index]}
                if document["accessors"][index]["componentType"] != 5126:
                    blocked.add(material)
    ranges = {}
    for material, accessors in users.items():
        infos = texture_infos(materials[material])
        if (
            material in blocked
            or not accessors
            or not infos
            or any(TEXTURE_TRANSFORM in info.get("extensions", {}) for info in infos)
        ):
            continue
        uv = np.concatenate([_read(document, views, i) for i in sorted(accessors)])
        if not len(uv) or not np.isfinite(uv).all():
            continue
        low = uv.min(axis=0).astype(np.float64)
        size = uv.max(axis=0) - low
        size[size <= 0] = 1.0
        ranges[material] = (low, size, accessors)
    return ranges


def texture_infos(value) -> list[dict]:
    """Every textureInfo of a material (core slots and those of material extensions)."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            if key.endswith("Texture") and isinstance(item, dict) and "index" in item:
                found.append(item)
            elif key != "extras":
                found += texture_infos(item)
    elif isinstance(value, list):
        for item in value:
            found += texture_infos(item)
    return found


def _float_positions(document: dict, views: list[bytes]) -> dict[int, dict[int, np.ndarray]]:
    """{mesh: {POSITION accessor: float64 points}} of the meshes whose positions can be
    quantized: float, neither skinned nor morphed."""
    nodes = document.get("nodes", [])
    skinned = {node["mesh"] for node in nodes if "mesh" in node and "skin" in node}
    found = {}
    for mesh_index, mesh in enumerate(document.get("meshes", [])):
        primitives = mesh.get("primitives", [])
        if mesh_index in skinned or any("targets" in p for p in primitives):
            continue
        accessors = {
            p["attributes"]["POSITION"] for p in primitives if "POSITION" in p.get("attributes", {})
        }
        if accessors and all(document["accessors"][i]["componentType"] == 5126 for i in accessors):
            found[mesh_index] = {i: _read(document, views, i).astype(np.float64) for i in accessors}
    return found


def _position_steps(document: dict, positions: dict[int, dict[int, np.ndarray]]) -> dict:
    """{mesh: grid step in its own units}: the scene's 14-bit grid as gltfpack's (one step
    is 1/16,383 of the placed scene's largest extent), in each mesh's units through the
    largest scale of the nodes placing it, and never finer than 14 bits of the mesh's own
    extent (so the values fit, and a mesh no node places keeps its own grid)."""
    nodes = document.get("nodes", [])
    placements: dict[int, list[np.ndarray]] = {}
    for node_index, matrix in _world_matrices(nodes).items():
        if nodes[node_index].get("mesh") in positions:
            placements.setdefault(nodes[node_index]["mesh"], []).append(matrix)
    bounds, corners = {}, []
    for mesh_index, values in positions.items():
        low = np.min([v.min(axis=0) for v in values.values()], axis=0)
        high = np.max([v.max(axis=0) for v in values.values()], axis=0)
        bounds[mesh_index] = (high - low).max()
        box = np.array([[(low, high)[(k >> a) & 1][a] for a in range(3)] for k in range(8)])
        for matrix in placements.get(mesh_index, []):
            corners.append(box @ matrix[:3, :3].T + matrix[:3, 3])
    scene = float(np.ptp(np.concatenate(corners), axis=0).max()) if corners else 0.0
    world_step = scene / ((1 << _POSITION_BITS) - 1)
    steps = {}
    for mesh_index, extent in bounds.items():
        # centred on the mesh, its values then fit in ±(2^13 - 1)
        own = max(float(extent) / ((1 << _POSITION_BITS) - 2), 1e-12)
        scale = max(
            (np.linalg.norm(m[:3, :3], 2) for m in placements.get(mesh_index, [])), default=0
        )
        steps[mesh_index] = max(own, world_step / scale) if scale > 0 else own
    return steps


def _world_matrices(nodes: list[dict]) -> dict[int, np.ndarray]:
    """{node: its world matrix}, from every root down."""
    children = {child for node in nodes for child in node.get("children", [])}
    stack = [(index, np.eye(4)) for index in range(len(nodes)) if index not in children]
    world: dict[int, np.ndarray] = {}
    while stack:
        index, parent = stack.pop()
        if index in world:
            continue  # a malformed tree: the first path wins
        world[index] = parent @ _node_matrix(nodes[index])
        stack += [(child, world[index]) for child in nodes[index].get("children", [])]
    return world


def _quantize_unit_vectors(
    document: dict, views: list[bytes], index: int, octahedral: bool
) -> None:
    """Normals (VEC3) and tangents (VEC4, w the handedness) as normalized int8, 4 bytes a
    vertex: snorm components, or with ``octahedral`` the OCTAHEDRAL filter's encoding, which
    meshopt decoders turn back into snorm components (the view says so with a pending
    EXT_meshopt_compression object that `compress_meshopt` completes)."""
    accessor = document["accessors"][index]
    values = _read(document, views, index)
    vectors = np.zeros((len(values), 4), dtype=np.float32)
    vectors[:, : values.shape[1]] = values
    if octahedral:
        stored = encode_filter_oct(vectors, _NORMAL_BITS)
    else:
        stored = _quantize_snorm(vectors, _NORMAL_BITS).astype(np.int8)
    _write(document, views, index, stored, 5120, normalized=True)
    _drop_bounds(accessor)
    if octahedral:
        view = document["bufferViews"][accessor["bufferView"]]
        view.setdefault("extensions", {})[MESHOPT] = {"filter": "OCTAHEDRAL"}


def encode_filter_oct(vectors: np.ndarray, bits: int = 8) -> np.ndarray:
    """meshoptimizer's ``meshopt_encodeFilterOct`` in numpy, bit for bit (float32 arithmetic
    in the same order): (count, 4) float unit vectors, w kept as an snorm of the byte width,
    to (count, 4) int8 (``bits`` <= 8) or int16 holding u, v, the code of 1.0 and w.

    The octahedral map folds the unit sphere onto the square |u| + |v| <= 1 ; decoders
    rebuild z = one - |u| - |v|, unfold z < 0, and renormalize (EXT_meshopt_compression,
    appendix B)."""
    n = np.asarray(vectors, dtype=np.float32)
    wide = bits > 8
    x, y, z, w = n[:, 0], n[:, 1], n[:, 2], n[:, 3]
    one = np.float32(1)
    length = np.abs(x) + np.abs(y) + np.abs(z)
    with np.errstate(divide="ignore"):
        inverse = np.where(length == 0, np.float32(0), one / length)
    x = x * inverse
    y = y * inverse
    u = np.where(z >= 0, x, (one - np.abs(y)) * np.where(x >= 0, one, -one))
    v = np.where(z >= 0, y, (one - np.abs(x)) * np.where(y >= 0, one, -one))
    encoded = np.empty((len(n), 4), dtype=np.int16 if wide else np.int8)
    encoded[:, 0] = _quantize_snorm(u, bits)
    encoded[:, 1] = _quantize_snorm(v, bits)
    encoded[:, 2] = _quantize_snorm(np.float32([1]), bits)[0]
    encoded[:, 3] = _quantize_snorm(w, 16 if wide else 8)
    return encoded


def _quantize_snorm(values: np.ndarray, bits: int) -> np.ndarray:
    """``meshopt_quantizeSnorm``: [-1, 1] to an int of ``bits`` bits, rounded half away
    from zero (read back as q / (2^(bits-1) - 1))."""
    values = np.asarray(values, dtype=np.float32)
    scale = np.float32((1 << (bits - 1)) - 1)
    half = np.where(values >= 0, np.float32(0.5), np.float32(-0.5))
    clipped = np.clip(values, np.float32(-1), np.float32(1))
    return np.trunc(clipped * scale + half).astype(np.int32)


def _drop_bounds(accessor: dict) -> None:
    """min/max are optional outside POSITION; stale ones would fail validation."""
    accessor.pop("min", None)
    accessor.pop("max", None)


def _place_dequantized(document: dict, mesh_index: int, dequantize: np.ndarray) -> None:
    nodes = document.setdefault("nodes", [])
    for index in range(len(nodes)):
        node = nodes[index]
        if node.get("mesh") != mesh_index:
            continue
        if node.get("children"):
            # the node's transform also moves its children: give the mesh a child of its own
            child = {"name": node.get("name", f"node{index}"), "mesh": node.pop("mesh")}
            child["matrix"] = _column_major(dequantize)
            nodes.append(child)
            node["children"].append(len(nodes) - 1)
        else:
            node["matrix"] = _column_major(_node_matrix(node) @ dequantize)
            for key in ("translation", "rotation", "scale"):
                node.pop(key, None)


def _node_matrix(node: dict) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T
    import trimesh

    matrix = np.eye(4)
    if "scale" in node:
        matrix = np.diag([*node["scale"], 1.0])
    if "rotation" in node:
        x, y, z, w = node["rotation"]
        matrix = trimesh.transformations.quaternion_matrix([w, x, y, z]) @ matrix
    if "translation" in node:
        matrix[:3, 3] = node["translation"]
    return matrix


def _column_major(matrix: np.ndarray) -> list[float]:
    return [float(v) for v in matrix.T.ravel()]


# -- EXT_meshopt_compression --------------------------------------------------------------


def optimize_vertex_order(document: dict, views: list[bytes]) -> int:
    """Reorder triangles for the vertex cache (meshoptimizer's strip-friendly order, as
    gltfpack ``-cc``: what the index and vertex codecs compress best) and vertices for
    fetch, per primitive whose vertex attributes are its own; 16-bit indices where they
    fit. Both orders depend on the indices alone: primitives sharing their indices (trimesh
    writes an identical topology once) are reordered alike and keep sharing them. Returns
    the primitives reordered."""
    import meshoptimizer

    uses: dict[int, int] = {}
    by_indices: dict[int, list[dict]] = {}
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            for index in primitive.get("attributes", {}).values():
                uses[index] = uses.get(index, 0) + 1
            if primitive.get("indices") is not None:
                by_indices.setdefault(primitive["indices"], []).append(primitive)
    accessors = document.get("accessors", [])

    def fits(primitive: dict) -> bool:
        attributes = primitive.get("attributes", {})
        return (
            primitive.get("mode", 4) == 4
            and "targets" not in primitive
            and "POSITION" in attributes
            and all(uses[i] == 1 and "bufferView" in accessors[i] for i in attributes.values())
        )

    done = 0
    for index_accessor, primitives in by_indices.items():
        counts = {accessors[p["attributes"]["POSITION"]]["count"] for p in primitives if fits(p)}
        if (
            "bufferView" not in accessors[index_accessor]
            or not all(fits(p) for p in primitives)
            or len(counts) != 1
        ):
            continue
        count = counts.pop()
        indices = np.ascontiguousarray(_read(document, views, index_accessor).ravel(), np.uint32)
        if len(indices) % 3 or (len(indices) and indices.max() >= count):
            continue
        source = None  # the vertex each one left comes from, once duplicates merge
        if len(primitives) == 1:
            source, indices, count = _merge_duplicates(document, views, primitives[0], indices)
        cached = np.empty_like(indices)
        meshoptimizer.optimize_vertex_cache_strip(cached, indices, len(indices), count)
        remap = np.empty(count, dtype=np.uint32)
        unique = meshoptimizer.optimize_vertex_fetch_remap(remap, cached, len(cached), count)
        order = np.empty(unique, dtype=np.int64)
        used = remap != 0xFFFFFFFF
        order[remap[used]] = np.flatnonzero(used)
        if source is not None:
            order = source[order]
        for primitive in primitives:
            for index in primitive["attributes"].values():
                accessor = accessors[index]
                values = _read(document, views, index)[order]
                _write(
                    document,
                    views,
                    index,
                    values,
                    accessor["componentType"],
                    accessor.get("normalized", False),
                    pad_to=_padded(values),
                )
                accessor["count"] = unique
        small = unique <= 65535
        _write(
            document,
            views,
            index_accessor,
            remap[cached].astype(np.uint16 if small else np.uint32)[:, None],
            5123 if small else 5125,
            target=_ELEMENT_ARRAY_BUFFER,
        )
        done += len(primitives)
    return done


def _merge_duplicates(
    document: dict, views: list[bytes], primitive: dict, indices: np.ndarray
) -> tuple[np.ndarray | None, np.ndarray, int]:
    """(first original of each distinct vertex or None, indices into them, their count):
    vertices equal in every attribute, byte for byte, become one (as gltfpack reindexes)."""
    count = document["accessors"][primitive["attributes"]["POSITION"]]["count"]
    rows = np.hstack(
        [
            np.ascontiguousarray(_read(document, views, index)).view(np.uint8).reshape(count, -1)
            for index in primitive["attributes"].values()
        ]
    )
    keys = np.ascontiguousarray(rows).view(np.dtype((np.void, rows.shape[1]))).ravel()
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    if len(first) == count:
        return None, indices, count
    return first, np.ascontiguousarray(inverse.ravel()[indices], dtype=np.uint32), len(first)


def _padded(values: np.ndarray) -> int | None:
    """Components to store per row so a row is a multiple of 4 bytes."""
    width = values.shape[1]
    while (width * values.itemsize) % 4:
        width += 1
    return width if width != values.shape[1] else None


def compress_meshopt(document: dict, views: list[bytes]) -> int:
    """Encode vertex-attribute and index views with meshoptimizer's codecs; returns the
    views compressed. Views that hold anything else (images, animation) stay as they are.

    As gltfpack lays them out, the streams of one kind (positions, normals, ..., indices of
    one width) of every primitive share one view, each accessor at its offset: one codec
    stream and one bufferView a kind rather than a few per primitive, which matters for
    assemblies of many small parts (the JSON of hundreds of views outweighs their data).
    """
    import meshoptimizer

    meshoptimizer.encode_vertex_version(0)  # EXT_meshopt_compression decodes version 0
    meshoptimizer.encode_index_version(1)
    modes: dict[int, tuple[str, int, int, str]] = {}
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            for name, index in primitive.get("attributes", {}).items():
                _claim(document, index, "ATTRIBUTES", modes, name.split("_")[0])
            if primitive.get("indices") is not None:
                mode = "TRIANGLES" if primitive.get("mode", 4) == 4 else "INDICES"
                _claim(document, primitive["indices"], mode, modes)
    _unfilter_unclaimed(document, views, modes)
    compressed = 0
    for view_index, (mode, count, stride, _) in _merge_views(document, views, modes).items():
        data = views[view_index]
        if mode == "ATTRIBUTES":
            rows = np.frombuffer(data, dtype=np.uint8).reshape(count, stride)
            encoded = meshoptimizer.encode_vertex_buffer(rows, count, stride)
        else:
            dtype = np.uint16 if stride == 2 else np.uint32
            indices = np.frombuffer(data, dtype=dtype).astype(np.uint32)
            encode = (
                meshoptimizer.encode_index_buffer
                if mode == "TRIANGLES"
                else meshoptimizer.encode_index_sequence
            )
            encoded = encode(indices, len(indices), int(indices.max()) + 1)
        view = document["bufferViews"][view_index]
        if mode == "ATTRIBUTES":
            view["byteStride"] = stride
        view.setdefault("target", _ARRAY_BUFFER if mode == "ATTRIBUTES" else _ELEMENT_ARRAY_BUFFER)
        spec = view.setdefault("extensions", {}).setdefault(MESHOPT, {})
        spec.update(buffer=0, byteLength=len(encoded), byteStride=stride, count=count, mode=mode)
        views[view_index] = encoded
        compressed += 1
    if compressed:
        _use_extension(document, MESHOPT)
    return compressed


def _claim(document: dict, accessor_index: int, mode: str, modes: dict, family: str = "") -> None:
    """Mark the accessor's view for ``mode`` when the view holds exactly that accessor;
    ``family`` (the attribute's name before any ``_n``) keeps kinds apart when merging."""
    accessor = document["accessors"][accessor_index]
    view_index = accessor.get("bufferView")
    if view_index is None or "sparse" in accessor:
        return
    view = document["bufferViews"][view_index]
    element = np.dtype(_DTYPES[accessor["componentType"]]).itemsize
    stride = view.get("byteStride", element * _COMPONENTS[accessor["type"]])
    fits = (
        accessor.get("byteOffset", 0) == 0
        and stride * accessor["count"] == view["byteLength"]
        and (stride % 4 == 0 if mode == "ATTRIBUTES" else stride in (2, 4))
        and accessor["count"] > 0
        and (mode != "TRIANGLES" or accessor["count"] % 3 == 0)
    )
    claim = (mode, accessor["count"], stride, family)
    if not fits or modes.get(view_index, claim) != claim:
        modes[view_index] = ("", 0, 0, "")  # shared or unfit: stays uncompressed
        return
    modes[view_index] = claim


def _filter(view: dict) -> str:
    return view.get("extensions", {}).get(MESHOPT, {}).get("filter", "NONE")


def _unfilter_unclaimed(document: dict, views: list[bytes], modes: dict) -> None:
    """A view `quantize` left holding filter input that cannot be compressed (shared with
    another accessor, say) gets the decoded values a reader would have seen."""
    import meshoptimizer

    for view_index, view in enumerate(document.get("bufferViews", [])):
        if _filter(view) == "NONE" or modes.get(view_index, ("",))[0]:
            continue
        stride = view["byteStride"]
        data = np.frombuffer(views[view_index], dtype=np.uint8).copy()
        decoded = meshoptimizer.decode_filter_oct(data, len(data) // stride, stride)
        views[view_index] = np.ascontiguousarray(decoded).tobytes()
        del view["extensions"][MESHOPT]
        if not view["extensions"]:
            del view["extensions"]


def _merge_views(document: dict, views: list[bytes], modes: dict) -> dict[int, tuple]:
    """Concatenate the claimed views of one (mode, stride, family, filter) into one new view
    and point their accessors into it; returns the views to compress with their claims.
    The old views lose their accessors and `pack` drops them."""
    groups: dict[tuple, list[int]] = {}
    for view_index, claim in modes.items():
        if claim[0]:
            mode, _, stride, family = claim
            key = (mode, stride, family, _filter(document["bufferViews"][view_index]))
            groups.setdefault(key, []).append(view_index)
    if not groups:
        return {}
    holders: dict[int, list[dict]] = {}
    for accessor in document["accessors"]:
        if accessor.get("bufferView") in modes:
            holders.setdefault(accessor["bufferView"], []).append(accessor)
    merged = {}
    for (mode, stride, family, name), members in groups.items():
        if len(members) == 1:
            merged[members[0]] = modes[members[0]]
            continue
        first = document["bufferViews"][members[0]]
        view = {key: first[key] for key in ("byteStride", "target") if key in first}
        if name != "NONE":
            view["extensions"] = {MESHOPT: {"filter": name}}
        new = len(views)
        offset = 0
        for member in members:
            for accessor in holders[member]:
                accessor.update(bufferView=new, byteOffset=offset)
            offset += len(views[member])
        document["bufferViews"].append({"buffer": 0, "byteLength": offset, **view})
        views.append(b"".join(views[member] for member in members))
        merged[new] = (mode, offset // stride, stride, family)
    return merged
