"""Test fixtures: one real local Ray cluster and one Serve deployment for the whole session.

Everything goes through real components: Ray (2 CPUs, small object store,
loopback only), Serve's HTTP proxy, the JobStore actor, storage on disk, and
moto's S3 server on 127.0.0.1 for the S3 path.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Before anything imports ray: keep every Ray address on loopback.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Hypothesis (under Schemathesis) keeps a cache; not in the checkout, where it was left behind.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "pixyz-tests-hypothesis")
)

import httpx  # noqa: E402
import pytest  # noqa: E402

from serve_app.ingress import configure as choose_ingress  # noqa: E402
from serve_app.ingress import remove_socket_folder  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
TEST_PROCESSES = Path(__file__).parent / "processes"
API_KEY = "test-key-0123456789"
CALLBACK_SECRET = "test-callback-secret"
MAX_UPLOAD = 16 * 1024 * 1024

# The metadata keys PiXYZ API clients read, in wire-compat.md's order.
METADATA_KEYS = (
    "aabb",
    "part_count",
    "material_count",
    "brep_boundary",
    "brep_body_count",
    "mesh_boundary",
    "mesh_edge_count",
    "mesh_vertex_count",
    "polygon_count",
    "animation_count",
    "variant_count",
    "pmi_component_count",
    "annotation_group_count",
    "annotation_count",
    "metadata_component_count",
    "metadata_property_count",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_temp_dir() -> str:
    # Unix socket paths are limited to 107 bytes: keep Ray's session folder short.
    inside = REPO / "var" / "rt"
    if len(str(inside)) <= 40:
        return str(inside)
    return tempfile.mkdtemp(prefix="pzrt-")


# Ray's session folder for the whole run; Serve's ingress (HAProxy by default, or
# PIXYZ_INGRESS=proxy) is chosen before anything imports ray.serve.
RAY_TEMP = ray_temp_dir()
INGRESS = choose_ingress(state_dir=os.path.join(RAY_TEMP, "haproxy"))


@dataclass
class Service:
    url: str
    key: str
    storage: Path
    settings: object

    def client(self, key: str | None = API_KEY, prefix: str = "") -> httpx.Client:
        headers = {"x-api-key": key} if key else {}
        return httpx.Client(base_url=self.url + prefix, headers=headers, timeout=60)


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from serve_app.local_ray import start_local_ray

    start_local_ray(
        namespace="pixyz",
        num_cpus=2,
        object_store_bytes=256 * 1024**2,
        temp_dir=RAY_TEMP,
    )
    yield ray
    ray.shutdown()
    remove_socket_folder()


@pytest.fixture(scope="session")
def service(ray_cluster, tmp_path_factory) -> Service:
    from ray import serve

    from serve_app.deployment import APP_NAME, app_builder, start_serve
    from tasks.settings import hash_key

    storage = tmp_path_factory.mktemp("storage")
    scratch = tmp_path_factory.mktemp("scratch")
    started = time.time()
    port = free_port()
    args = {
        "storage": str(storage),
        "scratch_dir": str(scratch),
        "api_key_sha256": [hash_key(API_KEY)],
        "allow_scripts": True,
        "process_path": str(TEST_PROCESSES),
        "callback_secret": CALLBACK_SECRET,
        "callback_allowed_networks": ["127.0.0.0/8"],
        "dev_routes": True,
        "max_upload_bytes": MAX_UPLOAD,
        "upload_chunk_bytes": 1024 * 1024,
        "script_file_bytes": 64 * 1024 * 1024,
        "script_disk_bytes": 256 * 1024 * 1024,
    }
    start_serve("127.0.0.1", port)
    serve.run(app_builder(args), name=APP_NAME, route_prefix="/")
    from tasks.settings import Settings

    service = Service(
        url=f"http://127.0.0.1:{port}", key=API_KEY, storage=storage, settings=Settings(**args)
    )
    yield service
    leftovers = left_behind(service, started)
    serve.shutdown()
    assert not leftovers, f"temporary files left behind after the test run: {leftovers}"


@pytest.fixture()
def private_service(ray_cluster, tmp_path):
    """`make(**settings)` -> (TestClient, StoreClient): the app the Serve replicas run, built
    in-process with settings the session service does not use, on a JobStore actor and a
    storage folder of its own (`tmp_path/storage<N>` unless `storage` is given)."""
    from fastapi.testclient import TestClient

    from serve_app.app import build_app
    from serve_app.store_client import StoreClient
    from tasks.settings import Settings, hash_key

    made = []

    def make(**overrides):
        settings = Settings(
            **{
                "storage": str(tmp_path / f"storage{len(made)}"),
                "api_key_sha256": [hash_key(API_KEY)],
                "store_name": f"store-{tmp_path.name}-{len(made)}",
                "process_path": str(TEST_PROCESSES),
                **overrides,
            }
        )
        store = StoreClient(settings)
        made.append(store)
        return TestClient(build_app(settings, store), headers={"x-api-key": API_KEY}), store

    yield make
    import ray

    for store in made:
        store.close()
        ray.kill(store.handle, no_restart=True)


def left_behind(service: Service, since: float, wait: float = 30) -> list[str]:
    """Cancel what still runs, then list what jobs left in the scratch and temp folders."""
    from tasks.sandbox.scratch import default_root, orphans

    with service.client() as c:
        for job in c.get("/jobs").json()["jobs"]:
            if job["status"] not in FINAL:
                c.delete(f"/jobs/{job['uuid']}")
    scratch = Path(service.settings.scratch_dir)
    temp = Path(tempfile.gettempdir())
    deadline = time.monotonic() + wait
    while True:
        found = [str(p) for p in scratch.iterdir()]
        # Scratch folders of dead workers (apps with the default scratch folder, older
        # versions: in the temp folder itself), step temp folders outside a job's folder.
        found += orphans(str(temp)) + orphans(default_root())
        for p in temp.iterdir():
            if p.name.startswith(("glb-", "fbx-", "usdz-")) and p.stat().st_mtime >= since:
                found.append(str(p))
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


@pytest.fixture()
def client(service) -> httpx.Client:
    with service.client() as c:
        yield c


def submit(
    client: httpx.Client,
    process: str,
    *,
    file: Path | None = None,
    params: dict | None = None,
    config: dict | None = None,
    name: str | None = None,
    script: str | None = None,
    expect: int = 200,
) -> dict:
    """POST /jobs the way PiXYZ API clients do (params/config always sent as JSON text).

    Returns the short state; with `expect` another code, the error's `details` line."""
    import json

    data = {
        "process": process,
        "params": json.dumps(params or {}),
        "config": json.dumps(config or {}),
    }
    if name:
        data["name"] = name
    files = {}
    if file is not None:
        files["file"] = (file.name, file.read_bytes())
    if script is not None:
        files["script"] = ("script.py", script.encode())
    response = client.post("/jobs", data=data, files=files or None)
    if expect != 200:
        return error_of(response, expect)
    assert response.status_code == 200, response.text
    return response.json()


def error_of(response: httpx.Response, code: int) -> str:
    """The `details` line of a documented error body, after checking code and shape."""
    assert response.status_code == code, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert set(detail) == {"code", "message", "details"}, detail
    assert detail["code"] == code and detail["message"] and detail["details"], detail
    return detail["details"]


FINAL = ("SUCCESS", "FAILURE", "REVOKED")


def wait_for(client: httpx.Client, job_id: str, statuses=FINAL, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        state = client.get(f"/jobs/{job_id}").json()
        if state["status"] in statuses:
            return state
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} still {state} after {timeout} s")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def moto_server():
    """moto's S3 server on 127.0.0.1 (a real S3 protocol endpoint), with one bucket."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("moto server did not start") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def job_record(job_id: str | None = None, **fields) -> dict:
    """A job record as the JobStore keeps it (`records.new_record`, an `api_test` job on
    `cpu` by default); creation arguments and any other record field may be given."""
    import uuid

    from tasks import records

    creation = {"process": "api_test", "name": None, "params": {}, "config": {}}
    creation |= {"queue": "cpu", "time_limit": 60, "inputs": []}
    for name in (*creation, "owner", "script", "warnings"):
        if name in fields:
            creation[name] = fields.pop(name)
    record = records.new_record(job_id or str(uuid.uuid4()), **creation)
    record.update(fields)
    return record


async def on_disk(checkpoints, record: dict) -> str:
    """Add `record` to `checkpoints` and write it and the index, as `JobStore.create` does."""
    checkpoints.add(record)
    await checkpoints.persist(record["uuid"])
    await checkpoints.write_index()
    return record["uuid"]
