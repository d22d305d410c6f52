"""Values, types, nulls and statuses from a real server, and the shapes of
to_dicts, to_pandas and to_arrow."""

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from conftest import T0, UTC
import fstore_client as fc
from fstore_client import Feature, FieldStatus, OnlineFeatures

P, NULL, NF, OLD = FieldStatus.PRESENT, FieldStatus.NULL_VALUE, FieldStatus.NOT_FOUND, FieldStatus.OUTSIDE_MAX_AGE
RANKER = [
    "profile.age",
    "profile.score",
    "profile.name",
    "profile.premium",
    "profile.embedding",
    "profile.signup",
]


def lookup(client, ids=(1, 2, 3, 999)) -> OnlineFeatures:
    return client.get_online_features("ranker", entities={"user_id": list(ids)})


def test_list_feature_services_describes_services_keys_and_types(client):
    services = {s.name: s for s in client.list_feature_services()}
    assert set(services) == {"ranker", "pair", "fresh_v1", "shed"}
    ranker = services["ranker"]
    assert ranker.feature_names == tuple(RANKER)
    assert ranker.features[4] == Feature("profile.embedding", "array<float32>")
    assert ranker.features[5] == Feature("profile.signup", "timestamp")
    assert ranker.entity_keys == ("user_id",)
    assert ranker.key_types == (Feature("user_id", "int64"),)
    assert ranker.request_fields == ()
    pair = services["pair"]
    assert set(pair.entity_keys) == {"user_id", "item_id"}
    assert pair.key_type("item_id") == "string" and pair.key_type("user_id") == "int64"


def test_every_type_with_values_nulls_and_unknown_keys(client):
    r = lookup(client)
    assert r.feature_names == RANKER
    assert r.key_names == ["user_id"]
    assert r.columns == ["user_id"] + RANKER
    assert len(r) == r.num_rows == 4
    assert r["user_id"] == [1, 2, 3, 999]
    assert r["profile.age"] == [30, None, 50, None]
    assert r["profile.score"] == [0.5, None, -1.25, None]
    assert r["profile.name"] == ["ada", None, "Émile ☃", None]
    assert r["profile.premium"] == [True, None, False, None]
    assert r["profile.embedding"] == [[0.25, -0.5, 1.0], None, [], None]
    signup = r["profile.signup"]
    assert signup[0] == T0 - timedelta(days=100) and signup[0].tzinfo is not None
    assert signup[1] is None
    # Microseconds survive the trip.
    assert signup[2] == T0 - timedelta(days=1, microseconds=-7)
    assert signup[3] is None
    assert type(r["profile.age"][0]) is int and type(r["profile.premium"][0]) is bool


def test_statuses_and_event_times(client):
    r = lookup(client)
    for name in RANKER:
        # User 2's row exists with nulls; user 999 has none.
        assert r.statuses[name] == [P, NULL, P, NF], name
        assert r.event_times[name] == [T0, T0, T0 + timedelta(hours=1), None], name
    assert r.statuses["profile.age"][0] is FieldStatus.PRESENT
    assert r.statuses["profile.age"][0].name == "PRESENT"
    assert r.event_times["profile.age"][0].tzinfo == UTC


def test_outside_max_age_by_request_time(client):
    # Within the 2-day ttl of `fresh`, as of a day after the rows...
    r = client.get_online_features("fresh_v1", entities={"user_id": [1, 3]}, request_time=T0 + timedelta(days=1))
    assert r["fresh.level"] == [1, 3]
    assert r.statuses["fresh.level"] == [P, P]
    # ...and past it: the value is withheld, its event time still told.
    # User 3's row is an hour newer: still fresh 47 h 30 min after T0.
    r = client.get_online_features(
        "fresh_v1", entities={"user_id": [1, 3]}, request_time=T0 + timedelta(hours=48, minutes=30)
    )
    assert r.statuses["fresh.level"] == [OLD, P]
    assert r["fresh.level"] == [None, 3]
    assert r.event_times["fresh.level"][0] == T0
    # A view without ttl is not affected.
    assert r.statuses["profile.age"] == [P, P]


def test_two_entities_string_keys_and_arrays(client):
    r = client.get_online_features(
        "pair", entities={"user_id": [1, 2, 1], "item_id": ["sku-1", "sku-2", "nope"]}
    )
    assert r.key_names == ["user_id", "item_id"]  # the caller's order
    assert list(r.to_dicts()[0])[:2] == ["user_id", "item_id"]
    assert r.feature_names == ["profile.age", "item_info.price", "item_info.tags", "item_info.counts"]
    assert r["item_info.price"] == [9.99, None, None]
    assert r["item_info.tags"] == [["red", "new"], None, None]
    assert r["item_info.counts"] == [[1, 2, 3], [], None]
    assert r.statuses["item_info.price"] == [P, NULL, NF]
    assert r["profile.age"] == [30, None, 30]


def test_feature_refs(client):
    r = client.get_online_features(
        features=["profile.name", "item_info.*"], entities={"user_id": [3], "item_id": ["sku-1"]}
    )
    assert r.feature_names == ["profile.name", "item_info.price", "item_info.tags", "item_info.counts"]
    assert r.to_dicts() == [
        {
            "user_id": 3,
            "item_id": "sku-1",
            "profile.name": "Émile ☃",
            "item_info.price": 9.99,
            "item_info.tags": ["red", "new"],
            "item_info.counts": [1, 2, 3],
        }
    ]
    one = client.get_online_features(features="profile.age", entities={"user_id": 1})
    assert one.to_dicts() == [{"user_id": 1, "profile.age": 30}]


def test_to_dicts(client):
    rows = lookup(client, ids=[1, 999]).to_dicts()
    assert rows == [
        {
            "user_id": 1,
            "profile.age": 30,
            "profile.score": 0.5,
            "profile.name": "ada",
            "profile.premium": True,
            "profile.embedding": [0.25, -0.5, 1.0],
            "profile.signup": T0 - timedelta(days=100),
        },
        {"user_id": 999, **{name: None for name in RANKER}},
    ]
    assert list(rows[0]) == ["user_id"] + RANKER


def test_entities_from_numpy_pandas_tuples_and_frames(client):
    expected = [30, None, 50]
    for ids in ([1, 2, 3], (1, 2, 3), np.array([1, 2, 3], dtype=np.int64), np.array([1, 2, 3], dtype=np.int32),
                pd.Series([1, 2, 3]), pd.Index([1, 2, 3]), pa.array([1, 2, 3])):
        r = client.get_online_features("ranker", entities={"user_id": ids})
        assert r["profile.age"] == expected, type(ids)
        assert r["user_id"] == [1, 2, 3]
    frame = pd.DataFrame({"user_id": [3, 1], "item_id": ["sku-1", "sku-2"]})
    for table in (frame, pa.Table.from_pandas(frame)):
        r = client.get_online_features("pair", entities=table)
        assert r["profile.age"] == [50, 30]
        assert r["item_info.price"] == [9.99, None]
    with pytest.raises(fc.InvalidArgument, match="entities must be a mapping"):
        client.get_online_features("ranker", entities=[1, 2])
    # Zero rows.
    r = client.get_online_features("ranker", entities={"user_id": []})
    assert len(r) == 0 and r.to_dicts() == [] and r.feature_names == RANKER


def test_to_arrow_types_and_optional_columns(client):
    t = lookup(client).to_arrow()
    assert t.num_rows == 4
    assert t.column_names == ["user_id"] + RANKER
    assert t.schema.field("user_id").type == pa.int64()
    assert t.schema.field("profile.age").type == pa.int64()
    assert t.schema.field("profile.score").type == pa.float64()
    assert t.schema.field("profile.name").type == pa.string()
    assert t.schema.field("profile.premium").type == pa.bool_()
    assert t.schema.field("profile.embedding").type == pa.list_(pa.float32())
    assert t.schema.field("profile.signup").type == pa.timestamp("us", tz="UTC")
    assert t.column("profile.age").to_pylist() == [30, None, 50, None]
    assert t.column("profile.embedding").to_pylist() == [[0.25, -0.5, 1.0], None, [], None]

    t = lookup(client).to_arrow(statuses=True, event_times=True)
    assert t.column_names[:4] == ["user_id", "profile.age", "profile.age__status", "profile.age__event_time"]
    assert t.num_columns == 1 + 3 * len(RANKER)
    assert t.column("profile.age__status").to_pylist() == ["PRESENT", "NULL_VALUE", "PRESENT", "NOT_FOUND"]
    assert t.schema.field("profile.age__event_time").type == pa.timestamp("us", tz="UTC")
    assert t.column("profile.age__event_time").to_pylist() == [T0, T0, T0 + timedelta(hours=1), None]


def test_to_pandas_dtypes_and_optional_columns(client):
    df = lookup(client).to_pandas()
    assert list(df.columns) == ["user_id"] + RANKER
    assert df.shape == (4, 7)
    assert df["user_id"].dtype == np.int64
    # Nullable ints and bools: no value goes through a float.
    assert str(df["profile.age"].dtype) == "Int64"
    assert df["profile.age"].tolist()[0] == 30 and pd.isna(df["profile.age"][1])
    assert str(df["profile.premium"].dtype) == "boolean"
    assert df["profile.score"].dtype == np.float64 and np.isnan(df["profile.score"][1])
    assert str(df["profile.signup"].dtype) == "datetime64[us, UTC]"
    assert df["profile.signup"][0] == pd.Timestamp(T0 - timedelta(days=100))
    assert pd.isna(df["profile.signup"][3])
    emb = df["profile.embedding"][0]
    assert list(emb) == [0.25, -0.5, 1.0]
    assert df["profile.name"].tolist()[2] == "Émile ☃"

    df = lookup(client, ids=[1, 999]).to_pandas(statuses=True, event_times=True)
    assert df.shape == (2, 1 + 3 * len(RANKER))
    assert df["profile.age__status"].tolist() == ["PRESENT", "NOT_FOUND"]
    assert isinstance(df["profile.age__status"].dtype, pd.CategoricalDtype)
    assert df["profile.age__event_time"][0] == pd.Timestamp(T0)
    assert pd.isna(df["profile.age__event_time"][1])

    # Without nulls, plain numpy dtypes.
    df = lookup(client, ids=[1, 3]).to_pandas()
    assert df["profile.age"].dtype == np.int64 and df["profile.premium"].dtype == np.bool_


def test_result_object_helpers(client):
    r = lookup(client, ids=[1])
    assert "profile.age" in r and "user_id" in r and "nope" not in r
    with pytest.raises(KeyError, match="no column `nope`"):
        r["nope"]
    assert list(r) == r.to_dicts()
    assert r.types["profile.embedding"] == "array<float32>"
    assert r.types["user_id"] == "int64"
    assert "rows=1" in repr(r)
    assert r.response.features[0].name == "profile.age"


def test_admin_stubs_over_the_clients_channel_load_new_data(make_server, tmp_path):
    """The generated stubs are the package's too: an upsert through the admin
    API, then the client sees the new values."""
    from conftest import USERS, write_users
    from fstore_client import Client, proto

    server = make_server()
    rows = {k: v[:1] for k, v in USERS.items()}
    rows["age"] = [31]
    rows["ts"] = [T0 + timedelta(days=1)]
    path = write_users(tmp_path, rows, "more.parquet")
    with Client(server.addr) as client:
        assert client.get_online_features("ranker", entities={"user_id": [1]})["profile.age"] == [30]
        admin = proto.fstore_pb2_grpc.FeatureAdminStub(client.channel)
        report = admin.IngestParquet(proto.fstore_pb2.IngestParquetRequest(source="users", paths=[str(path)]))
        assert report.rows_written == 1, report
        r = client.get_online_features("ranker", entities={"user_id": [1, 2]})
        assert r["profile.age"] == [31, None]
        assert r.event_times["profile.age"][0] == T0 + timedelta(days=1)
