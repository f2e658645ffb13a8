"""The `tessellation` param of every process that reads CAD: presets and tolerances reach the
reader, bad values are a 400 at submit, and generate_lods tessellates a B-rep per level."""

from conftest import DATA, submit, wait_for

AS1 = DATA / "step" / "as1-oc-214.stp"


def details_of(client, process, params) -> dict:
    job = submit(client, process, file=AS1, params=params)
    wait_for(client, job["uuid"], timeout=120)
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert details["status"] == "SUCCESS", details
    return details


def test_very_high_gives_several_times_the_triangles_of_low(client):
    counts = {
        preset: details_of(client, "generate_metadata", {"tessellation": preset, "parts": False})[
            "result"
        ]["metadata"]["polygon_count"]
        for preset in ("low", "very_high")
    }
    assert counts["very_high"] > 4 * counts["low"], counts


def test_explicit_tolerances_are_taken(client):
    coarse = {"tessellation": {"max_sag": 0.5, "max_angle": 45}, "parts": False}
    fine = {"tessellation": {"max_sag": 0.01, "max_angle": 45}, "parts": False}
    count = {
        name: details_of(client, "generate_metadata", params)["result"]["metadata"]["polygon_count"]
        for name, params in (("coarse", coarse), ("fine", fine))
    }
    assert count["fine"] > 3 * count["coarse"], count


def test_an_unknown_preset_or_tolerance_is_a_400_naming_the_field(client):
    details = submit(
        client, "generate_metadata", file=AS1, params={"tessellation": "ultra"}, expect=400
    )
    assert details.startswith("params.tessellation.preset: Input should be 'low', 'medium'")
    details = submit(
        client, "convert_file", file=AS1, params={"tessellation": {"max_sag": -1}}, expect=400
    )
    assert details.startswith("params.tessellation.tolerances.max_sag: Input should be greater")


def test_cad_levels_of_detail_are_tessellated_from_the_brep(client):
    details = details_of(client, "generate_lods", {"ratios": [1, 0.25], "tessellation": "high"})
    lods = details["result"]["lods"]
    assert [lod["method"] for lod in lods][0] == "as read"
    assert lods[1]["method"] in ("tessellated", "tessellated and decimated")
    assert lods[1]["triangles"] <= 0.25 * details["result"]["triangles"] * 1.01
