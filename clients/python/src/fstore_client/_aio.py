"""The asyncio client: the same API as :class:`fstore_client.Client`, awaited."""

from __future__ import annotations

import asyncio
import time
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import grpc
import grpc.aio

from . import _channel as ch
from . import _request as rq
from ._errors import RETRYABLE, DeadlineExceeded, FstoreError, InvalidArgument
from ._push import PushResult, push_request
from ._proto import fstore_pb2 as pb
from ._proto import fstore_pb2_grpc as pb_grpc
from ._result import OnlineFeatures
from ._retry import Deadline, RetryPolicy, policy_of
from ._types import FeatureService, TlsConfig
from ._client import DEFAULT_ADDR

__all__ = ["AsyncClient"]


class AsyncClient:
    """:class:`fstore_client.Client` for asyncio (grpc.aio). Create it and
    use it inside one event loop; ``async with`` closes it."""

    def __init__(
        self,
        addr: str = DEFAULT_ADDR,
        *,
        api_key: Optional[str] = None,
        tls: Union[bool, TlsConfig, None] = None,
        timeout: Optional[float] = 5.0,
        retries: Union[int, RetryPolicy] = 3,
        metadata: Optional[Sequence[Tuple[str, str]]] = None,
        channel_options: Optional[Sequence[Tuple[str, Any]]] = None,
    ):
        target, credentials, options = ch.resolve(addr, tls)
        options += list(channel_options or ())
        self.addr = addr
        self.timeout = timeout
        self.retry_policy = policy_of(retries, RetryPolicy())
        self._metadata = ch.call_metadata(api_key, metadata)
        self._target, self._credentials, self._options = target, credentials, options
        self._channel: Optional[grpc.aio.Channel] = None
        self._services: Optional[rq.Services] = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    @property
    def channel(self) -> grpc.aio.Channel:
        if self._closed:
            raise RuntimeError("this AsyncClient is closed")
        if self._channel is None:
            # Made on first use, inside the running loop.
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(self._target, self._credentials, options=self._options)
            self._serving = pb_grpc.FeatureServingStub(self._channel)
            self._push = pb_grpc.FeaturePushStub(self._channel)
            self._health = self._channel.unary_unary(ch.HEALTH_CHECK)
        return self._channel

    @property
    def metadata(self) -> List[Tuple[str, str]]:
        return list(self._metadata)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._channel is not None:
                await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        self.channel
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncClient({self.addr!r})"

    # ------------------------------------------------------------ calls

    async def _invoke(
        self, name: str, method_name: str, request, deadline: Deadline, policy: RetryPolicy, retry_on=RETRYABLE
    ):
        self.channel
        if method_name == "Health":
            method = self._health
        elif method_name == "PushEvents":
            method = self._push.PushEvents
        else:
            method = getattr(self._serving, method_name)
        attempt = 0
        while True:
            attempt += 1
            remaining = deadline.remaining()
            if remaining is not None and remaining <= 0:
                raise DeadlineExceeded(
                    f"{name}: the call's timeout of {deadline.timeout:g} s passed before attempt {attempt}",
                    from_server=False,
                    attempts=attempt - 1,
                    method=name,
                )
            started = time.monotonic()
            try:
                return await method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() in retry_on and attempt <= policy.max_retries:
                    wait = policy.backoff(attempt)
                    if deadline.allows_wait(wait, time.monotonic() - started):
                        await asyncio.sleep(wait)
                        continue
                raise ch.error(
                    err, attempts=attempt, method=name, addr=self.addr, timeout=deadline.timeout
                ) from None

    def _deadline(self, timeout: Optional[float]) -> Deadline:
        return Deadline(self.timeout if timeout is None else timeout)

    async def _fetch_services(self, deadline: Deadline, policy: RetryPolicy) -> rq.Services:
        response = await self._invoke(
            "ListFeatureServices", "ListFeatureServices", pb.ListFeatureServicesRequest(), deadline, policy
        )
        self._services = rq.services_from_proto(response)
        return self._services

    async def list_feature_services(
        self, timeout: Optional[float] = None, retries: Union[int, RetryPolicy, None] = None
    ) -> List[FeatureService]:
        """See :meth:`fstore_client.Client.list_feature_services`."""
        services = await self._fetch_services(self._deadline(timeout), policy_of(retries, self.retry_policy))
        return list(services.values())

    async def get_online_features(
        self,
        service: Optional[str] = None,
        features: Optional[Sequence[str]] = None,
        entities: Union[Mapping[str, Any], Any, None] = None,
        request_data: Optional[Mapping[str, Any]] = None,
        request_time: Any = None,
        timeout: Optional[float] = None,
        retries: Union[int, RetryPolicy, None] = None,
    ) -> OnlineFeatures:
        """See :meth:`fstore_client.Client.get_online_features`."""
        args = rq.make_args(service, features, entities, request_data, request_time)
        deadline = self._deadline(timeout)
        policy = policy_of(retries, self.retry_policy)

        services = self._services
        fresh = False
        if services is None or (args.service is not None and args.service not in services):
            services, fresh = await self._fetch_services(deadline, policy), True
        try:
            plan = rq.build(args, services)
        except InvalidArgument:
            if fresh:
                raise
            services, fresh = await self._fetch_services(deadline, policy), True
            plan = rq.build(args, services)

        try:
            response = await self._invoke("GetOnlineFeatures", "GetOnlineFeatures", plan.request, deadline, policy)
        except InvalidArgument as err:
            if fresh:
                raise
            services = await self._fetch_services(deadline, policy)
            # Input that the server's current description refutes is
            # raised as such (the caller's values, in Python's words).
            try:
                new_plan = rq.build(args, services)
            except InvalidArgument as local:
                raise local from err
            if new_plan.same_as(plan):
                raise
            plan = new_plan
            response = await self._invoke("GetOnlineFeatures", "GetOnlineFeatures", plan.request, deadline, policy)
        return OnlineFeatures(response, plan.keys, plan.types)

    async def push(
        self,
        source: str,
        events: Any,
        timeout: Optional[float] = None,
        retries: Union[int, RetryPolicy, None] = None,
    ) -> PushResult:
        """As :meth:`Client.push`."""
        request, _ = push_request(source, events)
        response = await self._invoke(
            "PushEvents",
            "PushEvents",
            request,
            self._deadline(timeout),
            policy_of(retries, self.retry_policy),
            retry_on=frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED}),
        )
        return PushResult.from_proto(response)

    async def health(self, timeout: Optional[float] = None) -> bool:
        """See :meth:`fstore_client.Client.health`."""
        try:
            reply = await self._invoke(
                "Health/Check", "Health", b"", self._deadline(timeout), RetryPolicy(max_retries=0)
            )
        except FstoreError:
            return False
        return ch.health_serving(reply)

    async def wait_until_serving(self, timeout: float = 60.0, interval: float = 0.05) -> None:
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    f"the fstore server at {self.addr} did not report SERVING within {timeout:g} s",
                    from_server=False,
                )
            if await self.health(timeout=max(0.01, min(left, 2.0))):
                return
            await asyncio.sleep(min(interval, max(0.0, end - time.monotonic())))
