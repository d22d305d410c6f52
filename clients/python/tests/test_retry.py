"""Retries with backoff on RESOURCE_EXHAUSTED and UNAVAILABLE, within the
deadline: against the real server's shedding, a closed port, and a small
gRPC server on loopback (real HTTP/2, the package's own stubs) that fails a
set number of times before it answers."""

import asyncio
import threading
import time
from concurrent import futures

import grpc
import pytest

import fstore_client as fc
from conftest import free_port
from fstore_client import AsyncClient, Client, RetryPolicy
from fstore_client import proto

pb = proto.fstore_pb2
FAST = RetryPolicy(max_retries=3, initial_backoff=0.02, max_backoff=0.1)


def test_the_real_servers_shedding_is_retried_then_raised(server):
    before = sum(server.requests_total("shed").values())
    with Client(server.addr, retries=FAST) as c:
        start = time.monotonic()
        with pytest.raises(fc.ResourceExhausted) as e:
            c.get_online_features("shed", entities={"user_id": [1]})
        took = time.monotonic() - start
    err = e.value
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.attempts == 4
    assert "services.shed.max_in_flight" in err.message
    assert "after 4 attempts" in str(err)
    # The server saw every attempt...
    assert sum(server.requests_total("shed").values()) - before == 4
    # ...spaced by at least half of each backoff (0.02, 0.04, 0.08 s).
    assert took >= (0.02 + 0.04 + 0.08) / 2

    before = sum(server.requests_total("shed").values())
    with Client(server.addr) as c:
        with pytest.raises(fc.ResourceExhausted) as e:
            c.get_online_features("shed", entities={"user_id": [1]}, retries=0)
    assert e.value.attempts == 1
    assert sum(server.requests_total("shed").values()) - before == 1


def test_the_deadline_bounds_the_retries(server):
    slow = RetryPolicy(max_retries=50, initial_backoff=0.3, max_backoff=0.3)
    with Client(server.addr, retries=slow) as c:
        start = time.monotonic()
        with pytest.raises(fc.ResourceExhausted) as e:
            c.get_online_features("shed", entities={"user_id": [1]}, timeout=1.0)
        took = time.monotonic() - start
    # Waits of 0.15 to 0.3 s: at most 7 attempts fit in a second, at least 4.
    assert 4 <= e.value.attempts <= 7, e.value.attempts
    assert took < 1.0


def test_an_unreachable_server_is_unavailable_after_the_retries():
    addr = f"127.0.0.1:{free_port()}"
    with Client(addr, retries=FAST, timeout=5) as c:
        start = time.monotonic()
        with pytest.raises(fc.Unavailable) as e:
            c.get_online_features("ranker", entities={"user_id": [1]})
        took = time.monotonic() - start
    assert e.value.attempts == 4
    assert addr in e.value.message
    assert took < 4
    with Client(addr) as c:
        assert c.health(timeout=0.5) is False


def test_retries_ride_out_a_server_restart(make_server):
    server = make_server()
    policy = RetryPolicy(max_retries=10, initial_backoff=0.05, max_backoff=0.4)
    with Client(server.addr, retries=policy, timeout=15) as c:
        assert c.get_online_features("ranker", entities={"user_id": [1]})["profile.age"] == [30]
        server.stop()
        restart = threading.Timer(0.3, lambda: server.start(same_ports=True))
        restart.start()
        try:
            start = time.monotonic()
            r = c.get_online_features("ranker", entities={"user_id": [1]})
            took = time.monotonic() - start
        finally:
            restart.join()
    assert r["profile.age"] == [30]
    # It waited for the restart rather than failing at once.
    assert took >= 0.25


# ---------------------------------------------------------------- a scripted server


class Scripted(proto.fstore_pb2_grpc.FeatureServingServicer):
    """Fails the first lookups with the given codes, then answers; records
    when each lookup arrived."""

    def __init__(self, failures=(), delay=0.0):
        self.failures = list(failures)
        self.delay = delay
        self.calls = []
        self.lock = threading.Lock()

    def ListFeatureServices(self, request, context):
        return pb.ListFeatureServicesResponse(
            services=[
                pb.FeatureServiceInfo(
                    name="s",
                    features=[pb.FeatureInfo(name="v.x", type="int64")],
                    entity_keys=["user_id"],
                    key_types=[pb.FeatureInfo(name="user_id", type="int64")],
                )
            ]
        )

    def GetOnlineFeatures(self, request, context):
        with self.lock:
            self.calls.append((time.monotonic(), dict(context.invocation_metadata())))
            failure = self.failures.pop(0) if self.failures else None
        if failure is not None:
            context.abort(failure, f"scripted {failure.name}")
        if self.delay:
            time.sleep(self.delay)
        keys = [v.int64_value for v in request.entities["user_id"].values]
        return pb.GetOnlineFeaturesResponse(
            features=[
                pb.FeatureColumn(
                    name="v.x",
                    values=[pb.Value(int64_value=k * 10) for k in keys],
                    statuses=[pb.PRESENT] * len(keys),
                    event_timestamps_micros=[1_000_000] * len(keys),
                )
            ]
        )


@pytest.fixture
def scripted():
    servers = []

    def start(servicer):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        proto.fstore_pb2_grpc.add_FeatureServingServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return f"127.0.0.1:{port}"

    yield start
    for s in servers:
        s.stop(None)


def test_resource_exhausted_twice_then_served(scripted):
    servicer = Scripted([grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.RESOURCE_EXHAUSTED])
    addr = scripted(servicer)
    policy = RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=1.0)
    with Client(addr, retries=policy, api_key="k1") as c:
        r = c.get_online_features("s", entities={"user_id": [1, 2]})
    assert r["v.x"] == [10, 20]
    assert len(servicer.calls) == 3
    (t0, meta), (t1, _), (t2, _) = servicer.calls
    # Exponential: the second wait is drawn from twice the first's range.
    assert t1 - t0 >= 0.025 and t2 - t1 >= 0.05
    # Every attempt carries the key.
    assert all(m.get("authorization") == "Bearer k1" for _, m in servicer.calls)


def test_unavailable_then_served_and_other_codes_not_retried(scripted):
    servicer = Scripted([grpc.StatusCode.UNAVAILABLE])
    with Client(scripted(servicer), retries=FAST) as c:
        assert c.get_online_features("s", entities={"user_id": [3]})["v.x"] == [30]
    assert len(servicer.calls) == 2

    for code, cls in [
        (grpc.StatusCode.PERMISSION_DENIED, fc.PermissionDenied),
        (grpc.StatusCode.INTERNAL, fc.Internal),
        (grpc.StatusCode.INVALID_ARGUMENT, fc.InvalidArgument),
        (grpc.StatusCode.FAILED_PRECONDITION, fc.FailedPrecondition),
    ]:
        servicer = Scripted([code])
        with Client(scripted(servicer), retries=FAST) as c:
            with pytest.raises(cls) as e:
                c.get_online_features("s", entities={"user_id": [3]})
        assert len(servicer.calls) == 1, code
        assert e.value.message == f"scripted {code.name}"
        assert e.value.attempts == 1


def test_more_failures_than_retries(scripted):
    servicer = Scripted([grpc.StatusCode.RESOURCE_EXHAUSTED] * 3)
    with Client(scripted(servicer), retries=RetryPolicy(max_retries=2, initial_backoff=0.01)) as c:
        with pytest.raises(fc.ResourceExhausted) as e:
            c.get_online_features("s", entities={"user_id": [3]})
    assert e.value.attempts == 3 and len(servicer.calls) == 3


def test_per_call_deadline(scripted):
    servicer = Scripted(delay=1.0)
    with Client(scripted(servicer), timeout=10) as c:
        start = time.monotonic()
        with pytest.raises(fc.DeadlineExceeded) as e:
            c.get_online_features("s", entities={"user_id": [3]}, timeout=0.3)
        assert time.monotonic() - start < 0.9
        assert "within the call's timeout of 0.3 s" in e.value.message
        assert e.value.code == grpc.StatusCode.DEADLINE_EXCEEDED


def test_async_client_retries_too(scripted):
    servicer = Scripted([grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE])
    addr = scripted(servicer)

    async def run():
        async with AsyncClient(addr, retries=FAST) as c:
            r = await c.get_online_features("s", entities={"user_id": [4]})
            return r["v.x"]

    assert asyncio.run(run()) == [40]
    assert len(servicer.calls) == 3


def test_backoff_grows_exponentially_with_jitter_and_a_ceiling():
    import random

    p = RetryPolicy(max_retries=5, initial_backoff=0.1, max_backoff=0.5, multiplier=2)
    rng = random.Random(7)
    for retry, ceiling in [(1, 0.1), (2, 0.2), (3, 0.4), (4, 0.5), (5, 0.5)]:
        waits = [p.backoff(retry, rng) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), retry
        assert max(waits) - min(waits) > ceiling / 4  # jittered
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=-1)
