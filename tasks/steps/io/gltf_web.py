"""Web-ready glTF packaging, applied to the GLB trimesh exports, as gltfpack does.

Four independent stages, each a function of ``(document, views)`` where ``views`` holds
the bytes of every buffer view (buffer 0), chosen by `SaveOptions`:

* `resize_textures` / `encode_textures`: textures no larger than ``max_texture_size``,
  re-encoded as WebP (EXT_texture_webp, Pillow) or KTX2/Basis (KHR_texture_basisu,
  Binomial's encoder through the ``alktx2`` wheel: ETC1S for colour maps, UASTC for
  normal and data maps);
* `quantize`: KHR_mesh_quantization, positions to normalized int16 with the
  dequantization (a uniform scale and an offset) moved to the nodes, normals to int8,
  UVs in [0, 1] to uint16;
* `compress_meshopt`: EXT_meshopt_compression, after reordering each primitive's
  vertices for the vertex cache and fetch (meshoptimizer's ``optimizeVertexCache`` and
  ``optimizeVertexFetch``, which is what makes the codec effective).

`pack` writes the views back into one binary chunk, dropping those nothing uses.
References: https://github.com/KhronosGroup/glTF/tree/main/extensions/2.0 (the three
extensions) and gltfpack (https://github.com/zeux/meshoptimizer/tree/master/gltf).
"""

from __future__ import annotations

import io
import logging

import numpy as np

from tasks.steps.errors import OptionsError

logger = logging.getLogger(__name__)

MESHOPT = "EXT_meshopt_compression"
QUANTIZATION = "KHR_mesh_quantization"
WEBP = "EXT_texture_webp"
BASISU = "KHR_texture_basisu"

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
        if compressed is not None:
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
    return bytes(packed)


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


def process_textures(
    document: dict, views: list[bytes], max_size: int | None, image_format: str
) -> int:
    """Resize embedded images to ``max_size`` (long side, aspect kept) and re-encode them as
    ``image_format`` (``keep``, ``webp`` or ``ktx2``); returns how many images changed."""
    from PIL import Image

    if image_format == "ktx2":
        encode_ktx2 = _ktx2_encoder()
    colour, _ = texture_images(document)
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
            srgb = any(index in colour for index in indices)
            out, mime = encode_ktx2(picture, srgb), "image/ktx2"
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


def _ktx2_encoder():
    try:
        import alktx2
    except ImportError as exc:
        raise OptionsError(
            "texture_format 'ktx2' needs a Basis Universal encoder, which this server does not"
            " install by default (alktx2, the one wheel on PyPI, states no licence): use"
            " 'webp', or have the operator pip install alktx2"
        ) from exc

    def encode(picture, srgb: bool) -> bytes:
        rgba = picture.convert("RGBA")
        return alktx2.encode_raw_rgba_to_ktx2(
            rgba.tobytes(),
            rgba.width,
            rgba.height,
            # ETC1S is small and fine for colour; UASTC keeps normals and data maps exact
            codec="etc1s" if srgb else "uastc",
            srgb=srgb,
            linear=not srgb,
            mipmaps=True,
            zstd_supercompression_level=None if srgb else 6,
            threads=1,
        )

    return encode


# -- KHR_mesh_quantization ---------------------------------------------------------------


_POSITION_STEPS = 8191
"""Positions are stored in 14 bits (±8191 steps of half a mesh's size, as gltfpack's
default): 1/16,382 of the mesh's extent, and the unused high bits make meshopt's
delta coding smaller."""


def quantize(document: dict, views: list[bytes], warnings: list[str]) -> int:
    """Store positions, normals and UVs as integers; returns the meshes quantized.

    Positions of each mesh become normalized int16 holding 14-bit values around the centre
    of its bounds, scaled by half its largest extent (uniform, so normals stay true); every node placing the mesh
    takes that dequantization transform (a node with children passes its mesh to a new
    child node). Skinned or morphed meshes keep float positions.
    """
    meshes = document.get("meshes", [])
    nodes = document.get("nodes", [])
    skinned = {node["mesh"] for node in nodes if "mesh" in node and "skin" in node}
    unquantized_uv = 0
    done = 0
    for mesh_index, mesh in enumerate(meshes):
        primitives = mesh.get("primitives", [])
        if mesh_index in skinned or any("targets" in p for p in primitives):
            continue
        positions = [
            p["attributes"]["POSITION"] for p in primitives if "POSITION" in p.get("attributes", {})
        ]
        if not positions or any(
            document["accessors"][i]["componentType"] != 5126 for i in positions
        ):
            continue
        # 1. one dequantization transform per mesh: all its primitives share the nodes
        values = {i: _read(document, views, i).astype(np.float64) for i in set(positions)}
        low = np.min([v.min(axis=0) for v in values.values()], axis=0)
        high = np.max([v.max(axis=0) for v in values.values()], axis=0)
        centre = (low + high) / 2
        half = float(max((high - low).max() / 2, 1e-12))
        # 2. attributes
        for index, points in values.items():
            q = np.round((points - centre) / half * _POSITION_STEPS).astype(np.int16)
            _write(document, views, index, q, 5122, normalized=True, pad_to=4)
        for primitive in primitives:
            attributes = primitive.get("attributes", {})
            for name, index in attributes.items():
                accessor = document["accessors"][index]
                if accessor["componentType"] != 5126:
                    continue
                if name == "NORMAL":
                    normals = _read(document, views, index)
                    q = np.round(np.clip(normals, -1, 1) * 127).astype(np.int8)
                    _write(document, views, index, q, 5120, normalized=True, pad_to=4)
                    _drop_bounds(accessor)
                elif name.startswith("TEXCOORD_"):
                    uv = _read(document, views, index)
                    if uv.size and (uv.min() < 0 or uv.max() > 1):
                        unquantized_uv += 1  # would need KHR_texture_transform to dequantize
                        continue
                    q = np.round(uv * 65535).astype(np.uint16)
                    _write(document, views, index, q, 5123, normalized=True)
                    _drop_bounds(accessor)
        # 3. the nodes undo the quantization
        dequantize = np.eye(4)
        # normalized int16 reads as stored / 32767: back to (stored / steps) * half + centre
        dequantize[:3, :3] *= half * 32767 / _POSITION_STEPS
        dequantize[:3, 3] = centre
        _place_dequantized(document, mesh_index, dequantize)
        done += 1
    if done:
        _use_extension(document, QUANTIZATION)
    if unquantized_uv:
        warnings.append(
            f"quantize: kept {unquantized_uv} UV set(s) as floats (coordinates outside [0, 1])"
        )
    logger.debug("quantized %d of %d meshes", done, len(meshes))
    return done


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
    """Reorder triangles for the vertex cache and vertices for fetch, per primitive whose
    accessors are its own; 16-bit indices where they fit. Returns the primitives reordered."""
    import meshoptimizer

    uses: dict[int, int] = {}
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            for index in [*primitive.get("attributes", {}).values(), primitive.get("indices")]:
                if index is not None:
                    uses[index] = uses.get(index, 0) + 1
    done = 0
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            attributes = primitive.get("attributes", {})
            index_accessor = primitive.get("indices")
            own = [*attributes.values(), index_accessor]
            if (
                index_accessor is None
                or primitive.get("mode", 4) != 4
                or "targets" in primitive
                or any(uses[i] != 1 or "bufferView" not in document["accessors"][i] for i in own)
            ):
                continue
            indices = np.ascontiguousarray(
                _read(document, views, index_accessor).ravel(), np.uint32
            )
            count = document["accessors"][attributes["POSITION"]]["count"]
            if len(indices) % 3 or (len(indices) and indices.max() >= count):
                continue
            cached = np.empty_like(indices)
            meshoptimizer.optimize_vertex_cache(cached, indices, len(indices), count)
            remap = np.empty(count, dtype=np.uint32)
            unique = meshoptimizer.optimize_vertex_fetch_remap(remap, cached, len(cached), count)
            order = np.empty(unique, dtype=np.int64)
            used = remap != 0xFFFFFFFF
            order[remap[used]] = np.flatnonzero(used)
            for index in attributes.values():
                accessor = document["accessors"][index]
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
            new_indices = remap[cached]
            small = unique <= 65535
            _write(
                document,
                views,
                index_accessor,
                new_indices.astype(np.uint16 if small else np.uint32)[:, None],
                5123 if small else 5125,
                target=_ELEMENT_ARRAY_BUFFER,
            )
            done += 1
    return done


def _padded(values: np.ndarray) -> int | None:
    """Components to store per row so a row is a multiple of 4 bytes."""
    width = values.shape[1]
    while (width * values.itemsize) % 4:
        width += 1
    return width if width != values.shape[1] else None


def compress_meshopt(document: dict, views: list[bytes]) -> int:
    """Encode vertex-attribute and index views with meshoptimizer's codecs; returns the
    views compressed. Views that hold anything else (images, animation) stay as they are."""
    import meshoptimizer

    meshoptimizer.encode_vertex_version(0)  # EXT_meshopt_compression decodes version 0
    meshoptimizer.encode_index_version(1)
    modes: dict[int, tuple[str, int, int]] = {}
    for mesh in document.get("meshes", []):
        for primitive in mesh.get("primitives", []):
            for index in primitive.get("attributes", {}).values():
                _claim(document, index, "ATTRIBUTES", modes)
            if primitive.get("indices") is not None:
                mode = "TRIANGLES" if primitive.get("mode", 4) == 4 else "INDICES"
                _claim(document, primitive["indices"], mode, modes)
    compressed = 0
    for view_index, (mode, count, stride) in modes.items():
        if not mode:
            continue
        data = views[view_index]
        if mode == "ATTRIBUTES":
            rows = np.frombuffer(data, dtype=np.uint8).reshape(count, stride)
            encoded = meshoptimizer.encode_vertex_buffer(rows, count, stride)
        else:
            dtype = np.uint16 if stride == 2 else np.uint32
            indices = np.frombuffer(data, dtype=dtype).astype(np.uint32)
            if mode == "TRIANGLES":
                encoded = meshoptimizer.encode_index_buffer(
                    indices, len(indices), int(indices.max()) + 1
                )
            else:
                encoded = meshoptimizer.encode_index_sequence(
                    indices, len(indices), int(indices.max()) + 1
                )
        view = document["bufferViews"][view_index]
        if mode == "ATTRIBUTES":
            view["byteStride"] = stride
        view.setdefault("extensions", {})[MESHOPT] = {
            "buffer": 0,
            "byteLength": len(encoded),
            "byteStride": stride,
            "count": count,
            "mode": mode,
        }
        views[view_index] = encoded
        compressed += 1
    if compressed:
        _use_extension(document, MESHOPT)
    return compressed


def _claim(document: dict, accessor_index: int, mode: str, modes: dict) -> None:
    """Mark the accessor's view for ``mode`` when the view holds exactly that accessor."""
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
    claim = (mode, accessor["count"], stride)
    if not fits or modes.get(view_index, claim) != claim:
        modes[view_index] = ("", 0, 0)  # shared or unfit: stays uncompressed
        return
    modes[view_index] = claim
