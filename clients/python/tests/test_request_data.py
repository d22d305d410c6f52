"""Request data for a service with request fields and derived features,
converted by the declared field types."""

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import fstore_client as fc
from conftest import DEFS, FstoreServer, check
from fstore_client import Client, Feature, FieldStatus, proto

SCORED = """
service scored {
  features = [profile.score, profile.embedding]
  request {
    boost: float64
    query: array<float32>
    weights: array<float64>
    device: string
    bonus: int64
    vip: bool
  }
  derived {
    boosted: float64 = coalesce(profile.score, 0.0) * boost
    similarity: float64 = dot(profile.embedding, query)
    weight_norm: float64 = norm(weights)
    is_ios: bool = device == "ios"
    bonus2: int64 = bonus * 2
    not_vip: bool = not vip
  }
}
"""

DERIVED = ["boosted", "similarity", "weight_norm", "is_ios", "bonus2", "not_vip"]


@pytest.fixture(scope="module")
def rd_server():
    defs = dict(DEFS, **{"scored.fdl": SCORED})
    probe = Path(tempfile.mkdtemp(prefix="fstore-check-"))
    try:
        for name, text in defs.items():
            (probe / name).write_text(text)
        out = check(probe)
    finally:
        shutil.rmtree(probe, ignore_errors=True)
    if out.returncode != 0:
        text = out.stderr + out.stdout
        # A server from before request fields: the blocks are unknown properties.
        if "E0205" in text and ("`request`" in text or "`derived`" in text):
            pytest.skip("this fstore binary predates a service's request/derived blocks")
        pytest.fail(f"fstore check refused the test definitions:\n{text}", pytrace=False)
    from conftest import CONFIG, write_data

    server = FstoreServer(defs, write_data, CONFIG)
    try:
        yield server.start()
    finally:
        server.cleanup()


def test_request_fields_are_listed(rd_server):
    with Client(rd_server.addr) as c:
        scored = {s.name: s for s in c.list_feature_services()}["scored"]
    assert scored.request_fields == (
        Feature("boost", "float64"),
        Feature("query", "array<float32>"),
        Feature("weights", "array<float64>"),
        Feature("device", "string"),
        Feature("bonus", "int64"),
        Feature("vip", "bool"),
    )
    assert scored.feature_names == ("profile.score", "profile.embedding", *DERIVED)


def test_scalars_broadcast_and_lists_per_row(rd_server):
    with Client(rd_server.addr) as c:
        r = c.get_online_features(
            "scored",
            entities={"user_id": [1, 2, 3]},
            request_data={
                "boost": 2,  # an int for a float64 field: sent as 2.0
                "query": np.array([1.0, 1.0, 1.0], dtype=np.float32),  # one array for every row
                "weights": [[3.0, 4.0], None, [1.0]],  # one per row, a null among them
                "device": ["ios", "android", None],
                "bonus": np.array([1, 2, 3]),
                "vip": True,
            },
        )
    assert r.feature_names == ["profile.score", "profile.embedding", *DERIVED]
    assert r["boosted"] == [1.0, 0.0, -2.5]
    assert r["similarity"][0] == pytest.approx(0.75)
    assert r["similarity"][1] is None
    assert r["weight_norm"] == [pytest.approx(5.0), None, pytest.approx(1.0)]
    assert r["is_ios"] == [True, False, None]
    assert r["bonus2"] == [2, 4, 6]
    assert r["not_vip"] == [False, False, False]
    assert r.statuses["is_ios"] == [FieldStatus.PRESENT, FieldStatus.PRESENT, FieldStatus.NULL_VALUE]
    assert r.event_times["bonus2"] == [None, None, None]
    assert r.types["bonus2"] == "int64"
    df = r.to_pandas()
    assert list(df.columns) == ["user_id", "profile.score", "profile.embedding", *DERIVED]
    assert str(df["is_ios"].dtype) == "boolean"


def test_request_data_errors(rd_server):
    good = {"boost": 1.0, "query": [1.0], "weights": None, "device": "ios", "bonus": 1, "vip": False}
    with Client(rd_server.addr) as c:
        cases = [
            ({k: v for k, v in good.items() if k != "vip"}, "missing request field `vip`"),
            (dict(good, extra=1), "unexpected request field `extra`"),
            (dict(good, boost="high"), "request field `boost` (one value for every row) is a str ('high'); `boost` is float64"),
            (dict(good, bonus=[1, 2]), "request field `bonus` has 2 values; the request has 1 entity row"),
            (dict(good, bonus=1.5), "`bonus` is int64"),
            (dict(good, vip=1), "`vip` is bool"),
            (dict(good, query=[1.0, None]), "arrays cannot hold nulls"),
            (dict(good, query="abc"), "`query` is array<float32>"),
        ]
        for data, message in cases:
            with pytest.raises(fc.InvalidArgument) as e:
                c.get_online_features("scored", entities={"user_id": [1]}, request_data=data)
            assert message in e.value.message, (data, e.value.message)
            assert not e.value.from_server
        # None is a null for any type, also as the value for every row.
        r = c.get_online_features(
            "scored", entities={"user_id": [1]}, request_data=dict(good, boost=None, bonus=[None], device=float("nan"))
        )
        assert r["boosted"] == [None] and r["bonus2"] == [None] and r["is_ios"] == [None]

        # The server checks the types itself: a float32 for a float64 field.
        pb = proto.fstore_pb2
        request = pb.GetOnlineFeaturesRequest(feature_service="scored")
        request.entities["user_id"].values.append(pb.Value(int64_value=1))
        for name in good:
            request.request_data[name].values.append(pb.Value())
        request.request_data["boost"].values[0].float32_value = 1.0
        stub = proto.fstore_pb2_grpc.FeatureServingStub(c.channel)
        import grpc

        with pytest.raises(grpc.RpcError) as e:
            stub.GetOnlineFeatures(request)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "`boost` is float64" in e.value.details()
