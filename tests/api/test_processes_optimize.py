"""optimize and generate_lods through the service: lighter GLBs that re-open with the counts promised."""

import collections
import io

import pygltflib
import pytest
import trimesh

from conftest import DATA, submit, wait_for

WUSON = DATA / "off" / "Wuson.off"  # 3,732 triangles; its 3,205 vertices sit on 2,117 positions
AS1 = DATA / "step" / "as1-oc-214.stp"  # 18 placed parts, 5 distinct meshes


def run(client, process, file, params=None) -> dict:
    job = submit(client, process, file=file, params=params)
    wait_for(client, job["uuid"], timeout=90)
    return client.get(f"/jobs/{job['uuid']}/details").json()


def triangles_of(client, job_id, name) -> int:
    response = client.get(f"/jobs/{job_id}/outputs/{name}")
    assert response.status_code == 200, response.text
    scene = trimesh.load(io.BytesIO(response.content), file_type="glb")
    return sum(
        len(scene.geometry[scene.graph[node][1]].faces) for node in scene.graph.nodes_geometry
    )


def test_optimize_halves_the_triangles_by_default(client):
    details = run(client, "optimize", WUSON)

    assert details["status"] == "SUCCESS", details
    result = details["result"]
    assert result["output"] == "optimized.glb" and result["target"] == {"ratio": 0.5}
    assert result["before"] == {"triangles": 3732, "vertices": 2117}
    # meshoptimizer stops short of the target where a collapse would cross a seam
    assert 0.4 * 3732 <= result["after"]["triangles"] <= 0.55 * 3732
    assert result["after"]["vertices"] < 2117
    assert triangles_of(client, details["uuid"], "optimized.glb") == result["after"]["triangles"]
    infos = [s["info"] for s in details["steps"]]
    assert any(i.startswith("repair: 3,732 -> ") for i in infos), infos
    assert not any(i.startswith("merge") for i in infos)  # no merge asked
    assert any(i.startswith("decimate: ") for i in infos), infos
    assert [record["step"] for record in result["steps"]] == ["repair", "decimate"]


def test_optimize_fits_a_broken_mesh_to_a_budget(client):
    # non-manifold, 72 boundary edges, inconsistent winding, 18 pieces
    details = run(
        client, "optimize", DATA / "stl" / "Spider_ascii.stl", {"triangles": 600, "filename": "s"}
    )

    assert details["status"] == "SUCCESS", details
    result = details["result"]
    assert result["output"] == "s.glb"
    assert result["before"]["triangles"] == 1368
    assert 400 <= result["after"]["triangles"] <= 600
    assert triangles_of(client, details["uuid"], "s.glb") == result["after"]["triangles"]


def glb_parts(client, job_id, name) -> tuple[dict[str, int], list[str]]:
    """({mesh: nodes showing it}, names of those nodes) of a GLB output, read by pygltflib."""
    response = client.get(f"/jobs/{job_id}/outputs/{name}")
    assert response.status_code == 200, response.text
    document = pygltflib.GLTF2.load_from_bytes(response.content)
    placed = [node for node in document.nodes if node.mesh is not None]
    shown = collections.Counter(document.meshes[node.mesh].name for node in placed)
    return dict(shown), [node.name for node in placed]


def test_optimize_keeps_the_parts_of_an_assembly_unless_asked_to_merge(client):
    kept = run(client, "optimize", AS1)
    merged = run(client, "optimize", AS1, {"merge": "by_material", "filename": "merged"})

    assert kept["status"] == merged["status"] == "SUCCESS", (kept, merged)
    # 5 parts placed 18 times: each mesh once, decimated once, at every placement
    shown, names = glb_parts(client, kept["uuid"], "optimized.glb")
    assert shown == {"nut": 8, "bolt": 6, "l-bracket": 2, "plate": 1, "rod": 1}
    assert {"plate", "rod", "nut", "nut_7", "bolt_5", "l-bracket_1"} <= set(names)
    assert [record["step"] for record in kept["result"]["steps"]] == ["repair", "decimate"]
    assert kept["result"]["steps"][-1]["meshes"] == [5, 5]
    # merged: one mesh per material, each placed once, the placements baked in
    shown, names = glb_parts(client, merged["uuid"], "merged.glb")
    assert len(shown) < 18 and set(shown.values()) == {1} and "plate" not in names
    assert merged["result"]["before"] == kept["result"]["before"]
    assert any(s["info"].startswith("merge: ") for s in merged["steps"])


@pytest.mark.parametrize(
    "params,expected",
    [
        (
            {"merge": "yes"},
            "params.merge: Input should be 'none', 'by_material' or 'all' (got 'yes')",
        ),
        (
            {"ratio": 0.5, "triangles": 100},
            "params: give only one of ratio, triangles, error; got ratio, triangles",
        ),
        ({"ratio": 0}, "params.ratio: Input should be greater than 0 (got 0)"),
        ({"triangles": "many"}, "params.triangles: Input should be a valid integer (got 'many')"),
        ({"error": 2}, "params.error: Input should be less than or equal to 1 (got 2)"),
        (
            {"steps": [{"step": "sharpen"}]},
            "params.steps.0: Input tag 'sharpen' found using 'step' does not match any of the"
            " expected tags: 'repair', 'remove_hidden', 'find_instances', 'merge', 'decimate',"
            " 'generate_uvs' (got {'step': 'sharpen'})",
        ),
        (
            {"steps": [{"step": "decimate", "ratio": 0.5, "speed": 3}]},
            "params.steps.0.decimate.speed: Extra inputs are not permitted (got 3)",
        ),
        (
            {"steps": [{"step": "repair"}], "preset": "web"},
            "params: give steps or preset, not both",
        ),
        (
            {"steps": [{"step": "repair"}], "ratio": 0.2},
            "params: ratio cannot go with steps or preset: make them steps",
        ),
        (
            {"preset": "print"},
            "params.preset: Input should be 'web', 'ar' or 'preview' (got 'print')",
        ),
    ],
)
def test_optimize_refuses_bad_targets_at_submit(client, params, expected):
    assert submit(client, "optimize", file=WUSON, params=params, expect=400) == expected


def test_a_steps_pipeline_runs_each_step_in_order_with_its_own_record(client):
    steps = [
        {"step": "repair", "fill_holes": False},
        {"step": "decimate", "ratio": 0.5},
        {"step": "merge", "mode": "all"},
    ]
    details = run(client, "optimize", AS1, {"steps": steps})

    assert details["status"] == "SUCCESS", details
    records = details["result"]["steps"]
    assert [record["step"] for record in records] == ["repair", "decimate", "merge"]
    infos = [s["info"].split(":")[0] for s in details["steps"]]
    assert [i for i in infos if i in ("repair", "decimate", "merge")] == [
        "repair",
        "decimate",
        "merge",
    ]
    repair, decimate, merge = records
    assert repair["triangles"] == [6544, 6544] and repair["parts"] == [18, 18]
    assert "deviation" not in repair  # repair moves no surface beyond its weld tolerance
    assert decimate["triangles"][1] < 0.6 * 6544 and decimate["meshes"] == [5, 5]
    assert decimate["geometry_bytes"][1] < decimate["geometry_bytes"][0]
    # the deviation decimation caused, in metres, on a 0.26 m assembly: small, not zero
    assert 0 < decimate["deviation"] < 0.01 and decimate["deviation_kind"] == "symmetric"
    # merging moves nothing, but bakes the instances into one mesh
    assert merge["parts"] == [18, 1] and "deviation" not in merge
    assert merge["geometry_bytes"][1] > merge["geometry_bytes"][0]
    shown, _ = glb_parts(client, details["uuid"], "optimized.glb")
    assert len(shown) == 1


def test_the_web_preset_keeps_the_named_parts(client):
    details = run(client, "optimize", AS1, {"preset": "web", "filename": "web"})

    assert details["status"] == "SUCCESS", details
    assert "target" not in details["result"]
    shown, names = glb_parts(client, details["uuid"], "web.glb")
    assert sum(shown.values()) == 18 and len(shown) == 5 and "plate" in names
    # web-ready: meshopt-compressed and quantized, as the preset says
    document = pygltflib.GLTF2.load_from_bytes(
        client.get(f"/jobs/{details['uuid']}/outputs/web.glb").content
    )
    assert {"EXT_meshopt_compression", "KHR_mesh_quantization"} <= set(document.extensionsUsed)
    steps = [record["step"] for record in details["result"]["steps"]]
    assert steps == ["repair", "remove_hidden", "find_instances", "decimate"]
    # remove_hidden ran as a child task on the gpu queue (a CPU here: the fallback)
    meta = client.get(f"/backend/get_task_meta/{details['uuid']}").json()
    assert [child["info"] for child in meta["children"]] == ["remove_hidden as a child task [gpu]"]


def test_lods_are_parallel_children_with_decreasing_triangles(client):
    details = run(client, "generate_lods", WUSON)

    assert details["status"] == "SUCCESS", details
    lods = details["result"]["lods"]
    assert [lod["file"] for lod in lods] == ["lod0.glb", "lod1.glb", "lod2.glb", "lod3.glb"]
    assert [lod["ratio"] for lod in lods] == [1.0, 0.5, 0.25, 0.1]
    counts = [lod["triangles"] for lod in lods]
    assert counts[0] == 3732 and counts == sorted(counts, reverse=True)
    assert len(set(counts)) == 4 and counts[3] <= 0.1 * 3732
    for lod in lods:
        assert triangles_of(client, details["uuid"], lod["file"]) == lod["triangles"]
    meta = client.get(f"/backend/get_task_meta/{details['uuid']}").json()
    assert [child["info"] for child in meta["children"]] == [
        f"LOD {i}: ratio {r} [cpu]" for i, r in enumerate(("1", "0.5", "0.25", "0.1"))
    ]


@pytest.mark.parametrize(
    "ratios,expected",
    [
        ([0.5, 0.8], "params.ratios: ratios must be strictly decreasing, got [0.5, 0.8]"),
        ([1, 0], "params.ratios.1: Input should be greater than 0 (got 0)"),
        ("half", "params.ratios: Input should be a valid list (got 'half')"),
        ([1] * 11, "params.ratios: List should have at most 10 items after validation"),
    ],
)
def test_lods_refuse_bad_ratios_at_submit(client, ratios, expected):
    details = submit(client, "generate_lods", file=WUSON, params={"ratios": ratios}, expect=400)
    assert details.startswith(expected), details
