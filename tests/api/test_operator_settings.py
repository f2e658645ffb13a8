"""Operator settings that change the contract: scripts off (403) and closed open routes.

These build the same FastAPI app the Serve replicas run, in-process, against
the real JobStore actor, with settings the session service does not use.
"""

import pytest
from fastapi.testclient import TestClient

from conftest import API_KEY


@pytest.fixture()
def app_with(service):
    from serve_app.app import build_app
    from serve_app.store_client import StoreClient
    from tasks.settings import Settings

    def make(**overrides):
        settings = Settings.model_validate({**service.settings.model_dump(), **overrides})
        return TestClient(
            build_app(settings, StoreClient(settings)), headers={"x-api-key": API_KEY}
        )

    return make


def test_custom_scripts_are_refused_with_403_unless_enabled(app_with):
    client = app_with(allow_scripts=False)
    files = {"script": ("s.py", b"def main(pc, params):\n    return {}\n")}
    response = client.post("/jobs", data={"process": "custom"}, files=files)
    assert response.status_code == 403
    assert "PIXYZ_ALLOW_SCRIPTS" in response.json()["detail"]["details"]
    assert "custom" not in client.get("/processes").json()["processes"]


def test_an_operator_can_close_the_open_routes(app_with):
    client = app_with(open_routes=False)
    for path in (
        "/",
        "/processes",
        "/processes/sleep",
        "/formats",
        "/metrics",
        "/docs",
        "/openapi.json",
    ):
        assert client.get(path, headers={"x-api-key": ""}).status_code == 401, path
        assert client.get(path).status_code == 200, path


def test_settings_accept_several_hashed_keys_from_the_environment(monkeypatch):
    from tasks.settings import Settings, hash_key

    monkeypatch.setenv("PIXYZ_API_KEY_SHA256", f"{hash_key('a')},{hash_key('b').upper()}")
    monkeypatch.setenv("PIXYZ_API_KEY", "c")
    settings = Settings()
    assert settings.api_key_sha256 == [hash_key("a"), hash_key("b"), hash_key("c")]
    assert settings.api_key == ""  # the plain key is not kept
    monkeypatch.setenv("PIXYZ_API_KEY_SHA256", "not-a-hash")
    with pytest.raises(ValueError, match="SHA-256"):
        Settings()


def test_the_dev_callback_receiver_is_off_unless_the_operator_turns_it_on(app_with):
    from tasks.settings import Settings

    assert Settings().dev_routes is False  # production default
    off = app_with(dev_routes=False)
    assert off.post("/dev/callback", json={"infos": {}}).status_code == 404
    assert off.get("/dev/callback").status_code == 404
    assert "/dev/callback" not in off.get("/openapi.json").json()["paths"]
    assert app_with(dev_routes=True).post("/dev/callback", json={"infos": {}}).status_code == 200


def test_browser_pages_get_cors_headers_only_from_configured_origins(app_with, monkeypatch):
    from tasks.settings import Settings

    monkeypatch.setenv("PIXYZ_CORS_ORIGINS", "https://viewer.example.com, https://b.example.com/")
    assert Settings().cors_origins == ["https://viewer.example.com", "https://b.example.com"]
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key",
    }

    closed = app_with()  # the default: no origin is allowed
    answer = closed.options("/jobs", headers={"Origin": "https://viewer.example.com", **preflight})
    assert "access-control-allow-origin" not in answer.headers
    listed = closed.get("/jobs", headers={"Origin": "https://viewer.example.com"})
    assert listed.status_code == 200 and "access-control-allow-origin" not in listed.headers

    client = app_with(cors_origins=["https://viewer.example.com"])
    answer = client.options("/jobs", headers={"Origin": "https://viewer.example.com", **preflight})
    assert answer.status_code == 200
    assert answer.headers["access-control-allow-origin"] == "https://viewer.example.com"
    assert "x-api-key" in answer.headers["access-control-allow-headers"].lower()
    listed = client.get("/jobs", headers={"Origin": "https://viewer.example.com"})
    assert listed.headers["access-control-allow-origin"] == "https://viewer.example.com"
    other = client.options("/jobs", headers={"Origin": "https://evil.example.com", **preflight})
    assert other.status_code == 400
    assert "access-control-allow-origin" not in other.headers
    # The key is still needed: CORS lets a page ask, not skip authentication.
    keyless = client.get("/jobs", headers={"Origin": "https://viewer.example.com", "x-api-key": ""})
    assert keyless.status_code == 401
