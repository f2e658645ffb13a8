"""Jobs across nodes (ray.cluster_utils.Cluster): GPU-tagged placement, fan-out, node loss."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCENARIO = Path(__file__).with_name("scenario.py")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outcome():
    proc = subprocess.run(
        [sys.executable, str(SCENARIO)], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("SCENARIO-RESULT ")]
    assert lines, (
        f"scenario failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    )
    return json.loads(lines[-1].removeprefix("SCENARIO-RESULT "))


@pytest.mark.cluster
def test_the_render_stage_runs_on_the_gpu_node_and_the_cpu_stage_elsewhere(outcome):
    details = outcome["chained"]["details"]
    assert outcome["chained"]["state"]["status"] == "SUCCESS", details
    render = next(c for c in details["children"] if "[gpu]" in c["info"])
    cpu = next(c for c in details["children"] if "[cpu]" in c["info"])
    assert render["node"] == outcome["nodes"]["gpu"]
    assert cpu["node"] == outcome["nodes"]["cpu"]
    assert details["node"] == outcome["nodes"]["cpu"]  # the job's own task: cpu queue


@pytest.mark.cluster
def test_every_lod_ran_as_its_own_child_task(outcome):
    details = outcome["lods"]["details"]
    assert outcome["lods"]["state"]["status"] == "SUCCESS", details
    lods = [c for c in details["children"] if c["info"].startswith("LOD")]
    assert len(lods) == 4
    assert all(c["node"] in outcome["nodes"].values() and c["seconds"] > 0 for c in lods)
    triangles = [lod["triangles"] for lod in details["result"]["lods"]]
    assert triangles == sorted(triangles, reverse=True)


@pytest.mark.cluster
def test_a_job_whose_node_dies_is_retried_elsewhere_and_succeeds(outcome):
    loss = outcome["node_loss"]
    details = loss["details"]
    assert loss["state"]["status"] == "SUCCESS", details
    assert loss["ran_on"] == loss["killed"]
    assert details["retry"] == 1
    assert details["node"] == loss["replacement"]
    assert any("died" in s["info"] for s in details["steps"])
