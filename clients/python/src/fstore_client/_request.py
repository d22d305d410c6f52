"""Turning ``get_online_features`` arguments into a request, by the key and
request-field types the server declared (no I/O here: the sync and asyncio
clients share it)."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

from . import _convert as conv
from ._errors import client_error
from ._proto import fstore_pb2 as pb
from ._types import Feature, FeatureService

Services = Dict[str, FeatureService]


def services_from_proto(response: pb.ListFeatureServicesResponse) -> Services:
    out: Services = {}
    for s in response.services:
        out[s.name] = FeatureService(
            name=s.name,
            features=tuple(Feature(f.name, f.type) for f in s.features),
            entity_keys=tuple(s.entity_keys),
            key_types=tuple(Feature(k.name, k.type) for k in s.key_types),
            request_fields=tuple(Feature(f.name, f.type) for f in getattr(s, "request_fields", ())),
        )
    return out


@dataclass
class Args:
    """The caller's arguments, checked for shape (not yet for types)."""

    service: Optional[str]
    refs: Optional[List[str]]
    entities: Dict[str, List[Any]]
    request_data: Optional[Dict[str, Any]]
    request_time_micros: int


@dataclass
class Plan:
    request: pb.GetOnlineFeaturesRequest
    keys: Dict[str, List[Any]]
    types: Dict[str, Optional[str]]

    def same_as(self, other: "Plan") -> bool:
        return self.request.SerializeToString(deterministic=True) == other.request.SerializeToString(
            deterministic=True
        )


def _entities(entities: Any) -> Dict[str, List[Any]]:
    if entities is None:
        return {}
    if hasattr(entities, "column_names") and hasattr(entities, "column"):  # a pyarrow Table
        entities = {n: entities.column(n) for n in entities.column_names}
    elif not isinstance(entities, Mapping) and hasattr(entities, "columns"):  # a pandas DataFrame
        entities = {c: entities[c] for c in entities.columns}
    if not isinstance(entities, Mapping):
        raise client_error(
            f"entities must be a mapping of key column to values (or a pandas DataFrame or "
            f"pyarrow Table of key columns), not {type(entities).__name__}"
        )
    out: Dict[str, List[Any]] = {}
    first: Optional[Tuple[str, int]] = None
    for name, values in entities.items():
        if not isinstance(name, str):
            raise client_error(f"entity key column names are strings, not {conv.describe(name)}")
        column = conv.column(values)
        if first is None:
            first = (name, len(column))
        elif len(column) != first[1]:
            raise client_error(
                f"entity key columns differ in length: `{first[0]}` has {first[1]} values, "
                f"`{name}` has {len(column)}"
            )
        out[name] = column
    return out


def make_args(
    service: Optional[str],
    features: Any,
    entities: Any,
    request_data: Optional[Mapping[str, Any]],
    request_time: Any,
) -> Args:
    if (service is None) == (features is None):
        raise client_error(
            "name either a feature service (service='ranker_v1') or features "
            "(features=['user_profile.country', 'user_activity.*']), not both or neither"
        )
    refs = None
    if service is not None and not isinstance(service, str):
        raise client_error(f"service is a feature service's name, not {conv.describe(service)}")
    if features is not None:
        refs = [features] if isinstance(features, str) else conv.to_list(features) if conv.is_sequence(features) else None
        if not refs or not all(isinstance(r, str) for r in refs):
            raise client_error(
                "features is a list of feature references such as 'user_profile.country' or 'user_activity.*'"
            )
        if request_data:
            raise client_error("request_data goes with a feature service (service=...), not with features")
    if request_data is not None and not isinstance(request_data, Mapping):
        raise client_error(f"request_data must be a mapping of field name to value(s), not {type(request_data).__name__}")
    micros = 0
    if request_time is not None:
        if not isinstance(request_time, _dt.datetime) and type(request_time).__name__ != "datetime64":
            raise client_error(f"request_time must be a datetime, not {conv.describe(request_time)}")
        micros = conv.to_micros(request_time)
        if micros == 0:
            raise client_error("request_time is the Unix epoch itself, which the server reads as 'now'")
    return Args(
        service=service,
        refs=refs,
        entities=_entities(entities),
        request_data=dict(request_data) if request_data else None,
        request_time_micros=micros,
    )


def _global_key_types(services: Optional[Services]) -> Dict[str, str]:
    """Key name -> type, where every listed service that has the key agrees."""
    seen: Dict[str, set] = {}
    for s in (services or {}).values():
        for k in s.key_types:
            seen.setdefault(k.name, set()).add(k.type)
    return {name: next(iter(types)) for name, types in seen.items() if len(types) == 1}


def _feature_types(services: Optional[Services]) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for s in (services or {}).values():
        for f in s.features:
            out.setdefault(f.name, f.type)
    return out


def _infer_request_type(v: Any) -> Optional[str]:
    """For a service the client has no description of (the server will say why)."""
    sample = v
    if conv.is_sequence(v):
        items = [x for x in conv.to_list(v) if not conv.is_missing(x)]
        sample = items[0] if items else None
    if sample is None:
        return "string"
    if isinstance(sample, bool) or type(sample).__name__ == "bool_":
        return "bool"
    if conv.is_integer(sample):
        return "int64"
    if isinstance(sample, float):
        return "float64"
    if isinstance(sample, (bytes, bytearray)):
        return "bytes"
    if isinstance(sample, _dt.datetime):
        return "timestamp"
    if conv.is_sequence(sample):
        return "array<float64>"
    return "string"


def build(args: Args, services: Optional[Services]) -> Plan:
    """The request for ``args``; ``services`` is what ListFeatureServices said
    (None: nothing known). Raises InvalidArgument for input that cannot be
    right."""
    request = pb.GetOnlineFeaturesRequest(request_time_micros=args.request_time_micros)
    info = None
    if args.service is not None:
        request.feature_service = args.service
        info = (services or {}).get(args.service)
    else:
        request.features.refs.extend(args.refs)

    types: Dict[str, Optional[str]] = {}
    if info is not None:
        needed = list(info.entity_keys) or [k.name for k in info.key_types]
        for name in needed:
            if name not in args.entities:
                raise client_error(
                    f"missing entity key column `{name}`; feature service `{info.name}` needs: {', '.join(needed)}"
                )
        for name in args.entities:
            if name not in needed:
                raise client_error(
                    f"unexpected entity key column `{name}`; feature service `{info.name}` needs: {', '.join(needed)}"
                )
        key_types = {k.name: k.type for k in info.key_types}
        types.update(info.types)
    else:
        key_types = _global_key_types(services)
        feature_types = _feature_types(services)
        if args.refs:
            types.update(feature_types)

    keys: Dict[str, List[Any]] = {}
    # In the caller's order (the service lists its keys alphabetically).
    for name, column in args.entities.items():
        ty = key_types.get(name)
        values = [conv.key_value(name, i, v, ty) for i, v in enumerate(column)]
        request.entities[name].values.extend(values)
        keys[name] = [v.int64_value if v.HasField("int64_value") else v.string_value for v in values]
        types[name] = ty or (conv.KIND_TYPES[values[0].WhichOneof("kind")] if values else None)
    rows = len(next(iter(args.entities.values()))) if args.entities else 0

    if args.service is not None:
        data = args.request_data or {}
        if info is not None:
            declared = {f.name: f.type for f in info.request_fields}
            if data and not declared:
                raise client_error(
                    f"feature service `{info.name}` declares no request fields; "
                    f"request_data has {', '.join(sorted(map(str, data)))}"
                )
            for name in data:
                if name not in declared:
                    raise client_error(
                        f"unexpected request field `{name}`; feature service `{info.name}` declares: "
                        f"{', '.join(declared)}"
                    )
            for name in declared:
                if name not in data:
                    raise client_error(
                        f"missing request field `{name}`; feature service `{info.name}` needs: "
                        f"{', '.join(declared)} (a value may be None)"
                    )
        else:
            declared = {name: _infer_request_type(v) for name, v in data.items()}
        for name, value in data.items():
            if not isinstance(name, str):
                raise client_error(f"request field names are strings, not {conv.describe(name)}")
            request.request_data[name].CopyFrom(conv.request_column(name, value, declared[name], rows))
    return Plan(request=request, keys=keys, types=types)

