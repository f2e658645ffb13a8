"""The HTTP ingress: HAProxy answers the API's port, on loopback only, and streams to the replica."""

from urllib.parse import urlsplit

import psutil
import pytest

from conftest import INGRESS


def _listeners(port: int) -> list[tuple[str, str]]:
    found = []
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            found.append((psutil.Process(conn.pid).name(), conn.laddr.ip))
    return found


@pytest.mark.skipif(INGRESS != "haproxy", reason="PIXYZ_INGRESS=proxy for this run")
def test_haproxy_answers_the_api_port_on_loopback_only(service, client):
    port = urlsplit(service.url).port
    assert _listeners(port) == [("haproxy", "127.0.0.1")]
    job = client.post("/jobs", data={"process": "api_test"})
    assert job.status_code == 200
    # the replica HAProxy forwards to listens on loopback too (the service's host)
    replica_ports = [
        conn.laddr
        for proc in psutil.process_iter(["name"])
        if proc.info["name"] and proc.info["name"].startswith("ray::ServeRepli")
        for conn in proc.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and 30000 <= conn.laddr.port <= 31000
    ]
    assert replica_ports and all(addr.ip == "127.0.0.1" for addr in replica_ports)
