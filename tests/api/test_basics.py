"""The wire contract of wire-compat.md: open routes, auth, JSON shapes, processes."""

from conftest import API_KEY


def test_root_is_open_and_names_the_api(service):
    with service.client(key=None) as anonymous:
        response = anonymous.get("/")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text == "Welcome to PiXYZ API v1.0.5!"


def test_processes_are_listed_without_a_key(service):
    with service.client(key=None) as anonymous:
        names = anonymous.get("/processes").json()["processes"]
        doc = anonymous.get("/processes/sleep").json()["doc"]
    assert {"api_test", "sleep", "custom", "crash_once"} <= set(names)
    assert doc.startswith("Process 'sleep' documentation:\n\n")
    assert "params.duration" in doc


def test_unknown_process_doc_is_404_with_the_available_names(client):
    response = client.get("/processes/nope")
    assert response.status_code == 404
    assert "api_test" in response.json()["detail"]["details"]


def test_job_routes_need_the_key(service):
    for key, reason in ((None, "missing"), ("wrong-key", "invalid")):
        with service.client(key=key) as c:
            for method, path in (
                ("GET", "/jobs"),
                ("POST", "/jobs"),
                ("GET", "/jobs/0b7d6d77-8d67-4a8c-9d3e-111111111111"),
            ):
                response = c.request(method, path)
                assert response.status_code == 401, (method, path, key)
                assert response.headers["www-authenticate"] == "x-api-key"
                body = response.json()["detail"]
                assert body["code"] == 401 and body["message"] == "Unauthorized"
                assert reason in body["details"]


def test_api_test_job_end_to_end(client):
    from conftest import submit, wait_for

    job = submit(client, "api_test", params={"answer": 42}, name="hello")
    assert set(job) >= {"uuid", "name", "status", "progress", "error"}
    assert job["status"] == "SENT" and job["name"] == "hello" and job["error"] is None
    state = wait_for(client, job["uuid"])
    assert state["status"] == "SUCCESS" and state["progress"] == 100
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert details["result"] == {"output": "Hello World!", "params": {"answer": 42}}
    assert details["retry"] == 0
    assert (
        details["time_info"]["request"]
        <= details["time_info"]["started"]
        <= details["time_info"]["stopped"]
    )
    assert details["steps"][-1]["info"] == "Said hello"
    assert job["uuid"] in [j["uuid"] for j in client.get("/jobs").json()["jobs"]]
    meta = client.get(f"/backend/get_task_meta/{job['uuid']}").json()
    assert meta["status"] == "SUCCESS" and meta["task_id"] == job["uuid"]
    assert meta["result"]["output"] == "Hello World!" and meta["date_done"]
    assert set(meta) == {
        "status",
        "result",
        "traceback",
        "children",
        "parent_id",
        "task_id",
        "date_done",
    }


def test_null_config_values_mean_default_and_internal_keys_are_ignored(client):
    from conftest import submit, wait_for

    job = submit(
        client, "api_test", config={"queue": None, "time_limit": None, "uuid": "x", "shadow": 1}
    )
    assert wait_for(client, job["uuid"])["status"] == "SUCCESS"
    details = client.get(f"/jobs/{job['uuid']}/details").json()
    assert details["queue"] == "cpu"
    assert any("'uuid'" in w for w in details["warnings"])


def test_openapi_documents_every_route(service):
    with service.client(key=None) as anonymous:
        schema = anonymous.get("/openapi.json").json()
        assert anonymous.get("/docs").status_code == 200
    paths = schema["paths"]
    for path in (
        "/",
        "/processes",
        "/processes/{process_name}",
        "/jobs",
        "/jobs/{job_uuid}",
        "/jobs/{job_uuid}/details",
        "/jobs/{job_uuid}/outputs",
        "/jobs/{job_uuid}/outputs/archive",
        "/jobs/{job_uuid}/outputs/{file_path}",
        "/backend/get_task_meta/{job_uuid}",
        "/dev/callback",
        "/metrics",
        "/uploads",
    ):
        assert path in paths, path
    form = paths["/jobs"]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"][
        "properties"
    ]
    assert {"process", "file", "script", "params", "name", "config"} <= set(form)
    assert schema["info"]["title"] == "PiXYZ API" and schema["info"]["version"] == "1.0.5"
    assert any(
        s.get("name") == "x-api-key" for s in schema["components"]["securitySchemes"].values()
    )
    assert API_KEY not in str(schema)


def test_ray_stays_on_loopback(service):
    import ray

    addresses = {node["NodeManagerAddress"] for node in ray.nodes() if node["Alive"]}
    assert addresses == {"127.0.0.1"}
