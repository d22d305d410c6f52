"""Addresses, credentials and call metadata, shared by both clients."""

from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import grpc

from ._errors import DeadlineExceeded, FstoreError, Unavailable, from_rpc_error
from ._types import TlsConfig

#: Responses of many rows and features exceed gRPC's default 4 MiB.
MAX_RECEIVE_BYTES = 1 << 30

HEALTH_CHECK = "/grpc.health.v1.Health/Check"


def resolve(addr: str, tls: Union[bool, TlsConfig, None]) -> Tuple[str, Optional[grpc.ChannelCredentials], list]:
    """(target, credentials or None for plain text, channel options)."""
    if not isinstance(addr, str) or not addr:
        raise ValueError(f"addr is the server's host:port (or an http:// or https:// URL), not {addr!r}")
    scheme = None
    target = addr
    if "://" in addr:
        scheme, target = addr.split("://", 1)
        scheme = scheme.lower()
        if scheme not in ("http", "https", "grpc", "grpcs"):
            raise ValueError(f"addr {addr!r}: the scheme is http or https (or none)")
        target = target.rstrip("/")
    if tls is not None and not isinstance(tls, (bool, TlsConfig)):
        raise TypeError(f"tls is True, False or a TlsConfig, not {type(tls).__name__}")
    if tls is None:
        tls = scheme in ("https", "grpcs")
    elif tls is False and scheme in ("https", "grpcs"):
        raise ValueError(f"addr {addr!r} says TLS but tls=False")
    options = [
        ("grpc.max_receive_message_length", MAX_RECEIVE_BYTES),
        ("grpc.primary_user_agent", "fstore-client-python"),
        # gRPC waits 1 s, then longer, before reconnecting to a server that
        # went away; calls in between fail at once. Reconnect sooner, so that
        # retries ride out a restart.
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 2000),
    ]
    if tls is False:
        return target, None, options
    config = tls if isinstance(tls, TlsConfig) else TlsConfig()
    credentials = grpc.ssl_channel_credentials(
        root_certificates=config.ca_pem,
        private_key=config.key_pem,
        certificate_chain=config.cert_pem,
    )
    if config.server_name:
        options.append(("grpc.ssl_target_name_override", config.server_name))
    return target, credentials, options


def call_metadata(api_key: Optional[str], extra: Optional[Sequence[Tuple[str, str]]]) -> List[Tuple[str, str]]:
    out: List[Tuple[str, str]] = []
    if api_key is not None:
        if not isinstance(api_key, str) or not api_key.strip():
            raise ValueError("api_key is the key's text")
        key = api_key.strip()
        if not all(33 <= ord(c) <= 126 for c in key):
            raise ValueError("api_key must be printable ASCII without spaces")
        out.append(("authorization", "Bearer " + key))
    for k, v in extra or ():
        out.append((k.lower(), v))
    return out


def error(err: grpc.RpcError, *, attempts: int, method: str, addr: str, timeout: Optional[float]) -> FstoreError:
    """The exception for a failed call, with a message that says where and how long."""
    e = from_rpc_error(err, attempts=attempts, method=method)
    if isinstance(e, DeadlineExceeded) and e.message.strip().lower() == "deadline exceeded":
        e.message = f"{method}: no answer from {addr} within the call's timeout of {timeout:g} s" if timeout else (
            f"{method}: deadline exceeded"
        )
        e.args = (e.message,)
    elif isinstance(e, Unavailable):
        e.message = f"{method}: fstore server at {addr} unavailable: {e.message}"
        e.args = (e.message,)
    return e


def health_serving(reply: bytes) -> bool:
    """Whether a grpc.health.v1.HealthCheckResponse says SERVING (status 1)."""
    return reply == b"\x08\x01"
