"""The blocking client."""

from __future__ import annotations

import threading
import time
from typing import Any, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _channel as ch
from . import _request as rq
from ._errors import RETRYABLE, DeadlineExceeded, FstoreError, InvalidArgument
from ._push import PushResult, push_request
from ._proto import fstore_pb2 as pb
from ._proto import fstore_pb2_grpc as pb_grpc
from ._result import OnlineFeatures
from ._retry import Deadline, RetryPolicy, policy_of
from ._types import FeatureService, TlsConfig

__all__ = ["Client"]

DEFAULT_ADDR = "127.0.0.1:6566"


class Client:
    """A connection to an fstore server's serving API.

    ``addr`` is ``host:port`` (or an ``http://``/``https://`` URL).
    ``api_key`` is sent as ``authorization: Bearer <key>``. ``tls``: False
    (plain text, the default for a bare address), True (TLS trusting the
    system's roots) or a :class:`TlsConfig`. ``timeout``: seconds each call
    may take in all, retries included, unless the call names its own (None:
    no deadline). ``retries``: how many times a call shed with
    RESOURCE_EXHAUSTED or refused with UNAVAILABLE is tried again, or a
    :class:`RetryPolicy`.

    Thread-safe; one client (one HTTP/2 connection) serves a whole process.
    Use it as a context manager, or call :meth:`close`.
    """

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
        if credentials is None:
            self._channel = grpc.insecure_channel(target, options=options)
        else:
            self._channel = grpc.secure_channel(target, credentials, options=options)
        self._serving = pb_grpc.FeatureServingStub(self._channel)
        self._push = pb_grpc.FeaturePushStub(self._channel)
        self._health = self._channel.unary_unary(ch.HEALTH_CHECK)
        self._lock = threading.Lock()
        self._services: Optional[rq.Services] = None
        self._closed = False

    # ------------------------------------------------------------ lifecycle

    @property
    def channel(self) -> grpc.Channel:
        """The underlying gRPC channel (for the admin API's stubs in
        ``fstore_client.proto``, say)."""
        return self._channel

    @property
    def metadata(self) -> List[Tuple[str, str]]:
        """The metadata sent with every call (the API key among it)."""
        return list(self._metadata)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Client({self.addr!r})"

    # ------------------------------------------------------------ calls

    def _invoke(self, name: str, method, request, deadline: Deadline, policy: RetryPolicy, retry_on=RETRYABLE):
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
                return method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as err:
                if err.code() in retry_on and attempt <= policy.max_retries:
                    wait = policy.backoff(attempt)
                    if deadline.allows_wait(wait, time.monotonic() - started):
                        time.sleep(wait)
                        continue
                raise ch.error(
                    err, attempts=attempt, method=name, addr=self.addr, timeout=deadline.timeout
                ) from None

    def _deadline(self, timeout: Optional[float]) -> Deadline:
        return Deadline(self.timeout if timeout is None else timeout)

    def _fetch_services(self, deadline: Deadline, policy: RetryPolicy) -> rq.Services:
        response = self._invoke(
            "ListFeatureServices", self._serving.ListFeatureServices, pb.ListFeatureServicesRequest(), deadline, policy
        )
        services = rq.services_from_proto(response)
        with self._lock:
            self._services = services
        return services

    def list_feature_services(
        self, timeout: Optional[float] = None, retries: Union[int, RetryPolicy, None] = None
    ) -> List[FeatureService]:
        """Every feature service the API key may read: features (with types),
        entity keys (with types) and request fields. Refreshes the
        description the client converts keys and request data by."""
        services = self._fetch_services(self._deadline(timeout), policy_of(retries, self.retry_policy))
        return list(services.values())

    def get_online_features(
        self,
        service: Optional[str] = None,
        features: Optional[Sequence[str]] = None,
        entities: Union[Mapping[str, Any], Any, None] = None,
        request_data: Optional[Mapping[str, Any]] = None,
        request_time: Any = None,
        timeout: Optional[float] = None,
        retries: Union[int, RetryPolicy, None] = None,
    ) -> OnlineFeatures:
        """Feature values for entity rows.

        ``service``: a feature service's name; or ``features``: references
        such as ``"user_profile.country"`` or ``"user_activity.*"``.
        ``entities``: key column -> values (a list, tuple, numpy array,
        pandas Series, or one value for one row), or a pandas DataFrame of
        key columns. ``request_data``: for a service that declares request
        fields, field -> one value per row, or one value for every row.
        ``request_time``: compute windows and ttl as of this datetime
        instead of the server's clock.

        Keys and request data are converted by the types the server declares
        (``ListFeatureServices``, fetched once and cached). Raises
        :class:`InvalidArgument` for input that does not fit them.
        """
        args = rq.make_args(service, features, entities, request_data, request_time)
        deadline = self._deadline(timeout)
        policy = policy_of(retries, self.retry_policy)

        with self._lock:
            services = self._services
        fresh = False
        if services is None or (args.service is not None and args.service not in services):
            services, fresh = self._fetch_services(deadline, policy), True
        try:
            plan = rq.build(args, services)
        except InvalidArgument:
            if fresh:
                raise
            # The cached description may be out of date: check against the server's.
            services, fresh = self._fetch_services(deadline, policy), True
            plan = rq.build(args, services)

        method = self._serving.GetOnlineFeatures
        try:
            response = self._invoke("GetOnlineFeatures", method, plan.request, deadline, policy)
        except InvalidArgument as err:
            if fresh:
                raise
            # Definitions may have changed since the cache was filled (a
            # service removed, a key's type changed): send again only if the
            # server's description now makes a different request.
            services = self._fetch_services(deadline, policy)
            # Input that the server's current description refutes is
            # raised as such (the caller's values, in Python's words).
            try:
                new_plan = rq.build(args, services)
            except InvalidArgument as local:
                raise local from err
            if new_plan.same_as(plan):
                raise
            plan = new_plan
            response = self._invoke("GetOnlineFeatures", method, plan.request, deadline, policy)
        return OnlineFeatures(response, plan.keys, plan.types)

    def push(
        self,
        source: str,
        events: Any,
        timeout: Optional[float] = None,
        retries: Union[int, RetryPolicy, None] = None,
    ) -> PushResult:
        """Write ``events`` for ``source`` as the server writes the source's
        Kafka messages: every view of the source, its windows and the
        too-late rule. ``events``: a list of dicts (one JSON object per
        event, field -> value), a dict of columns, or a pandas DataFrame or
        pyarrow Table; datetimes are sent as RFC 3339 UTC. Returns once the
        server has synced the write, with the events it left out by index
        and reason. A push shed by the server (RESOURCE_EXHAUSTED, nothing
        written) is retried; any other failure is raised, since the events
        may have been written (aggregates would count them twice).
        """
        request, _ = push_request(source, events)
        response = self._invoke(
            "PushEvents",
            self._push.PushEvents,
            request,
            self._deadline(timeout),
            policy_of(retries, self.retry_policy),
            retry_on=frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED}),
        )
        return PushResult.from_proto(response)

    def health(self, timeout: Optional[float] = None) -> bool:
        """Whether the server reports SERVING on the gRPC health service (it
        reports NOT_SERVING while it loads its sources at start)."""
        deadline = self._deadline(timeout)
        try:
            reply = self._invoke("Health/Check", self._health, b"", deadline, RetryPolicy(max_retries=0))
        except FstoreError:
            return False
        return ch.health_serving(reply)

    def wait_until_serving(self, timeout: float = 60.0, interval: float = 0.05) -> None:
        """Block until :meth:`health` is True; raises DeadlineExceeded after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise DeadlineExceeded(
                    f"the fstore server at {self.addr} did not report SERVING within {timeout:g} s",
                    from_server=False,
                )
            if self.health(timeout=max(0.01, min(left, 2.0))):
                return
            time.sleep(min(interval, max(0.0, end - time.monotonic())))
