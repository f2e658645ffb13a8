"""Key roles: every operation the app serves × every kind of caller.

`MINIMUM_ROLE` is the contract, written out: (method, path template) → the
least role that may call it, or `open` for the routes anonymous callers reach.
It must list exactly the operations the app routes (a new endpoint without an
entry fails `test_the_matrix_covers_every_operation`) and say the same as the
table in docs/api.md.

Each operation is called as: no key, a wrong key, and a read, submit, script
and admin key, with real path values (a process that exists, a finished job
of the caller's own with a real output file), so an allowed call reaches the
handler and answers its real success code. Job-scoped operations are also
called on another non-admin key's job: 404, as if it did not exist.

A private app (the same FastAPI app the replicas run) with its own JobStore
and a keys file, next to one admin key from the settings. The read key is a
demoted submit key: it created a job while it was `submit`, which is how a
read key comes to own jobs to read.
"""

import json
import re
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest
import ray
from fastapi.testclient import TestClient

KEYS = {
    "read": "key-read-0001",
    "submit": "key-submit-0001",
    "script": "key-script-0001",
    "admin": "key-admin-0001",
    "submit2": "key-submit-0002",
}
ROLE_OF = {
    "read": "read",
    "submit": "submit",
    "script": "script",
    "admin": "admin",
    "submit2": "submit",
}
ROLES = ("read", "submit", "script", "admin")
CALLERS = ("no key", "wrong key", *ROLES)
OPEN = "open"
CALLBACK_SECRET = "roles-callback-secret"
DOCS_API = Path(__file__).resolve().parents[2] / "docs" / "api.md"

MINIMUM_ROLE = {
    ("GET", "/"): OPEN,
    ("GET", "/processes"): OPEN,
    ("GET", "/processes/{process_name}"): OPEN,
    ("GET", "/formats"): OPEN,
    ("GET", "/metrics"): OPEN,
    ("GET", "/docs"): OPEN,
    ("GET", "/openapi.json"): OPEN,
    ("GET", "/jobs"): "read",
    ("POST", "/jobs"): "submit",  # `script` for process=custom: test_who_may_run_custom_scripts
    ("GET", "/jobs/{job_uuid}"): "read",
    ("DELETE", "/jobs/{job_uuid}"): "submit",
    ("GET", "/jobs/{job_uuid}/details"): "read",
    ("GET", "/jobs/{job_uuid}/events"): "read",
    ("GET", "/jobs/{job_uuid}/outputs"): "read",
    ("GET", "/jobs/{job_uuid}/outputs/archive"): "read",
    ("GET", "/jobs/{job_uuid}/outputs/{file_path}"): "read",
    ("GET", "/backend/get_task_meta/{job_uuid}"): "read",
    ("POST", "/dev/callback"): "read",  # or no key and a valid X-Pixyz-Signature
    ("GET", "/dev/callback"): "admin",  # callbacks of every key's jobs
    ("POST", "/uploads"): "submit",
    ("POST", "/uploads/tus"): "submit",
    ("PATCH", "/uploads/tus/{upload_id}"): "submit",  # HEAD too (the matrix skips HEADs)
}
OPEN_OPERATIONS = sorted(op for op, role in MINIMUM_ROLE.items() if role == OPEN)
JOB_OPERATIONS = sorted(op for op in MINIMUM_ROLE if "{job_uuid}" in op[1])

# A process of this module's own: one output in a subfolder, for the download checks.
WRITER = '''"""write_hello: the role matrix's job with an output file."""


def main(pc, params):
    """Write `sub/hello.txt`.

    Result: `{"wrote": "sub/hello.txt"}`.
    """
    with open(pc.get_output_dir("sub/hello.txt"), "w") as f:
        f.write("hello")
    return {"wrote": "sub/hello.txt"}
'''
OUTPUT = "sub/hello.txt"
FINAL = ("SUCCESS", "FAILURE", "REVOKED")


def keys_text(from_hash, roles: dict) -> str:
    return (
        "# digest role label\n"
        + "".join(
            f"{from_hash(KEYS[name])} {roles[name]} {name}\n" for name in KEYS if name != "admin"
        )
        + "not-a-digest admin broken line\n"
    )


def client_for(app, caller: str) -> TestClient:
    if caller == "no key":
        return TestClient(app)
    key = "key-nobody-knows" if caller == "wrong key" else KEYS[caller]
    return TestClient(app, headers={"x-api-key": key})


def wait(client, job_id):
    for _ in range(600):
        state = client.get(f"/jobs/{job_id}").json()
        if state["status"] in FINAL:
            return state
        time.sleep(0.05)
    raise AssertionError(state)


@pytest.fixture(scope="module")
def roles(ray_cluster, tmp_path_factory):
    from serve_app.app import build_app
    from serve_app.store_client import StoreClient
    from tasks.settings import Settings, hash_key

    folder = tmp_path_factory.mktemp("roles")
    (folder / "processes").mkdir()
    (folder / "processes" / "write_hello.py").write_text(WRITER)
    keys_file = folder / "keys.txt"
    keys_file.write_text(keys_text(hash_key, {**ROLE_OF, "read": "submit"}))
    settings = Settings(
        storage=str(folder / "storage"),
        api_key_sha256=[hash_key(KEYS["admin"])],
        api_keys_file=str(keys_file),
        allow_scripts=True,
        callback_secret=CALLBACK_SECRET,
        dev_routes=True,
        store_name=f"store-{folder.name}",
        process_path=str(folder / "processes"),
    )
    store = StoreClient(settings)
    app = build_app(settings, store)
    closed = build_app(settings.model_copy(update={"open_routes": False}), store)

    # One finished job with an output per key (the read key's while it was still `submit`).
    jobs = {}
    for owner in ("read", "submit", "script", "submit2"):
        response = client_for(app, owner).post("/jobs", data={"process": "write_hello"})
        assert response.status_code == 200, response.text
        jobs[owner] = response.json()["uuid"]
    keys_file.write_text(keys_text(hash_key, ROLE_OF))  # demote the read key
    admin = client_for(app, "admin")
    for job_id in jobs.values():
        assert wait(admin, job_id)["status"] == "SUCCESS", admin.get(f"/jobs/{job_id}/details").text
        for _ in range(200):  # zipped once, on first request: have it ready for every caller
            if admin.get(f"/jobs/{job_id}/outputs/archive").status_code == 200:
                break
            time.sleep(0.05)
    reader, unknown = client_for(app, "read"), uuid.uuid4()
    for _ in range(100):  # the keys file is re-read at most once a second
        if reader.delete(f"/jobs/{unknown}").status_code == 403:
            break
        time.sleep(0.05)
    assert reader.delete(f"/jobs/{unknown}").status_code == 403, "the read key was not demoted"

    jobs["admin"] = jobs["submit2"]  # admin sees every job, whoever created it
    yield SimpleNamespace(app=app, closed=closed, keys_file=keys_file, jobs=jobs)
    ray.kill(store.handle, no_restart=True)


def app_operations(app) -> set[tuple[str, str]]:
    """Every (method, path template) the app routes, whether or not the schema shows it."""
    try:  # recent FastAPI keeps each included router as one route in app.routes
        from fastapi.routing import iter_route_contexts

        routes = list(iter_route_contexts(app.routes))
    except ImportError:
        routes = app.routes
    found = set()
    for route in routes:
        for method in getattr(route, "methods", None) or ():
            if method != "HEAD":  # what Starlette adds to GET routes: the same handler
                found.add((method, route.path_format))
    return found


def test_the_matrix_covers_every_operation(roles):
    assert app_operations(roles.app) == set(MINIMUM_ROLE)
    in_schema = {
        (method.upper(), path)
        for path, operations in roles.app.openapi()["paths"].items()
        for method in operations
    }
    assert in_schema <= set(MINIMUM_ROLE)
    assert set(MINIMUM_ROLE) - in_schema == {("GET", "/docs"), ("GET", "/openapi.json")}


def test_docs_state_the_same_matrix():
    rows = re.findall(
        r"^\| `(GET|POST|PUT|PATCH|DELETE) (\S+)` \| `?(\w+)`?", DOCS_API.read_text(), re.M
    )
    documented = {(method, path): role for method, path, role in rows}
    assert documented == MINIMUM_ROLE


def allowed(operation, caller: str) -> bool:
    needed = MINIMUM_ROLE[operation]
    if needed == OPEN:
        return True
    return caller in ROLES and ROLES.index(caller) >= ROLES.index(needed)


def call(roles, app, operation, caller: str, job_id: str | None = None):
    """Make the request, with path values and a body that reach the handler."""
    method, template = operation
    if job_id is None and "{job_uuid}" in template:
        owner = caller if caller in ROLES else "submit"
        if operation == ("DELETE", "/jobs/{job_uuid}") and allowed(operation, caller):
            job = client_for(app, caller).post(
                "/jobs", data={"process": "sleep", "params": json.dumps({"duration": 60})}
            )
            assert job.status_code == 200, job.text
            job_id = job.json()["uuid"]  # a running job of its own to cancel
        else:
            job_id = roles.jobs[owner]
    upload_id = uuid.uuid4().hex
    if "{upload_id}" in template and allowed(operation, caller):
        upload_id = new_upload(client_for(app, caller))  # one of its own to add to
    path = template.format(
        job_uuid=job_id, file_path=OUTPUT, process_name="api_test", upload_id=upload_id
    )
    tus = {"Tus-Resumable": "1.0.0"}
    body = {
        ("POST", "/jobs"): {"data": {"process": "api_test"}},
        ("POST", "/uploads"): {"json": {"filename": "big.step", "size": 1000}},
        ("POST", "/uploads/tus"): {
            "headers": {**tus, "Upload-Length": "5", "Upload-Metadata": "filename YS5zdGw="}
        },
        ("PATCH", "/uploads/tus/{upload_id}"): {
            "content": b"hello",
            "headers": {
                **tus,
                "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream",
            },
        },
        ("POST", "/dev/callback"): {"json": {"infos": {"status": "SUCCESS"}}},
    }.get(operation, {})
    return client_for(app, caller).request(method, path, **body), job_id


def new_upload(client) -> str:
    """A chunked upload of 5 bytes, nothing sent yet; its id."""
    headers = {
        "Tus-Resumable": "1.0.0",
        "Upload-Length": "5",
        "Upload-Metadata": "filename YS5zdGw=",
    }
    created = client.post("/uploads/tus", headers=headers)
    assert created.status_code == 201, created.text
    return created.headers["location"].rsplit("/", 1)[1]


def assert_error(response, code: int, details: str):
    assert response.status_code == code, response.text
    assert response.json() == {
        "detail": {
            "code": code,
            "message": {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}[code],
            "details": response.json()["detail"]["details"],
        }
    }
    assert details in response.json()["detail"]["details"], response.text
    if code == 401:
        assert response.headers["www-authenticate"] == "x-api-key"


def assert_success(operation, response, job_id):
    """The handler's real answer: its success code and a glance at the body."""
    method, path = operation
    if operation == ("POST", "/uploads"):  # local storage: no presigned URLs, said by the handler
        assert response.status_code == 400, response.text
        assert "cannot take direct uploads" in response.json()["detail"]["details"]
        return
    if operation == ("POST", "/uploads/tus"):
        assert response.status_code == 201, response.text
        assert response.headers["location"].startswith("/uploads/tus/")
        return
    if operation == ("PATCH", "/uploads/tus/{upload_id}"):
        assert response.status_code == 204, response.text
        assert response.headers["upload-file-url"].endswith("/a.stl")
        return
    if path == "/jobs/{job_uuid}/events":
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "event: end" in response.text and '"status": "SUCCESS"' in response.text
        return
    assert response.status_code == 200, response.text
    if path == "/":
        assert response.text.startswith("Welcome to PiXYZ API")
    elif path == "/processes":
        assert "api_test" in response.json()["processes"]
    elif path == "/processes/{process_name}":
        assert "api_test" in response.json()["doc"]
    elif path == "/formats":
        assert "glb" in response.json()["writable"]
    elif path == "/metrics":
        assert "pixyz_jobs_submitted_total" in response.text
    elif path == "/openapi.json":
        assert "/jobs" in response.json()["paths"]
    elif path == "/docs":
        assert "swagger" in response.text.lower()
    elif operation == ("GET", "/jobs"):
        assert response.json()["jobs"]
    elif operation == ("POST", "/jobs"):
        assert response.json()["status"] == "SENT"
    elif operation == ("DELETE", "/jobs/{job_uuid}"):
        assert response.json() == {**response.json(), "uuid": job_id, "status": "REVOKED"}
    elif path in ("/jobs/{job_uuid}", "/jobs/{job_uuid}/details"):
        assert response.json()["uuid"] == job_id and response.json()["status"] == "SUCCESS"
    elif path == "/jobs/{job_uuid}/outputs":
        assert response.json() == {"outputs": [OUTPUT]}
    elif path == "/jobs/{job_uuid}/outputs/archive":
        assert response.content.startswith(b"PK")
    elif path == "/jobs/{job_uuid}/outputs/{file_path}":
        assert response.content == b"hello"
    elif path == "/backend/get_task_meta/{job_uuid}":
        assert response.json()["task_id"] == job_id and response.json()["status"] == "SUCCESS"
    elif operation == ("POST", "/dev/callback"):
        assert response.json() == {"received": True, "signature_valid": False}
    elif operation == ("GET", "/dev/callback"):
        assert {"payload": {"infos": {"status": "SUCCESS"}}, "signature_valid": False} in (
            response.json()["callbacks"]
        )
    else:
        raise AssertionError(f"no success check for {operation}")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", sorted(MINIMUM_ROLE), ids=" ".join)
def test_each_operation_as_each_caller(roles, operation, caller):
    if operation == ("GET", "/dev/callback"):  # something to read back
        call(roles, roles.app, ("POST", "/dev/callback"), "admin")
    response, job_id = call(roles, roles.app, operation, caller)
    if allowed(operation, caller):
        assert_success(operation, response, job_id)
    elif caller == "no key":
        assert_error(response, 401, "missing x-api-key header")
    elif caller == "wrong key":
        assert_error(response, 401, "invalid API key")
    else:
        needed = MINIMUM_ROLE[operation]
        assert_error(response, 403, f"role '{caller}' does not allow this (needs '{needed}')")


@pytest.mark.parametrize("caller", ["read", "submit", "script"])
@pytest.mark.parametrize("operation", JOB_OPERATIONS, ids=" ".join)
def test_another_keys_job_is_404_to_non_admin_keys(roles, operation, caller):
    response, _ = call(roles, roles.app, operation, caller, job_id=roles.jobs["submit2"])
    if allowed(operation, caller):
        assert_error(response, 404, f"no job with uuid {roles.jobs['submit2']}")
    else:  # the role check comes first: a 403 tells nothing about the job
        assert_error(response, 403, f"needs '{MINIMUM_ROLE[operation]}'")


@pytest.mark.parametrize("job", ["own", "another key's", "unknown"])
def test_a_role_refusal_does_not_depend_on_the_job(roles, job):
    job_id = {"own": roles.jobs["read"], "another key's": roles.jobs["submit2"]}.get(
        job, str(uuid.uuid4())
    )
    response, _ = call(roles, roles.app, ("DELETE", "/jobs/{job_uuid}"), "read", job_id=job_id)
    assert_error(response, 403, "role 'read' does not allow this (needs 'submit')")


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize("operation", OPEN_OPERATIONS, ids=" ".join)
def test_closed_open_routes_take_any_valid_key(roles, operation, caller):
    # PIXYZ_OPEN_ROUTES=false: the open routes need a key, of any role.
    response, job_id = call(roles, roles.closed, operation, caller)
    if caller == "no key":
        assert_error(response, 401, "missing x-api-key header")
    elif caller == "wrong key":
        assert_error(response, 401, "invalid API key")
    else:
        assert_success(operation, response, job_id)


@pytest.mark.parametrize("body", [b"{not json", b"[]", b""])
def test_uploads_check_the_role_before_the_body(roles, body):
    headers = {"content-type": "application/json"}
    response = client_for(roles.app, "read").post("/uploads", content=body, headers=headers)
    assert_error(response, 403, "role 'read' does not allow this (needs 'submit')")
    response = client_for(roles.app, "no key").post("/uploads", content=body, headers=headers)
    assert_error(response, 401, "missing x-api-key header")


def test_a_signed_callback_needs_no_key(roles):
    from tasks.callbacks import SIGNATURE_HEADER, sign

    body = json.dumps({"uuid": "signed", "status": "SUCCESS"}).encode()
    anonymous = client_for(roles.app, "no key")
    headers = {"content-type": "application/json"}
    response = anonymous.post(
        "/dev/callback", content=body, headers={**headers, SIGNATURE_HEADER: sign(body, "wrong")}
    )
    assert_error(response, 401, "missing x-api-key header")
    signed = {**headers, SIGNATURE_HEADER: sign(body, CALLBACK_SECRET)}
    response = anonymous.post("/dev/callback", content=body, headers=signed)
    assert response.json() == {"received": True, "signature_valid": True}


SCRIPT = (
    b"def main(pc, params):\n    open(pc.get_output_dir('o.txt'), 'w').write('o')\n    return {}\n"
)


@pytest.mark.parametrize("caller", CALLERS)
def test_who_may_run_custom_scripts(roles, caller):
    response = client_for(roles.app, caller).post(
        "/jobs", data={"process": "custom"}, files={"script": ("s.py", SCRIPT)}
    )
    if caller in ("no key", "wrong key"):
        assert_error(response, 401, "x-api-key" if caller == "no key" else "invalid API key")
    elif caller == "read":  # refused by the route's own role before the form is read
        assert_error(response, 403, "role 'read' does not allow this (needs 'submit')")
    elif caller == "submit":
        assert_error(response, 403, "role 'submit' cannot run custom scripts (needs 'script')")
    else:
        assert response.status_code == 200, response.text


def test_job_lists_show_only_the_keys_own_jobs_and_admin_sees_all(roles):
    def listed(caller):
        response = client_for(roles.app, caller).get("/jobs")
        return {job["uuid"] for job in response.json()["jobs"]}

    theirs = roles.jobs["submit2"]
    for caller in ("read", "submit", "script"):
        mine = listed(caller)
        assert roles.jobs[caller] in mine and theirs not in mine, caller
    assert {roles.jobs[o] for o in ("read", "submit", "script", "submit2")} <= listed("admin")


def test_keys_are_added_and_revoked_without_a_restart(roles):
    from tasks.settings import hash_key

    app, keys_file = roles.app, roles.keys_file
    newcomer = "key-added-later"
    assert TestClient(app, headers={"x-api-key": newcomer}).get("/jobs").status_code == 401
    original = keys_file.read_text()
    keys_file.write_text(original + f"{hash_key(newcomer)} read newcomer\n")
    time.sleep(1.2)  # the file is checked at most once a second
    assert TestClient(app, headers={"x-api-key": newcomer}).get("/jobs").status_code == 200
    keys_file.write_text(original.replace(f"{hash_key(KEYS['submit2'])} submit submit2\n", ""))
    time.sleep(1.2)
    assert client_for(app, "submit2").get("/jobs").status_code == 401
    keys_file.write_text(original)
    time.sleep(1.2)
