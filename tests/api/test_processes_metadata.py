"""generate_metadata through the service: the sixteen PiXYZ counts of known models."""

import json
import math

import pytest

from conftest import DATA, METADATA_KEYS, submit, wait_for

SIXTEEN = set(METADATA_KEYS)


def run(client, file, params=None) -> dict:
    job = submit(client, "generate_metadata", file=file, params=params)
    wait_for(client, job["uuid"], timeout=90)
    return client.get(f"/jobs/{job['uuid']}/details").json()


@pytest.fixture(scope="module")
def as1(service):
    with service.client() as client:
        details = run(client, DATA / "step" / "as1-oc-214.stp")
        assert details["status"] == "SUCCESS", details
        saved = client.get(f"/jobs/{details['uuid']}/outputs/metadata.json").json()
        return details, saved


def test_the_step_assembly_has_18_parts_in_5_colours(as1):
    details, _ = as1
    metadata = details["result"]["metadata"]
    assert SIXTEEN <= set(metadata)
    assert all(isinstance(metadata[key], int) for key in SIXTEEN - {"aabb"})
    assert metadata["part_count"] == 18 and metadata["brep_body_count"] == 18
    assert metadata["material_count"] == 5
    # closed solids, no PMI, no animation in this AP214 file
    assert metadata["mesh_boundary"] == 0 and metadata["watertight"] is True
    for key in ("pmi_component_count", "annotation_count", "animation_count", "variant_count"):
        assert metadata[key] == 0, key
    # 200 x 150 x 84 mm drawn Z-up: in metres and +Y up, and in the file's own terms
    assert metadata["bounding_box"]["size"] == pytest.approx([0.2, 0.084, 0.15], abs=1e-5)
    assert metadata["aabb"] == pytest.approx(math.hypot(0.2, 0.15, 0.084), abs=1e-5)
    source = metadata["source"]
    assert (source["unit"], source["metres_per_unit"], source["up_axis"]) == ("mm", 0.001, "z")
    assert source["size"] == pytest.approx([200, 150, 84], abs=0.01)
    assert len(metadata["parts"]) == 18
    assert sum(p["triangles"] for p in metadata["parts"]) == metadata["polygon_count"]


def test_metadata_json_is_the_result(as1):
    details, saved = as1
    assert saved == details["result"]["metadata"]
    assert [s["info"] for s in details["steps"]][-2] == "Wrote metadata.json"


def test_a_mesh_file_has_its_triangles_and_no_cad_counts(client):
    details = run(client, DATA / "off" / "Wuson.off", {"parts": False})

    assert details["status"] == "SUCCESS", details
    metadata = details["result"]["metadata"]
    assert "parts" not in metadata
    assert metadata["polygon_count"] == 3732 and metadata["part_count"] == 1
    assert metadata["mesh_vertex_count"] == 2117  # distinct positions of the file's 3,205
    assert metadata["brep_body_count"] == metadata["material_count"] == 0
    assert metadata["mesh_boundary"] > 0 and metadata["watertight"] is False


def test_a_bad_parts_flag_is_refused_at_submit(client):
    details = submit(
        client,
        "generate_metadata",
        file=DATA / "off" / "Wuson.off",
        params={"parts": "yes"},
        expect=400,
    )
    assert details == "params.parts: Input should be a valid boolean (got 'yes')"


def test_a_broken_upload_fails_naming_file_and_format(client):
    details = run(client, DATA / "off" / "OutOfMemory.off")
    assert details["status"] == "FAILURE"
    assert details["error"].startswith("cannot read 'OutOfMemory.off' as OFF: header declares")
    assert json.dumps(details["error"]).count("\\n") == 0
