"""Python values to ``fstore.v1.Value`` and back, by the types the server declares."""

from __future__ import annotations

import datetime as _dt
import numbers
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from ._errors import client_error
from ._proto import fstore_pb2 as pb

UTC = _dt.timezone.utc
EPOCH = _dt.datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MICRO = _dt.timedelta(microseconds=1)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

KEY_TYPES = ("int64", "string")
SCALAR_TYPES = ("bool", "int64", "float32", "float64", "string", "bytes", "timestamp")
ARRAY_TYPES = ("array<float32>", "array<float64>", "array<int64>", "array<string>")


# ---------------------------------------------------------------- inputs


def _short_repr(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def describe(v: Any) -> str:
    """`a str ('42')`: what a value is, for messages."""
    if v is None:
        return "None"
    if is_missing(v):
        return f"a missing value ({_short_repr(v)})"
    name = type(v).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    return f"{article} {name} ({_short_repr(v)})"


def is_missing(v: Any) -> bool:
    """None, NaN, and pandas' NA and NaT."""
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    name = type(v).__name__
    if name in ("NAType", "NaTType"):
        return True
    if name == "datetime64" and hasattr(v, "dtype"):  # numpy.datetime64('NaT')
        return str(v) == "NaT"
    return False


def is_integer(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not _is_bool(v)


def _is_bool(v: Any) -> bool:
    return isinstance(v, bool) or type(v).__name__ == "bool_"


def _is_number(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not _is_bool(v)


def is_sequence(v: Any) -> bool:
    """A column of values: list, tuple, numpy array, pandas Series or Index,
    pyarrow array; not a string or bytes."""
    if isinstance(v, (str, bytes, bytearray, memoryview, Mapping)):
        return False
    if hasattr(v, "dtype") and getattr(v, "ndim", 1) == 0:  # a numpy scalar
        return False
    return isinstance(v, (list, tuple)) or hasattr(v, "__array__") or hasattr(v, "to_pylist") or (
        hasattr(v, "__iter__") and hasattr(v, "__len__")
    )


def to_list(v: Any) -> List[Any]:
    """A column as a Python list of Python values (numpy and pandas scalars
    become ints, floats, strs, datetimes; missing values stay recognisable)."""
    if isinstance(v, list):
        return v
    if isinstance(v, tuple):
        return list(v)
    dtype = getattr(v, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if kind == "M" and hasattr(v, "astype"):
        # numpy datetime64 (tolist() gives ints for ns): as aware datetimes.
        try:
            import numpy as np

            arr = np.asarray(v).astype("datetime64[us]")
            return [None if str(x) == "NaT" else EPOCH + int(x.astype("int64")) * _ONE_MICRO for x in arr]
        except ImportError:  # pragma: no cover - numpy is there if it made the array
            pass
    if hasattr(v, "to_pylist"):  # pyarrow
        return v.to_pylist()
    if hasattr(v, "tolist"):  # numpy, pandas
        return v.tolist()
    return list(v)


def to_micros(v: Any) -> int:
    """A datetime (naive ones are taken as UTC), pandas Timestamp or numpy
    datetime64 as microseconds since the Unix epoch."""
    if type(v).__name__ == "datetime64":
        import numpy as np

        return int(np.datetime64(v, "us").astype("int64"))
    if isinstance(v, _dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=UTC)
        return (v - EPOCH) // _ONE_MICRO
    raise TypeError(f"expected a datetime, found {describe(v)}")


def from_micros(us: int):
    """Microseconds since the epoch as an aware UTC datetime (the int itself
    if it lies outside datetime's years 1 to 9999)."""
    try:
        return EPOCH + us * _ONE_MICRO
    except OverflowError:
        return us


# ---------------------------------------------------------------- keys


def key_value(name: str, index: int, v: Any, ty: Optional[str]) -> pb.Value:
    """One entity key value. ``ty`` is the key's declared type, or None when
    the client does not know it (then an int is an int64, a str a string)."""
    t = type(v)
    if t is int and ty != "string" and INT64_MIN <= v <= INT64_MAX:  # the common cases, fast
        return pb.Value(int64_value=v)
    if t is str and ty != "int64":
        return pb.Value(string_value=v)
    if is_missing(v):
        raise client_error(f"entity key `{name}` value {index} is {describe(v)}; entity keys cannot be null")
    if ty is None:
        ty = "int64" if is_integer(v) else "string" if isinstance(v, str) else None
        if ty is None:
            raise client_error(
                f"entity key `{name}` value {index} is {describe(v)}; entity keys are int64 or string"
            )
    if ty == "int64":
        if not is_integer(v):
            raise client_error(f"entity key `{name}` value {index} is {describe(v)}; `{name}` is int64")
        i = int(v)
        if not INT64_MIN <= i <= INT64_MAX:
            raise client_error(f"entity key `{name}` value {index} is {i}, outside int64's range")
        return pb.Value(int64_value=i)
    if ty == "string":
        if not isinstance(v, str):
            raise client_error(f"entity key `{name}` value {index} is {describe(v)}; `{name}` is string")
        return pb.Value(string_value=str(v))
    raise client_error(f"entity key `{name}` has type {ty}, which this client does not know how to send")


def column(values: Any) -> List[Any]:
    """A column given as a sequence, or a single value for a single row."""
    return to_list(values) if is_sequence(values) else [values]


# ---------------------------------------------------------------- request data


def _check_finite_list(name: str, where: str, items: List[Any], element: str, ok: Callable[[Any], bool]):
    for j, x in enumerate(items):
        if is_missing(x):
            raise client_error(
                f"request field `{name}` {where} holds {describe(x)} at index {j}; "
                f"arrays cannot hold nulls (send None for a null array)"
            )
        if not ok(x):
            raise client_error(
                f"request field `{name}` {where} holds {describe(x)} at index {j}; `{name}` is array<{element}>"
            )


def request_value(name: str, where: str, v: Any, ty: str) -> pb.Value:
    """One request field value of declared type ``ty``; ``where`` says which
    (``value 2``, or ``(one value for every row)``) for messages."""
    if is_missing(v):
        return pb.Value()

    def wrong(expected: str = ty):
        return client_error(f"request field `{name}` {where} is {describe(v)}; `{name}` is {expected}")

    if ty == "bool":
        if not _is_bool(v):
            raise wrong()
        return pb.Value(bool_value=bool(v))
    if ty == "int64":
        if not is_integer(v):
            raise wrong()
        i = int(v)
        if not INT64_MIN <= i <= INT64_MAX:
            raise client_error(f"request field `{name}` {where} is {i}, outside int64's range")
        return pb.Value(int64_value=i)
    if ty == "float32":
        if not _is_number(v):
            raise wrong()
        return pb.Value(float32_value=float(v))
    if ty == "float64":
        if not _is_number(v):
            raise wrong()
        return pb.Value(float64_value=float(v))
    if ty == "string":
        if not isinstance(v, str):
            raise wrong()
        return pb.Value(string_value=str(v))
    if ty == "bytes":
        if not isinstance(v, (bytes, bytearray, memoryview)):
            raise wrong()
        return pb.Value(bytes_value=bytes(v))
    if ty == "timestamp":
        try:
            return pb.Value(timestamp_micros=to_micros(v))
        except TypeError:
            raise wrong("timestamp (pass a datetime)") from None
    if ty in ARRAY_TYPES:
        if not is_sequence(v):
            raise wrong(f"{ty} (pass a list)")
        items = to_list(v)
        element = ty[len("array<") : -1]
        if element in ("float32", "float64"):
            _check_finite_list(name, where, items, element, _is_number)
            floats = [float(x) for x in items]
            if element == "float32":
                return pb.Value(float32_list=pb.Float32List(values=floats))
            return pb.Value(float64_list=pb.Float64List(values=floats))
        if element == "int64":
            _check_finite_list(name, where, items, element, is_integer)
            return pb.Value(int64_list=pb.Int64List(values=[int(x) for x in items]))
        _check_finite_list(name, where, items, element, lambda x: isinstance(x, str))
        return pb.Value(string_list=pb.StringList(values=[str(x) for x in items]))
    raise client_error(f"request field `{name}` has type {ty}, which this client does not know how to send")


def _is_per_row(v: Any, ty: str) -> bool:
    """Whether a request field's value is one value per row (else one value
    for every row). For an array type, a list of lists (or of Nones) is per
    row and a flat list of numbers or strings is one array."""
    if not is_sequence(v):
        return False
    if ty not in ARRAY_TYPES:
        return True
    ndim = getattr(v, "ndim", None)
    if ndim is not None and ndim >= 2:
        return True
    items = to_list(v)
    if not items:
        return False
    return all(is_missing(x) or is_sequence(x) for x in items)


def request_column(name: str, v: Any, ty: str, rows: int) -> pb.Values:
    if _is_per_row(v, ty):
        items = to_list(v)
        if len(items) != rows:
            raise client_error(
                f"request field `{name}` has {len(items)} values; the request has {rows} entity "
                f"row{'' if rows == 1 else 's'} "
                f"(give one value per row, or a single value for every row)"
            )
        return pb.Values(values=[request_value(name, f"value {i}", x, ty) for i, x in enumerate(items)])
    return pb.Values(values=[request_value(name, "(one value for every row)", v, ty)])


# ---------------------------------------------------------------- outputs


def _list(kind: str) -> Callable[[pb.Value], list]:
    return lambda v: list(getattr(v, kind).values)


_DECODE: Dict[str, Callable[[pb.Value], Any]] = {
    "bool_value": lambda v: v.bool_value,
    "int64_value": lambda v: v.int64_value,
    "float32_value": lambda v: v.float32_value,
    "float64_value": lambda v: v.float64_value,
    "string_value": lambda v: v.string_value,
    "bytes_value": lambda v: v.bytes_value,
    "timestamp_micros": lambda v: from_micros(v.timestamp_micros),
    "float32_list": _list("float32_list"),
    "float64_list": _list("float64_list"),
    "int64_list": _list("int64_list"),
    "string_list": _list("string_list"),
}

#: The language's type of each Value kind.
KIND_TYPES = {
    "bool_value": "bool",
    "int64_value": "int64",
    "float32_value": "float32",
    "float64_value": "float64",
    "string_value": "string",
    "bytes_value": "bytes",
    "timestamp_micros": "timestamp",
    "float32_list": "array<float32>",
    "float64_list": "array<float64>",
    "int64_list": "array<int64>",
    "string_list": "array<string>",
}


def from_value(v: pb.Value) -> Any:
    kind = v.WhichOneof("kind")
    return None if kind is None else _DECODE[kind](v)


def from_values(values: Sequence[pb.Value]) -> List[Any]:
    out = []
    for v in values:
        kind = v.WhichOneof("kind")
        out.append(None if kind is None else _DECODE[kind](v))
    return out


def infer_type(values: Sequence[pb.Value]) -> Optional[str]:
    """The type of a column whose declared type the client does not know:
    that of its first non-null value."""
    for v in values:
        kind = v.WhichOneof("kind")
        if kind is not None:
            return KIND_TYPES[kind]
    return None
