"""AsyncClient against the real server: the same answers and errors."""

import asyncio

import pytest

import fstore_client as fc
from fstore_client import AsyncClient, Client, FieldStatus


def test_async_client_answers_like_the_blocking_one(server):
    async def run():
        async with AsyncClient(server.addr) as c:
            assert await c.health()
            services = await c.list_feature_services()
            results = await asyncio.gather(
                *(c.get_online_features("ranker", entities={"user_id": [i, 999]}) for i in (1, 2, 3))
            )
            with pytest.raises(fc.InvalidArgument, match="unknown feature service `nope`"):
                await c.get_online_features("nope", entities={"user_id": [1]})
            with pytest.raises(fc.InvalidArgument, match="`user_id` is int64"):
                await c.get_online_features("ranker", entities={"user_id": ["1"]})
            with pytest.raises(fc.ResourceExhausted):
                await c.get_online_features("shed", entities={"user_id": [1]}, retries=1)
            return services, results

    services, results = asyncio.run(run())
    assert {s.name for s in services} == {"ranker", "pair", "fresh_v1", "shed"}
    with Client(server.addr) as c:
        for i, r in zip((1, 2, 3), results):
            expected = c.get_online_features("ranker", entities={"user_id": [i, 999]})
            assert r.to_dicts() == expected.to_dicts()
            assert r.statuses == expected.statuses
            assert r.statuses["profile.age"][1] == FieldStatus.NOT_FOUND
