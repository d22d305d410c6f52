"""The exceptions a call raises: one class per gRPC code the server uses."""

from __future__ import annotations

from typing import Optional

import grpc

__all__ = [
    "FstoreError",
    "InvalidArgument",
    "NotFound",
    "FailedPrecondition",
    "OutOfRange",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "Unavailable",
    "DeadlineExceeded",
    "Cancelled",
    "Internal",
]


class FstoreError(Exception):
    """Base of every error this package raises.

    ``code`` is the gRPC status code (``grpc.StatusCode``), ``message`` the
    server's message (or the client's, for a request refused before it was
    sent: then ``from_server`` is False), and ``attempts`` how many times the
    call was sent.
    """

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: Optional[grpc.StatusCode] = None,
        from_server: bool = True,
        attempts: int = 1,
        method: Optional[str] = None,
    ):
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message
        self.from_server = from_server
        self.attempts = attempts
        self.method = method

    def __str__(self) -> str:
        if self.attempts > 1:
            return f"{self.message} (after {self.attempts} attempts)"
        return self.message

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code.name})"


class InvalidArgument(FstoreError, ValueError):
    """The request is malformed or names what does not exist (an unknown
    feature service or feature, a missing key column, a key of the wrong
    type). Also raised, with ``from_server`` False, for input the client can
    tell is wrong before sending it."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class NotFound(FstoreError):
    code = grpc.StatusCode.NOT_FOUND


class FailedPrecondition(FstoreError):
    """The request is fine but the server's state does not allow it."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class OutOfRange(FstoreError):
    """The request message is larger than the server decodes
    (``server.max_request_bytes``)."""

    code = grpc.StatusCode.OUT_OF_RANGE


class PermissionDenied(FstoreError):
    """The API key does not cover what was asked (a service outside its
    scope, or an admin call without ``admin = true``)."""

    code = grpc.StatusCode.PERMISSION_DENIED


class Unauthenticated(FstoreError):
    """No API key, or one the server does not know."""

    code = grpc.StatusCode.UNAUTHENTICATED


class ResourceExhausted(FstoreError):
    """The server is overloaded and refused the request; retried with
    backoff before it is raised."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(FstoreError):
    """The server cannot be reached, or is stopping; retried with backoff
    before it is raised."""

    code = grpc.StatusCode.UNAVAILABLE


class DeadlineExceeded(FstoreError):
    """The call's deadline passed."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class Cancelled(FstoreError):
    code = grpc.StatusCode.CANCELLED


class Internal(FstoreError):
    """The server failed; its log has the detail under the id in the message."""

    code = grpc.StatusCode.INTERNAL


_BY_CODE = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        NotFound,
        FailedPrecondition,
        OutOfRange,
        PermissionDenied,
        Unauthenticated,
        ResourceExhausted,
        Unavailable,
        DeadlineExceeded,
        Cancelled,
        Internal,
    )
}

RETRYABLE = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})


def from_rpc_error(err: grpc.RpcError, *, attempts: int = 1, method: Optional[str] = None) -> FstoreError:
    """The exception for a failed call."""
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    details = err.details() if hasattr(err, "details") else None
    message = details or (code.name if code is not None else str(err))
    cls = _BY_CODE.get(code, FstoreError)
    return cls(message, code=code, attempts=attempts, method=method)


def client_error(message: str) -> InvalidArgument:
    """Input the client refuses before sending."""
    return InvalidArgument(message, from_server=False, attempts=0)
