"""`ksuite serve` against hostile clients: each case gets the status it should, and a good
request afterwards still gets the same answer (the server stayed healthy).

One embedded server with small limits (module fixture), raw sockets on loopback so the
requests can be exactly as malformed, slow or numerous as a hostile client's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import time

import numpy as np
import pytest

from keras_suite.client.clients import ServingClientError
from tests.serving.helpers import model_store, start_embedded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

X = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
GOOD = json.dumps({"instances": X.tolist()}).encode()
LIMITS = dict(
    max_request_bytes=64 * 1024,
    rest_max_inflight_bytes=100 * 1024,
    rest_max_connections=12,
    rest_header_timeout_s=1.0,
    rest_idle_timeout_s=1.5,
    rest_body_timeout_s=2.0,
    max_json_depth=16,
)


@pytest.fixture(scope="module")
def server():
    target = start_embedded(
        model_base_path=str(model_store() / "toy"),
        model_name="toy",
        file_system_poll_wait_seconds=0,
        **LIMITS,
    )
    host, port = target.rest_url.removeprefix("http://").split(":")
    target.addr = (host, int(port))
    target.expected = _good(target)  # the reference answer
    try:
        yield target
    finally:
        target.stop()


def _connect(server, timeout=10.0) -> socket.socket:
    return socket.create_connection(server.addr, timeout=timeout)


def _read_response(sock, head_only=False) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head; got {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = 0 if head_only else int(headers.get("content-length", 0))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(lines[0].split()[1]), headers, body[:length]


def _exchange(server, raw: bytes) -> tuple[int, dict, bytes]:
    with _connect(server) as sock:
        sock.sendall(raw)
        return _read_response(sock)


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def _good(server):
    status, headers, body = _exchange(server, _post("/v1/models/toy:predict", GOOD))
    assert status == 200, body
    return json.loads(body)


def _assert_healthy(server):
    assert _good(server) == server.expected


def _assert_json_error(status, headers, body, expected_status, text=""):
    assert status == expected_status, (status, body)
    assert headers["content-type"].startswith("application/json")
    message = json.loads(body)["error"]
    assert text in message
    return message


def test_negative_content_length_is_400(server):
    raw = b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n" + GOOD
    _assert_json_error(*_exchange(server, raw), 400, "Malformed HTTP request")
    _assert_healthy(server)


def test_chunked_bodies_are_counted_against_the_limit(server):
    def chunked(payload: bytes, size=8192) -> bytes:
        parts = [
            b"%x\r\n%s\r\n" % (len(payload[i : i + size]), payload[i : i + size])
            for i in range(0, len(payload), size)
        ]
        return (
            b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(parts)
            + b"0\r\n\r\n"
        )

    # A small chunked body is served; one over the 64 KiB limit is refused once it passes it.
    status, _, body = _exchange(server, chunked(GOOD))
    assert status == 200 and json.loads(body) == server.expected
    over = json.dumps({"instances": [[0.0] * 4] * 8000}).encode()
    assert len(over) > LIMITS["max_request_bytes"]
    _assert_json_error(*_exchange(server, chunked(over)), 413, "exceeds the limit")
    _assert_healthy(server)


def test_slow_request_head_times_out(server):
    with _connect(server) as sock:
        sock.sendall(b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        message = _assert_json_error(*_read_response(sock), 408, "headers not received")
        assert time.monotonic() - started < 10, message
        assert sock.recv(1) == b""  # and the server closed it
    _assert_healthy(server)


def test_slow_body_times_out(server):
    with _connect(server) as sock:
        sock.sendall(_post("/v1/models/toy:predict", GOOD)[:-10])  # the head and most of the body
        _assert_json_error(*_read_response(sock), 408, "body not received")
    _assert_healthy(server)


def test_idle_sockets_are_closed(server):
    socks = [_connect(server) for _ in range(5)]
    try:
        for sock in socks:
            assert sock.recv(1) == b""  # closed by the server after the idle timeout, not by us
    finally:
        for sock in socks:
            sock.close()
    _assert_healthy(server)


def test_connections_over_the_cap_get_503(server):
    # Each holds a request in flight (its body still arriving): idle connections would be
    # closed to make room instead (tests/serving/test_serving_idle_connections.py).
    socks = [_connect(server) for _ in range(LIMITS["rest_max_connections"])]
    try:
        for sock in socks:
            sock.sendall(_post("/v1/models/toy:predict", GOOD)[:-10])
        time.sleep(0.2)  # let the server accept them all
        status, headers, body = _exchange(server, _post("/v1/models/toy:predict", GOOD))
        _assert_json_error(status, headers, body, 503, "Too many connections")
    finally:
        for sock in socks:
            sock.close()
    time.sleep(0.2)
    _assert_healthy(server)


def test_inflight_bytes_over_the_cap_get_503(server):
    # Two bodies of 60 KiB each fit the per-request limit but not, together, the 100 KiB cap.
    body = b" " * (60 * 1024)
    with _connect(server) as first:
        first.sendall(_post("/v1/models/toy:predict", body)[:-1024])  # held: body incomplete
        time.sleep(0.2)
        _assert_json_error(
            *_exchange(server, _post("/v1/models/toy:predict", body)), 503, "Server busy"
        )
    _assert_healthy(server)


def test_deep_json_nesting_is_400(server):
    for depth in (LIMITS["max_json_depth"] + 1, 60_000):
        _assert_json_error(
            *_exchange(server, _post("/v1/models/toy:predict", b"[" * depth)), 400, "nesting"
        )
    # A string full of brackets is not nesting.
    doc = json.dumps({"instances": X.tolist(), "signature_name": "[" * 100}).encode()
    _assert_json_error(*_exchange(server, _post("/v1/models/toy:predict", doc)), 400, "signature")
    _assert_healthy(server)


@pytest.mark.parametrize(
    "method", ["PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "HEAD", "GET", "POST", "BREW"]
)
def test_every_method_answers_json(server, method):
    raw = (
        f"{method} /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n".encode()
    )
    with _connect(server) as sock:
        sock.sendall(raw)
        status, headers, body = _read_response(sock, head_only=method == "HEAD")
    assert (
        "python" not in headers.get("server", "").lower()
        and "aiohttp" not in headers.get("server", "").lower()
    )
    assert headers["content-type"].startswith("application/json")
    if method == "POST":
        _assert_json_error(status, headers, body, 400, "empty")
    elif method == "HEAD":
        assert status == 400 and body == b""  # HEAD has no body, the status is GET-like
    elif method == "BREW":  # not an HTTP method: a parse error, still JSON
        _assert_json_error(status, headers, body, 400, "Malformed HTTP request")
    else:
        _assert_json_error(
            status, headers, body, 400, f"Malformed request: {method} /v1/models/toy:predict"
        )
    _assert_healthy(server)


def test_aborted_clients_log_no_traceback(server, caplog):
    with caplog.at_level(logging.DEBUG):
        for cut in (20, len(_post("/v1/models/toy:predict", GOOD)) - 5):
            with _connect(server) as sock:
                sock.sendall(_post("/v1/models/toy:predict", GOOD)[:cut])
            # and one that hangs up while its request runs
        with _connect(server) as sock:
            sock.sendall(_post("/v1/models/toy:predict", GOOD))
        time.sleep(0.5)
        _assert_healthy(server)
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.WARNING], (
        caplog.text
    )


def test_grpc_rejects_bad_shapes(server):
    import grpc
    import tensorflow as tf

    client = server.grpc()
    good = client.predict_request("toy", {"features": X})
    expected = [row["probabilities"] for row in server.expected["predictions"]]

    def probabilities(request):
        return tf.make_ndarray(client.predict_proto(request).outputs["probabilities"])

    np.testing.assert_allclose(probabilities(good), expected, rtol=1e-6)
    for dims in ([-1, 4], [2, -4], [2**40, 2**40], [3, 4], [1, 4]):
        request = client.predict_request("toy", {"features": X})
        shape = request.inputs["features"].tensor_shape
        del shape.dim[:]
        for d in dims:
            shape.dim.add(size=d)
        with pytest.raises(ServingClientError) as info:
            client.predict_proto(request)
        assert info.value.status == grpc.StatusCode.INVALID_ARGUMENT.name, (dims, info.value)
    np.testing.assert_allclose(probabilities(good), expected, rtol=1e-6)
    _assert_healthy(server)


def test_odd_version_folder_names_are_ignored(tmp_path, caplog):
    from keras_suite.export.signatures import version_dirs
    from keras_suite.export.writer import next_version

    base = tmp_path / "toy"
    shutil.copytree(model_store() / "toy" / "1", base / "1")
    for odd in ("²", "١٢", "v2", "1e3", str(2**64)):
        (base / odd).mkdir()
    (base / ".tmp-3-x").mkdir()
    with caplog.at_level(logging.WARNING, logger="ksuite.serving"):
        assert version_dirs(base) == {1: base / "1"}
        assert version_dirs(base) == {1: base / "1"}  # the server polls: warned once per name
        assert next_version(base) == 2
    warned = [r.getMessage() for r in caplog.records if "ignoring folder" in r.getMessage()]
    assert len(warned) == 5 and not any(".tmp" in w for w in warned)
    target = start_embedded(
        model_base_path=str(base), model_name="toy", file_system_poll_wait_seconds=0.2
    )
    try:
        (base / "٣").mkdir()  # a new odd name while polling: ignored, the poller keeps going
        shutil.copytree(base / "1", base / "2")
        deadline = time.monotonic() + 60
        while target.server.core.manager.available()["toy"] != [2] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert target.server.core.manager.available()["toy"] == [2]
    finally:
        target.stop()


def test_export_removes_stale_tmp_folders(tmp_path):
    from keras_suite.export.writer import publish_version

    source = model_store() / "toy" / "1"
    model_dir = tmp_path / "toy"
    shutil.copytree(source, model_dir / "1")
    stale, running = model_dir / ".tmp-2-111-dead", model_dir / ".tmp-2-222-live"
    stale.mkdir()
    running.mkdir()
    newest = (model_dir / "1").stat().st_mtime
    os.utime(stale, (newest - 3600, newest - 3600))  # older than the newest export: killed
    os.utime(running, (newest + 60, newest + 60))  # newer: maybe an export in progress
    final = publish_version(
        tmp_path, "toy", lambda tmp: shutil.copytree(source, tmp), check_ops=False
    )
    assert final == model_dir / "2"
    assert not stale.exists() and running.exists()


def test_stop_lets_requests_in_flight_finish():
    import threading

    target = start_embedded(
        model_base_path=str(model_store() / "toy"),
        model_name="toy",
        file_system_poll_wait_seconds=0,
    )
    host, port = target.rest_url.removeprefix("http://").split(":")
    raw = _post("/v1/models/toy:predict", GOOD)
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw[:-10])  # the request is in flight: its body is still arriving
        time.sleep(0.2)
        stopper = threading.Thread(target=target.server.stop, kwargs={"grace": 5})
        stopper.start()
        time.sleep(0.5)
        with pytest.raises(OSError):  # no new connections once stopping
            socket.create_connection((host, int(port)), timeout=2).close()
        sock.sendall(raw[-10:])
        status, _, body = _read_response(sock)
        stopper.join(10)
    assert status == 200 and "predictions" in json.loads(body)
    assert not stopper.is_alive()


@pytest.mark.parametrize(
    "flags, message",
    [
        (dict(rest_max_connections=0), "--rest_max_connections=0: must be positive"),
        (
            dict(max_request_bytes=2**30),
            "--rest_max_inflight_bytes=268435456 is below --max_request_bytes",
        ),
        (dict(max_json_depth=-1), "--max_json_depth=-1: must be 0"),
    ],
)
def test_bad_limit_flags_are_one_clear_error(flags, message):
    from keras_suite.common.errors import UserError
    from keras_suite.serving.server import ModelServer, ServerOptions

    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        ModelServer(ServerOptions(model_base_path=str(model_store() / "toy"), **flags)).start()


def test_expect_100_continue(server):
    head = _post("/v1/models/toy:predict", GOOD, extra="Expect: 100-continue\r\n")[: -len(GOOD)]
    with _connect(server) as sock:
        sock.sendall(head)  # curl does this for bodies over 1 KiB, then waits for the 100
        assert sock.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(GOOD)
        status, _, body = _read_response(sock)
        assert status == 200 and json.loads(body) == server.expected
    # Over the limit: refused before the client sends the body.
    too_big = LIMITS["max_request_bytes"] + 1
    raw = (
        f"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Length: {too_big}\r\n"
        "Expect: 100-continue\r\n\r\n"
    ).encode()
    _assert_json_error(*_exchange(server, raw), 413, "exceeds the limit")
