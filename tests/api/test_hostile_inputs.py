"""Hostile input: each attack gets its documented 4xx or a clean FAILURE, and a job beside it
still succeeds.

Every case first starts a real conversion (Wuson.off to GLB), then sends the hostile
request(s) and checks their exact outcome, then checks the healthy job: SUCCESS, never
retried, and its GLB opens with all 3,732 triangles. Requests that must reach the server
byte for byte (`..` in a URL, a cut body, raw bytes in a file name) are sent with
http.client or as hand-built multipart bodies: httpx would normalise or escape them.

Cases: hostile archives, path traversal in every path parameter and path-like field,
oversized and hostile JSON fields, truncated multipart bodies and a client that hangs up,
unusable and path-laden file names, wrong content types, corrupt models, and models
that name files outside their upload.
"""

from __future__ import annotations

import functools
import http.client
import io
import json
import random
import socket
import stat
import struct
import tarfile
import time
import uuid
import zipfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trimesh

from conftest import DATA, error_of, submit, wait_for

HEALTHY = DATA / "off" / "Wuson.off"
HEALTHY_TRIANGLES = 3732
BOUNDARY = b"hostile-boundary"
MULTIPART = {"content-type": "multipart/form-data; boundary=" + BOUNDARY.decode()}
UUID_422 = (422, "job_uuid: Input should be a valid UUID")
NO_ROUTE = (404, "Not Found")


# -- helpers -----------------------------------------------------------------------------


@contextmanager
def beside_a_healthy_job(client):
    """Start a real conversion, let the test attack the service, then check the conversion."""
    job_id = submit(client, "convert_file", file=HEALTHY)["uuid"]
    yield job_id
    state = wait_for(client, job_id, timeout=60)
    details = client.get(f"/jobs/{job_id}/details").json()
    assert state["status"] == "SUCCESS" and details["retry"] == 0, (state["error"], details)
    response = client.get(f"/jobs/{job_id}/outputs/output.glb")
    assert response.status_code == 200, response.text
    mesh = trimesh.load(io.BytesIO(response.content), file_type="glb", force="mesh")
    assert len(mesh.faces) == HEALTHY_TRIANGLES


def raw_request(service, method: str, target: str, body: bytes = b"", headers=None):
    """Send `target` exactly as written (no dot-segment removal, no re-encoding)."""
    url = urlsplit(service.url)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    try:
        conn.request(
            method, target, body=body, headers={"x-api-key": service.key, **(headers or {})}
        )
        reply = conn.getresponse()
        return httpx.Response(reply.status, headers=reply.getheaders(), content=reply.read())
    finally:
        conn.close()


def multipart(*parts: tuple[bytes, bytes | None, bytes], boundary: bytes = BOUNDARY) -> bytes:
    """A multipart/form-data body from (field, filename or None, data), bytes as given."""
    body = b""
    for field, filename, data in parts:
        disposition = b'Content-Disposition: form-data; name="' + field + b'"'
        if filename is not None:
            disposition += b'; filename="' + filename + b'"'
        body += b"--" + boundary + b"\r\n" + disposition + b"\r\n\r\n" + data + b"\r\n"
    return body + b"--" + boundary + b"--\r\n"


def job_form(filename: bytes = b"Wuson.off", data: bytes | None = None) -> bytes:
    return multipart(
        (b"process", None, b"convert_file"),
        (b"params", None, b'{"extension": "glb"}'),
        (b"file", filename, HEALTHY.read_bytes() if data is None else data),
    )


def job_folders(service) -> set[str]:
    jobs = service.storage / "jobs"
    return {p.name for p in jobs.iterdir()} if jobs.exists() else set()


def run_upload(client, filename: str, data: bytes, params: dict | None = None):
    """POST a convert_file job with this file; wait for it; (short state, details)."""
    response = client.post(
        "/jobs",
        data={"process": "convert_file", "params": json.dumps(params or {})},
        files={"file": (filename, data)},
    )
    assert response.status_code == 200, response.text
    state = wait_for(client, response.json()["uuid"], timeout=60)
    return state, client.get(f"/jobs/{state['uuid']}/details").json()


def assert_clean_failure(state: dict, details: dict, start: str, *words: str) -> None:
    """FAILURE with one readable line starting with `start`; the worker survived."""
    assert state["status"] == "FAILURE", details
    error = state["error"]
    assert error.startswith(start), error
    assert all(word in error for word in words), (words, error)
    assert "\n" not in error and "Traceback" not in error and 'File "' not in error, error
    assert len(error) <= 1000, error  # one line a person reads
    assert details["retry"] == 0, details  # a crash would have retried the job


def marker() -> str:
    return f"pixyz-hostile-{uuid.uuid4().hex[:10]}"


def copies_outside(service, name: str, allowed: Path | None = None) -> list[Path]:
    """Files called `name*` in the test's temp tree (storage and its siblings) or in /tmp
    (where the hostile names below point), other than `allowed`."""
    found = list(service.storage.parent.rglob(f"{name}*")) + list(Path("/tmp").glob(f"{name}*"))
    return [p for p in found if p != allowed]


# -- hostile files, made in memory ----------------------------------------------------------


def _zip(members, compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for info, data in members:
            zf.writestr(info, data)
    return buffer.getvalue()


def _tar_gz(members) -> bytes:
    """(TarInfo, data or None) pairs as a .tar.gz."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return buffer.getvalue()


@functools.cache
def zip_bomb() -> bytes:
    """300 MiB of zeros as one .off member: about 300 KB packed, 1000x."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open("zeros.off", "w") as member:
            for _ in range(300):
                member.write(bytes(1024 * 1024))
    return buffer.getvalue()


def zip_bomb_with_lying_sizes() -> bytes:
    """The bomb, its headers claiming 1 KiB unpacked: the cap must hold on the bytes."""
    raw = bytearray(zip_bomb())
    local, central = raw.find(b"PK\x03\x04"), raw.rfind(b"PK\x01\x02")
    raw[local + 22 : local + 26] = (1024).to_bytes(4, "little")
    raw[central + 24 : central + 28] = (1024).to_bytes(4, "little")
    return bytes(raw)


def tar_bomb() -> bytes:
    info = tarfile.TarInfo("zeros.off")
    return _tar_gz([(info, bytes(300 * 1024 * 1024))])


def zip_of_many_files() -> bytes:
    return _zip([(f"part{i}.off", b"") for i in range(10_001)], zipfile.ZIP_STORED)


def zip_in_zip() -> bytes:
    return _zip([("inner.zip", zip_bomb())])


def zip_nested_2100_folders(_: str) -> bytes:
    return _zip([("a/" * 2100 + "Wuson.off", HEALTHY.read_bytes())])


def zip_slip_relative(name: str) -> bytes:
    return _zip(
        [
            ("model/Wuson.off", HEALTHY.read_bytes()),
            ("model/" + "../" * 12 + f"tmp/{name}.txt", b"escaped"),
        ]
    )


def zip_slip_absolute(name: str) -> bytes:
    return _zip([(f"/tmp/{name}.off", HEALTHY.read_bytes())])


def tar_slip(name: str) -> bytes:
    return _tar_gz([(tarfile.TarInfo(f"../../../../../../tmp/{name}.off"), HEALTHY.read_bytes())])


def zip_symlink(name: str) -> bytes:
    link = zipfile.ZipInfo("Wuson.off")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    escape = zipfile.ZipInfo("tmp")
    escape.external_attr = (stat.S_IFLNK | 0o777) << 16
    return _zip([(link, "/etc/passwd"), (escape, "/tmp"), (f"tmp/{name}.off", b"escaped")])


def tar_links(name: str) -> bytes:
    symlink = tarfile.TarInfo("tmp")
    symlink.type, symlink.linkname = tarfile.SYMTYPE, "/tmp"
    hardlink = tarfile.TarInfo("Wuson.off")
    hardlink.type, hardlink.linkname = tarfile.LNKTYPE, "/etc/passwd"
    return _tar_gz([(symlink, None), (hardlink, None), (tarfile.TarInfo(f"tmp/{name}.off"), b"x")])


ARCHIVES = [
    pytest.param(
        "bomb.zip",
        lambda _: zip_bomb(),
        "archive unpacks to 314572800 bytes, more than the limit of ",
        ("ratio cap 200",),
        id="zip-bomb",
    ),
    pytest.param(
        "bomb.zip",
        lambda _: zip_bomb_with_lying_sizes(),
        "cannot read archive 'bomb.zip': Bad CRC-32 for file 'zeros.off'",
        (),
        id="zip-bomb-headers-lie",
    ),
    pytest.param(
        "bomb.tar.gz",
        lambda _: tar_bomb(),
        "archive unpacks to 314572800 bytes, more than the limit of ",
        ("ratio cap 200",),
        id="tar-gz-bomb",
    ),
    pytest.param(
        "many.zip",
        lambda _: zip_of_many_files(),
        "archive holds 10001 files, more than the limit of 10000",
        (),
        id="zip-10001-files",
    ),
    pytest.param(
        "nested.zip",
        lambda _: zip_in_zip(),
        "archive unpacks to ",
        ("bytes, more than the limit of", "ratio cap 200"),
        id="zip-bomb-inside-a-zip",
    ),
    pytest.param(
        "deep.zip",
        zip_nested_2100_folders,
        "archive member 'a/a/a/",
        ("…", "is nested 2100 folders deep, more than the limit of 64"),
        id="zip-2100-nested-folders",
    ),
    pytest.param(
        "slip.zip",
        zip_slip_relative,
        "archive member 'model/../../",
        ("points outside the archive folder",),
        id="zip-slip-dot-dot",
    ),
    pytest.param(
        "slip.zip",
        zip_slip_absolute,
        "archive member '/tmp/",
        ("points outside the archive folder",),
        id="zip-slip-absolute",
    ),
    pytest.param(
        "slip.tar.gz",
        tar_slip,
        "archive member '../../../../../../tmp/",
        ("points outside the archive folder",),
        id="tar-slip-dot-dot",
    ),
    pytest.param(
        "links.zip",
        zip_symlink,
        "archive member 'Wuson.off' is a link or special file",
        (),
        id="zip-symlink-members",
    ),
    pytest.param(
        "links.tar.gz",
        tar_links,
        "archive member 'tmp' is a link or special file",
        (),
        id="tar-symlink-and-hardlink",
    ),
]


@pytest.mark.parametrize("filename,make,start,words", ARCHIVES)
def test_hostile_archive_fails_the_job_cleanly(client, service, filename, make, start, words):
    name = marker()
    data = make(name)
    with beside_a_healthy_job(client):
        state, details = run_upload(client, filename, data)
    assert_clean_failure(state, details, start, *words)
    assert not any(s["info"].startswith("Read ") for s in details["steps"]), details["steps"]
    assert client.get(f"/jobs/{state['uuid']}/outputs").json() == {"outputs": []}
    assert copies_outside(service, name) == []


# -- path traversal in every path parameter ---------------------------------------------------

# The path parameters this file attacks; a new one fails test_every_path_parameter_is_attacked.
ATTACKED_PATH_PARAMETERS = {"job_uuid", "file_path", "process_name", "upload_id"}


def test_every_path_parameter_is_attacked(client):
    schema = client.get("/openapi.json").json()
    parameters = {
        parameter["name"]
        for operations in schema["paths"].values()
        for operation in operations.values()
        for parameter in operation.get("parameters", [])
        if parameter["in"] == "path"
    }
    assert parameters == ATTACKED_PATH_PARAMETERS


def job_uuid_variants(job_id: str) -> list[tuple[str, tuple[int, str]]]:
    """Raw URL segments for {job_uuid}: a decoded `/` leaves no route (404), the rest are 422."""
    return [
        ("..", UUID_422),
        ("%2e%2e", UUID_422),
        ("..%2F..%2Fstate%2Findex.json", NO_ROUTE),
        ("%2Fetc%2Fpasswd", NO_ROUTE),
        ("..%5C..%5Cstate%5Cindex.json", UUID_422),
        ("C:%5Cwindows%5Cwin.ini", UUID_422),
        (f"{job_id}%00", UUID_422),
        (f"{job_id}%00.json", UUID_422),
        (f"{job_id}%2F..%2F..%2Fstate", NO_ROUTE),
        (f"{job_id}%2F..", NO_ROUTE),
    ]


def test_path_traversal_in_job_uuid_of_every_route(client, service):
    schema = client.get("/openapi.json").json()
    routes = [
        (method.upper(), path.replace("{file_path}", "output.glb"))
        for path, operations in schema["paths"].items()
        if "{job_uuid}" in path
        for method in operations
    ]
    # GET+DELETE job, details, events, outputs, archive, file, task meta
    assert len(routes) == 8, routes
    with beside_a_healthy_job(client) as job_id:
        for method, path in routes:
            for segment, (code, words) in job_uuid_variants(job_id):
                target = path.replace("{job_uuid}", segment)
                response = raw_request(service, method, target)
                assert words in error_of(response, code), (method, target)
    # leaving the block checked the healthy job: DELETE /jobs/<its id>%00 cancelled nothing


@pytest.fixture(scope="module")
def finished_job(service):
    """A finished conversion whose outputs folder sits next to its state.json in storage."""
    with service.client() as client:
        job_id = submit(client, "convert_file", file=HEALTHY)["uuid"]
        assert wait_for(client, job_id)["status"] == "SUCCESS"
    assert (service.storage / "jobs" / job_id / "state.json").exists()
    return job_id


FILE_PATH_VARIANTS = [
    ("../state.json", "output path '../state.json' leaves the job's outputs"),
    ("..%2Fstate.json", "output path '../state.json' leaves the job's outputs"),
    ("%2e%2e/%2e%2e/%2e%2e/state/index.json", "output path '../../../state/index.json' leaves"),
    ("output.glb/../../state.json", "output path 'output.glb/../../state.json' leaves"),
    ("%2Fetc%2Fpasswd", "output path '/etc/passwd' leaves the job's outputs"),
    ("/etc/passwd", "output path '/etc/passwd' leaves the job's outputs"),
    ("./output.glb", "output path './output.glb' leaves the job's outputs"),
    ("..%5Cstate.json", "invalid output path '..\\\\state.json'"),
    ("C:%5Cetc%5Cpasswd", "invalid output path 'C:\\\\etc\\\\passwd'"),
    ("output.glb%00.txt", "invalid output path 'output.glb\\x00.txt'"),
    ("%00", "invalid output path '\\x00'"),
    ("views//output.glb", "output path 'views//output.glb' is not in normal form"),
]


def test_path_traversal_in_output_file_path(client, service, finished_job):
    with beside_a_healthy_job(client):
        for segment, words in FILE_PATH_VARIANTS:
            target = f"/jobs/{finished_job}/outputs/{segment}"
            assert words in error_of(raw_request(service, "GET", target), 400), target
        # a listed output under its plain name is the only way in
        ok = raw_request(service, "GET", f"/jobs/{finished_job}/outputs/output.glb")
        assert ok.status_code == 200 and ok.content[:4] == b"glTF"
        missing = raw_request(service, "GET", f"/jobs/{finished_job}/outputs/state.json")
        assert "has no output 'state.json'" in error_of(missing, 404)


UPLOAD_ID_VARIANTS = [
    ("..", (404, "no upload ..")),
    ("%2e%2e", (404, "no upload ..")),
    ("..%2F..%2Fstate%2Findex.json", NO_ROUTE),
    ("%2Fetc%2Fpasswd", NO_ROUTE),
    ("..%5C..%5Cstate", (404, "no upload ..\\..\\state")),
    ("0" * 32 + "%00", (404, "no upload ")),
    ("tus-" + "0" * 28, (404, "no upload tus-")),
    ("0" * 32, (404, "no upload " + "0" * 32)),
]


def test_path_traversal_in_upload_id(service, client):
    """A chunked upload's id is 32 hex digits naming its staging folder, or a 404."""
    chunk = {
        "Tus-Resumable": "1.0.0",
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    }
    with beside_a_healthy_job(client):
        for segment, (code, words) in UPLOAD_ID_VARIANTS:
            target = f"/uploads/tus/{segment}"
            patched = raw_request(service, "PATCH", target, b"x", chunk)
            assert words in error_of(patched, code), target
            assert raw_request(service, "HEAD", target).status_code == 404, target


PROCESS_NAME_VARIANTS = [
    ("..%2F..%2Ftasks%2Frunner", NO_ROUTE),
    ("%2Fetc%2Fpasswd", NO_ROUTE),
    ("..", (404, "unknown process '..'; available: ")),
    ("%2e%2e", (404, "unknown process '..'; available: ")),
    ("..%5C..%5Cconvert_file", (404, "unknown process '..\\..\\convert_file'")),
    ("convert_file%00", (404, "unknown process 'convert_file\x00'")),
    ("_shared", (404, "unknown process '_shared'")),
    ("__init__", (404, "unknown process '__init__'")),
    ("convert_file.py", (404, "unknown process 'convert_file.py'")),
]


def test_path_traversal_in_process_name(service, client):
    with beside_a_healthy_job(client):
        for segment, (code, words) in PROCESS_NAME_VARIANTS:
            response = raw_request(service, "GET", f"/processes/{segment}")
            assert words in error_of(response, code), segment


@pytest.mark.parametrize(
    "process",
    ["../../tasks/runner", "/etc/passwd", "_shared", "convert_file\x00", "..\\convert_file"],
    ids=["dot-dot", "absolute", "private-module", "nul", "backslash"],
)
def test_path_traversal_in_the_process_field(client, service, process):
    with beside_a_healthy_job(client):
        before = job_folders(service)
        response = client.post("/jobs", data={"process": process, "params": "{}"})
        assert f"unknown process '{process}'; available: " in error_of(response, 400)
        assert job_folders(service) == before


NOT_AN_UPLOAD_KEY = "file_url must be the 'file_url' value returned by POST /uploads"


def test_path_traversal_in_file_url(client, service):
    hex32 = uuid.uuid4().hex
    with beside_a_healthy_job(client) as job_id:
        before = job_folders(service)
        for file_url in (
            "uploads/../../state/index.json",
            f"uploads/{hex32}/..",
            f"uploads/{hex32}/.",
            f"uploads/{hex32}/x.off\x00",
            f"uploads/{hex32}/..\\..\\x.off",
            f"jobs/{job_id}/inputs/Wuson.off",
            "/etc/passwd",
            "file:///etc/passwd",
        ):
            body = multipart(
                (b"process", None, b"convert_file"), (b"file_url", None, file_url.encode())
            )
            details = error_of(client.post("/jobs", content=body, headers=MULTIPART), 400)
            assert details == NOT_AN_UPLOAD_KEY, file_url
        assert job_folders(service) == before


def test_path_traversal_in_params_filename(client, service):
    name = marker()
    with beside_a_healthy_job(client):
        before = job_folders(service)
        params = {"filename": f"../../../../tmp/{name}"}
        details = submit(client, "convert_file", file=HEALTHY, params=params, expect=400)
        assert job_folders(service) == before
    assert details.startswith("params.filename: must be 1-100 letters")
    assert copies_outside(service, name) == []


# -- oversized and deeply nested fields ---------------------------------------------------------

TEN_MB = b'{"blob": "' + b"x" * (10 * 1024 * 1024) + b'"}'


@pytest.mark.parametrize("field", ["params", "config", "name"])
def test_a_10_mb_text_field_is_413(client, service, field):
    with beside_a_healthy_job(client):
        before = job_folders(service)
        body = multipart((b"process", None, b"convert_file"), (field.encode(), None, TEN_MB))
        response = client.post("/jobs", content=body, headers=MULTIPART)
        assert error_of(response, 413) == f"form field '{field}' is over 1,048,576 bytes"
        assert job_folders(service) == before


def test_a_10_mb_urlencoded_form_is_413(client, service):
    with beside_a_healthy_job(client):
        body = b"process=convert_file&params=" + TEN_MB
        headers = {"content-type": "application/x-www-form-urlencoded"}
        response = client.post("/jobs", content=body, headers=headers)
        assert "form is over 1,048,576 bytes" in error_of(response, 413)


HOSTILE_JSON = [
    pytest.param(
        '{"a": ' * 1000 + "1" + "}" * 1000,
        "is nested too deeply (limit 32 levels)",
        id="objects-nested-1000-levels",
    ),
    pytest.param(
        '{"a": ' + "[" * 1000 + "]" * 1000 + "}",
        "is nested too deeply (limit 32 levels)",
        id="arrays-nested-1000-levels",
    ),
    pytest.param(
        '{"a": ' + "9" * 5000 + "}",
        "is not valid JSON: a number has too many digits",
        id="number-of-5000-digits",
    ),
    pytest.param(
        '{"name": "\\ud800"}',
        "is not valid JSON: a \\u escape is half of a surrogate pair",
        id="lone-surrogate-escape",
    ),
    *(
        pytest.param(
            '{"ratio": ' + constant + "}",
            f"is not valid JSON: {constant} is not a number JSON allows (use null or a finite number)",
            id=f"{constant}-is-not-json",
        )
        for constant in ("NaN", "Infinity", "-Infinity")
    ),
]


@pytest.mark.parametrize("field", ["params", "config"])
@pytest.mark.parametrize("text,problem", HOSTILE_JSON)
def test_hostile_json_is_400(client, service, field, text, problem):
    with beside_a_healthy_job(client):
        before = job_folders(service)
        data = {"process": "api_test", "params": "{}", "config": "{}", field: text}
        assert error_of(client.post("/jobs", data=data), 400) == f"'{field}' {problem}"
        assert job_folders(service) == before


# -- truncated and malformed multipart bodies ----------------------------------------------------


def _cut_in_file_data(body: bytes) -> bytes:
    return body[: len(body) // 2]


def _cut_before_closing_boundary(body: bytes) -> bytes:
    return body[: body.rindex(b"--" + BOUNDARY + b"--")]


def _cut_in_part_headers(body: bytes) -> bytes:
    return body[: body.index(b'name="file"') + 8]


def _cut_in_first_boundary(body: bytes) -> bytes:
    return body[:10]


@pytest.mark.parametrize(
    "cut,details",
    [
        (_cut_in_file_data, "malformed multipart body: it ended inside a part (truncated upload?)"),
        (
            _cut_before_closing_boundary,
            "malformed multipart body: it ended inside a part (truncated upload?)",
        ),
        (
            _cut_in_part_headers,
            "malformed multipart body: it ended before the closing boundary (truncated upload?)",
        ),
        (
            _cut_in_first_boundary,
            "malformed multipart body: it ended before the closing boundary (truncated upload?)",
        ),
    ],
    ids=["in-file-data", "before-closing-boundary", "in-part-headers", "in-first-boundary"],
)
def test_truncated_multipart_is_400_and_leaves_nothing(client, service, cut, details):
    with beside_a_healthy_job(client):
        before = job_folders(service)
        response = client.post("/jobs", content=cut(job_form()), headers=MULTIPART)
        assert error_of(response, 400) == details
        assert job_folders(service) == before


def test_a_client_that_hangs_up_mid_upload_leaves_nothing(client, service):
    url = urlsplit(service.url)
    body = job_form()
    with beside_a_healthy_job(client):
        before = job_folders(service)
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            head = (
                "POST /jobs HTTP/1.1\r\nHost: test\r\n"
                f"x-api-key: {service.key}\r\n"
                f"content-type: {MULTIPART['content-type']}\r\n"
                f"content-length: {len(body)}\r\n\r\n"
            )
            sock.sendall(head.encode() + body[: len(body) // 2])
            # the first half is being written to storage as it arrives...
            assert _eventually(lambda: len(job_folders(service) - before) == 1)
            sock.shutdown(socket.SHUT_WR)
            assert sock.recv(65536) == b""  # closed: there is nobody to answer
        # ...and deleted when the client hangs up
        assert _eventually(lambda: job_folders(service) == before)


def _eventually(condition, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- file names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filenames,details",
    [
        ([b"a" * 9_996 + b".off"], "malformed multipart body: Maximum header size exceeded"),
        ([b"a" * 300 + b".off"], "give the file a plain name (max 255 bytes)"),
        (
            [b"a\x00.off", b"a\x01.off", b"a\n.off", b"a\t.off", b"a\x1b[2J.off", b"a\x7f.off"],
            "give the file a plain name (max 255 bytes)",
        ),
        ([b"a\r.off"], "malformed multipart body: "),
        ([b"..", b".", b"../..", b"models/", b"   "], "give the file a plain name (max 255 bytes)"),
    ],
    ids=["10000-bytes", "300-bytes", "nul-and-control-chars", "carriage-return", "no-base-name"],
)
def test_unusable_file_names_are_400_and_leave_nothing(client, service, filenames, details):
    with beside_a_healthy_job(client):
        before = job_folders(service)
        for filename in filenames:
            response = client.post("/jobs", content=job_form(filename), headers=MULTIPART)
            assert details in error_of(response, 400), filename
        assert job_folders(service) == before


@pytest.mark.parametrize(
    "template",
    ["../../../../../../tmp/{}.off", "..\\..\\..\\tmp\\{}.off", "/tmp/{}.off", "C:\\tmp\\{}.off"],
    ids=["dot-dot", "dot-dot-backslash", "absolute", "windows-absolute"],
)
def test_file_names_with_paths_are_stored_under_their_base_name(client, service, template):
    name = marker()
    with beside_a_healthy_job(client):
        body = job_form(template.format(name).encode())
        response = client.post("/jobs", content=body, headers=MULTIPART)
        assert response.status_code == 200, response.text
        job_id = response.json()["uuid"]
        stored = service.storage / "jobs" / job_id / "inputs" / f"{name}.off"
        assert [p.name for p in stored.parent.iterdir()] == [stored.name]
        assert stored.read_bytes() == HEALTHY.read_bytes()
        state = wait_for(client, job_id)
    assert state["status"] == "SUCCESS", state
    steps = [s["info"] for s in client.get(f"/jobs/{job_id}/details").json()["steps"]]
    assert steps[0] == f"Received input '{name}.off' (149,571 bytes)"
    assert copies_outside(service, name, allowed=stored) == []


# -- wrong content types -------------------------------------------------------------------------

NOT_A_FORM = (
    "send the job as multipart/form-data or a urlencoded form "
    "(fields: process, file, params, config, name, script)"
)


@pytest.mark.parametrize(
    "content_type,body,details",
    [
        ("text/plain", b"process=convert_file", NOT_A_FORM),
        ("application/json", b'{"process": "convert_file", "params": {}}', NOT_A_FORM),
        ("application/octet-stream", HEALTHY.read_bytes(), NOT_A_FORM),
        ("multipart/mixed; boundary=" + BOUNDARY.decode(), job_form(), NOT_A_FORM),
        (None, job_form(), NOT_A_FORM),
        ("multipart/form-data", job_form(), NOT_A_FORM),
        ("multipart/form-data; boundary=", job_form(), "malformed multipart body: "),
        ("multipart/form-data; boundary=another", job_form(), "malformed multipart body: "),
    ],
    ids=[
        "text-plain",
        "json",
        "octet-stream",
        "multipart-mixed",
        "no-content-type",
        "multipart-without-boundary",
        "multipart-empty-boundary",
        "multipart-wrong-boundary",
    ],
)
def test_wrong_content_type_is_400(client, service, content_type, body, details):
    headers = {"content-type": content_type} if content_type else {}
    with beside_a_healthy_job(client):
        before = job_folders(service)
        response = raw_request(service, "POST", "/jobs", body, headers)
        assert error_of(response, 400).startswith(details)
        assert job_folders(service) == before


# -- corrupt models ----------------------------------------------------------------------------


def _half(path: Path) -> bytes:
    data = path.read_bytes()
    return data[: len(data) // 2]


def _flipped(path: Path, start: int | None = None, count: int = 4096) -> bytes:
    data = bytearray(path.read_bytes())
    start = len(data) // 2 if start is None else start
    for i in range(start, min(len(data), start + count)):
        data[i] ^= 0xFF
    return bytes(data)


def _glb_with_lying_length() -> bytes:
    data = bytearray((DATA / "glb" / "CesiumMilkTruck.glb").read_bytes())
    data[8:12] = struct.pack("<I", 0x7FFFFFF0)  # total length: 2 GiB
    return bytes(data)


def _glb_with_cyclic_nodes() -> bytes:
    """The truck with its root node listed as its own child: the node tree has a cycle."""
    data = (DATA / "glb" / "CesiumMilkTruck.glb").read_bytes()
    (json_length,) = struct.unpack("<I", data[12:16])
    document = json.loads(data[20 : 20 + json_length])
    document["nodes"][0]["children"] = [*document["nodes"][0].get("children", []), 0]
    text = json.dumps(document).encode()
    text += b" " * (-len(text) % 4)
    rest = data[20 + json_length :]
    body = struct.pack("<I4s", len(text), b"JSON") + text + rest
    return struct.pack("<4sII", b"glTF", 2, 12 + len(body)) + body


def _dae_billion_laughs() -> bytes:
    """The teapot with an author of 10^9 'a's, by nested XML entities."""
    entities = '<!ENTITY a0 "aaaaaaaaaa">' + "".join(
        f'<!ENTITY a{i} "{f"&a{i - 1};" * 10}">' for i in range(1, 10)
    )
    text = (DATA / "dae" / "teapot_instancenodes.DAE").read_text()
    head, rest = text.split("?>", 1)
    rest = rest.replace("<asset>", "<asset><contributor><author>&a9;</author></contributor>", 1)
    return f"{head}?><!DOCTYPE COLLADA [{entities}]>{rest}".encode()


CUBE = DATA / "step" / "red_cube_blue_cylinder.step"
TRUCK = DATA / "glb" / "CesiumMilkTruck.glb"

CORRUPT_MODELS = [
    pytest.param(
        "red_cube_blue_cylinder.step",
        lambda: _half(CUBE),
        "cannot read 'red_cube_blue_cylinder.step' as STEP: the STEP parser rejected the file",
        id="step-truncated",
    ),
    pytest.param(
        "red_cube_blue_cylinder.step",
        lambda: _flipped(CUBE),
        "cannot read 'red_cube_blue_cylinder.step' as STEP: the file parsed but contains no",
        id="step-bytes-flipped",
    ),
    pytest.param(
        "random.step",
        lambda: random.Random(7).randbytes(20_000),
        "cannot read 'random.step' as STEP: the STEP parser rejected the file",
        id="step-random-bytes",
    ),
    pytest.param(
        "CesiumMilkTruck.glb",
        lambda: _half(TRUCK),
        "cannot read 'CesiumMilkTruck.glb' as glTF: not a valid glTF file "
        "(file is truncated (271072 of 542144 bytes))",
        id="glb-truncated",
    ),
    pytest.param(
        "CesiumMilkTruck.glb",
        _glb_with_lying_length,
        "cannot read 'CesiumMilkTruck.glb' as glTF: not a valid glTF file "
        "(file is truncated (542144 of 2147483632 bytes))",
        id="glb-lying-length-header",
    ),
    pytest.param(
        "CesiumMilkTruck.glb",
        lambda: _flipped(TRUCK, start=100, count=200),
        "cannot read 'CesiumMilkTruck.glb' as glTF: not a valid glTF file",
        id="glb-json-bytes-flipped",
    ),
    pytest.param(
        "CesiumMilkTruck.glb",
        _glb_with_cyclic_nodes,
        "cannot read 'CesiumMilkTruck.glb' as glTF: Iteration limit exceeded",
        id="glb-node-is-its-own-child",
    ),
    pytest.param(
        "cycloidal.ply",
        lambda: _half(DATA / "ply" / "cycloidal.ply"),
        "cannot read 'cycloidal.ply' as PLY: header promises at least 558,984 bytes of data "
        "but the file has 539,518",
        id="ply-truncated",
    ),
    pytest.param(
        "crash.ply",
        lambda: (DATA / "ply" / "crash-30d6d0f7c529b3b66b4131700b7a4580cd7082df.ply").read_bytes(),
        "cannot read 'crash.ply' as PLY: header is truncated (no 'end_header' line)",
        id="corpus-ply-that-segfaults-assimp",
    ),
    pytest.param(
        "OutOfMemory.off",
        lambda: (DATA / "off" / "OutOfMemory.off").read_bytes(),
        "cannot read 'OutOfMemory.off' as OFF: header declares 353,535,235,358 vertices",
        id="corpus-off-claiming-353-billion-vertices",
    ),
    pytest.param(
        "teapot.dae",
        _dae_billion_laughs,
        "cannot read 'teapot.dae' as COLLADA: DaeMalformedError: XML Parsing Error: "
        "Maximum entity amplification factor exceeded",
        id="dae-billion-laughs",
    ),
]


@pytest.mark.parametrize("filename,make,start", CORRUPT_MODELS)
def test_corrupt_model_fails_cleanly_naming_file_and_format(client, filename, make, start):
    data = make()
    with beside_a_healthy_job(client):
        state, details = run_upload(client, filename, data)
    assert_clean_failure(state, details, start)
    assert client.get(f"/jobs/{state['uuid']}/outputs").json() == {"outputs": []}


# -- models that reference files outside their upload -------------------------------------------


def _gltf_reading(buffer_uri: str) -> bytes:
    """A .gltf whose one triangle's positions are the first 36 bytes of `buffer_uri`."""
    document = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "accessors": [
            {
                "bufferView": 0,
                "componentType": 5126,
                "count": 3,
                "type": "VEC3",
                "min": [-1e9, -1e9, -1e9],
                "max": [1e9, 1e9, 1e9],
            }
        ],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 36}],
        "buffers": [{"uri": buffer_uri, "byteLength": 36}],
    }
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "reference",
    [
        lambda secret: str(secret),
        lambda secret: "../" * 16 + str(secret).lstrip("/"),
        lambda secret: "..\\" * 16 + str(secret).lstrip("/").replace("/", "\\"),
    ],
    ids=["absolute", "dot-dot", "dot-dot-backslash"],
)
def test_a_gltf_cannot_read_the_workers_files(client, tmp_path, reference):
    secret = tmp_path / "secret.bin"  # stands for /proc/self/environ, ~/.aws/credentials...
    secret.write_bytes(struct.pack("<9f", 1, 2, 3, 4, 5, 6, 7, 8, 10))
    uri = reference(secret)
    with beside_a_healthy_job(client):
        state, details = run_upload(client, "scene.gltf", _gltf_reading(uri))
    assert_clean_failure(state, details, f"cannot read 'scene.gltf' as glTF: buffer file '{uri}'")
    assert state["error"].endswith("' is missing")
    assert client.get(f"/jobs/{state['uuid']}/outputs").json() == {"outputs": []}


def test_an_obj_cannot_read_the_workers_files(client, tmp_path):
    from PIL import Image

    secret_colour = (12, 34, 56)
    Image.new("RGB", (8, 8), secret_colour).save(tmp_path / "secret.png")
    (tmp_path / "secret.mtl").write_text(f"newmtl m\nmap_Kd {tmp_path / 'secret.png'}\n")
    obj = (
        f"mtllib {tmp_path / 'secret.mtl'}\nusemtl m\n"
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nvt 0 0\nvt 1 0\nvt 0 1\nf 1/1 2/2 3/3\n"
    )
    with beside_a_healthy_job(client):
        state, details = run_upload(client, "part.obj", obj.encode())
    assert state["status"] == "SUCCESS", details
    assert details["result"]["warnings"] == [
        f"material library '{tmp_path / 'secret.mtl'}' not found; loaded without materials"
    ]
    glb = client.get(f"/jobs/{state['uuid']}/outputs/output.glb").content
    mesh = trimesh.load(io.BytesIO(glb), file_type="glb", force="mesh")
    assert len(mesh.faces) == 1
    texture = getattr(mesh.visual.material, "baseColorTexture", None)
    assert texture is None or secret_colour not in texture.convert("RGB").getdata()
