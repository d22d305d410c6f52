"""Events for ``push``: rows as the JSON objects a Kafka message of the
source would carry, and the server's answer."""

from __future__ import annotations

import datetime as _dt
import json
from dataclasses import dataclass, field
from typing import Any, List, Mapping, Sequence, Tuple

from . import _convert as conv
from ._errors import InvalidArgument
from ._proto import fstore_pb2 as pb

__all__ = ["PushResult", "RejectedEvent", "push_request"]


@dataclass(frozen=True)
class RejectedEvent:
    """An event the server left out: its index in the push, and why
    (``"missing_key: key field `uid` is missing or null"``)."""

    index: int
    reason: str


@dataclass(frozen=True)
class PushResult:
    received: int
    written: int
    rejected: List[RejectedEvent] = field(default_factory=list)
    too_late: int = 0
    unread_fields: List[str] = field(default_factory=list)

    @classmethod
    def from_proto(cls, r) -> "PushResult":
        return cls(
            received=r.events_received,
            written=r.events_written,
            rejected=[RejectedEvent(int(e.index), e.reason) for e in r.rejected],
            too_late=r.events_too_late,
            unread_fields=list(r.unread_fields),
        )


def _json_value(v: Any, where: str) -> Any:
    if conv.is_missing(v):
        return None
    if isinstance(v, (_dt.datetime,)) or type(v).__name__ in ("Timestamp", "datetime64"):
        micros = conv.to_micros(v)
        seconds, us = divmod(micros, 1_000_000)
        base = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc) + _dt.timedelta(seconds=seconds)
        return base.strftime("%Y-%m-%dT%H:%M:%S") + f".{us:06d}Z"
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidArgument(f"{where}: bytes that are not UTF-8 cannot be pushed") from None
    if isinstance(v, (str, bool, int, float)):
        return v
    if hasattr(v, "item") and getattr(v, "ndim", 1) == 0:  # a numpy scalar
        return _json_value(v.item(), where)
    if conv.is_sequence(v):
        return [_json_value(x, where) for x in conv.to_list(v)]
    raise InvalidArgument(f"{where}: cannot push {conv.describe(v)}")


def _rows(events: Any) -> List[Mapping[str, Any]]:
    if hasattr(events, "to_dict") and hasattr(events, "columns"):  # a pandas DataFrame
        return events.to_dict("records")
    if hasattr(events, "to_pylist") and hasattr(events, "schema"):  # a pyarrow Table
        return events.to_pylist()
    if isinstance(events, Mapping):  # columns
        columns = {k: conv.to_list(v) if conv.is_sequence(v) else [v] for k, v in events.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            shown = ", ".join(f"`{k}` has {len(v)}" for k, v in columns.items())
            raise InvalidArgument(f"event columns differ in length: {shown}")
        n = lengths.pop() if lengths else 0
        return [{k: v[i] for k, v in columns.items()} for i in range(n)]
    if isinstance(events, Sequence) and not isinstance(events, (str, bytes)):
        return list(events)
    raise InvalidArgument(
        f"events must be a list of dicts, a dict of columns, or a pandas DataFrame; found {conv.describe(events)}"
    )


def push_request(source: str, events: Any) -> Tuple[pb.PushEventsRequest, int]:
    """The request for ``events`` of ``source``, and how many there are."""
    rows = _rows(events)
    payloads = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            raise InvalidArgument(f"event {i} is {conv.describe(row)}, not a dict of fields")
        obj = {str(k): _json_value(v, f"event {i} field `{k}`") for k, v in row.items()}
        payloads.append(json.dumps(obj, allow_nan=False))
    request = pb.PushEventsRequest(source=source, json=pb.JsonEvents(events=payloads))
    return request, len(rows)
