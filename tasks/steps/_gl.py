"""OpenGL plumbing for `render.py`: a headless EGL context, shaders, upload, draw.

Private to the renderer. `render.py` decides *what* to draw (drawables in
scene-centred world space, one camera per view); this module knows *how*:
it opens a surfaceless EGL context with moderngl (Mesa llvmpipe on a CPU
host, the NVIDIA driver on a GPU host: same code), uploads every drawable once
with its instance transforms, and draws each view into a multisampled
supersampled framebuffer read back as a straight-alpha RGBA image.

Lighting is a headlight plus a key light from the upper left, on the face
normal (screen-space derivatives) unless the source file carried vertex
normals: meshes without normals need no pre-pass and CAD edges stay sharp.
"""

from __future__ import annotations

import logging
from ctypes.util import find_library
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tasks.steps.errors import RenderError

logger = logging.getLogger(__name__)

EGL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libgl1"
"""Debian packages that give a CPU host a working EGL + OpenGL (Mesa llvmpipe)."""

SOFTWARE_RENDERERS = ("llvmpipe", "softpipe", "swrast", "swiftshader", "lavapipe")
"""GL_RENDERER substrings that mean the pixels are computed on the CPU."""


@dataclass
class Drawable:
    """One geometry, ready for upload, and where it is placed in the scene."""

    mode: str
    """``triangles`` (lit), ``points`` or ``lines`` (both unlit)."""
    positions: np.ndarray
    """(n, 3) float32, relative to the geometry's own centre (keeps float32 precise)."""
    transforms: np.ndarray
    """(k, 4, 4) float64 placements, scene-centred, that include the geometry centre."""
    indices: np.ndarray | None = None
    """(m,) uint32 vertex indices (3 per triangle, 2 per line); None draws in order."""
    normals: np.ndarray | None = None
    """(n, 3) float32 vertex normals from the source; None shades with face normals."""
    uvs: np.ndarray | None = None
    """(n, 2) float32 texture coordinates, origin bottom-left; used with ``texture``."""
    colors: np.ndarray | None = None
    """(n, 4) uint8 per-vertex colours, multiplied with ``base_color``."""
    base_color: tuple[float, float, float, float] = (0.8, 0.8, 0.8, 1.0)
    """RGBA in 0..1 (material baseColorFactor or diffuse)."""
    texture: Image.Image | None = None
    """Base-colour image; shared images are uploaded once."""
    alpha_cutoff: float = -1.0
    """Fragments with alpha below it are discarded (glTF MASK); negative keeps all."""
    name: str = field(default="")
    """Geometry name, for logs."""


@dataclass(frozen=True)
class Camera:
    """An orthographic camera, as the two matrices the shaders need."""

    view_projection: np.ndarray
    """(4, 4) scene-centred world -> clip space."""
    rotation: np.ndarray
    """(3, 3) world -> view space (rows: right, up, towards the camera)."""


def open_context():
    """A headless moderngl context on the first EGL device, or a `RenderError` saying why not.

    The device can be chosen with the ``GLCONTEXT_DEVICE_INDEX`` environment
    variable (read by glcontext) on hosts with several GPUs.
    """
    import moderngl

    missing = [name for name in ("EGL", "GL") if find_library(name) is None]
    if missing:
        libraries = " and ".join(f"lib{name}" for name in missing)
        raise RenderError(
            f"cannot render thumbnails: {libraries} not found; install {EGL_PACKAGES} "
            "(CPU rendering) or the NVIDIA driver"
        )
    try:
        ctx = moderngl.create_standalone_context(require=330, backend="egl")
    except Exception as exc:
        raise RenderError(
            f"no EGL device could open an OpenGL 3.3 context ({exc}); install "
            f"{EGL_PACKAGES} (CPU rendering) or the NVIDIA driver"
        ) from exc
    return ctx


def describe(ctx) -> dict[str, str]:
    """GL_RENDERER/GL_VENDOR/GL_VERSION of a context and whether it runs on the CPU or a GPU."""
    renderer = ctx.info["GL_RENDERER"]
    software = any(word in renderer.lower() for word in SOFTWARE_RENDERERS)
    short = renderer.split(" (")[0]
    return {
        "renderer": renderer,
        "vendor": ctx.info["GL_VENDOR"],
        "version": ctx.info["GL_VERSION"],
        "device": "cpu" if software else "gpu",
        "summary": f"rendered on {'CPU' if software else 'GPU'} ({short})",
    }


_LIT_VERTEX = """
#version 330
uniform mat4 u_view_projection;
uniform mat3 u_rotation;
in vec3 in_position;
in vec3 in_normal;
in vec2 in_uv;
in vec4 in_color;
in mat4 in_model;
in mat3 in_normal_model;
out vec3 v_view_position;
out vec3 v_normal;
out vec2 v_uv;
out vec4 v_color;
void main() {
    vec4 world = in_model * vec4(in_position, 1.0);
    gl_Position = u_view_projection * world;
    v_view_position = u_rotation * world.xyz;
    v_normal = u_rotation * (in_normal_model * in_normal);
    v_uv = in_uv;
    v_color = in_color;
}
"""

# Half-Lambert headlight keeps faces seen edge-on readable; the key light from
# the upper left separates faces that the headlight alone lights equally.
_LIT_FRAGMENT = """
#version 330
uniform vec4 u_base_color;
uniform bool u_use_normals;
uniform bool u_use_texture;
uniform bool u_use_colors;
uniform float u_alpha_cutoff;
uniform sampler2D u_texture;
in vec3 v_view_position;
in vec3 v_normal;
in vec2 v_uv;
in vec4 v_color;
out vec4 f_color;
const vec3 KEY = normalize(vec3(-0.45, 0.6, 0.65));
void main() {
    vec4 base = u_base_color;
    if (u_use_texture) base *= texture(u_texture, v_uv);
    if (u_use_colors) base *= v_color;
    if (base.a < u_alpha_cutoff) discard;

    vec3 face = cross(dFdx(v_view_position), dFdy(v_view_position));
    vec3 n = length(face) > 0.0 ? normalize(face) : vec3(0.0, 0.0, 1.0);
    if (n.z < 0.0) n = -n;
    if (u_use_normals && length(v_normal) > 0.0) {
        vec3 smooth_n = normalize(v_normal);
        n = dot(smooth_n, n) < 0.0 ? -smooth_n : smooth_n;
    }
    float head = 0.5 + 0.5 * n.z;
    float key = max(dot(n, KEY), 0.0);
    vec3 light = vec3(0.12 + 0.70 * head * head + 0.25 * key);
    f_color = vec4(min(base.rgb * light, vec3(1.0)), 1.0);
}
"""

_UNLIT_VERTEX = """
#version 330
uniform mat4 u_view_projection;
in vec3 in_position;
in vec4 in_color;
in mat4 in_model;
out vec4 v_color;
void main() {
    gl_Position = u_view_projection * in_model * vec4(in_position, 1.0);
    v_color = in_color;
}
"""

_UNLIT_FRAGMENT = """
#version 330
uniform vec4 u_base_color;
uniform bool u_use_colors;
in vec4 v_color;
out vec4 f_color;
void main() {
    vec4 base = u_base_color;
    if (u_use_colors) base *= v_color;
    f_color = vec4(base.rgb, 1.0);
}
"""


class GpuScene:
    """Drawables uploaded once to a context, drawn from any number of cameras."""

    def __init__(self, ctx, drawables: list[Drawable], max_texture_size: int) -> None:
        self.ctx = ctx
        self.lit = ctx.program(vertex_shader=_LIT_VERTEX, fragment_shader=_LIT_FRAGMENT)
        self.unlit = ctx.program(vertex_shader=_UNLIT_VERTEX, fragment_shader=_UNLIT_FRAGMENT)
        limit = min(max_texture_size, ctx.info["GL_MAX_TEXTURE_SIZE"])
        textures: dict[int, object] = {}
        self.items = []
        for drawable in drawables:
            texture = None
            if drawable.texture is not None:
                key = id(drawable.texture)
                if key not in textures:
                    textures[key] = self._upload_texture(drawable.texture, limit)
                texture = textures[key]
            self.items.append((drawable, self._upload(drawable), texture))
        logger.debug(
            "uploaded %d drawables, %d textures, %d instances",
            len(self.items),
            len(textures),
            sum(len(d.transforms) for d in drawables),
        )

    def _upload(self, drawable: Drawable):
        ctx = self.ctx
        program = self.lit if drawable.mode == "triangles" else self.unlit
        instances = _instance_data(drawable.transforms, with_normals=program is self.lit)
        content = [(ctx.buffer(drawable.positions.astype("f4").tobytes()), "3f", "in_position")]
        if drawable.mode == "triangles" and drawable.normals is not None:
            content.append((ctx.buffer(drawable.normals.astype("f4").tobytes()), "3f", "in_normal"))
        if drawable.mode == "triangles" and drawable.uvs is not None:
            content.append((ctx.buffer(drawable.uvs.astype("f4").tobytes()), "2f", "in_uv"))
        if drawable.colors is not None:
            content.append((ctx.buffer(drawable.colors.astype("u1").tobytes()), "4f1", "in_color"))
        if program is self.lit:
            per_instance = ("16f 9f/i", "in_model", "in_normal_model")
        else:
            per_instance = ("16f/i", "in_model")
        content.append((ctx.buffer(instances.tobytes()), *per_instance))
        index_buffer = None
        if drawable.indices is not None:
            index_buffer = ctx.buffer(drawable.indices.astype("u4").tobytes())
        return ctx.vertex_array(program, content, index_buffer=index_buffer, index_element_size=4)

    def _upload_texture(self, image: Image.Image, limit: int):
        import moderngl

        image = image.convert("RGBA")
        if max(image.size) > limit:
            # a 512-pixel thumbnail samples a 1k texture at its finest mip anyway
            scale = limit / max(image.size)
            size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
            image = image.resize(size, Image.Resampling.BOX)
        # GL's first texel row is v=0; trimesh UVs have their origin bottom-left
        image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        texture = self.ctx.texture(image.size, 4, image.tobytes())
        texture.build_mipmaps()
        texture.filter = (moderngl.LINEAR_MIPMAP_LINEAR, moderngl.LINEAR)
        return texture

    def draw(
        self, camera: Camera, width: int, height: int, supersample: int, point_size: float
    ) -> Image.Image:
        """One view as a (width, height) RGBA image, transparent where nothing was drawn.

        Anti-aliasing is supersampling: the view is drawn ``supersample`` times
        larger and each block of pixels averaged. On llvmpipe that costs a few
        percent where 4x MSAA doubles the time of a 1M-triangle view.
        """
        import moderngl

        ctx = self.ctx
        factor = max(1, supersample)
        size = (width * factor, height * factor)
        limit = min(ctx.info["GL_MAX_RENDERBUFFER_SIZE"], *ctx.info["GL_MAX_VIEWPORT_DIMS"])
        if max(size) > limit:
            raise RenderError(
                f"cannot render {size[0]}x{size[1]} pixels: this OpenGL device stops at {limit}; "
                "lower width, height or supersample"
            )
        color = ctx.renderbuffer(size, 4)
        depth = ctx.depth_renderbuffer(size)
        framebuffer = ctx.framebuffer(color_attachments=[color], depth_attachment=depth)
        framebuffer.use()
        ctx.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        ctx.point_size = min(point_size * factor, ctx.info["GL_POINT_SIZE_RANGE"][1])
        ctx.line_width = min(factor, ctx.info["GL_ALIASED_LINE_WIDTH_RANGE"][1])
        view_projection = camera.view_projection.T.astype("f4").tobytes()
        for program in (self.lit, self.unlit):
            program["u_view_projection"].write(view_projection)
        self.lit["u_rotation"].write(camera.rotation.T.astype("f4").tobytes())
        modes = {
            "triangles": moderngl.TRIANGLES,
            "points": moderngl.POINTS,
            "lines": moderngl.LINES,
        }
        for drawable, vao, texture in self.items:
            program = vao.program
            program["u_base_color"].value = tuple(drawable.base_color)
            program["u_use_colors"].value = drawable.colors is not None
            if program is self.lit:
                program["u_use_normals"].value = drawable.normals is not None
                program["u_use_texture"].value = texture is not None
                program["u_alpha_cutoff"].value = drawable.alpha_cutoff
                if texture is not None:
                    texture.use(0)
                    program["u_texture"].value = 0
            vao.render(modes[drawable.mode], instances=len(drawable.transforms))

        pixels = np.frombuffer(framebuffer.read(components=4, alignment=1), dtype=np.uint8)
        framebuffer.release()
        color.release()
        depth.release()
        image = Image.fromarray(pixels.reshape(size[1], size[0], 4)[::-1])
        # Pillow averages RGBA weighted by alpha: edge pixels get straight-alpha
        # colours, not colours darkened by the transparent-black background
        return image.reduce(factor) if factor > 1 else image

    def release(self) -> None:
        for _, vao, texture in self.items:
            vao.release()
            if texture is not None:
                texture.release()
        self.lit.release()
        self.unlit.release()


def _instance_data(transforms: np.ndarray, with_normals: bool) -> np.ndarray:
    """Per-instance attribute rows: the model matrix, then its normal matrix, column-major."""
    count = len(transforms)
    model = transforms.transpose(0, 2, 1).reshape(count, 16)
    if not with_normals:
        return model.astype("f4")
    linear = transforms[:, :3, :3]
    # a singular placement (scaled to zero) draws nothing useful; keep its normals finite
    determinant = np.linalg.det(linear)
    safe = np.where(np.abs(determinant)[:, None, None] > 1e-30, linear, np.eye(3))
    normal = np.linalg.inv(safe).transpose(0, 2, 1)
    return np.hstack([model, normal.transpose(0, 2, 1).reshape(count, 9)]).astype("f4")


# -- ID buffers (remove_hidden) ----------------------------------------------------------

_ID_VERTEX = """
#version 330
uniform mat4 u_view_projection;
uniform uint u_first_placement;
in vec3 in_position;
in mat4 in_model;
flat out uint v_placement;
void main() {
    gl_Position = u_view_projection * in_model * vec4(in_position, 1.0);
    v_placement = u_first_placement + uint(gl_InstanceID);
}
"""

# gl_PrimitiveID counts the triangles of the draw call, restarting with each instance
_ID_FRAGMENT = """
#version 330
flat in uint v_placement;
out uvec2 f_id;
void main() {
    f_id = uvec2(v_placement + 1u, uint(gl_PrimitiveID));
}
"""


class IdScene:
    """Triangle meshes uploaded once, drawn as ID buffers: which placement and which of its
    triangles covers each pixel centre (no lighting, no anti-aliasing)."""

    def __init__(self, ctx, meshes: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
        """``meshes``: (positions (n, 3) float32, faces (m, 3) uint32, transforms (k, 4, 4))
        each; placements are numbered in that order, mesh by mesh."""
        self.ctx = ctx
        self.program = ctx.program(vertex_shader=_ID_VERTEX, fragment_shader=_ID_FRAGMENT)
        self.items = []
        first = 0
        for positions, faces, transforms in meshes:
            model = np.ascontiguousarray(transforms.transpose(0, 2, 1).reshape(-1, 16), "f4")
            vao = ctx.vertex_array(
                self.program,
                [
                    (
                        ctx.buffer(np.ascontiguousarray(positions, "f4").tobytes()),
                        "3f",
                        "in_position",
                    ),
                    (ctx.buffer(model.tobytes()), "16f/i", "in_model"),
                ],
                index_buffer=ctx.buffer(np.ascontiguousarray(faces, "u4").tobytes()),
                index_element_size=4,
            )
            self.items.append((vao, first, len(transforms)))
            first += len(transforms)

    def draw(self, view_projection: np.ndarray, size: int) -> np.ndarray:
        """(size, size, 2) uint32: placement number + 1 (0: background) and triangle index."""
        import moderngl

        ctx = self.ctx
        limit = min(ctx.info["GL_MAX_RENDERBUFFER_SIZE"], *ctx.info["GL_MAX_VIEWPORT_DIMS"])
        if size > limit:
            raise RenderError(f"cannot draw a {size}² ID buffer: this device stops at {limit}")
        ids = ctx.renderbuffer((size, size), 2, dtype="u4")
        depth = ctx.depth_renderbuffer((size, size))
        framebuffer = ctx.framebuffer(color_attachments=[ids], depth_attachment=depth)
        framebuffer.use()
        framebuffer.clear(0.0, 0.0, 0.0, 0.0, depth=1.0)
        ctx.enable(moderngl.DEPTH_TEST)
        ctx.disable(moderngl.CULL_FACE | moderngl.BLEND)
        self.program["u_view_projection"].write(view_projection.T.astype("f4").tobytes())
        for vao, first, count in self.items:
            self.program["u_first_placement"].value = first
            vao.render(moderngl.TRIANGLES, instances=count)
        data = framebuffer.read(components=2, dtype="u4", alignment=1)
        framebuffer.release()
        ids.release()
        depth.release()
        return np.frombuffer(data, dtype=np.uint32).reshape(size, size, 2)

    def release(self) -> None:
        for vao, _, _ in self.items:
            vao.release()
        self.program.release()
