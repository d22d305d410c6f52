"""push(): events written through the server's push path, servable when the
call returns; bad events reported by index; refusals as exceptions."""

import datetime as dt

import pandas as pd
import pytest

import fstore_client as fc
from fstore_client import Client, FieldStatus

# A stream source with no broker configured: only pushes feed it.
PUSH_DEFS = {
    "defs.fdl": """
entity user { key user_id: int64 }
source clicks {
  type = kafka
  topic = "clicks"
  format = json
  timestamp = ts
}
view last_click {
  entity = user
  source = clicks
  keys { user_id = uid }
  features { item: string = item, price: float64 = price }
}
view activity {
  entity = user
  source = clicks
  keys { user_id = uid }
  features { clicks_1h: int64 = count() over 1h, spend_1h: float64 = sum(price) over 1h }
}
service both { features = [last_click.*, activity.*] }
"""
}


@pytest.fixture
def push_server(make_server):
    return make_server(defs=PUSH_DEFS, data=None, config="")


def test_pushed_events_are_served_on_return(push_server):
    now = dt.datetime.now(dt.timezone.utc)
    with Client(push_server.addr, timeout=10) as client:
        result = client.push(
            "clicks",
            [
                {"uid": 1, "ts": now - dt.timedelta(minutes=5), "price": 2.5, "item": "a"},
                {"uid": 1, "ts": now, "price": 1.5, "item": "b"},
                {"uid": 2, "ts": now, "price": 4.0, "item": "c"},
            ],
        )
        assert (result.received, result.written, result.rejected) == (3, 3, [])
        # A DataFrame, with numpy values and pandas timestamps.
        frame = pd.DataFrame({"uid": [3, 3], "ts": [pd.Timestamp(now), pd.Timestamp(now)], "price": [1.0, 2.0]})
        assert client.push("clicks", frame).written == 2
        rows = client.get_online_features("both", entities={"user_id": [1, 2, 3, 4]}).to_dicts()
        assert [r["last_click.item"] for r in rows] == ["b", "c", None, None]
        assert [r["activity.clicks_1h"] for r in rows] == [2, 1, 2, None]
        assert rows[0]["activity.spend_1h"] == pytest.approx(4.0)
        statuses = client.get_online_features("both", entities={"user_id": [4]}).statuses["last_click.item"]
        assert statuses == [FieldStatus.NOT_FOUND]


def test_bad_events_are_reported_and_the_rest_written(push_server):
    now = dt.datetime.now(dt.timezone.utc)
    with Client(push_server.addr, timeout=10) as client:
        result = client.push(
            "clicks",
            {"uid": [1, None, 3], "ts": [now, now, now], "price": [1.0, 2.0, float("nan")]},
        )
        assert result.written == 2
        assert result.rejected == [fc.RejectedEvent(1, "missing_key: key field `uid` is missing or null")]
        with pytest.raises(fc.InvalidArgument, match="unknown source `clickz`"):
            client.push("clickz", [{"uid": 1, "ts": now}])
        with pytest.raises(fc.InvalidArgument, match="event columns differ in length"):
            client.push("clicks", {"uid": [1, 2], "ts": [now]})


def test_a_push_refused_for_its_key_is_permission_denied(make_server):
    from conftest import key_digest

    config = f"""
[[auth.keys]]
name = "model"
sha256 = "{key_digest('fsk_model_0123456789')}"
services = ["both"]
"""
    server = make_server(defs=PUSH_DEFS, data=None, config=config)
    with Client(server.addr, api_key="fsk_model_0123456789", timeout=10) as client:
        with pytest.raises(fc.PermissionDenied, match="may not push to source `clicks`"):
            client.push("clicks", [{"uid": 1, "ts": dt.datetime.now(dt.timezone.utc)}])


def test_the_async_client_pushes(push_server):
    import asyncio

    async def run():
        async with fc.AsyncClient(push_server.addr, timeout=10) as client:
            r = await client.push("clicks", [{"uid": 9, "ts": dt.datetime.now(dt.timezone.utc), "item": "z"}])
            assert r.written == 1

    asyncio.run(run())
