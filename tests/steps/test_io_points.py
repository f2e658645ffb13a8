"""Point clouds: E57 scans placed by their poses, LAS/LAZ, PTS and XYZ read with colours,
intensity and units; LAS, PLY and GLB written; huge clouds subsampled while streamed.

Expected values come from the files' own libraries (pye57, laspy), never from the reader.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import laspy
import numpy as np
import PIL.Image
import pye57
import pygltflib
import pytest
import trimesh

from tasks.steps.errors import OptionsError, ReadError
from tasks.steps.io import LoadOptions, load, save
from tasks.steps.metadata import metadata

DATA = Path(__file__).parents[1] / "data"
LAS = DATA / "las"
E57 = DATA / "e57"
ROOT = Path(__file__).parents[2]


def y_up(points: np.ndarray) -> np.ndarray:
    """Z-up file coordinates as `io.load` gives them: +Y up, as glTF (x, z, -y)."""
    points = np.asarray(points, dtype=np.float64)
    return np.column_stack([points[:, 0], points[:, 2], -points[:, 1]])


def world_points(scene, node: str) -> np.ndarray:
    transform, name = scene.trimesh_scene.graph[node]
    return trimesh.transform_points(scene.trimesh_scene.geometry[name].vertices, transform)


def only_cloud(scene) -> trimesh.PointCloud:
    (cloud,) = scene.trimesh_scene.geometry.values()
    assert isinstance(cloud, trimesh.PointCloud)
    return cloud


@pytest.fixture(scope="module")
def two_scans(tmp_path_factory) -> Path:
    """The real coloured cube split into two scans with different poses and intensities."""
    source = pye57.E57(str(E57 / "ColouredCubeFloat.e57"))
    data = source.read_scan_raw(0)
    source.close()
    half = len(data["cartesianX"]) // 2
    north = {key: values[:half] for key, values in data.items()}
    south = {key: values[half:] for key, values in data.items()}
    north["intensity"] = np.linspace(0.0, 1.0, half)
    south["intensity"] = np.linspace(1.0, 0.0, len(south["cartesianX"]))
    path = tmp_path_factory.mktemp("e57") / "two_scans.e57"
    writer = pye57.E57(str(path), mode="w")
    writer.write_scan_raw(
        north, name="north", rotation=np.array([1.0, 0, 0, 0]), translation=np.array([10.0, 0, 0])
    )
    quarter_turn = np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)])  # 90 degrees about Z
    writer.write_scan_raw(
        south, name="south", rotation=quarter_turn, translation=np.array([0.0, 20, 1])
    )
    writer.close()
    return path


# -- E57 ---------------------------------------------------------------------------------


def test_an_e57_with_two_scans_gives_both_placed_by_their_poses(two_scans):
    scene = load(two_scans)
    assert sorted(scene.trimesh_scene.graph.nodes_geometry) == ["north", "south"]
    e57 = pye57.E57(str(two_scans))
    for index, node in enumerate(["north", "south"]):
        expected = e57.read_scan(
            index, colors=True, intensity=True, transform=True, ignore_missing_fields=True
        )
        xyz = np.column_stack([expected[f"cartesian{axis}"] for axis in "XYZ"])
        np.testing.assert_allclose(world_points(scene, node), y_up(xyz), atol=1e-9)
        cloud = scene.trimesh_scene.geometry[scene.trimesh_scene.graph[node][1]]
        rgb = np.column_stack([expected[f"color{c}"] for c in ("Red", "Green", "Blue")])
        np.testing.assert_array_equal(cloud.colors[:, :3], rgb)
        np.testing.assert_allclose(cloud.metadata["intensity"], expected["intensity"], atol=1e-6)
    e57.close()
    facts = metadata(scene)
    assert facts["point_count"] == 7680
    assert facts["point_cloud_count"] == 2
    assert facts["point_colors"] is True and facts["point_intensity"] is True


def test_a_real_e57_pose_places_its_points():
    path = E57 / "translationWithoutRotation.e57"
    scene = load(path)
    e57 = pye57.E57(str(path))
    expected = e57.read_scan(0, transform=True, ignore_missing_fields=True)
    xyz = np.column_stack([expected[f"cartesian{axis}"] for axis in "XYZ"])
    assert (e57.get_header(0).translation == [4, 5, 6]).all()
    (node,) = scene.trimesh_scene.graph.nodes_geometry
    np.testing.assert_allclose(world_points(scene, node), y_up(xyz), atol=1e-12)
    assert (scene.source_unit, scene.source_up_axis) == (1.0, "z")
    assert metadata(scene)["point_colors"] is False


def test_max_points_is_shared_between_scans_by_their_sizes(two_scans):
    scene = load(two_scans, LoadOptions(max_points=1000))
    counts = [len(g.vertices) for g in scene.trimesh_scene.geometry.values()]
    assert counts == [500, 500]
    assert "subsampled 7,680 points to 1,000 (random, max_points=1,000)" in scene.warnings


# -- LAS and LAZ -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["simple.las", "simple.laz", "autzen.las", "test1_4.las"])
def test_las_point_count_and_bounds_match_the_header(name):
    scene = load(LAS / name)
    header = laspy.read(LAS / name).header
    facts = metadata(scene)
    assert facts["point_count"] == header.point_count
    unit = scene.source_unit
    low, high = y_up([header.mins * unit, header.maxs * unit])
    box = facts["bounding_box"]
    np.testing.assert_allclose(box["min"], np.minimum(low, high), atol=1e-6)
    np.testing.assert_allclose(box["max"], np.maximum(low, high), atol=1e-6)
    np.testing.assert_allclose(facts["source"]["size"], header.maxs - header.mins, rtol=1e-9)


@pytest.mark.parametrize(
    ("name", "unit"),
    [("simple.las", 1.0), ("autzen.las", 0.3048), ("test1_4.las", 1200 / 3937)],
    ids=["no CRS: metres", "GeoTIFF international foot", "WKT US survey foot"],
)
def test_las_unit_comes_from_its_crs(name, unit):
    assert load(LAS / name).source_unit == pytest.approx(unit)


def test_las_colours_and_intensity_are_kept():
    scene = load(LAS / "simple.las")
    expected = laspy.read(LAS / "simple.las")
    cloud = only_cloud(scene)
    # simple.las stores 8-bit colours in LAS's 16-bit fields (none over 255)
    rgb = np.column_stack([expected.red, expected.green, expected.blue])
    np.testing.assert_array_equal(cloud.colors[:, :3], rgb)
    np.testing.assert_allclose(cloud.metadata["intensity"], expected.intensity / 65535, atol=1e-6)
    assert metadata(scene)["point_colors"] is True


def test_a_cloud_with_intensity_and_no_colours_is_shown_in_grey():
    cloud = only_cloud(load(LAS / "autzen.las"))
    expected = laspy.read(LAS / "autzen.las").intensity
    grey = cloud.colors[:, 0].astype(int)
    assert cloud.metadata["colours"] == "intensity"
    assert (cloud.colors[:, 0] == cloud.colors[:, 2]).all()
    assert np.corrcoef(grey, expected)[0, 1] > 0.99  # brighter where the return was stronger
    facts = metadata(load(LAS / "autzen.las"))
    assert facts["point_colors"] is False and facts["point_intensity"] is True


@pytest.mark.parametrize("method", ["random", "voxel"])
def test_max_points_is_respected(method):
    scene = load(LAS / "simple.las", LoadOptions(max_points=100, subsample=method))
    kept = len(only_cloud(scene).vertices)
    assert kept == 100 if method == "random" else 50 <= kept <= 100
    assert any(w.startswith("subsampled 1,065 points") for w in scene.warnings)
    # the points kept are points of the file, with their own colours
    everything = only_cloud(load(LAS / "simple.las"))
    rows = {tuple(p) for p in np.round(everything.vertices, 6)}
    assert {tuple(p) for p in np.round(only_cloud(scene).vertices, 6)} <= rows


def test_max_points_above_the_count_keeps_every_point():
    scene = load(LAS / "simple.las", LoadOptions(max_points=5000, subsample="voxel"))
    assert len(only_cloud(scene).vertices) == 1065 and scene.warnings == []


def test_bad_subsampling_options_are_refused():
    with pytest.raises(OptionsError, match="subsample must be one of random, voxel"):
        load(LAS / "simple.las", LoadOptions(max_points=10, subsample="octree"))


def test_a_truncated_las_fails_with_a_reason(tmp_path):
    broken = tmp_path / "broken.las"
    broken.write_bytes((LAS / "simple.las").read_bytes()[:200])
    with pytest.raises(ReadError, match="cannot read 'broken.las' as LAS"):
        load(broken)


# -- PTS and XYZ -------------------------------------------------------------------------


def test_pts_and_xyz_text_keep_positions_colours_and_intensity(tmp_path):
    source = laspy.read(LAS / "simple.las")
    xyz = np.column_stack([source.x, source.y, source.z])
    rgb = np.column_stack([source.red, source.green, source.blue])
    leica = np.round(source.intensity / 65535 * 4095 - 2048).astype(int)  # -2048..2047
    pts = tmp_path / "simple.pts"
    lines = [
        f"{x:.3f} {y:.3f} {z:.3f} {i} {r} {g} {b}"
        for (x, y, z), i, (r, g, b) in zip(xyz, leica, rgb, strict=True)
    ]
    pts.write_text(f"{len(lines)}\n" + "\n".join(lines) + "\n")
    xyz_file = tmp_path / "simple.xyz"
    xyz_file.write_text(
        "# x,y,z,r,g,b\n"
        + "\n".join(
            f"{x:.3f},{y:.3f},{z:.3f},{r},{g},{b}"
            for (x, y, z), (r, g, b) in zip(xyz, rgb, strict=True)
        )
    )

    for path in (pts, xyz_file):
        scene = load(path)
        cloud = only_cloud(scene)
        np.testing.assert_allclose(world_points(scene, path.stem), y_up(xyz), atol=1e-6)
        np.testing.assert_array_equal(cloud.colors[:, :3], rgb)
        assert scene.source_up_axis == "z"
    intensity = only_cloud(load(pts)).metadata["intensity"]
    np.testing.assert_allclose(intensity, (leica + 2048) / 4095, atol=1e-6)
    assert "intensity" not in only_cloud(load(xyz_file)).metadata


def test_a_pts_file_joining_scans_skips_each_count_line(tmp_path):
    path = tmp_path / "joined.pts"
    path.write_text("2\n0 0 0 10\n1 0 0 20\n1\n0 1 0 30\n")
    scene = load(path, LoadOptions(max_points=2, subsample="voxel"))
    assert len(only_cloud(load(path)).vertices) == 3
    assert len(only_cloud(scene).vertices) <= 2


# -- writing -----------------------------------------------------------------------------


def test_outputs_reopen_in_laspy_trimesh_and_pygltflib(tmp_path):
    scene = load(LAS / "simple.las")
    source = laspy.read(LAS / "simple.las")
    xyz = np.column_stack([source.x, source.y, source.z])

    for name in ("out.las", "out.laz"):
        save(scene, tmp_path / name)
        written = laspy.read(tmp_path / name)
        assert written.header.point_count == 1065
        np.testing.assert_allclose(
            np.column_stack([written.x, written.y, written.z]), xyz, atol=1e-3
        )
        np.testing.assert_array_equal(np.asarray(written.red) >> 8, source.red)  # 8-bit kept
        np.testing.assert_array_equal(written.intensity, source.intensity)

    save(scene, tmp_path / "out.glb")
    gltf = pygltflib.GLTF2().load(str(tmp_path / "out.glb"))
    (primitive,) = gltf.meshes[0].primitives
    assert primitive.mode == pygltflib.POINTS
    assert gltf.accessors[primitive.attributes.POSITION].count == 1065
    assert primitive.attributes.COLOR_0 is not None
    reopened = trimesh.load_scene(tmp_path / "out.glb")
    # glTF is +Y up in metres, as the scene; the node keeps the big offset in float64
    np.testing.assert_allclose(reopened.bounds, scene.trimesh_scene.bounds, atol=1e-3)

    save(scene, tmp_path / "out.ply")
    ply = trimesh.load(tmp_path / "out.ply")
    assert isinstance(ply, trimesh.PointCloud) and len(ply.vertices) == 1065
    np.testing.assert_array_equal(
        ply.colors[:, :3], np.column_stack([source.red, source.green, source.blue])
    )


def test_an_e57_written_as_las_keeps_every_scan_in_place(two_scans, tmp_path):
    scene = load(two_scans)
    save(scene, tmp_path / "scans.las")
    written = laspy.read(tmp_path / "scans.las")
    e57 = pye57.E57(str(two_scans))
    expected = np.vstack(
        [
            np.column_stack([d[f"cartesian{a}"] for a in "XYZ"])
            for d in (e57.read_scan(i, ignore_missing_fields=True) for i in range(2))
        ]
    )
    np.testing.assert_allclose(
        np.column_stack([written.x, written.y, written.z]), expected, atol=1e-3
    )


# -- what processes show -----------------------------------------------------------------


def test_model_params_pass_max_points_to_the_readers():
    from tasks.processes.generate_metadata import Params

    options = Params.model_validate({"max_points": 100, "subsample": "voxel"}).load_options()
    assert (options.max_points, options.subsample) == (100, "voxel")


def run_process(process: str, model: Path, params: dict, out: Path) -> dict:
    """A process's `main` on one model, as a worker runs it (its E57 read in a child)."""
    import importlib

    from tasks.context import ProgramContext

    pc = ProgramContext(
        job_id="points",
        input_dir=model.parent,
        input_file=model,
        output_dir=out,
        params=params,
        info={},
        report=lambda kind, data: None,
    )
    return importlib.import_module(f"tasks.processes.{process}").main(pc, params)


def test_generate_metadata_and_thumbnails_describe_an_e57(two_scans, tmp_path):
    result = run_process("generate_metadata", two_scans, {"max_points": 2000}, tmp_path / "m")
    facts = result["metadata"]
    assert facts["point_count"] == 2000 and facts["point_cloud_count"] == 2
    assert facts["point_colors"] is True and facts["polygon_count"] == 0
    assert json.loads((tmp_path / "m" / "metadata.json").read_text()) == facts

    params = {"width": 128, "height": 128}
    result = run_process("generate_thumbnails", two_scans, params, tmp_path / "t")
    assert result["metadata"]["point_count"] == 7680
    for view, name in result["thumbs"].items():
        image = np.asarray(PIL.Image.open(tmp_path / "t" / name))
        assert (image[:, :, 3] > 0).sum() > 50, view  # two 1 m cubes 20 m apart: small
    preview = trimesh.load_scene(tmp_path / "t" / "preview.glb")
    assert sum(len(g.vertices) for g in preview.geometry.values()) == 7680


def test_thumbnails_draw_a_cloud():
    from tasks.steps.render import RenderOptions, render_views

    scene = load(LAS / "simple.laz")
    images = render_views(scene, RenderOptions(views=("iso", "y"), width=128, height=128))
    for image in images.values():
        alpha = np.asarray(image)[:, :, 3]
        assert (alpha > 0).sum() > 500  # a thousand 3-pixel dots, not an empty frame
        colours = np.asarray(image)[:, :, :3][alpha > 0]
        assert len(np.unique(colours // 32, axis=0)) > 3  # drawn in the file's colours


# -- a huge LAS within bounded memory ----------------------------------------------------

HUGE = 20_000_000

_WRITE = textwrap.dedent(
    """
    import sys
    import laspy, numpy as np

    # 20 M points a million at a time: a tilted 4 km x 5 km plane with 8-bit colours
    header = laspy.LasHeader(point_format=2, version="1.2")
    header.scales, header.offsets = [0.01] * 3, [500000.0, 4000000.0, 0.0]
    rng = np.random.default_rng(1)
    with laspy.open(sys.argv[1], mode="w", header=header) as writer:
        for start in range(0, int(sys.argv[2]), 1_000_000):
            points = laspy.ScaleAwarePointRecord.zeros(1_000_000, header=header)
            x, y = rng.uniform(0, 4000, 1_000_000), rng.uniform(0, 5000, 1_000_000)
            points.x, points.y, points.z = 500000 + x, 4000000 + y, 0.01 * x
            points.red = (x / 4000 * 255).astype(np.uint16)
            writer.write_points(points)
    """
)

_CONVERT = textwrap.dedent(
    """
    import json, resource, sys, time
    from pathlib import Path
    import laspy, numpy as np, trimesh, pye57
    from tasks.steps.io import LoadOptions, load, save
    import tasks.steps.io.points, tasks.steps.io.gltf

    path, max_points = Path(sys.argv[1]), int(sys.argv[2])
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # the imports' share
    result = {}
    for method in ("random", "voxel"):
        started = time.perf_counter()
        scene = load(path, LoadOptions(max_points=max_points, subsample=method))
        save(scene, path.with_name(f"{method}.glb"))
        cloud = next(iter(scene.trimesh_scene.geometry.values()))
        result[method] = {"points": len(cloud.vertices), "seconds": time.perf_counter() - started}
        del scene, cloud
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({**result, "peak_mib": after / 1024, "grew_mib": (after - before) / 1024}))
    """
)


def test_a_20_million_point_las_converts_within_bounded_memory(tmp_path):
    path = tmp_path / "huge.las"
    subprocess.run([sys.executable, "-c", _WRITE, str(path), str(HUGE)], check=True, timeout=300)
    assert laspy.open(path).header.point_count == HUGE
    # load + save with each method, in a fresh process whose peak memory is its own
    done = subprocess.run(
        [sys.executable, "-c", _CONVERT, str(path), "200000"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["random"]["points"] == 200_000
    assert 100_000 <= result["voxel"]["points"] <= 200_000
    # whole, the positions alone would take 20 M x 3 float64 = 458 MiB (laspy's records
    # another 496 MiB); streamed, the reader holds a million-point chunk and the kept points
    assert result["grew_mib"] < 300, result
    for method in ("random", "voxel"):
        (cloud,) = trimesh.load_scene(tmp_path / f"{method}.glb").geometry.values()
        assert len(cloud.vertices) == result[method]["points"]
