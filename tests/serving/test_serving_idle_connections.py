"""Idle keep-alive connections make room for working clients (issue 26, item 12).

When the REST server is at `--rest_max_connections`, a new connection first closes the
connection that has been idle longest (no request in flight, nothing received since its
last response), as nginx does with idle keep-alive connections; only when every open
connection has a request in flight is the newcomer refused with 503. Raw sockets on
loopback, so the test decides exactly which connection is idle and which is mid-request.
"""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import select
import socket

import numpy as np
import pytest

from tests.serving.helpers import model_store, start_embedded

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

X = np.array([[0.5, -1.0, 2.0, 0.0], [1.0, 1.0, 1.0, 1.0]], np.float32)
GOOD = json.dumps({"instances": X.tolist()}).encode()
PREDICT = (
    b"POST /v1/models/toy:predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    b"Content-Length: %d\r\n\r\n" % len(GOOD)
) + GOOD
EVICTED_METRIC = ":ksuite:serving:rest_idle_connections_evicted"
MANY_IDLE = 1600  # more than the default --rest_max_connections (1024)


def _start(**limits):
    target = start_embedded(
        model_base_path=str(model_store() / "toy"),
        model_name="toy",
        file_system_poll_wait_seconds=0,
        **limits,
    )
    host, port = target.rest_url.removeprefix("http://").split(":")
    target.addr = (host, int(port))
    return target


def _connect(target) -> socket.socket:
    return socket.create_connection(target.addr, timeout=10)


def _read_response(sock) -> tuple[int, bytes]:
    """(status, body) of one HTTP/1.1 response with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before a response head; got {data!r}")
        data += chunk
    head, body = data.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)content-length:\s*(\d+)", head).group(1))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split()[1]), body[:length]


def _predict_on(sock) -> tuple[int, bytes]:
    sock.sendall(PREDICT)
    return _read_response(sock)


def _predict(target) -> tuple[int, bytes]:
    with _connect(target) as sock:
        return _predict_on(sock)


def _closed_by_server(sock, timeout=10.0) -> bool:
    """True once the server has closed `sock` (EOF or reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _untouched(socks, wait=0.3) -> bool:
    """No event on any of `socks` (still open, nothing sent to them). poll(), not select():
    the file descriptors pass select()'s limit of 1024 here."""
    poller = select.poll()
    for sock in socks:
        poller.register(sock, select.POLLIN | select.POLLERR | select.POLLHUP)
    return poller.poll(int(wait * 1000)) == []


def _evicted_count(target) -> float:
    for line in target.server.core.metrics.render().splitlines():
        if line.startswith(EVICTED_METRIC + " "):
            return float(line.split()[1])
    raise AssertionError(f"{EVICTED_METRIC} is not in the server's metrics")


def _proc_status(field: str) -> str:
    with open(f"/proc/{os.getpid()}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith(field + ":"))


def _threads() -> int:
    return len(os.listdir(f"/proc/{os.getpid()}/task"))


def _raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} open files; the hard limit (ulimit -Hn) is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def test_good_request_is_served_past_many_idle_sockets():
    # Both ends of every socket live in this process (the server is embedded).
    _raise_fd_limit(2 * MANY_IDLE + 1024)
    target = _start()  # the default --rest_max_connections
    cap = target.server.options.rest_max_connections
    assert MANY_IDLE > cap
    socks = []
    try:
        # The first socket asks for the reference answer and stays open, idle; the others
        # connect and send nothing, like a pool of idle clients.
        socks.append(_connect(target))
        status, reference = _predict_on(socks[0])
        assert status == 200, reference
        threads_before = _threads()
        # This test process also holds whatever earlier tests of its pytest worker loaded,
        # so the server's memory is what the idle sockets add (the benchmark reads a
        # separate server process: about 12 MB for 2,000 sockets).
        rss_before_kb = int(_proc_status("VmRSS").split()[0])
        while len(socks) < MANY_IDLE:
            socks.append(_connect(target))

        status, body = _predict(target)
        assert status == 200, body
        assert json.loads(body) == json.loads(reference)

        # The connections beyond the cap (the idle ones and the good client) each closed
        # the oldest idle one: the first sockets opened are closed, the newer ones are not.
        evicted = MANY_IDLE + 1 - cap
        assert _evicted_count(target) == evicted
        assert all(_closed_by_server(sock) for sock in socks[:evicted])
        assert _untouched(socks[evicted:])
        # One event-loop thread holds every socket: no thread per connection.
        threads_after = _threads()
        assert threads_after - threads_before <= target.server.rest.limits.num_threads, (
            threads_before,
            threads_after,
        )
        grown_kb = int(_proc_status("VmRSS").split()[0]) - rss_before_kb
        assert grown_kb < 256 * 1024, f"VmRSS grew by {grown_kb} kB with {MANY_IDLE} idle sockets"
    finally:
        for sock in socks:
            sock.close()
        target.stop()


def test_oldest_idle_goes_first_and_requests_in_flight_are_never_closed(caplog):
    target = _start(rest_max_connections=3)
    socks = []

    def connect():
        socks.append(_connect(target))
        return socks[-1]

    try:
        caplog.set_level(logging.DEBUG, logger="ksuite.serving")
        first, second = connect(), connect()
        status, reference = _predict_on(second)  # `second` idle since now
        assert status == 200, reference
        busy = connect()
        busy.sendall(PREDICT[:-10])  # in flight: its body is still arriving
        assert _predict_on(first)[0] == 200  # `first` connected earlier but idle since later

        # At the cap (3): a newcomer closes the connection idle longest, `second`.
        fourth = connect()
        assert _closed_by_server(second)
        assert _untouched([first, busy])
        assert _predict_on(fourth)[0] == 200  # served, and idle from now on

        fifth = connect()  # closes `first`: idle since before `fourth` was
        assert _closed_by_server(first)
        assert _untouched([busy, fourth])

        # With every open connection busy (a body arriving, a head arriving), nothing
        # is idle: the newcomer is refused and nobody is closed.
        fourth.sendall(PREDICT[:-10])
        fifth.sendall(PREDICT[:20])
        status, body = _predict_on(connect())
        assert status == 503 and "Too many connections" in json.loads(body)["error"]
        assert _untouched([busy, fourth, fifth])

        # The requests that were in flight all the while complete.
        busy.sendall(PREDICT[-10:])
        fourth.sendall(PREDICT[-10:])
        fifth.sendall(PREDICT[20:])
        for sock in (busy, fourth, fifth):
            status, body = _read_response(sock)
            assert status == 200 and json.loads(body) == json.loads(reference), body

        assert _evicted_count(target) == 2
        logged = [r for r in caplog.records if "to make room" in r.getMessage()]
        assert len(logged) == 2 and all(r.levelno == logging.DEBUG for r in logged), caplog.text
    finally:
        for sock in socks:
            sock.close()
        target.stop()
