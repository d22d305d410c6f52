"""Plain data the client hands out: statuses, service descriptions, TLS settings."""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple, Union

__all__ = ["FieldStatus", "Feature", "FeatureService", "TlsConfig"]


class FieldStatus(enum.IntEnum):
    """Per value: how the server found it. The numbers of ``fstore.v1.FieldStatus``
    (the same as Feast's)."""

    INVALID = 0
    PRESENT = 1
    #: The entity exists, the value is null.
    NULL_VALUE = 2
    #: Nothing stored for this entity in this view.
    NOT_FOUND = 3
    #: Stored, but older than the view's ttl; the value is None.
    OUTSIDE_MAX_AGE = 4

    @classmethod
    def _missing_(cls, value):
        # A status a newer server added: not silently PRESENT.
        return cls.INVALID


@dataclass(frozen=True)
class Feature:
    """A named, typed column: a feature, an entity key or a request field.
    ``type`` is spelt as in the definitions language (``int64``,
    ``array<float32>``, ...)."""

    name: str
    type: str


@dataclass(frozen=True)
class FeatureService:
    """One feature service, as ``ListFeatureServices`` describes it."""

    name: str
    #: In response order: the service's features, then its derived features.
    features: Tuple[Feature, ...]
    #: Entity key columns a request must carry.
    entity_keys: Tuple[str, ...]
    #: The same key columns with their types (``int64`` or ``string``).
    key_types: Tuple[Feature, ...]
    #: Fields a request must carry in ``request_data`` (empty for most services).
    request_fields: Tuple[Feature, ...] = ()

    @property
    def feature_names(self) -> Tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def key_type(self, name: str) -> Optional[str]:
        for k in self.key_types:
            if k.name == name:
                return k.type
        return None

    @property
    def types(self) -> Dict[str, str]:
        """Column name -> type, for keys and features."""
        out = {k.name: k.type for k in self.key_types}
        out.update((f.name, f.type) for f in self.features)
        return out


PemLike = Union[str, bytes, None]


def _pem(value: PemLike, what: str) -> Optional[bytes]:
    if value is None:
        return None
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, (bytes, bytearray)):
        raise TypeError(f"TlsConfig.{what} must be PEM text (str or bytes), not {type(value).__name__}")
    value = bytes(value)
    if b"-----BEGIN" not in value:
        raise ValueError(
            f"TlsConfig.{what} does not look like PEM (no '-----BEGIN'); "
            f"to read a file, use TlsConfig.from_files(...)"
        )
    return value


@dataclass(frozen=True)
class TlsConfig:
    """TLS to the server. ``ca_pem``: the CA to trust (None: the system's
    roots); ``cert_pem``/``key_pem``: a client certificate, for servers with
    ``tls.client_ca``; ``server_name``: the name to check the server's
    certificate against when it differs from the address's host."""

    ca_pem: PemLike = None
    cert_pem: PemLike = field(default=None, repr=False)
    key_pem: PemLike = field(default=None, repr=False)
    server_name: Optional[str] = None

    def __post_init__(self):
        object.__setattr__(self, "ca_pem", _pem(self.ca_pem, "ca_pem"))
        object.__setattr__(self, "cert_pem", _pem(self.cert_pem, "cert_pem"))
        object.__setattr__(self, "key_pem", _pem(self.key_pem, "key_pem"))
        if (self.cert_pem is None) != (self.key_pem is None):
            raise ValueError("TlsConfig: cert_pem and key_pem go together: set both or neither")

    @classmethod
    def from_files(
        cls,
        ca: Optional[Union[str, os.PathLike]] = None,
        cert: Optional[Union[str, os.PathLike]] = None,
        key: Optional[Union[str, os.PathLike]] = None,
        server_name: Optional[str] = None,
    ) -> "TlsConfig":
        def read(path):
            if path is None:
                return None
            with open(path, "rb") as f:
                return f.read()

        return cls(ca_pem=read(ca), cert_pem=read(cert), key_pem=read(key), server_name=server_name)
