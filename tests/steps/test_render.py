"""Thumbnails: what a user sees in the PNGs `render_views` + `save_views` produce."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from tasks.steps import _gl
from tasks.steps.errors import OptionsError, RenderError
from tasks.steps.render import VIEWS, RenderOptions, render_views, renderer_info, save_views
from tasks.steps.scene import from_trimesh

DATA = Path(__file__).resolve().parents[1] / "data"


# -- helpers: measure what is on the picture ---------------------------------


def opaque(image: Image.Image) -> np.ndarray:
    """Mask of pixels the model covers (at least half opaque)."""
    return np.asarray(image)[..., 3] > 127


def opaque_rgb(image: Image.Image) -> np.ndarray:
    """(n, 3) int colours of the covered pixels."""
    return np.asarray(image)[opaque(image)][:, :3].astype(int)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return xs.min(), ys.min(), xs.max(), ys.max()


def share(condition: np.ndarray) -> float:
    return float(np.mean(condition)) if len(condition) else 0.0


def red_box() -> trimesh.Trimesh:
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    box.visual.face_colors = [220, 20, 20, 255]
    return box


# -- fixtures: each model rendered once --------------------------------------


@pytest.fixture(scope="module")
def truck_pngs(tmp_path_factory) -> dict[str, Path]:
    scene = from_trimesh(trimesh.load(DATA / "glb" / "CesiumMilkTruck.glb"), source_name="truck")
    out = tmp_path_factory.mktemp("truck")
    return save_views(render_views(scene), out, stem="truck")


@pytest.fixture(scope="module")
def fuze_views() -> dict[str, Image.Image]:
    mesh = trimesh.load(DATA / "obj" / "fuze" / "fuze.obj")
    return render_views(from_trimesh(mesh, source_name="fuze.obj"))


@pytest.fixture(scope="module")
def red_box_views() -> dict[str, Image.Image]:
    return render_views(from_trimesh(red_box(), source_name="box.stl"))


# -- the files ----------------------------------------------------------------


def test_every_view_is_written_as_a_512_rgba_png_named_after_it(truck_pngs):
    assert sorted(truck_pngs) == sorted(VIEWS)
    for view, path in truck_pngs.items():
        assert path.name == f"truck_{view}.png"
        with Image.open(path) as image:
            assert image.format == "PNG"
            assert image.size == (512, 512)
            assert image.mode == "RGBA"


def test_background_is_transparent_and_the_model_is_not(truck_pngs):
    for path in truck_pngs.values():
        image = Image.open(path)
        alpha = np.asarray(image)[..., 3]
        assert alpha[0, 0] == alpha[0, -1] == alpha[-1, 0] == alpha[-1, -1] == 0
        assert 0.05 < opaque(image).mean() < 0.90, path.name


def test_the_model_is_centred_and_fills_the_frame(truck_pngs):
    for path in truck_pngs.values():
        left, top, right, bottom = box_of(opaque(Image.open(path)))
        assert abs((left + right) / 2 - 256) < 8, path.name
        assert abs((top + bottom) / 2 - 256) < 8, path.name
        # the default 5 % margin: the longer side spans ~90 % of the frame
        assert max(right - left, bottom - top) > 0.85 * 512, path.name


def test_the_four_views_show_different_sides(truck_pngs):
    masks = {view: opaque(Image.open(path)) for view, path in truck_pngs.items()}
    for first in VIEWS:
        for second in VIEWS[VIEWS.index(first) + 1 :]:
            overlap = (masks[first] & masks[second]).sum() / (masks[first] | masks[second]).sum()
            assert overlap < 0.9, f"{first} and {second} look the same"


def test_a_non_square_size_is_honoured_and_still_fitted():
    options = RenderOptions(views=("iso",), width=320, height=200)
    image = render_views(from_trimesh(red_box()), options)["iso"]
    assert image.size == (320, 200)
    left, top, right, bottom = box_of(opaque(image))
    assert bottom - top > 0.85 * 200  # the box is taller than wide: height limits it


# -- colours --------------------------------------------------------------------


def test_a_red_box_renders_red_in_every_view(red_box_views):
    for view, image in red_box_views.items():
        r, g, b = opaque_rgb(image).mean(axis=0)
        assert r > 120 and g < 60 and b < 60, (view, r, g, b)


def test_lighting_makes_the_three_visible_faces_of_a_box_distinct(red_box_views):
    reds = opaque_rgb(red_box_views["iso"])[:, 0]
    levels, counts = np.unique(reds, return_counts=True)
    faces = levels[counts > 0.1 * len(reds)]
    assert len(faces) == 3 and np.ptp(faces) > 30, faces


def test_a_gltf_base_colour_texture_shows_its_colours(truck_pngs):
    # the truck is white with a green-and-blue logo that exists only in the texture
    rgb = opaque_rgb(Image.open(truck_pngs["iso"]))
    green = share((rgb[:, 1] > rgb[:, 0] + 30) & (rgb[:, 1] > rgb[:, 2]))
    blue = share(rgb[:, 2] > rgb[:, 0] + 40)
    assert green > 0.01 and blue > 0.01, (green, blue)


def test_an_obj_map_kd_texture_shows_its_colours(fuze_views):
    rgb = opaque_rgb(fuze_views["iso"])
    assert share(rgb[:, 0] > rgb[:, 1] + 60) > 0.3  # the red label
    assert share(rgb[:, 2] > rgb[:, 0] + 40) > 0.02  # the blue cap
    assert len(np.unique(rgb // 32, axis=0)) > 30  # a picture, not a flat fill


def test_a_texture_is_not_drawn_upside_down():
    # a quad facing +Z, UV (0, 0) at the bottom-left; the image's top half is red
    quad = trimesh.Trimesh(
        vertices=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]]
    )
    picture = np.zeros((64, 64, 3), dtype=np.uint8)
    picture[:32] = [255, 0, 0]
    picture[32:] = [0, 0, 255]
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=Image.fromarray(picture))
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float)
    quad.visual = trimesh.visual.TextureVisuals(uv=uv, material=material)
    pixels = np.asarray(render_views(from_trimesh(quad), RenderOptions(views=("z",)))["z"])
    upper, lower = pixels[128, 256, :3].astype(int), pixels[384, 256, :3].astype(int)
    assert upper[0] > 150 and upper[2] < 60, upper
    assert lower[2] > 150 and lower[0] < 60, lower


def test_vertex_colours_are_drawn():
    sphere = trimesh.creation.icosphere(subdivisions=3)
    colors = np.where(sphere.vertices[:, :1] < 0, [255, 0, 0, 255], [0, 0, 255, 255])
    sphere.visual.vertex_colors = colors.astype(np.uint8)
    rgb = opaque_rgb(render_views(from_trimesh(sphere), RenderOptions(views=("z",)))["z"])
    assert share(rgb[:, 0] > rgb[:, 2] + 80) > 0.3
    assert share(rgb[:, 2] > rgb[:, 0] + 80) > 0.3


def test_face_colours_stay_on_their_faces():
    box = trimesh.creation.box()
    top = box.face_normals[:, 1] > 0.9
    box.visual.face_colors = np.where(top[:, None], [255, 0, 0, 255], [0, 0, 255, 255])
    views = render_views(from_trimesh(box), RenderOptions(views=("y", "z")))
    looking_down, looking_at_front = opaque_rgb(views["y"]), opaque_rgb(views["z"])
    assert share(looking_down[:, 0] > 150) > 0.95
    assert share(looking_at_front[:, 2] > 150) > 0.95


def test_a_texture_without_uvs_falls_back_to_the_base_colour():
    mesh = trimesh.load(DATA / "obj" / "fuze" / "fuze.obj")
    material = mesh.visual.material
    mesh.visual = trimesh.visual.TextureVisuals(uv=None, material=material)
    image = render_views(from_trimesh(mesh), RenderOptions(views=("x",)))["x"]
    assert 0.05 < opaque(image).mean() < 0.9
    assert len(np.unique(opaque_rgb(image) // 32, axis=0)) < 10


# -- scene structure ------------------------------------------------------------


def test_every_instance_is_drawn_where_its_node_places_it():
    scene = trimesh.Scene()
    scene.add_geometry(red_box(), geom_name="box", node_name="left")
    scene.graph.update(
        frame_to="left", matrix=trimesh.transformations.translation_matrix([-5, 0, 0])
    )
    right = trimesh.transformations.translation_matrix([5, 0, 0])
    scene.graph.update(frame_to="right", frame_from="world", matrix=right, geometry="box")
    assert len(scene.graph.nodes_geometry) == 2 and len(scene.geometry) == 1
    mask = opaque(render_views(from_trimesh(scene), RenderOptions(views=("z",)))["z"])
    columns = mask.any(axis=0)
    # two boxes 10 apart, 1 wide: two blocks with a wide gap in the middle
    assert not columns[200:312].any()
    assert columns[:200].sum() > 20 and columns[312:].sum() > 20


def test_a_model_far_from_the_origin_renders_like_one_at_the_origin():
    # CAD in millimetres often sits kilometres away; float32 must not shake it apart
    near = render_views(from_trimesh(trimesh.creation.icosphere(3)), RenderOptions(views=("iso",)))
    far_mesh = trimesh.creation.icosphere(3)
    far_mesh.apply_translation([3.0e6, -2.0e6, 1.0e6])
    far = render_views(from_trimesh(far_mesh), RenderOptions(views=("iso",)))
    a, b = opaque(near["iso"]), opaque(far["iso"])
    assert (a & b).sum() / (a | b).sum() > 0.98


def test_up_axis_z_stands_a_z_up_part_upright():
    tall = trimesh.creation.box(extents=(1.0, 1.0, 3.0))
    for up, upright in (("z", True), ("y", False)):
        image = render_views(from_trimesh(tall), RenderOptions(views=("x",), up_axis=up))["x"]
        left, top, right, bottom = box_of(opaque(image))
        assert bool(bottom - top > right - left) == upright, up


def test_a_point_cloud_is_drawn_as_coloured_points():
    points = trimesh.creation.icosphere(3).vertices * [2.0, 1.0, 1.0]
    cloud = trimesh.PointCloud(points, colors=np.tile([0, 180, 0, 255], (len(points), 1)))
    image = render_views(from_trimesh(cloud), RenderOptions(views=("z",)))["z"]
    mask = opaque(image)
    assert 0.01 < mask.mean() < 0.5  # dots, not a filled ellipse
    left, top, right, bottom = box_of(mask)
    assert abs((left + right) / 2 - 256) < 8 and right - left > 0.85 * 512
    rgb = opaque_rgb(image)
    assert share(rgb[:, 1] > rgb[:, 0] + 100) > 0.9


def test_3d_lines_are_drawn_and_2d_paths_are_skipped_with_a_warning():
    line = trimesh.load_path(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]]))
    outline = trimesh.load_path(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))
    scene = from_trimesh(trimesh.Scene([line, outline]))
    image = render_views(scene, RenderOptions(views=("z",)))["z"]
    assert opaque(image).sum() > 200
    assert scene.warnings == ["render: skipped 1 Path2D geometries (only meshes, points, 3D lines)"]


def test_a_huge_mesh_is_uploaded_once_for_all_views(monkeypatch):
    uploads = []
    original = _gl.GpuScene.__init__

    def counting(self, *args, **kwargs):
        uploads.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(_gl.GpuScene, "__init__", counting)
    sphere = trimesh.creation.icosphere(subdivisions=7)  # 328k triangles
    views = render_views(from_trimesh(sphere))
    assert len(uploads) == 1 and len(views) == 4
    assert all(0.5 < opaque(image).mean() < 0.75 for image in views.values())  # a disc: pi/4 * 0.9²


# -- errors a user reads ----------------------------------------------------------


def test_an_empty_scene_is_a_clear_error():
    with pytest.raises(RenderError, match="nothing to render in 'empty.glb'"):
        render_views(from_trimesh(trimesh.Scene(), source_name="empty.glb"))


def test_a_missing_egl_library_names_the_packages_to_install(monkeypatch):
    monkeypatch.setattr(_gl, "find_library", lambda name: None)
    with pytest.raises(
        RenderError, match="libEGL and libGL not found; install libegl1 libegl-mesa0"
    ):
        render_views(from_trimesh(red_box()))


def test_an_egl_that_cannot_open_a_context_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("GLCONTEXT_LINUX_LIBEGL", "/nonexistent/libEGL.so.1")
    with pytest.raises(
        RenderError, match="no EGL device could open an OpenGL 3.3 context .*libgl1-mesa-dri"
    ):
        renderer_info()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (RenderOptions(views=("top",)), "views must be some of iso, x, y, z, got \\['top'\\]"),
        (RenderOptions(width=0), "width must be 16..4096 pixels, got 0"),
        (RenderOptions(up_axis="x"), "up_axis must be 'y' or 'z', got 'x'"),
        (RenderOptions(supersample=8), "supersample must be 1..4, got 8"),
    ],
)
def test_bad_options_are_refused_before_any_drawing(options, message):
    with pytest.raises(OptionsError, match=message):
        render_views(from_trimesh(red_box()), options)


def test_renderer_info_says_what_draws_the_pixels():
    info = renderer_info()
    assert info["renderer"] and info["vendor"] and info["version"]
    assert info["device"] in ("cpu", "gpu")
    if "llvmpipe" in info["renderer"]:
        assert info["summary"] == "rendered on CPU (llvmpipe)"
    else:
        assert info["summary"].startswith("rendered on ")
