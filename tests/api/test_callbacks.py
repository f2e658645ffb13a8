"""Callback URLs cannot reach internal addresses (SSRF), and still reach what is allowed.

A `submit` key chooses `config.callback_url`; the service POSTs there when the
job ends. Two private apps (the same FastAPI app the replicas run), each with
its own JobStore: `strict` with the default settings (public addresses only)
and `allowing` with `callback_allowed_networks=["127.0.0.0/8"]`. The receivers
are real HTTP(S) servers on loopback addresses; `tasks.callbacks.deliver` is
also called directly for what a job cannot easily set up (a redirecting
receiver, TLS).
"""

from __future__ import annotations

import asyncio
import datetime
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
import ray
from fastapi.testclient import TestClient

KEY = "key-callbacks-0001"
SECRET = "callbacks-secret"
FINAL = ("SUCCESS", "FAILURE", "REVOKED")


class Receiver:
    """A real HTTP server on `host` that records every request and answers `status`."""

    def __init__(self, host: str = "127.0.0.1", status: int = 200, headers: dict | None = None):
        self.requests: list[SimpleNamespace] = []
        self.status, self.headers, self.server_names = status, headers or {}, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                receiver.requests.append(
                    SimpleNamespace(
                        path=self.path, headers=dict(self.headers), body=self.rfile.read(length)
                    )
                )
                self.send_response(receiver.status)
                for name, value in receiver.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]

    def serve_tls(self, certfile: str, keyfile: str) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)
        context.sni_callback = lambda sock, name, ctx: self.server_names.append(name)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)

    def __enter__(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def loopback_alias_works() -> bool:
    """127.0.0.2 answers on Linux (all of 127/8 is loopback); not on every system."""
    try:
        with Receiver("127.0.0.2"):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def apps(ray_cluster, tmp_path_factory):
    from serve_app.app import build_app
    from serve_app.store_client import StoreClient
    from tasks.settings import Settings, hash_key

    made, stores = {}, []
    for name, networks in (("strict", []), ("allowing", ["127.0.0.0/8"])):
        folder = tmp_path_factory.mktemp(f"callbacks-{name}")
        settings = Settings(
            storage=str(folder / "storage"),
            api_key_sha256=[hash_key(KEY)],
            callback_secret=SECRET,
            callback_attempts=2,
            callback_allowed_networks=networks,
            store_name=f"store-{folder.name}",
        )
        store = StoreClient(settings)
        stores.append(store)
        made[name] = TestClient(build_app(settings, store), headers={"x-api-key": KEY})
    yield SimpleNamespace(**made)
    for store in stores:
        ray.kill(store.handle, no_restart=True)


def submit_with_callback(client: TestClient, url: str):
    data = {"process": "api_test", "config": json.dumps({"callback_url": url})}
    return client.post("/jobs", data=data)


def callback_outcome(client: TestClient, job_id: str) -> dict:
    """The job's `callback` details, once the job has ended and delivery was tried."""
    for _ in range(600):
        details = client.get(f"/jobs/{job_id}/details").json()
        if details["status"] in FINAL and details.get("callback"):
            return details["callback"]
        time.sleep(0.05)
    raise AssertionError(f"no callback outcome: {details}")


# -- settings ----------------------------------------------------------------------


def test_the_allowed_networks_setting_reads_cidr_lists_and_refuses_anything_else(monkeypatch):
    from pydantic import ValidationError

    from tasks.settings import Settings

    assert Settings().callback_allowed_networks == []
    monkeypatch.setenv("PIXYZ_CALLBACK_ALLOWED_NETWORKS", "10.20.0.0/16, fd00::/8,127.0.0.1")
    assert Settings().callback_allowed_networks == ["10.20.0.0/16", "fd00::/8", "127.0.0.1/32"]
    monkeypatch.setenv("PIXYZ_CALLBACK_ALLOWED_NETWORKS", '["192.168.0.0/16"]')
    assert Settings().callback_allowed_networks == ["192.168.0.0/16"]
    for wrong, says in (
        ("10.0.0.1/8", "has host bits set"),
        ("intranet", "not a CIDR network"),
        ("10.0.0.0/33", "not a CIDR network"),
        ('["10.0.0.0/8"', "not a JSON list"),
    ):
        monkeypatch.setenv("PIXYZ_CALLBACK_ALLOWED_NETWORKS", wrong)
        with pytest.raises(ValidationError, match="callback_allowed_networks") as raised:
            Settings()
        assert says in str(raised.value), str(raised.value)


# -- at submit: IP literals ----------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("http://127.0.0.1:8000/dev/callback", "loopback"),
        ("http://10.0.0.5/hook", "private"),
        ("http://172.16.3.4/hook", "private"),
        ("http://192.168.1.1/hook", "private"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://100.64.0.1/", "not publicly routable"),
        ("http://0.0.0.0:8000/", "unspecified"),
        ("http://224.0.0.1/", "multicast"),
        ("http://[::1]:8000/", "loopback"),
        ("http://[::]/", "unspecified"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[fe80::1%25eth0]/", "link-local"),
        ("http://[fc00::1]/", "private"),
        ("http://[fd00:ec2::254]/latest/meta-data/", "cloud metadata"),
        ("http://[::ffff:127.0.0.1]/", "loopback"),
        ("http://[::ffff:169.254.169.254]/", "cloud metadata"),
        ("http://[::ffff:10.0.0.1]/", "private"),
        ("http://[2002:7f00:1::]/", "6to4 for 127.0.0.1"),
        ("http://2130706433/", "loopback"),  # 127.0.0.1 as one decimal number
        ("http://017700000001/", "loopback"),  # ... in octal
        ("http://0x7f000001/", "loopback"),  # ... in hex
        ("http://0177.1/", "loopback"),
        ("http://127.1/", "loopback"),
        ("http://127.0.0.1./", "loopback"),
        ("https://user:pw@127.0.0.1:8443/hook", "loopback"),
        ("http://example.com\\@10.1.2.3/", "private"),  # the host httpx would connect to
    ],
)
def test_an_ip_literal_that_is_not_public_is_refused_at_submit(apps, url, kind):
    response = submit_with_callback(apps.strict, url)
    assert response.status_code == 400, response.text
    details = response.json()["detail"]["details"]
    assert details.startswith(f"config.callback_url: {url!r} is refused: "), details
    assert kind in details and "PIXYZ_CALLBACK_ALLOWED_NETWORKS" in details, details


def test_a_callback_url_the_parser_rejects_is_a_400(apps):
    response = submit_with_callback(apps.strict, "http://0177.0.0.1/")  # octal dotted quad
    assert response.status_code == 400
    assert "not a valid URL" in response.json()["detail"]["details"]


def test_public_addresses_and_hostnames_pass_the_submit_check():
    from serve_app.job_request import build_config
    from tasks.processes import discover

    spec = discover("", False)["api_test"]
    for url in (
        "https://93.184.216.34/hook",
        "http://[2606:4700:4700::1111]/hook",
        "https://hooks.example.com/pixyz",
        "http://localhost:9/",  # a name: checked when the callback is delivered
    ):
        assert build_config({"callback_url": url}, spec, 60.0, queues=["cpu"]).callback_url == url
    allowed = build_config(
        {"callback_url": "http://127.0.0.1:9/"},
        spec,
        60.0,
        queues=["cpu"],
        callback_allowed_networks=["127.0.0.0/8"],
    )
    assert allowed.callback_url == "http://127.0.0.1:9/"


# -- at delivery: names, allowed networks, redirects ------------------------------------


def test_a_hostname_resolving_to_loopback_is_refused_at_delivery(apps):
    with Receiver() as receiver:
        response = submit_with_callback(apps.strict, f"http://localhost:{receiver.port}/hook")
        assert response.status_code == 200, response.text
        job_id = response.json()["uuid"]
        outcome = callback_outcome(apps.strict, job_id)
    assert outcome["delivered"] is False and outcome["refused"] is True, outcome
    assert outcome["error"].startswith("'localhost' resolves to "), outcome
    assert "127.0.0.1 is a loopback address" in outcome["error"], outcome
    assert receiver.requests == []
    assert apps.strict.get(f"/jobs/{job_id}").json()["status"] == "SUCCESS"


def test_a_callback_into_an_allowed_network_is_delivered(apps):
    from tasks.callbacks import SIGNATURE_HEADER, verify

    with Receiver() as receiver:
        url = f"http://localhost:{receiver.port}/hook?job=1"
        job_id = submit_with_callback(apps.allowing, url).json()["uuid"]
        outcome = callback_outcome(apps.allowing, job_id)
    assert outcome == {"delivered": True, "attempts": 1, "status_code": 200}
    (received,) = receiver.requests
    assert received.path == "/hook?job=1"
    assert received.headers["Host"] == f"localhost:{receiver.port}"  # the name, not the IP
    assert verify(received.body, SECRET, received.headers[SIGNATURE_HEADER])
    assert json.loads(received.body)["uuid"] == job_id


def test_a_receiver_verifies_the_signature_the_way_the_docs_say(apps):
    """docs/api.md's snippet, run on the raw bytes a real receiver got: no code of ours."""
    import hashlib
    import hmac

    with Receiver() as receiver:
        job_id = submit_with_callback(apps.allowing, f"http://127.0.0.1:{receiver.port}/").json()
        callback_outcome(apps.allowing, job_id["uuid"])
    (received,) = receiver.requests
    raw_body, header = received.body, received.headers["X-Pixyz-Signature"]
    expected = "sha256=" + hmac.new(SECRET.encode(), raw_body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(expected, header)
    assert json.loads(raw_body)["uuid"] == job_id["uuid"]
    assert json.loads(raw_body)["status"] == "SUCCESS"
    # A body changed on the way, or signed with another secret, does not verify.
    tampered = raw_body.replace(b"SUCCESS", b"FAILURE")
    forged = "sha256=" + hmac.new(SECRET.encode(), tampered, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(forged, header)
    other = "sha256=" + hmac.new(b"other-secret", raw_body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(other, header)


def test_an_allowed_network_may_be_named_by_its_address_at_submit(apps):
    with Receiver() as receiver:
        response = submit_with_callback(apps.allowing, f"http://127.0.0.1:{receiver.port}/hook")
        assert response.status_code == 200, response.text
        outcome = callback_outcome(apps.allowing, response.json()["uuid"])
    assert outcome["delivered"] is True, outcome
    assert receiver.requests[0].headers["Host"] == f"127.0.0.1:{receiver.port}"


def test_delivery_checks_ip_literals_again():
    """A job accepted before the rules changed (or by a replica with other settings)."""
    from tasks.callbacks import deliver

    with Receiver() as receiver:
        outcome = asyncio.run(deliver(f"http://2130706433:{receiver.port}/", {"uuid": "x"}))
    assert outcome["delivered"] is False and outcome["refused"] is True, outcome
    assert outcome["error"].startswith("127.0.0.1 is a loopback address"), outcome
    assert receiver.requests == []


@pytest.mark.skipif(not loopback_alias_works(), reason="127.0.0.2 is not a loopback address here")
def test_a_redirect_is_not_followed():
    from tasks.callbacks import deliver

    with Receiver("127.0.0.2") as inside:
        for location in (f"http://127.0.0.2:{inside.port}/", "http://169.254.169.254/latest/"):
            redirect = Receiver(status=307, headers={"Location": location})
            with redirect:
                outcome = asyncio.run(
                    deliver(
                        f"http://127.0.0.1:{redirect.port}/hook",
                        {"uuid": "x"},
                        attempts=3,
                        allowed_networks=["127.0.0.1/32"],
                    )
                )
            assert outcome["delivered"] is False and outcome["status_code"] == 307, outcome
            assert outcome["attempts"] == 1 and len(redirect.requests) == 1  # not retried either
            assert f"redirects to {location!r}" in outcome["error"], outcome
            assert "do not follow redirects" in outcome["error"]
    assert inside.requests == []


def test_https_keeps_the_name_for_sni_and_the_certificate(tmp_path):
    """The connection goes to the checked IP; TLS still sees and verifies `localhost`."""
    from tasks.callbacks import deliver

    certfile, keyfile = self_signed_certificate(tmp_path, "localhost")
    trust = ssl.create_default_context(cafile=certfile)
    with Receiver() as receiver:
        receiver.serve_tls(certfile, keyfile)
        url = f"https://localhost:{receiver.port}/hook"
        outcome = asyncio.run(
            deliver(url, {"uuid": "x"}, allowed_networks=["127.0.0.0/8"], verify=trust)
        )
        assert outcome == {"delivered": True, "attempts": 1, "status_code": 200}, outcome
        assert receiver.server_names == ["localhost"]
        assert receiver.requests[0].headers["Host"] == f"localhost:{receiver.port}"

        # The same server under a name its certificate does not carry: refused by TLS.
        wrong = asyncio.run(
            deliver(
                f"https://127.0.0.1:{receiver.port}/hook",
                {"uuid": "x"},
                attempts=1,
                allowed_networks=["127.0.0.0/8"],
                verify=trust,
            )
        )
    assert wrong["delivered"] is False and "certificate" in wrong["error"].lower(), wrong
    assert len(receiver.requests) == 1


def self_signed_certificate(folder, name: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    certfile, keyfile = folder / "cert.pem", folder / "key.pem"
    certfile.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(certfile), str(keyfile)
