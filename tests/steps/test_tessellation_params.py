"""Tessellation control: presets and explicit tolerances reach the CAD reader, the mesh stays
within the sag asked for (measured against the B-rep by OCCT), and coarser levels of detail
come from the same read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from tasks.processes._params import ModelParams, field_errors
from tasks.steps._meshes import placements
from tasks.steps.io import LoadOptions, load
from tasks.steps.tessellate import PRESETS, TessellateOptions, bounding_diagonal
from tasks.steps.units import frame_matrix

DATA = Path(__file__).parents[1] / "data"
AS1 = DATA / "step/as1-oc-214.stp"


def read(tessellation: TessellateOptions, **fields):
    return load(AS1, LoadOptions(tessellation=tessellation, **fields))


def brep(path: Path):
    """The file's faces as OCCT's plain STEP reader places them (millimetres, Z up), as one
    compound: distances to it are distances to the surfaces, not to the solids' volumes."""
    from OCP.BRep import BRep_Builder
    from OCP.STEPControl import STEPControl_Reader
    from OCP.TopAbs import TopAbs_FACE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopoDS import TopoDS_Compound

    reader = STEPControl_Reader()
    reader.ReadFile(str(path))
    reader.TransferRoots()
    faces, builder = TopoDS_Compound(), BRep_Builder()
    builder.MakeCompound(faces)
    explorer = TopExp_Explorer(reader.OneShape(), TopAbs_FACE)
    while explorer.More():
        builder.Add(faces, explorer.Current())
        explorer.Next()
    return faces


def surface_points(scene, per_mesh: int = 40, seed: int = 0) -> np.ndarray:
    """Triangle centres and edge midpoints (where chord error shows), in the file's frame."""
    back = frame_matrix(1.0, "y", 0.001, "z")  # io.load made it metres, +Y up
    rng = np.random.default_rng(seed)
    points, seen = [], set()
    for placement in placements(scene.trimesh_scene):
        if placement.geometry_name in seen:
            continue  # another placement of a part shows the same chord errors
        seen.add(placement.geometry_name)
        mesh = placement.geometry
        chosen = rng.choice(len(mesh.faces), min(per_mesh, len(mesh.faces)), replace=False)
        corners = mesh.vertices[mesh.faces[chosen]]
        local = np.vstack([corners.mean(axis=1), (corners[:, 0] + corners[:, 1]) / 2])
        world = local @ placement.transform[:3, :3].T + placement.transform[:3, 3]
        points.append(world @ back[:3, :3].T + back[:3, 3])
    return np.vstack(points)


def distances_to(shape, points: np.ndarray) -> np.ndarray:
    """OCCT's exact distance from each point to the B-rep (BRepExtrema_DistShapeShape)."""
    from OCP.BRepBuilderAPI import BRepBuilderAPI_MakeVertex
    from OCP.BRepExtrema import BRepExtrema_DistShapeShape
    from OCP.gp import gp_Pnt

    result = []
    for x, y, z in points:
        vertex = BRepBuilderAPI_MakeVertex(gp_Pnt(float(x), float(y), float(z))).Vertex()
        query = BRepExtrema_DistShapeShape(vertex, shape)
        assert query.IsDone()
        result.append(query.Value())
    return np.array(result)


def test_very_high_has_several_times_the_triangles_of_low():
    counts = {preset: read(TessellateOptions(preset)).triangle_count for preset in PRESETS}
    assert counts["low"] < counts["medium"] < counts["high"] < counts["very_high"]
    assert counts["very_high"] > 4 * counts["low"], counts


@pytest.mark.parametrize("sag", [0.02, 0.2])
def test_an_explicit_sag_bounds_the_distance_to_the_brep(sag):
    # a wide angle, so the sag alone decides how finely curved faces are cut
    scene = read(TessellateOptions(max_sag=sag, max_angle=60))
    distances = distances_to(brep(AS1), surface_points(scene))
    assert distances.max() <= sag * 1.05 + 1e-6, distances.max()
    # and the tolerance is used, not a far finer mesh than asked for
    assert distances.max() > 0.2 * sag


def test_the_very_high_preset_stays_within_its_sag_of_the_model():
    shape = brep(AS1)
    scene = read(TessellateOptions("very_high"))
    sag = PRESETS["very_high"].max_sag_ratio * bounding_diagonal(shape)
    assert distances_to(shape, surface_points(scene, per_mesh=20)).max() <= sag * 1.05


def test_relative_sag_is_a_share_of_the_model_diagonal():
    shape = brep(AS1)
    scene = read(TessellateOptions(relative_sag=0.0005, max_angle=60))
    sag = 0.0005 * bounding_diagonal(shape)
    distances = distances_to(shape, surface_points(scene, per_mesh=20))
    assert sag * 0.2 < distances.max() <= sag * 1.05


def test_uvs_and_normals_can_be_asked_for_or_left_out():
    with_uvs = read(TessellateOptions("low", uvs=True, normals=False))
    for placement in placements(with_uvs.trimesh_scene):
        uv = placement.geometry.visual.uv
        assert uv is not None and len(uv) == len(placement.geometry.vertices)
        assert uv.min() >= 0 and uv.max() <= 1
        assert placement.geometry._cache["vertex_normals"] is None
    plain = read(TessellateOptions("low"))
    for placement in placements(plain.trimesh_scene):
        assert placement.geometry.visual.uv is None
        assert placement.geometry._cache["vertex_normals"] is not None


def test_coarser_levels_come_from_the_same_read():
    fine = TessellateOptions("high")
    scene = read(fine, lod_tessellations=(TessellateOptions("high", coarsen=4),))
    [coarse] = scene.lods
    assert coarse.triangle_count < 0.6 * scene.triangle_count
    # same tree, names, materials and frame (metres, +Y up) as the scene itself
    assert sorted(coarse.trimesh_scene.graph.nodes_geometry) == sorted(
        scene.trimesh_scene.graph.nodes_geometry
    )
    assert coarse.unit == scene.unit == 1.0 and coarse.up_axis == "y"
    assert np.allclose(coarse.trimesh_scene.bounds, scene.trimesh_scene.bounds, atol=1e-3)
    # the first mesh is not kept when a coarser one is asked for (OCCT's cache is cleared)
    alone = read(TessellateOptions("high", coarsen=4))
    assert alone.triangle_count == coarse.triangle_count


@pytest.mark.parametrize(
    "value,expected",
    [
        ("very_high", TessellateOptions("very_high")),
        ({"max_sag": 0.05, "max_angle": 15}, TessellateOptions(max_sag=0.05, max_angle=15)),
        ({"preset": "low", "relative_sag": 0.001, "uvs": True}, None),
    ],
)
def test_model_params_map_tessellation_to_load_options(value, expected):
    options = ModelParams.model_validate({"tessellation": value}).load_options().tessellation
    if expected is None:
        expected = TessellateOptions("low", relative_sag=0.001, uvs=True)
    assert options == expected
    assert ModelParams.model_validate({}).load_options().tessellation == TessellateOptions()


@pytest.mark.parametrize(
    "value,expected",
    [
        ("ultra", "params.tessellation.preset: Input should be 'low', 'medium', 'high' or"),
        ({"max_sag": 0}, "params.tessellation.tolerances.max_sag: Input should be greater"),
        ({"max_length": 2}, "params.tessellation.tolerances: max_length is not supported"),
        ({"max_sag": 1, "relative_sag": 0.01}, "params.tessellation.tolerances: give max_sag"),
        ({"sag": 1}, "params.tessellation.tolerances.sag: Extra inputs are not permitted"),
    ],
)
def test_bad_tessellation_params_name_the_field(value, expected):
    with pytest.raises(ValidationError) as caught:
        ModelParams.model_validate({"tessellation": value})
    assert field_errors(caught.value).startswith(expected)


def test_generate_lods_plans_cad_levels_from_the_coarser_tessellations():
    from tasks.processes.generate_lods import level_plan

    ratios = [1.0, 0.5, 0.1]
    coarser = tuple(TessellateOptions("high", coarsen=1 / r) for r in ratios[1:])
    scene = read(TessellateOptions("high"), lod_tessellations=coarser)
    levels = list(scene.lods)
    plan = level_plan(scene, ratios)
    assert scene.lods == []  # each level travels to its own child only
    assert plan[0] == (scene, 1.0, "as read")
    for (start, share, method), level, ratio in zip(plan[1:], levels, ratios[1:], strict=True):
        assert start is level
        target = ratio * scene.triangle_count
        if level.triangle_count > target:
            assert method == "tessellated and decimated"
            assert share == pytest.approx(target / level.triangle_count)
        else:
            assert (share, method) == (1.0, "tessellated")
    # a mesh (no coarser tessellations) is decimated level by level
    mesh = load(DATA / "off/Wuson.off")
    assert [method for _, _, method in level_plan(mesh, ratios)] == [
        "as read",
        "decimated",
        "decimated",
    ]
