"""The client's conversions on their own (no server): Python values to the
contract's Values and back."""

import datetime as dt

import numpy as np
import pandas as pd
import pytest

import fstore_client as fc
from fstore_client import _convert as conv
from fstore_client import proto

pb = proto.fstore_pb2
UTC = dt.timezone.utc


def test_keys_from_numpy_and_pandas_scalars():
    assert conv.key_value("k", 0, np.int32(5), "int64") == pb.Value(int64_value=5)
    assert conv.key_value("k", 0, np.str_("a"), "string") == pb.Value(string_value="a")
    assert conv.key_value("k", 0, 7, None) == pb.Value(int64_value=7)
    assert conv.key_value("k", 0, "x", None) == pb.Value(string_value="x")
    for bad in (np.float64(1.0), np.bool_(True), pd.NA, float("nan")):
        with pytest.raises(fc.InvalidArgument):
            conv.key_value("k", 0, bad, "int64")
    with pytest.raises(fc.InvalidArgument, match="entity keys are int64 or string"):
        conv.key_value("k", 0, 1.5, None)


def test_timestamps():
    t = dt.datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    micros = conv.to_micros(t)
    assert conv.from_micros(micros) == t
    # Naive datetimes are UTC; other zones are converted.
    assert conv.to_micros(t.replace(tzinfo=None)) == micros
    assert conv.to_micros(t.astimezone(dt.timezone(dt.timedelta(hours=5)))) == micros
    assert conv.to_micros(pd.Timestamp(t)) == micros
    assert conv.to_micros(np.datetime64("2026-01-02T03:04:05.678901")) == micros
    assert conv.to_list(np.array(["2026-01-02T03:04:05.678901", "NaT"], dtype="datetime64[ns]")) == [t, None]
    assert conv.request_value("t", "v", t, "timestamp") == pb.Value(timestamp_micros=micros)


def test_request_values_by_type():
    assert conv.request_value("f", "v", 2, "float64") == pb.Value(float64_value=2.0)
    assert conv.request_value("f", "v", np.float32(0.5), "float32") == pb.Value(float32_value=0.5)
    assert conv.request_value("f", "v", float("nan"), "float64") == pb.Value()
    assert conv.request_value("f", "v", None, "array<float32>") == pb.Value()
    assert conv.request_value("f", "v", np.array([1, 2]), "array<float64>") == pb.Value(
        float64_list=pb.Float64List(values=[1.0, 2.0])
    )
    assert conv.request_value("f", "v", ["a"], "array<string>") == pb.Value(string_list=pb.StringList(values=["a"]))
    assert conv.request_value("f", "v", b"\x00", "bytes") == pb.Value(bytes_value=b"\x00")
    with pytest.raises(fc.InvalidArgument, match="`f` is int64"):
        conv.request_value("f", "v", True, "int64")
    with pytest.raises(fc.InvalidArgument, match="`f` is array<int64>"):
        conv.request_value("f", "v", [1.5], "array<int64>")


def test_per_row_or_one_for_every_row():
    one = conv.request_column("q", [1.0, 2.0], "array<float32>", rows=2)
    assert len(one.values) == 1 and list(one.values[0].float32_list.values) == [1.0, 2.0]
    per_row = conv.request_column("q", [[1.0], None], "array<float32>", rows=2)
    assert len(per_row.values) == 2 and per_row.values[1] == pb.Value()
    per_row = conv.request_column("q", np.ones((2, 3), dtype=np.float32), "array<float32>", rows=2)
    assert len(per_row.values) == 2 and list(per_row.values[0].float32_list.values) == [1.0, 1.0, 1.0]
    assert len(conv.request_column("x", pd.Series([1.0, None]), "float64", rows=2).values) == 2
    assert len(conv.request_column("x", 3.0, "float64", rows=2).values) == 1


def test_decoding_every_kind():
    values = [
        pb.Value(bool_value=True),
        pb.Value(int64_value=-3),
        pb.Value(float32_value=0.5),
        pb.Value(float64_value=1e300),
        pb.Value(string_value="é"),
        pb.Value(bytes_value=b"\x01"),
        pb.Value(timestamp_micros=1),
        pb.Value(float32_list=pb.Float32List(values=[0.25])),
        pb.Value(float64_list=pb.Float64List(values=[])),
        pb.Value(int64_list=pb.Int64List(values=[1, 2])),
        pb.Value(string_list=pb.StringList(values=["a"])),
        pb.Value(),
    ]
    assert conv.from_values(values) == [
        True, -3, 0.5, 1e300, "é", b"\x01",
        dt.datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
        [0.25], [], [1, 2], ["a"], None,
    ]
    assert fc.FieldStatus(9) is fc.FieldStatus.INVALID
