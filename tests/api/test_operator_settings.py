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
    for path in ("/", "/processes", "/processes/sleep", "/metrics", "/docs", "/openapi.json"):
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
