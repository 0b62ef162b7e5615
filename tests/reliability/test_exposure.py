"""Exposure: the app listens on this machine only unless told otherwise (and then says so), gradio's
file route serves nothing outside gradio's own folders, and no callback takes a server path from
the client except the dataset folder, which is validated."""
from __future__ import annotations

import http.client
import ipaddress
import json
import socket
import warnings
from pathlib import Path

import gradio as gr
import httpx
import pytest

import demo.app as app_module
from tests.reliability.conftest import REFERENCE, classify, ensure_idle, start, wait_status

pytestmark = [pytest.mark.reliability(section="Exposure"), pytest.mark.slow]

PASSWD_LINE = "root:x:0:0"


def listening(port: int) -> set[str]:
    """Addresses with a listening TCP socket on `port`, from /proc/net/tcp and tcp6."""
    found = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)  # the kernel prints each 32-bit word little-endian
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, raw))
    return found


def outside_addresses() -> list[str]:
    """This machine's own IPv4 addresses other than loopback: /proc/net/fib_trie marks each with a
    "/32 host LOCAL" line under it."""
    lines = Path("/proc/net/fib_trie").read_text().splitlines()
    local = {previous.split()[-1] for previous, line in zip(lines, lines[1:]) if "/32 host LOCAL" in line}
    return sorted(a for a in local if not ipaddress.ip_address(a).is_loopback)


@pytest.mark.reliability(case="binds 127.0.0.1 by default")
def test_the_app_listens_on_loopback_only(app, record):
    assert listening(app.port) == {"127.0.0.1"}
    reachable = []
    for address in outside_addresses():
        with socket.socket() as sock:
            sock.settimeout(2)
            if sock.connect_ex((address, app.port)) == 0:
                reachable.append(address)
    assert not reachable
    tried = ", ".join(outside_addresses()) or "none on this machine"
    record(f"listening on 127.0.0.1:{app.port} only (/proc/net/tcp, tcp6); other addresses tried: {tried}")


class _NoSession:
    """Stands in for Session: main() only needs preload, the run table and close."""

    def __init__(self, *args, **kwargs):
        pass

    def preload(self, config):
        pass

    def table(self):
        return []

    def open_last(self):
        return None

    def close(self):
        pass


@pytest.mark.reliability(case="--host 0.0.0.0 and --share only when asked, with a warning")
def test_wider_exposure_only_when_asked_and_with_a_warning(monkeypatch, tmp_path, record):
    launched = []
    monkeypatch.setattr(app_module, "Session", _NoSession)
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kwargs: launched.append(kwargs))
    said = {}
    for args in ([], ["--host", "0.0.0.0"], ["--share"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert app_module.main([*args, "--runs-dir", str(tmp_path)]) == 0
        said[" ".join(args) or "(default)"] = [str(w.message) for w in caught
                                                if "beyond this machine" in str(w.message)]
    default, host, share = launched
    assert (default["server_name"], default["share"]) == ("127.0.0.1", False) and not said["(default)"]
    assert (host["server_name"], host["share"]) == ("0.0.0.0", False) and said["--host 0.0.0.0"]
    assert (share["server_name"], share["share"]) == ("127.0.0.1", True) and said["--share"]
    assert default["max_file_size"] == app_module.MAX_UPLOAD
    record(f"default: host 127.0.0.1, no share link, no warning; --host 0.0.0.0 warns "
           f"“{said['--host 0.0.0.0'][0]}”, and --share likewise")


def raw_get(port: int, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side normalisation of '..' or '%2e')."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.reliability(case="gradio's file route: /etc/passwd and traversal variants")
def test_the_file_route_serves_nothing_outside_the_apps_folders(app, model_loaded, fresh_checkpoint, record):
    uploads = app.runs_dir.parent / "gradio"  # GRADIO_TEMP_DIR: where uploads and outputs live
    source = Path(app_module.__file__).resolve()
    attempts = [
        "/gradio_api/file=/etc/passwd",
        "/gradio_api/file=%2Fetc%2Fpasswd",
        "/gradio_api/file=//etc/passwd",
        "/gradio_api/file=../../../../../../etc/passwd",
        "/gradio_api/file=%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        f"/gradio_api/file={uploads}/../../../../../../etc/passwd",
        f"/gradio_api/file={uploads}/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/gradio_api/file=file:///etc/passwd",
        "/file=/etc/passwd",
        "/static/../../../../../../etc/passwd",
        "/assets/..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
        "/gradio_api/file=/proc/self/environ",
        f"/gradio_api/file={source}",
        "/gradio_api/file=demo/app.py",
        f"/gradio_api/file={fresh_checkpoint}",
        *(f"/gradio_api/file={p}" for p in sorted(app.runs_dir.rglob("*.pt"))[:2]),
    ]
    secrets = [PASSWD_LINE.encode(), b"GRADIO_TEMP_DIR=", source.read_bytes()[:200],
               fresh_checkpoint.read_bytes()[:200]]
    served = {}
    for path in attempts:
        code, body = raw_get(app.port, path)
        served[path] = code
        assert code != 200 and not any(secret in body for secret in secrets), (path, code, body[:200])
    # The route itself works: the picture the app just made for a classification is served.
    made = classify(model_loaded, REFERENCE)[0]["url"]
    code, body = raw_get(app.port, made.split(str(app.port), 1)[1])
    assert code == 200 and body[:4] == b"RIFF"  # a webp
    codes = ", ".join(sorted({str(c) for c in served.values()}))
    record(f"{len(attempts)} paths (passwd, environ, the app's source and checkpoints, '..' and %2e/%2F "
           f"traversals) all refused (HTTP {codes}); a file the app made is served (HTTP 200)")


def call(app, api: str, first) -> str:
    """Call an endpoint over plain HTTP with a hand-written first input (the rest at their defaults),
    as a script could; gradio_client would upload a local file instead of naming its path."""
    parameters = httpx.get(f"{app.url}gradio_api/info", timeout=30).json()["named_endpoints"][f"/{api}"]["parameters"]
    data = [first, *(parameter["parameter_default"] for parameter in parameters[1:])]
    event = httpx.post(f"{app.url}gradio_api/call/{api}", json={"data": data}, timeout=30).json()["event_id"]
    return httpx.get(f"{app.url}gradio_api/call/{api}/{event}", timeout=120).text


@pytest.mark.reliability(case="server paths sent in place of uploads")
def test_file_inputs_take_uploads_only(app, fresh_checkpoint, record):
    uploads = app.runs_dir.parent / "gradio"
    paths = ["/etc/passwd", str(fresh_checkpoint), f"{uploads}/../../../../../../etc/passwd", str(REFERENCE)]
    replies = []
    for path in paths:
        file = {"path": path, "meta": {"_type": "gradio.FileData"}}
        for api, first in (("on_upload", file), ("classify_many", [file]), ("load", file)):
            reply = call(app, api, first)
            assert "event: error" in reply and "not uploaded by a user" in reply, (api, path, reply)
            assert PASSWD_LINE not in reply
            replies.append(json.loads(reply.split("data:", 1)[1])["error"])
    record(f"{len(replies)} calls (Classify, several-at-once, Load × {len(paths)} paths incl. /etc/passwd and a "
           f"checkpoint on the server) all refused by gradio: “{replies[0]}”")


@pytest.mark.reliability(case="the dataset folder: the one path a client may name")
def test_the_dataset_folder_is_validated(client, record):
    ensure_idle(client)
    start(client, dataset="folder", folder="/etc/passwd", epochs=2)
    ended = wait_status(client, lambda s: s.status not in ("idle", "running"), timeout=60)
    assert ended.status == "failed" and "/etc/passwd is not a directory" in ended.text, ended.text
    assert (ended.step, ended.total) == (0, 0)
    record(f"“{ended.text.splitlines()[-1]}”, nothing read or trained")
