"""Python client for fstore, the online feature store.

    from fstore_client import Client

    with Client("127.0.0.1:6566", api_key="...") as client:
        result = client.get_online_features("ranker_v1", entities={"user_id": [42, 43]})
        rows = result.to_dicts()          # [{"user_id": 42, "user_profile.country": "fr", ...}, ...]
        frame = result.to_pandas()        # or result.to_arrow()

See README.md for the whole API.
"""

try:
    from . import _proto as proto  # generated at build time from proto/fstore/v1/fstore.proto
except ImportError as _e:  # pragma: no cover - a source tree that was never built
    raise ImportError(
        "fstore_client's gRPC stubs are missing: they are generated when the package is built. "
        "Install it with `pip install ./clients/python` from the fstore repository."
    ) from _e

from ._aio import AsyncClient
from ._client import Client
from ._errors import (
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    FstoreError,
    Internal,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)
from ._push import PushResult, RejectedEvent
from ._result import OnlineFeatures
from ._retry import RetryPolicy
from ._types import Feature, FeatureService, FieldStatus, TlsConfig

__version__ = "0.1.0"

__all__ = [
    "AsyncClient",
    "Cancelled",
    "Client",
    "DeadlineExceeded",
    "FailedPrecondition",
    "Feature",
    "FeatureService",
    "FieldStatus",
    "FstoreError",
    "Internal",
    "InvalidArgument",
    "NotFound",
    "OnlineFeatures",
    "OutOfRange",
    "PushResult",
    "RejectedEvent",
    "PermissionDenied",
    "ResourceExhausted",
    "RetryPolicy",
    "TlsConfig",
    "Unauthenticated",
    "Unavailable",
    "proto",
]
