"""Fan-out and scale benchmark: what distributing a job's pieces buys, and where the JobStore tops out.

    .venv/bin/python bench/fanout.py                       # every section
    .venv/bin/python bench/fanout.py decimate tessellate   # some: lods decimate tessellate store

1. lods: generate_lods' work (4 LODs of a 1.31M-triangle mesh) as one task vs four
   parallel child tasks, on this machine's cores (goal on 2 cores: ≥ 1.8×).
2. decimate: `decimate` of assemblies of 50 to 400 distinct meshes (64k to 3M triangles, with
   carried normals, as CAD gives) in one task vs in batches (`FanOut`: one batch in the
   job's task, one per free CPU as a child task, as the optimize pipeline runs it), inside
   a one-CPU Ray task as a job is, on ``ray.init(num_cpus=2)``; per size, the two
   alternate, medians of 5. On a shared machine the second core is often taken, so next
   to the measured wall time stands the wall time on 2 free cores that the CPU times give:
   one task's CPU vs the critical path (the job's CPU, plus what its child ran longer
   than the job's own batch). A fixed cost row: the same on a 4-mesh scene.
3. tessellate: OCCT's own parallel meshing (``BRepMesh_IncrementalMesh(..., isInParallel)``,
   `TessellateOptions.parallel`) vs sequential on a generated STEP of 100 distinct
   filleted, drilled plates (3,320 B-rep faces) and on as1-oc-214.stp: meshing alone
   (CPU per OCCT thread gives the 2-free-core time), our read-back of the triangles, the
   STEP transfer, and what shipping each part's B-rep to a child task would cost
   (BinTools write + read).
4. store: 1000 no-op jobs (api_test) through the JobStore on a simulated 4-node
   cluster (ray.cluster_utils.Cluster: a head without CPUs and 3 workers):
   jobs/s end to end, and JobStore calls/s (status reads, the API's hot path).
Prints one table; the load average is in the rows that depend on it.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

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


# -- decimation: one task vs batches in child tasks -------------------------------------

DECIMATE_SCENES = {
    # (meshes, icosphere subdivisions): 1,280 triangles at 3, 5,120 at 4, 20,480 at 5, 81,920 at 6
    "64k": [(50, 3)],
    "256k": [(200, 3)],
    "512k": [(100, 4)],
    "1M": [(200, 4)],
    "1.5M": [(8, 6), (32, 5), (160, 3)],  # a few big parts, many small ones
    "3M": [(16, 6), (64, 5), (320, 3)],
}
REPEATS = 5


def assembly(plan: list[tuple[int, int]], seed: int = 0):
    """Distinct bumpy spheres (no two alike: instancing cannot share them), with normals."""
    import numpy as np

    from tasks.steps.scene import from_trimesh

    rng = np.random.default_rng(seed)
    scene = trimesh.Scene()
    index = 0
    for count, subdivisions in plan:
        base = trimesh.creation.icosphere(subdivisions=subdivisions)
        x, y, z = base.vertices.T
        for _ in range(count):
            fx, fy, fz = rng.uniform(3, 9, 3)
            radius = 1 + rng.uniform(0.01, 0.05) * np.sin(fx * x) * np.sin(fy * y) * np.sin(fz * z)
            vertices = base.vertices * (radius * rng.uniform(0.5, 2))[:, None]
            mesh = trimesh.Trimesh(vertices, base.faces, process=False)
            _ = mesh.vertex_normals  # computed now, so carried, as a CAD reader's are
            place = trimesh.transformations.translation_matrix([index % 20 * 5, index // 20 * 5, 0])
            scene.add_geometry(
                mesh, geom_name=f"part{index}", node_name=f"part{index}", transform=place
            )
            index += 1
    return from_trimesh(scene, source_name="assembly.glb", source_format="glb")


def _cpu_timed(item):
    fn, batch = item
    started = time.process_time()
    return fn(batch), time.process_time() - started


@ray.remote(num_cpus=1)
def decimate_job(scene, fan: bool, from_triangles: int = 0) -> dict:
    """What the optimize job's decimate step does, timed inside the job's own task."""
    from tasks.steps.decimate import DecimateOptions, FanOut, decimate
    from tasks.subtasks import SubTasks

    tasks = SubTasks({"cpu": {"num_cpus": 1}}, "cpu", lambda kind, data: None)
    batch_cpu: list[float] = []

    def batches_here_and_in_children(fn, batches):  # DecimateStep.fan_out, with CPU times
        timed = tasks.map(_cpu_timed, [(fn, b) for b in batches], queue="cpu", keep_first=True)
        batch_cpu.extend(cpu for _, cpu in timed)
        return [kept for kept, _ in timed]

    fan_out = None
    if fan:
        workers = 1 + tasks.free_cpus()
        fan_out = FanOut(batches_here_and_in_children, workers, from_triangles)
    wall, cpu = time.perf_counter(), time.process_time()
    result = decimate(scene, DecimateOptions(ratio=0.5), fan_out)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    if len(batch_cpu) > 1:  # the job's CPU, plus what its slowest child ran beyond its own batch
        critical = cpu + max(0.0, max(batch_cpu[1:]) - batch_cpu[0])
    else:
        critical = cpu
    triangles = [len(g.faces) for g in result.trimesh_scene.geometry.values()]
    return {"wall": wall, "cpu": cpu, "critical": critical, "triangles": triangles}


def decimate_rows() -> list[tuple[str, str, str]]:
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=1024**3,
        _node_ip_address="127.0.0.1",
        logging_level="WARNING",
    )
    small = ray.put(assembly([(4, 2)]))
    for _ in range(3):  # warm the workers and their imports, one job at a time as measured
        ray.get(decimate_job.remote(small, True))
        ray.get(decimate_job.remote(small, False))
    one_wall, fan_wall = [], []
    for _ in range(2 * REPEATS):
        one_wall.append(ray.get(decimate_job.remote(small, False))["wall"])
        fan_wall.append(ray.get(decimate_job.remote(small, True))["wall"])
    fixed = statistics.median(fan_wall) - statistics.median(one_wall)
    rows = [
        (
            "decimate: fixed cost of batches (4 meshes of 320 triangles, 1 here + 1 child)",
            f"{fixed * 1000:+.0f} ms",
            "",
        )
    ]
    for plan in DECIMATE_SCENES.values():
        scene = assembly(plan)
        ref = ray.put(scene)
        runs: dict[bool, list[dict]] = {False: [], True: []}
        for repeat in range(REPEATS):
            for fan in (False, True) if repeat % 2 == 0 else (True, False):
                runs[fan].append(ray.get(decimate_job.remote(ref, fan)))
        assert runs[False][0]["triangles"] == runs[True][0]["triangles"], "fan-out changed a mesh"

        def median(fan, key, runs=runs):
            return statistics.median(run[key] for run in runs[fan])

        load = os.getloadavg()[0]
        meshes = len(scene.trimesh_scene.geometry)
        rows += [
            (
                f"decimate {meshes} meshes, {scene.triangle_count:,} triangles to 50 %: one task",
                f"{median(False, 'wall'):.2f} s",
                f"CPU {median(False, 'cpu'):.2f} s",
            ),
            (
                "  in batches: 1 in the job's task + 1 child task",
                f"{median(True, 'wall'):.2f} s",
                f"critical path CPU {median(True, 'critical'):.2f} s",
            ),
            (
                f"  speed-up measured (load {load:.1f}) / on 2 free cores (CPU times)",
                f"{median(False, 'wall') / median(True, 'wall'):.2f}× / "
                f"{median(False, 'cpu') / median(True, 'critical'):.2f}×",
                "same triangles per mesh ✔",
            ),
        ]
    ray.shutdown()
    return rows


# -- tessellation: OCCT's parallel meshing vs sequential ---------------------------------

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def plates_step(parts: int = 100, seed: int = 0) -> Path:
    """A STEP assembly of ``parts`` distinct plates, each filleted all round and drilled
    with 4 to 10 holes (about 33 B-rep faces each); written once, kept in the temp folder."""
    import numpy as np
    from OCP.BRepAlgoAPI import BRepAlgoAPI_Cut
    from OCP.BRepFilletAPI import BRepFilletAPI_MakeFillet
    from OCP.BRepPrimAPI import BRepPrimAPI_MakeBox, BRepPrimAPI_MakeCylinder
    from OCP.gp import gp_Ax2, gp_Dir, gp_Pnt, gp_Trsf, gp_Vec
    from OCP.STEPCAFControl import STEPCAFControl_Writer
    from OCP.STEPControl import STEPControl_AsIs
    from OCP.TCollection import TCollection_ExtendedString
    from OCP.TDataStd import TDataStd_Name
    from OCP.TopAbs import TopAbs_EDGE
    from OCP.TopExp import TopExp_Explorer
    from OCP.TopLoc import TopLoc_Location
    from OCP.TopoDS import TopoDS
    from OCP.XCAFDoc import XCAFDoc_DocumentTool

    from tasks.steps.io.cad import _new_document

    path = Path(tempfile.gettempdir()) / f"pzf-plates-{parts}-{seed}.step"
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    document = _new_document()
    tool = XCAFDoc_DocumentTool.ShapeTool_s(document.Main())
    assembly_label = tool.NewShape()
    TDataStd_Name.Set_s(assembly_label, TCollection_ExtendedString("plates"))
    for index in range(parts):
        width, depth, height = rng.uniform(20, 60), rng.uniform(20, 60), rng.uniform(4, 12)
        shape = BRepPrimAPI_MakeBox(width, depth, height).Shape()
        fillet = BRepFilletAPI_MakeFillet(shape)
        edges = TopExp_Explorer(shape, TopAbs_EDGE)
        radius = min(width, depth, height) * rng.uniform(0.1, 0.3)
        while edges.More():
            fillet.Add(radius, TopoDS.Edge(edges.Current()))
            edges.Next()
        shape = fillet.Shape()
        holes = int(rng.integers(2, 6))
        for a in range(holes):
            for b in range(2):
                axis = gp_Ax2(
                    gp_Pnt(width * (a + 1) / (holes + 1), depth * (b + 1) / 3, -1), gp_Dir(0, 0, 1)
                )
                drill = BRepPrimAPI_MakeCylinder(
                    axis, min(width / holes, depth / 3) * 0.3, height + 2
                )
                shape = BRepAlgoAPI_Cut(shape, drill.Shape()).Shape()
        label = tool.AddShape(shape, False)
        TDataStd_Name.Set_s(label, TCollection_ExtendedString(f"plate{index}"))
        move = gp_Trsf()
        move.SetTranslation(gp_Vec(index % 10 * 70.0, index // 10 * 70.0, 0.0))
        tool.AddComponent(assembly_label, label, TopLoc_Location(move))
    tool.UpdateAssemblies()
    writer = STEPCAFControl_Writer()
    writer.Transfer(document, STEPControl_AsIs)
    partial = path.with_suffix(".partial")
    writer.Write(str(partial))
    partial.rename(path)
    return path


def _thread_cpu() -> dict[str, float]:
    """CPU seconds of each thread of this process (OCCT's pool threads included)."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[tid] = (int(fields[11]) + int(fields[12])) / tick
    return seconds


def tessellate_rows() -> list[tuple[str, str, str]]:
    import io

    from OCP.BinTools import BinTools, BinTools_FormatVersion
    from OCP.BRepMesh import BRepMesh_IncrementalMesh
    from OCP.OCP.collections import Sequence_TDF_Label
    from OCP.TopoDS import TopoDS_Shape
    from OCP.XCAFDoc import XCAFDoc_DocumentTool, XCAFDoc_ShapeTool

    from tasks.steps.io import cad
    from tasks.steps.io.options import LoadOptions
    from tasks.steps.tessellate import (
        TessellateOptions,
        bounding_diagonal,
        clear_meshes,
        tessellate_shape,
        tolerances,
    )

    rows = []
    for path in (plates_step(), DATA / "step" / "as1-oc-214.stp"):
        # 1. the STEP transfer, once (what every read pays before meshing)
        document = cad._new_document()
        wall, cpu = time.perf_counter(), time.process_time()
        cad._transfer_step(path, "step", document, LoadOptions())
        transfer_wall, transfer_cpu = time.perf_counter() - wall, time.process_time() - cpu
        tool = XCAFDoc_DocumentTool.ShapeTool_s(document.Main())
        labels, free = Sequence_TDF_Label(), Sequence_TDF_Label()
        tool.GetShapes(labels)
        tool.GetFreeShapes(free)
        simple = [label for label in labels if XCAFDoc_ShapeTool.IsSimpleShape_s(label)]
        parts = [XCAFDoc_ShapeTool.GetShape_s(label) for label in simple]
        model = cad._model_diagonal(list(free))  # as the reader's sag refers to
        settings = [tolerances(TessellateOptions(), model, bounding_diagonal(s)) for s in parts]

        # 2. OCCT meshing alone, per part as the reader calls it, sequential vs parallel
        runs: dict[bool, list[tuple[float, float, float]]] = {False: [], True: []}
        for repeat in range(REPEATS):
            for parallel in (False, True) if repeat % 2 == 0 else (True, False):
                for shape in parts:
                    clear_meshes(shape)
                before, wall = _thread_cpu(), time.perf_counter()
                for shape, (linear, angular) in zip(parts, settings, strict=True):
                    BRepMesh_IncrementalMesh(shape, linear, False, angular, parallel)
                wall = time.perf_counter() - wall
                after = _thread_cpu()
                used = [after[t] - before.get(t, 0.0) for t in after]
                runs[parallel].append((wall, sum(used), max(used)))

        def median(parallel, index, runs=runs):
            return statistics.median(run[index] for run in runs[parallel])

        # 3. our read-back of the triangles (tessellate_shape minus the meshing it redoes)
        started = time.process_time()
        triangles = 0
        for shape in parts:
            clear_meshes(shape)
            triangles += sum(
                len(f.triangles)
                for f in tessellate_shape(shape, TessellateOptions(parallel=False), model)
            )
        read_back = time.process_time() - started - median(False, 1)

        # 4. shipping each part to a child task: its B-rep written and read back (BinTools)
        current = BinTools_FormatVersion.BinTools_FormatVersion_CURRENT
        started = time.process_time()
        for shape in parts:
            stream = io.BytesIO()
            BinTools.Write_s(shape, stream, False, False, current)
            copy = TopoDS_Shape()
            BinTools.Read_s(copy, io.BytesIO(stream.getvalue()))
        ship = time.process_time() - started

        load = os.getloadavg()[0]
        label = f"{path.name} ({len(parts)} parts, {triangles:,} triangles)"
        rows += [
            (
                f"tessellate {label}: OCCT meshing, sequential",
                f"{median(False, 0):.2f} s",
                f"CPU {median(False, 1):.2f} s",
            ),
            (
                "  OCCT parallel (isInParallel, 2 threads)",
                f"{median(True, 0):.2f} s",
                f"CPU {median(True, 1):.2f} s, busiest thread {median(True, 2):.2f} s",
            ),
            (
                f"  speed-up measured (load {load:.1f}) / on 2 free cores (busiest thread)",
                f"{median(False, 0) / median(True, 0):.2f}× / {median(False, 1) / median(True, 2):.2f}×",
                "",
            ),
            (
                "  STEP transfer before it (one thread)",
                f"{transfer_wall:.2f} s",
                f"CPU {transfer_cpu:.2f} s",
            ),
            ("  our read-back of the triangles (Python, one thread)", f"{read_back:.2f} s", "CPU"),
            ("  B-reps written + read back, as a child task would need", f"{ship:.2f} s", "CPU"),
        ]
    return rows


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


SECTIONS = {"lods": fanout_rows, "decimate": decimate_rows, "tessellate": tessellate_rows}


def main(names: list[str]) -> None:
    names = names or [*SECTIONS, "store"]
    rows = []
    for name in names:
        rows += store_rows() if name == "store" else SECTIONS[name]()
    print_table(rows)


if __name__ == "__main__":
    main(sys.argv[1:])
