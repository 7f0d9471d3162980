"""Serving errors carry a canonical status code, mapped to HTTP and gRPC as TF Serving does."""

from __future__ import annotations

# TF Serving's http_server.cc maps canonical codes to HTTP statuses this way.
HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}


class ServingError(Exception):
    """An error answered to a client: `code` is a canonical status name (NOT_FOUND, ...)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        assert code in HTTP_STATUS, code
        self.code = code
        self.message = message

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.code]

    def grpc_code(self):
        import grpc

        return getattr(grpc.StatusCode, self.code)


def invalid(message: str) -> ServingError:
    return ServingError("INVALID_ARGUMENT", message)


def not_found(message: str) -> ServingError:
    return ServingError("NOT_FOUND", message)
