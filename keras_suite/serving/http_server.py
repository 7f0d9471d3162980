"""The REST API's HTTP side on aiohttp (llhttp parser, asyncio), hardened for hostile clients.

One event-loop thread owns every socket; request handling (JSON parse, predict, JSON
encode: serving/rest.py `handle`) runs on a bounded thread pool, never on the loop. Limits,
each a `ksuite serve` flag (serving/server.py):

- body bytes: a declared Content-Length over the limit is refused (413) before reading;
  chunked bodies are counted as they arrive and refused the moment they pass it; a
  negative or malformed Content-Length is a parse error (400). Nothing buffers past it.
- in-flight bytes: bodies being read or handled, summed over all requests; a request that
  would pass the cap is answered 503 at once, so memory stays bounded under a flood.
- connections: over the cap, a new connection first closes the connection idle longest
  (no request in flight, nothing received since its last response: what nginx does with
  idle keep-alive connections), so idle clients cannot lock working ones out; only when
  every open connection has a request in flight is the newcomer's request answered 503
  and the connection closed. Each such close is counted in the metrics and logged at DEBUG.
- timeouts: request head (slowloris), idle keep-alive (also a fresh socket that sends
  nothing), and body.

Every answer is JSON (`{"error": ...}`) with TF Serving's status mapping, parse errors
included; a client that disconnects is logged at DEBUG only; `Server:` names no version.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError
from prometheus_client import Counter

from keras_suite.serving import rest

log = logging.getLogger("ksuite.serving")

SERVER_HEADER = "ksuite-serving"
# Not a TF Serving metric (it has no connection cap), hence the ksuite prefix.
EVICTED_METRIC = ":ksuite:serving:rest_idle_connections_evicted"


@dataclass
class RestLimits:
    """The REST limits; defaults and meaning are the `ksuite serve` flags' (serving/server.py)."""

    max_request_bytes: int
    max_inflight_bytes: int
    max_connections: int
    header_timeout_s: float
    idle_timeout_s: float
    body_timeout_s: float
    max_json_depth: int
    num_threads: int


def _json_response(status: int, message: str, close: bool = False) -> web.Response:
    resp = web.Response(
        status=status,
        body=rest.error_body(message),
        headers={"Content-Type": "application/json", "Server": SERVER_HEADER},
    )
    if close:
        resp.force_close()
    return resp


def _raw_response(status: int, reason: str, message: str) -> bytes:
    """A whole HTTP response for when no request object exists (a head that timed out)."""
    body = rest.error_body(message)
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Server: {SERVER_HEADER}\r\nConnection: close\r\n\r\n"
    ).encode() + body


class _Connection(web.RequestHandler):
    """aiohttp's per-connection protocol plus a request-head timeout, the connection cap,
    idle tracking (for making room at the cap) and JSON bodies for errors aiohttp answers
    itself (malformed framing)."""

    rest_server: "RestServer"

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._head_timer = None
        self._head_pending = True  # no complete request head since the last response
        self.evicted = False  # closed by the server to make room
        self._bytes_received = 0
        self._bytes_at_request_read = None  # _bytes_received once this request's body was read
        self.over_cap = self.rest_server.connection_opened(self)
        self.rest_server.mark_idle(self)  # a fresh connection that sent nothing yet is idle

    def connection_lost(self, exc) -> None:
        self._cancel_head_timer()
        self.rest_server.connection_closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:  # the first byte of a request makes the connection busy until it is answered
            self._bytes_received += len(data)
            self.rest_server.mark_busy(self)
        super().data_received(data)
        # The first bytes of a request head start its clock; the handler stops it.
        if self._head_pending and self._head_timer is None and self.transport is not None:
            self._head_timer = asyncio.get_running_loop().call_later(
                self.rest_server.limits.header_timeout_s, self._head_timed_out
            )

    def head_received(self) -> None:
        self.rest_server.mark_busy(self)  # also for a pipelined request parsed earlier
        self._head_pending = False
        self._bytes_at_request_read = None
        self._cancel_head_timer()

    def request_read(self) -> None:
        """The request's body is all in: bytes arriving from now on are the next request's."""
        self._bytes_at_request_read = self._bytes_received

    def response_sent(self) -> None:
        self._head_pending = True

    async def finish_response(self, request, resp, start_time):
        result = await super().finish_response(request, resp, start_time)
        # Written out and kept alive, with no byte of a next request received since this
        # one's body and none parsed and queued (pipelined; `_messages` is aiohttp's queue):
        # idle from now on, so this connection may be closed to make room.
        if (
            resp.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
            and self._bytes_at_request_read == self._bytes_received
            and not self._messages
        ):
            self.rest_server.mark_idle(self)
        return result

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._head_pending and self.transport is not None:
            timeout = self.rest_server.limits.header_timeout_s
            self.transport.write(
                _raw_response(
                    408, "Request Timeout", f"Request headers not received within {timeout:g} s"
                )
            )
            self.force_close()

    def handle_error(self, request, status=500, exc=None, message=None):
        # aiohttp calls this for requests it could not parse (bad framing, negative
        # Content-Length, ...) and for unexpected handler errors. A client's malformed
        # request is not a server fault: one DEBUG line, no traceback, a JSON body.
        if isinstance(exc, HttpProcessingError):
            log.debug("malformed HTTP request from %s: %s", request.remote, message or exc)
            detail = (message or str(exc)).strip().splitlines() or ["unparsable"]
            text = f"Malformed HTTP request: {detail[0]}"  # llhttp adds lines with a caret: one is enough
        else:
            log.error("REST request failed", exc_info=exc)
            text = f"Internal: {exc}" if exc else "Internal error"
        if request.writer.output_size > 0:
            raise ConnectionError("response already started")
        return _json_response(status, text, close=True)


class _Server(web.Server):
    """aiohttp's low-level server, making _Connection protocols."""

    def __init__(self, handler, rest_server, **kwargs):
        super().__init__(handler, **kwargs)
        self._rest_server = rest_server
        self._connection_kwargs = kwargs

    def __call__(self) -> _Connection:
        conn = _Connection(
            self,
            loop=asyncio.get_running_loop(),
            **{k: v for k, v in self._connection_kwargs.items() if k != "loop"},
        )
        conn.rest_server = self._rest_server
        return conn


class _BodyTooLarge(Exception):
    pass


class RestServer:
    """TF Serving's REST API on host:port; start() serves from a background thread."""

    def __init__(self, host: str, port: int, core, limits: RestLimits, metrics_path: str | None):
        self.core = core
        self.limits = limits
        self.metrics_path = metrics_path
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        self._socket = socket.create_server(
            (host, port), family=family, backlog=1024
        )  # raises OSError
        self.port = self._socket.getsockname()[1]
        self._pool = ThreadPoolExecutor(max_workers=limits.num_threads, thread_name_prefix="rest")
        self._loop = asyncio.new_event_loop()
        self._connections = 0
        self._evicting = 0  # connections closed to make room whose close has not completed
        # Idle connections, oldest idle first (dicts keep insertion order): value = idle since.
        self._idle_connections: dict[_Connection, float] = {}
        self._evictions = Counter(
            EVICTED_METRIC,
            "Idle REST connections closed to make room for a new one at --rest_max_connections.",
            registry=core.metrics.registry,
        )
        self._inflight_bytes = 0
        self._active = 0  # requests being handled (for graceful stop)
        self._idle = asyncio.Event()
        self._thread = None
        self._listener = None
        self._web = None

    # ---- lifecycle (called from other threads) ---------------------------------------------------
    def start(self) -> "RestServer":
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="rest-loop", daemon=True
        )
        self._thread.start()
        ready.wait()
        return self

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._idle.set()
        self._web = _Server(
            self._handle,
            self,
            loop=self._loop,
            access_log=None,
            keepalive_timeout=self.limits.idle_timeout_s,
            lingering_time=2.0,
        )
        self._listener = self._loop.run_until_complete(
            self._loop.create_server(self._web, sock=self._socket, backlog=1024)
        )
        ready.set()
        self._loop.run_forever()

    def stop(self, grace: float) -> None:
        """Stop accepting, let requests in flight finish (up to `grace` s), close everything."""
        if self._thread is None:
            self._socket.close()
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(grace), self._loop).result(grace + 10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self, grace: float) -> None:
        self._listener.close()
        try:
            await asyncio.wait_for(self._idle.wait(), grace)
        except asyncio.TimeoutError:
            log.warning("REST: %d requests still running after %g s; closing", self._active, grace)
        await self._web.shutdown(1.0)
        # Connections still lingering or idle: cancel their tasks so the loop closes cleanly.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---- accounting (event-loop thread only, so no locks) ---------------------------------------
    def connection_opened(self, conn: _Connection) -> bool:
        """Count a new connection, closing idle ones to keep within the cap; True if still over."""
        self._connections += 1
        while self._connections - self._evicting > self.limits.max_connections:
            if not self._idle_connections:
                return True  # every connection has a request in flight: the newcomer waits
            self._evict_oldest_idle()
        return False

    def connection_closed(self, conn: _Connection) -> None:
        self._connections -= 1
        self._idle_connections.pop(conn, None)
        if conn.evicted:
            self._evicting -= 1

    def mark_idle(self, conn: _Connection) -> None:
        self._idle_connections.pop(conn, None)  # re-inserted last: the newest idle
        self._idle_connections[conn] = self._loop.time()

    def mark_busy(self, conn: _Connection) -> None:
        self._idle_connections.pop(conn, None)

    def _evict_oldest_idle(self) -> None:
        conn, idle_since = next(iter(self._idle_connections.items()))
        del self._idle_connections[conn]
        conn.evicted = True
        self._evicting += 1
        self._evictions.inc()
        if log.isEnabledFor(logging.DEBUG):
            peer = conn.transport.get_extra_info("peername") if conn.transport else None
            log.debug(
                "REST: closed the connection from %s, idle for %.1f s, to make room: "
                "%d connections open, the limit (--rest_max_connections) is %d",
                peer[0] if peer else "?",
                self._loop.time() - idle_since,
                self._connections - self._evicting,
                self.limits.max_connections,
            )
        conn.force_close()

    def _reserve(self, n: int) -> bool:
        if self._inflight_bytes + n > self.limits.max_inflight_bytes:
            return False
        self._inflight_bytes += n
        return True

    # ---- one request ---------------------------------------------------------------------------------
    async def _handle(self, request: web.BaseRequest) -> web.StreamResponse:
        conn: _Connection = request.protocol
        conn.head_received()
        self._active += 1
        self._idle.clear()
        reserved = [0]  # in-flight bytes held by this request (grows as a chunked body arrives)
        try:
            if conn.over_cap:
                return _json_response(
                    503,
                    f"Too many connections (the server's limit is "
                    f"{self.limits.max_connections}); retry later",
                    close=True,
                )
            declared = request.content_length or 0
            limit = self.limits.max_request_bytes
            if declared > limit:
                return _json_response(
                    413,
                    f"Request body of {declared} bytes exceeds the limit of {limit} bytes",
                    close=True,
                )
            if not self._reserve(declared):
                return self._busy()
            reserved[0] = declared
            if (
                request.version >= (1, 1)
                and request.headers.get("Expect", "").lower() == "100-continue"
            ):
                # curl sends this for bodies over 1 KiB and waits for it before sending them;
                # only now, with the limits passed (aiohttp's router does this, its low-level
                # server does not).
                await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
                request.writer.output_size = 0  # the 100 is not the start of the response
            try:
                body = await asyncio.wait_for(
                    self._read_body(request, reserved), self.limits.body_timeout_s
                )
                conn.request_read()
            except _BodyTooLarge as exc:
                if str(exc) == "busy":
                    return self._busy()
                return _json_response(
                    413,
                    f"Request body of more than {limit} bytes exceeds the limit of {limit} bytes",
                    close=True,
                )
            except RequestPayloadError as exc:  # e.g. a malformed chunk size
                return _json_response(400, f"Malformed HTTP request body: {exc}", close=True)
            except ConnectionError:  # the client hung up mid-body: nobody to answer, nothing to log
                log.debug("REST client %s disconnected while sending its body", request.remote)
                return _json_response(400, "Client disconnected", close=True)
            except asyncio.TimeoutError:
                return _json_response(
                    408,
                    f"Request body not received within {self.limits.body_timeout_s:g} s",
                    close=True,
                )
            path = request.raw_path.split("?", 1)[0]
            status, content_type, data = await asyncio.get_running_loop().run_in_executor(
                self._pool,
                rest.handle,
                self.core,
                request.method,
                path,
                body,
                self.metrics_path,
                self.limits.max_json_depth,
            )
            return web.Response(
                status=status,
                body=data,
                headers={"Content-Type": content_type, "Server": SERVER_HEADER},
            )
        finally:
            self._inflight_bytes -= reserved[0]
            self._active -= 1
            if not self._active:
                self._idle.set()
            conn.response_sent()

    async def _read_body(self, request, reserved: list) -> bytes:
        """The body, counted chunk by chunk (chunked bodies have no declared length)."""
        if not request.body_exists:
            return b""
        parts, total = [], 0
        while True:
            chunk = await request.content.readany()
            if not chunk:
                return b"".join(parts)
            total += len(chunk)
            if total > self.limits.max_request_bytes:
                raise _BodyTooLarge("size")
            if total > reserved[0]:
                if not self._reserve(total - reserved[0]):
                    raise _BodyTooLarge("busy")
                reserved[0] = total
            parts.append(chunk)

    def _busy(self) -> web.Response:
        return _json_response(
            503,
            f"Server busy: requests in flight hold more than "
            f"{self.limits.max_inflight_bytes} bytes (--rest_max_inflight_bytes); "
            "retry later",
            close=True,
        )
