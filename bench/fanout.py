"""Fan-out and scale benchmark: what distributing a job's pieces buys, and where the JobStore tops out.

    .venv/bin/python bench/fanout.py

1. generate_lods' work (4 LODs of a 1.31M-triangle mesh) as one task vs four
   parallel child tasks, on this machine's cores (goal on 2 cores: ≥ 1.8×).
2. 1000 no-op jobs (api_test) through the JobStore on a simulated 4-node
   cluster (ray.cluster_utils.Cluster: a head without CPUs and 3 workers):
   jobs/s end to end, and JobStore calls/s (status reads, the API's hot path).
Prints one table.
"""

from __future__ import annotations

import os
import tempfile
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
import trimesh  # noqa: E402
from table import print_table  # noqa: E402

RATIOS = (1.0, 0.5, 0.25, 0.1)


def big_scene():
    from tasks.steps.scene import from_trimesh

    mesh = trimesh.creation.icosphere(subdivisions=8)  # 1,310,720 triangles
    return from_trimesh(mesh, source_name="sphere.glb", source_format="glb")


def lod_triangles(scene, ratio: float) -> int:
    from tasks.steps.lods import lod_one

    return lod_one(scene, ratio).triangle_count


def all_lods(scene) -> list[int]:
    return [lod_triangles(scene, r) for r in RATIOS]


def fanout_rows() -> list[tuple[str, str, str]]:
    ray.init(
        num_cpus=os.cpu_count(),
        include_dashboard=False,
        object_store_memory=512 * 1024**2,
        _node_ip_address="127.0.0.1",
        logging_level="WARNING",
    )
    scene = big_scene()
    ref = ray.put(scene)
    one, piece = ray.remote(all_lods), ray.remote(lod_triangles)
    ray.get(piece.remote(ref, 0.5))  # warm the workers and imports
    ray.get([piece.remote(ref, 0.5) for _ in range(os.cpu_count())])

    started = time.perf_counter()
    sequential = ray.get(one.remote(ref))
    single = time.perf_counter() - started
    started = time.perf_counter()
    parallel = ray.get([piece.remote(ref, r) for r in RATIOS])
    fanned = time.perf_counter() - started
    assert sequential == parallel, (sequential, parallel)
    ray.shutdown()
    return [
        (f"4 LODs of {scene.triangle_count:,} triangles, one task", f"{single:.2f} s", ""),
        (f"4 LODs, 4 child tasks on {os.cpu_count()} cores", f"{fanned:.2f} s", ""),
        ("  speed-up", f"{single / fanned:.2f}×", "≥ 1.8× on 2 cores"),
    ]


def store_rows(jobs: int = 1000) -> list[tuple[str, str, str]]:
    from serve_app.local_ray import start_local_cluster
    from tasks import records
    from tasks.jobstore import get_or_create_store
    from tasks.settings import Settings

    temp = tempfile.mkdtemp(prefix="pzf-")
    cluster = start_local_cluster(temp)
    for _ in range(3):
        cluster.add_node(num_cpus=1, object_store_memory=100 * 1024**2)
    ray.init(address=cluster.address, namespace="pixyz", logging_level="WARNING")
    cluster.wait_for_nodes()
    settings = Settings(storage=os.path.join(temp, "storage"), store_name="bench-store")
    store = get_or_create_store(settings)
    ray.get(store.ready.remote())

    def record(i):
        return records.new_record(
            f"00000000-0000-4000-8000-{i:012d}",
            process="api_test",
            name=None,
            params={},
            config={},
            queue="cpu",
            time_limit=3600.0,
            inputs=[],
        )

    started = time.perf_counter()
    ray.get([store.create.remote(record(i)) for i in range(jobs)])
    while True:
        states = ray.get(
            [store.get.remote(f"00000000-0000-4000-8000-{i:012d}") for i in range(0, jobs, 50)]
        )
        if all(s["status"] in records.TERMINAL for s in states):
            last = ray.get(store.get.remote(f"00000000-0000-4000-8000-{jobs - 1:012d}"))
            if last["status"] in records.TERMINAL:
                break
        time.sleep(0.2)
    elapsed = time.perf_counter() - started
    ok = sum(
        1
        for i in range(jobs)
        if ray.get(store.get.remote(f"00000000-0000-4000-8000-{i:012d}"))["status"] == "SUCCESS"
    )

    calls = 5000
    started = time.perf_counter()
    ray.get([store.get.remote(f"00000000-0000-4000-8000-{i % jobs:012d}") for i in range(calls)])
    reads = calls / (time.perf_counter() - started)
    ray.shutdown()
    cluster.shutdown()
    return [
        (
            f"{jobs} no-op jobs on 4 simulated nodes ({ok} SUCCESS)",
            f"{jobs / elapsed:.1f} jobs/s",
            "",
        ),
        ("JobStore status reads (5000 concurrent calls)", f"{reads:,.0f} calls/s", ""),
    ]


def main() -> None:
    rows = fanout_rows() + store_rows()
    print_table(rows)


if __name__ == "__main__":
    main()
