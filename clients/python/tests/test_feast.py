"""The real `feast` package (pinned in requirements-test.txt) against fstore:
its SDK with the `remote` online store, given a repository from
`fstore feast-registry`, reads what fstore's own API serves (values, statuses,
names); Feast's generated gRPC stubs for `ServingService` read the same; and
the SDK's push writes events that fstore then serves."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import grpc
import pandas as pd
import pytest
from feast import FeatureStore
from feast.protos.feast.serving import ServingService_pb2 as feast_pb
from feast.protos.feast.serving.ServingService_pb2_grpc import ServingServiceStub
from feast.protos.feast.types.Value_pb2 import RepeatedValue, Value

from conftest import fstore_bin, fstore_env
from fstore_client import Client

# A stream source with no broker: pushes feed it.
FEAST_DEFS = {
    "defs.fdl": """
entity user { key user_id: int64 }

source events {
  type = kafka
  topic = "events"
  format = json
  timestamp = ts
}

view profile {
  entity = user
  source = events
  keys { user_id = uid }
  ttl = 1h
  features {
    country: string = country
    score: float64 = score
    weight: float32 = weight
    age: int64 = age
    emb: array<float32> = emb
  }
}

view activity {
  entity = user
  source = events
  keys { user_id = uid }
  features { clicks_1h: int64 = count() over 1h }
}

service ranker { features = [profile.*, activity.clicks_1h] }
"""
}

USERS = [1, 2, 3, 99]
FEATURES = ["country", "score", "weight", "age", "emb", "clicks_1h"]
VIEW = {"clicks_1h": "activity"}


def fstore_name(feature: str) -> str:
    return f"{VIEW.get(feature, 'profile')}.{feature}"


@pytest.fixture
def feast_server(make_server, tmp_path):
    """A seeded server, and a Feast repository for it after `feast apply`.
    User 1 has every value, user 2 no country and no embedding, user 3's row
    is two hours old (past the profile's ttl), user 99 has nothing."""
    server = make_server(defs=FEAST_DEFS, data=None, config="")
    now = dt.datetime.now(dt.timezone.utc)
    with Client(server.addr, timeout=10) as client:
        report = client.push(
            "events",
            [
                {"uid": 1, "ts": now, "country": "NL", "score": 0.25, "weight": 0.1, "age": 41, "emb": [0.5, 1.5]},
                {"uid": 2, "ts": now, "score": 2.0, "weight": 1.0, "age": 7},
                {"uid": 3, "ts": now - dt.timedelta(hours=2), "country": "DE", "score": 1.0, "age": 3, "emb": [1.0]},
            ],
        )
        assert report.written == 3, report
    repo = tmp_path / "feast_repo"
    made = subprocess.run(
        [fstore_bin(), "feast-registry", "--out", str(repo), "--defs", str(server.defs),
         "--url", f"http://127.0.0.1:{server.http_port}"],
        capture_output=True, text=True, env=fstore_env(),
    )
    assert made.returncode == 0, made.stderr
    feast_cli = Path(sys.executable).with_name("feast")
    applied = subprocess.run([str(feast_cli), "apply"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    return server, repo


def fstore_answer(server):
    with Client(server.addr, timeout=10) as client:
        result = client.get_online_features("ranker", entities={"user_id": USERS})
        values = {f: result[fstore_name(f)] for f in FEATURES}
        statuses = {f: [s.name for s in result.statuses[fstore_name(f)]] for f in FEATURES}
    return values, statuses


def close(a, b):
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and a == pytest.approx(b, rel=1e-12)
    return a == b


def test_the_feast_sdk_with_the_remote_online_store_reads_what_fstore_serves(feast_server):
    server, repo = feast_server
    want_values, want_statuses = fstore_answer(server)
    assert want_statuses["country"] == ["PRESENT", "NULL_VALUE", "OUTSIDE_MAX_AGE", "NOT_FOUND"]

    store = FeatureStore(repo_path=str(repo))
    response = store.get_online_features(
        features=store.get_feature_service("ranker"),
        entity_rows=[{"user_id": u} for u in USERS],
    )
    got = response.to_dict()
    assert list(got) == ["user_id"] + FEATURES
    assert got["user_id"] == USERS
    for f in FEATURES:
        assert close(got[f], want_values[f]), (f, got[f], want_values[f])
    names = list(response.proto.metadata.feature_names.val)
    statuses = {
        name: [feast_pb.FieldStatus.Name(s) for s in result.statuses]
        for name, result in zip(names, response.proto.results)
    }
    for f in FEATURES:
        assert statuses[f] == want_statuses[f], f
    assert got["weight"][0] == pytest.approx(0.1, rel=1e-7) and got["emb"][0] == [0.5, 1.5]

    # By references, with full names.
    got = store.get_online_features(
        features=["profile:age", "activity:clicks_1h"],
        entity_rows=[{"user_id": 1}, {"user_id": 99}],
        full_feature_names=True,
    ).to_dict()
    assert got == {"user_id": [1, 99], "profile__age": [41, None], "activity__clicks_1h": [1, None]}


def test_feast_generated_grpc_stubs_read_the_serving_service(feast_server):
    server, _ = feast_server
    want_values, want_statuses = fstore_answer(server)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        stub = ServingServiceStub(channel)
        info = stub.GetFeastServingInfo(feast_pb.GetFeastServingInfoRequest(), timeout=10)
        assert info.version.startswith("fstore")
        request = feast_pb.GetOnlineFeaturesRequest(
            feature_service="ranker",
            entities={"user_id": RepeatedValue(val=[Value(int64_val=u) for u in USERS])},
        )
        response = stub.GetOnlineFeatures(request, timeout=10)
        names = list(response.metadata.feature_names.val)
        assert names == ["user_id"] + FEATURES
        for name, result in zip(names, response.results):
            assert len(result.values) == len(result.statuses) == len(result.event_timestamps) == len(USERS), name
        by_name = dict(zip(names, response.results))
        for f in FEATURES:
            statuses = [feast_pb.FieldStatus.Name(s) for s in by_name[f].statuses]
            assert statuses == want_statuses[f], f
            values = []
            for v in by_name[f].values:
                kind = v.WhichOneof("val")
                raw = None if kind is None else getattr(v, kind)
                values.append(list(raw.val) if hasattr(raw, "val") else raw)
            assert close(values, want_values[f]), (f, values, want_values[f])
        # Event times are filled for every column: the epoch for join keys,
        # the row's time for present values.
        assert by_name["user_id"].event_timestamps[0].seconds == 0
        assert by_name["age"].event_timestamps[0].seconds > 1_700_000_000

        with pytest.raises(grpc.RpcError) as unknown:
            stub.GetOnlineFeatures(feast_pb.GetOnlineFeaturesRequest(feature_service="nope", entities=request.entities))
        assert unknown.value.code() == grpc.StatusCode.NOT_FOUND


def test_the_feast_sdk_push_writes_events_that_fstore_serves(feast_server):
    server, repo = feast_server
    store = FeatureStore(repo_path=str(repo))
    now = pd.Timestamp(dt.datetime.now(dt.timezone.utc))
    frame = pd.DataFrame(
        {
            "user_id": [5, 6],
            "country": ["FR", "IT"],
            "score": [5.5, 6.5],
            "weight": [0.5, 0.25],
            "age": [50, 60],
            "emb": [[1.0, 2.0], [3.0]],
            "ts": [now, now],
        }
    )
    store.push("events", frame)
    with Client(server.addr, timeout=10) as client:
        rows = client.get_online_features("ranker", entities={"user_id": [5, 6]}).to_dicts()
    assert [r["profile.country"] for r in rows] == ["FR", "IT"]
    assert [r["profile.age"] for r in rows] == [50, 60]
    assert rows[0]["profile.emb"] == pytest.approx([1.0, 2.0])
    assert [r["activity.clicks_1h"] for r in rows] == [1, 1], "the aggregating view saw each event once"
    # And Feast reads them back.
    got = store.get_online_features(features=["profile:country"], entity_rows=[{"user_id": 6}]).to_dict()
    assert got["country"] == ["IT"]
