"""The HTTP API keeps its own OpenAPI contract under generated input (Schemathesis).

Every operation in `/openapi.json` is called with generated path parameters,
bodies and forms, and every answer must be documented: no 5xx, a status code
the operation declares, a declared content type, and a body that matches the
declared schema (errors included: `ErrorBody`). A second pass sends no key and
expects 401 everywhere except the open routes.

Generation is steered towards the paths worth fuzzing: job routes sometimes get
the uuid of a real finished job (and its real output names), and `POST /jobs`
forms sometimes carry well-formed `params`/`config` JSON for the cheap
`api_test` process, so the success paths are fuzzed too, not only the 4xx.
"""

from __future__ import annotations

import json

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import API_KEY, TEST_PROCESSES, submit, wait_for

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# Open without a key while the operator leaves PIXYZ_OPEN_ROUTES at its default (docs/api.md).
OPEN_ROUTES = {"/", "/processes", "/processes/{process_name}", "/formats", "/metrics"}

# Bounded for a shared 2-core machine: 16 operations x (Schemathesis' coverage examples,
# ~10 each, + these generated ones). Derandomized so CI sees the same cases every run; a
# deeper hunt: raise max_examples and drop `derandomize` locally (150 per operation ran clean).
FUZZ = settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    database=None,
    # `explicit` carries the coverage examples; no shrinking: a request/response pair is
    # readable as found, and shrinking would replay it against the live service many times.
    phases=[Phase.explicit, Phase.generate],
    # Each example is an HTTP round trip, and Schemathesis filters unsendable headers.
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

WRITER = """
def main(pc, params):
    with open(pc.get_output_dir("model.bin"), "wb") as f:
        f.write(bytes(range(256)))
    with open(pc.get_output_dir("views/iso 1.png"), "wb") as f:
        f.write(b"png")
    return {"written": 2}
"""
OUTPUT_NAMES = ["model.bin", "views/iso 1.png"]

# Filled by the `real_job` fixture before any case is generated (generation runs inside the test).
REAL_JOBS: list[str] = []


def built_schema() -> dict:
    """The schema the service serves, built in-process so pytest can collect one test per operation."""
    from serve_app.app import build_app
    from tasks.settings import Settings

    # dev_routes as the test service has them, so /dev/callback is fuzzed too
    settings = Settings(process_path=str(TEST_PROCESSES), dev_routes=True)
    return build_app(settings, store=None).openapi()


schema = schemathesis.openapi.from_dict(built_schema())

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
CONFIGS = st.fixed_dictionaries(
    {},
    optional={
        "queue": st.sampled_from(["cpu", "turbo", None, 3]),
        "time_limit": st.sampled_from([60, 0.5, 0, -1, 1e309, "soon", True, None]),
        "entrypoint": st.sampled_from(["main", "os.system", "", None]),
        # Never a reachable URL: a fuzzed job must not call anything out.
        "callback_url": st.sampled_from(["file:///etc/passwd", "not a url", None]),
        "data": JSON_VALUES,
        "anything": JSON_VALUES,
    },
)


@schema.hook
def flatmap_body(context, body):
    if context.operation.label != "POST /jobs" or not isinstance(body, dict):
        return st.just(body)
    # Real jobs for every valid form would load the cluster: the cheapest process only.
    steered = st.fixed_dictionaries(
        {
            "process": st.just("api_test"),
            "params": st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=4).map(json.dumps),
            "config": CONFIGS.map(lambda c: json.dumps(c, allow_nan=True)),
        }
    ).map(lambda fields: {**{k: v for k, v in body.items() if k in ("file", "name")}, **fields})
    return st.just(body) | steered


@schema.hook
def flatmap_path_parameters(context, path_parameters):
    if not REAL_JOBS or not path_parameters or "job_uuid" not in path_parameters:
        return st.just(path_parameters)
    real = {**path_parameters, "job_uuid": REAL_JOBS[0]}
    if "file_path" in path_parameters:
        named = st.sampled_from(OUTPUT_NAMES + ["views", "views/", "model.bin/"])
        real_with_file = named.map(lambda name: {**real, "file_path": name})
        return st.sampled_from([path_parameters, real]) | real_with_file
    return st.sampled_from([path_parameters, real])


@pytest.fixture(scope="module", autouse=True)
def real_job(service):
    with service.client() as client:
        job = submit(client, "custom", script=WRITER)
        state = wait_for(client, job["uuid"])
        assert state["status"] == "SUCCESS", client.get(f"/jobs/{job['uuid']}/details").text
    REAL_JOBS[:] = [job["uuid"]]
    yield job["uuid"]
    REAL_JOBS.clear()


def test_the_served_schema_is_the_one_fuzzed(service):
    with service.client(key=None) as anonymous:
        served = anonymous.get("/openapi.json").json()
    assert served == built_schema()


def test_every_error_an_operation_documents_has_the_error_body():
    # Including 401 on the open routes: an operator can close them (PIXYZ_OPEN_ROUTES=false).
    # FastAPI's own 422 model (HTTPValidationError) is not what the app sends.
    for path, operations in built_schema()["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            assert "401" in responses, (method, path)
            for code, response in responses.items():
                if int(code) >= 400:
                    body = response["content"]["application/json"]["schema"]
                    assert body == {"$ref": "#/components/schemas/ErrorBody"}, (method, path, code)


def test_a_callback_body_that_is_not_utf8_is_a_400(client):
    # Found by this fuzzer: json.loads raised UnicodeDecodeError, answered as a 500.
    response = client.post(
        "/dev/callback",
        content=b'{"infos": "\xff\xfe"}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400, response.text
    assert "UTF-8" in response.json()["detail"]["details"]


@schema.parametrize()
@FUZZ
def test_every_operation_keeps_its_contract(case, service):
    # Generated cases may carry their own (empty, random) key; this pass is about the data.
    case.headers = {**(case.headers or {}), "x-api-key": API_KEY}
    case.call_and_validate(base_url=service.url, checks=CHECKS, timeout=30)


@schema.parametrize()
@FUZZ
def test_without_a_key_only_open_routes_answer(case, service):
    case.headers = {k: v for k, v in (case.headers or {}).items() if k.lower() != "x-api-key"}
    response = case.call(base_url=service.url, timeout=30)
    case.validate_response(response, checks=CHECKS)
    if case.path in OPEN_ROUTES:
        return
    if case.method.upper() != case.operation.method.upper():
        # The coverage phase also tries methods the path does not have: routing answers
        # 405 before authentication runs, which tells a caller nothing about the data.
        assert response.status_code == 405, (case.method, case.formatted_path)
        return
    assert response.status_code == 401, (case.method, case.formatted_path, response.text)
    assert response.headers["www-authenticate"] == ["x-api-key"]
    detail = json.loads(response.text)["detail"]
    assert detail["code"] == 401 and detail["message"] == "Unauthorized"


# Schemathesis names every multipart file after its field; the client's file name is
# free text that ends up in a storage path, so it gets its own generated cases.
@given(
    filename=st.text(min_size=1, max_size=40)
    | st.sampled_from(["..", "../../etc/passwd", "a\\..\\b.glb", "x" * 300, "a::b.glb", "%2e%2e"])
)
@settings(FUZZ, max_examples=25)
def test_any_client_file_name_is_stored_or_refused_cleanly(service, filename):
    with service.client() as client:
        response = client.post(
            "/jobs", data={"process": "api_test"}, files={"file": (filename, b"solid x\n")}
        )
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert "file name" in response.json()["detail"]["details"]
        return
    stored = list((service.storage / "jobs" / response.json()["uuid"] / "inputs").iterdir())
    assert [path.read_bytes() for path in stored] == [b"solid x\n"]
    assert not set("/\\") & set(stored[0].name)
