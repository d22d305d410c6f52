"""The answer of ``get_online_features``: column-major as the server sends
it, with row-major, pandas and Arrow views."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Optional, Sequence

from . import _convert as conv
from ._proto import fstore_pb2 as pb
from ._types import FieldStatus

__all__ = ["OnlineFeatures"]

STATUS_SUFFIX = "__status"
EVENT_TIME_SUFFIX = "__event_time"


def _need(module: str, extra: str):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(
            f"this needs {module}, which is not installed: pip install 'fstore-client[{extra}]'"
        ) from None


def _arrow_type(pa, ty: Optional[str]):
    if ty is None:
        return pa.null()
    simple = {
        "bool": pa.bool_(),
        "int64": pa.int64(),
        "float32": pa.float32(),
        "float64": pa.float64(),
        "string": pa.string(),
        "bytes": pa.binary(),
        "timestamp": pa.timestamp("us", tz="UTC"),
    }
    if ty in simple:
        return simple[ty]
    if ty.startswith("array<") and ty.endswith(">"):
        return pa.list_(_arrow_type(pa, ty[len("array<") : -1]))
    raise TypeError(f"no Arrow type for fstore type {ty}")


def _raw(values: Sequence[pb.Value]) -> List[Any]:
    """Values for Arrow: as from_values, but timestamps stay microseconds."""
    out = []
    for v in values:
        kind = v.WhichOneof("kind")
        if kind is None:
            out.append(None)
        elif kind == "timestamp_micros":
            out.append(v.timestamp_micros)
        else:
            out.append(conv.from_value(v))
    return out


class OnlineFeatures:
    """Feature values for the requested entity rows.

    ``result["user_profile.country"]`` is one column's values (keys too),
    ``result.statuses[name]`` its statuses (:class:`FieldStatus`),
    ``result.event_times[name]`` the event times of the rows the values came
    from (aware UTC datetimes, None where there is none). Rows are in request
    order. ``to_dicts()``, ``to_pandas()`` and ``to_arrow()`` give the whole.
    """

    def __init__(
        self,
        response: pb.GetOnlineFeaturesResponse,
        keys: Dict[str, List[Any]],
        types: Dict[str, Optional[str]],
    ):
        self.response = response
        self._keys = keys
        self._columns = {c.name: c for c in response.features}
        self._types = dict(types)
        for c in response.features:
            if self._types.get(c.name) is None:
                self._types[c.name] = conv.infer_type(c.values)
        self._values: Dict[str, List[Any]] = {}
        self._statuses: Optional[Dict[str, List[FieldStatus]]] = None
        self._event_times: Optional[Dict[str, List[Any]]] = None
        self._rows = len(next(iter(keys.values()))) if keys else (
            len(response.features[0].values) if response.features else 0
        )

    # ------------------------------------------------------------ shape

    @property
    def key_names(self) -> List[str]:
        return list(self._keys)

    @property
    def feature_names(self) -> List[str]:
        """In the order of the service (features, then derived features) or of the refs."""
        return [c.name for c in self.response.features]

    @property
    def columns(self) -> List[str]:
        """Key columns, then features: the columns of ``to_dicts()``, ``to_pandas()``, ``to_arrow()``."""
        return self.key_names + self.feature_names

    names = columns

    @property
    def types(self) -> Dict[str, Optional[str]]:
        """Column -> type as spelt in the definitions language (None: unknown
        and never non-null here)."""
        return {name: self._types.get(name) for name in self.columns}

    @property
    def num_rows(self) -> int:
        return self._rows

    def __len__(self) -> int:
        return self._rows

    def __contains__(self, name: str) -> bool:
        return name in self._keys or name in self._columns

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter(self.to_dicts())

    def __repr__(self) -> str:
        return f"<OnlineFeatures rows={self._rows} keys={self.key_names} features={self.feature_names}>"

    # ------------------------------------------------------------ columns

    def __getitem__(self, name: str) -> List[Any]:
        """One column's values: None for null, not found or expired."""
        if name in self._keys:
            return list(self._keys[name])
        if name not in self._columns:
            raise KeyError(f"no column `{name}`; columns: {', '.join(self.columns)}")
        if name not in self._values:
            self._values[name] = conv.from_values(self._columns[name].values)
        return list(self._values[name])

    def column(self, name: str) -> List[Any]:
        return self[name]

    @property
    def statuses(self) -> Dict[str, List[FieldStatus]]:
        """Feature -> one :class:`FieldStatus` per row."""
        if self._statuses is None:
            self._statuses = {
                c.name: [FieldStatus(s) for s in c.statuses] for c in self.response.features
            }
        return self._statuses

    @property
    def event_times(self) -> Dict[str, List[Any]]:
        """Feature -> per row, the event time of the stored row the value
        came from (aware UTC datetime), or None where there is none."""
        if self._event_times is None:
            self._event_times = {
                c.name: [None if t == 0 else conv.from_micros(t) for t in c.event_timestamps_micros]
                for c in self.response.features
            }
        return self._event_times

    # ------------------------------------------------------------ whole

    def to_dicts(self) -> List[Dict[str, Any]]:
        """One dict per entity row: key columns, then features (None for
        null, not found or expired values)."""
        names = self.columns
        cols = [self[name] for name in names]
        return [dict(zip(names, row)) for row in zip(*cols)] if cols else []

    def to_arrow(self, statuses: bool = False, event_times: bool = False):
        """A ``pyarrow.Table``: key columns, then features, typed by their
        declared types (timestamps as ``timestamp[us, tz=UTC]``). With
        ``statuses``, a string column ``<feature>__status`` after each
        feature; with ``event_times``, a ``<feature>__event_time`` column
        (null where there is none)."""
        pa = _need("pyarrow", "arrow")
        arrays, names = [], []
        for name, values in self._keys.items():
            arrays.append(pa.array(values, type=_arrow_type(pa, self._types.get(name))))
            names.append(name)
        ts = pa.timestamp("us", tz="UTC")
        for c in self.response.features:
            arrays.append(pa.array(_raw(c.values), type=_arrow_type(pa, self._types.get(c.name))))
            names.append(c.name)
            if statuses:
                arrays.append(pa.array([FieldStatus(s).name for s in c.statuses], type=pa.string()))
                names.append(c.name + STATUS_SUFFIX)
            if event_times:
                arrays.append(pa.array([t or None for t in c.event_timestamps_micros], type=ts))
                names.append(c.name + EVENT_TIME_SUFFIX)
        return pa.Table.from_arrays(arrays, names=names)

    def to_pandas(self, statuses: bool = False, event_times: bool = False):
        """A ``pandas.DataFrame``, one row per entity row: key columns, then
        features. Nulls: NaN in float columns, ``<NA>`` in int64 and bool
        columns (pandas' nullable ``Int64`` and ``boolean``, so no value is
        rounded through a float), None or NaN elsewhere; timestamps as
        ``datetime64[us, UTC]``; arrays as numpy arrays. ``statuses`` and
        ``event_times`` add the columns described in :meth:`to_arrow`
        (statuses as a categorical of :class:`FieldStatus` names)."""
        pd = _need("pandas", "pandas")
        _need("pyarrow", "pandas")
        table = self.to_arrow(statuses=statuses, event_times=event_times)
        data = {}
        for name, arr in zip(table.column_names, table.columns):
            if name.endswith(STATUS_SUFFIX) and name[: -len(STATUS_SUFFIX)] in self._columns:
                data[name] = pd.Categorical(arr.to_pylist(), categories=[s.name for s in FieldStatus])
                continue
            ty = self._types.get(name)
            if ty in ("int64", "bool") and arr.null_count:
                data[name] = pd.array(arr.to_pylist(), dtype="Int64" if ty == "int64" else "boolean")
            else:
                data[name] = arr.to_pandas()
        return pd.DataFrame(data, columns=table.column_names)
