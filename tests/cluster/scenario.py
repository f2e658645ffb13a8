"""Multi-node scenarios on `ray.cluster_utils.Cluster`, run in a child process by test_multinode.py.

(The test session's own Ray instance is single-node; a process can hold only one.)
A head with no CPUs (like cluster.yaml's), a CPU worker tagged `cpu_worker`
(the `cpu` queue asks for that tag, so CPU work stays off the GPU node) and a
worker that declares one GPU. Prints one JSON object; the test asserts.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402

from serve_app.app import build_app  # noqa: E402
from serve_app.local_ray import start_local_cluster  # noqa: E402
from serve_app.store_client import StoreClient  # noqa: E402
from tasks.settings import Settings, hash_key  # noqa: E402

KEY = "cluster-key"
MODEL = Path(__file__).resolve().parents[1] / "data" / "off" / "Wuson.off"


def wait(client, job_id, statuses=("SUCCESS", "FAILURE", "REVOKED"), timeout=120):
    deadline = time.monotonic() + timeout
    while (state := client.get(f"/jobs/{job_id}").json())["status"] not in statuses:
        if time.monotonic() > deadline:
            raise TimeoutError(state)
        time.sleep(0.1)
    return state


def submit(client, process, params=None, file=None):
    files = {"file": (file.name, file.read_bytes())} if file else None
    data = {"process": process, "params": json.dumps(params or {})}
    response = client.post("/jobs", data=data, files=files)
    response.raise_for_status()
    return response.json()["uuid"]


def main() -> None:
    temp = tempfile.mkdtemp(prefix="pzc-")
    cluster = start_local_cluster(temp)
    cpu_node = cluster.add_node(
        num_cpus=1, resources={"cpu_worker": 1}, object_store_memory=100 * 1024**2
    )
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1, object_store_memory=100 * 1024**2)
    ray.init(address=cluster.address, namespace="pixyz")
    cluster.wait_for_nodes()
    out: dict = {"nodes": {"cpu": cpu_node.node_id, "gpu": gpu_node.node_id}}

    queues = dict(Settings().queue_resources)
    queues["cpu"] = {"num_cpus": 1, "resources": {"cpu_worker": 0.01}}
    settings = Settings(
        storage=str(Path(temp) / "storage"), api_key_sha256=[hash_key(KEY)], queue_resources=queues
    )
    store = StoreClient(settings)
    client = TestClient(build_app(settings, store), headers={"x-api-key": KEY})

    # 1. A chained thumbnail job: the render stage lands on the GPU node.
    job = submit(client, "thumbnail_chained", file=MODEL)
    out["chained"] = {
        "state": wait(client, job),
        "details": client.get(f"/jobs/{job}/details").json(),
    }

    # 2. LODs fan out: every piece ran and says where.
    job = submit(client, "generate_lods", file=MODEL)
    out["lods"] = {"state": wait(client, job), "details": client.get(f"/jobs/{job}/details").json()}

    # 3. The CPU node dies while running a job; a replacement joins (as the autoscaler's
    # would): the job is retried there and succeeds.
    job = submit(client, "sleep", params={"duration": 8})
    wait(client, job, statuses=("RUNNING",))
    running_on = client.get(f"/jobs/{job}/details").json()["node"]
    cluster.remove_node(cpu_node, allow_graceful=False)
    replacement = cluster.add_node(
        num_cpus=1, resources={"cpu_worker": 1}, object_store_memory=100 * 1024**2
    )
    out["node_loss"] = {
        "ran_on": running_on,
        "killed": cpu_node.node_id,
        "replacement": replacement.node_id,
        "state": wait(client, job, timeout=180),
        "details": client.get(f"/jobs/{job}/details").json(),
    }
    print("SCENARIO-RESULT " + json.dumps(out), flush=True)
    ray.shutdown()
    cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
