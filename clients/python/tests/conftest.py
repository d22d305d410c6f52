"""A real `fstore serve` for the tests: a child process on free loopback
ports, with its own definitions and data directories and Parquet data
written here with pyarrow, loaded by the server's normal start-up path (each
parquet source's `path`). Killed at the end; when a test fails, the logs
of the servers then running are added to its report.

The binary is $FSTORE_TEST_BIN, or ~/.cache/fstore-target/debug/fstore.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional

# gRPC's C core logs refused TLS handshakes, which some tests make on purpose.
os.environ.setdefault("GRPC_VERBOSITY", "NONE")

import grpc  # noqa: E402
import pytest  # noqa: E402

DEFAULT_BIN = "~/.cache/fstore-target/debug/fstore"


def fstore_bin() -> str:
    path = os.path.expanduser(os.environ.get("FSTORE_TEST_BIN") or DEFAULT_BIN)
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"no fstore binary at {path}: build it (cargo build) or point FSTORE_TEST_BIN at one",
            pytrace=False,
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def key_digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def fstore_env() -> Dict[str, str]:
    """The environment for an fstore process: without the caller's FSTORE_*
    variables, which the server would read as its configuration."""
    return {k: v for k, v in os.environ.items() if not k.startswith("FSTORE_")}


def check(defs_dir: Path) -> subprocess.CompletedProcess:
    """`fstore check DIR`."""
    return subprocess.run(
        [fstore_bin(), "check", str(defs_dir)], capture_output=True, text=True, env=fstore_env()
    )


class FstoreServer:
    """One `fstore serve` process. `root` holds defs/, data/, fstore.toml and server.log."""

    def __init__(
        self,
        defs: Dict[str, str],
        write_data: Optional[Callable[[Path], None]] = None,
        config: str = "",
        env: Optional[Dict[str, str]] = None,
        tls_ca: Optional[bytes] = None,
        tls_identity: Optional[tuple] = None,
    ):
        self.bin = fstore_bin()
        self.root = Path(tempfile.mkdtemp(prefix="fstore-pytest-"))
        self.defs = self.root / "defs"
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.defs.mkdir()
        for name, text in defs.items():
            (self.defs / name).write_text(text)
        if write_data is not None:
            write_data(self.defs / "data")
        # fstore.toml in the working directory is the server's config file.
        (self.root / "fstore.toml").write_text(config)
        self.env = dict(env or {})
        self.tls_ca = tls_ca
        self.tls_identity = tls_identity  # (cert PEM, key PEM) when the server wants client certificates
        self.proc: Optional[subprocess.Popen] = None
        self.port = self.metrics_port = self.http_port = 0

    # The address a client of this package takes.
    @property
    def addr(self) -> str:
        host = "localhost" if self.tls_ca else "127.0.0.1"
        return f"{host}:{self.port}"

    def start(self, timeout: float = 60.0, same_ports: bool = False) -> "FstoreServer":
        """Start (or, after stop(), restart) the process; on new free ports
        unless `same_ports`."""
        if not same_ports:
            self.port, self.metrics_port, self.http_port = free_port(), free_port(), free_port()
        env = fstore_env()
        env.update(
            {
                "FSTORE_SERVER__LISTEN": f"127.0.0.1:{self.port}",
                "FSTORE_SERVER__METRICS_LISTEN": f"127.0.0.1:{self.metrics_port}",
                # Feast's HTTP API (tests/test_feast.py).
                "FSTORE_SERVER__HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
                "FSTORE_SERVER__DEFINITIONS_DIR": str(self.defs),
                "FSTORE_SERVER__DATA_DIR": str(self.data),
                # A busy test machine must not turn slow lookups into RESOURCE_EXHAUSTED.
                "FSTORE_SERVER__MAX_QUEUE_MS": "5000",
                "FSTORE_STORE__BLOCK_CACHE_MB": "64",
                "RUST_LOG": "info",
            }
        )
        env.update(self.env)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [self.bin, "serve"],
                cwd=self.root,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if self not in LIVE:
            LIVE.append(self)
        self._wait_serving(timeout)
        return self

    def _channel(self) -> grpc.Channel:
        target = f"127.0.0.1:{self.port}"
        if self.tls_ca:
            cert, key = self.tls_identity or (None, None)
            creds = grpc.ssl_channel_credentials(
                root_certificates=self.tls_ca, private_key=key, certificate_chain=cert
            )
            return grpc.secure_channel(
                target, creds, options=[("grpc.ssl_target_name_override", "localhost")]
            )
        return grpc.insecure_channel(target)

    def _wait_serving(self, timeout: float) -> None:
        """Until the health service says SERVING (the initial loads are done)."""
        end = time.monotonic() + timeout
        with self._channel() as channel:
            check = channel.unary_unary("/grpc.health.v1.Health/Check")
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise RuntimeError(f"fstore serve exited with {code} before it was ready; log:\n{self.log_text()}")
                try:
                    if check(b"", timeout=1.0) == b"\x08\x01":
                        return
                except grpc.RpcError:
                    pass
                if time.monotonic() > end:
                    raise RuntimeError(f"fstore serve was not SERVING within {timeout} s; log:\n{self.log_text()}")
                time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        if self in LIVE:
            LIVE.remove(self)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def metrics_text(self) -> str:
        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=5) as s:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            chunks = []
            while True:
                b = s.recv(65536)
                if not b:
                    break
                chunks.append(b)
        return b"".join(chunks).decode(errors="replace")

    def requests_total(self, service: str, rpc: str = "GetOnlineFeatures") -> Dict[str, int]:
        """fstore_requests_total for one service: gRPC code -> count."""
        out: Dict[str, int] = {}
        prefix = f'fstore_requests_total{{rpc="{rpc}",service="{service}",code="'
        for line in self.metrics_text().splitlines():
            if line.startswith(prefix):
                code = line[len(prefix) :].split('"', 1)[0]
                out[code] = int(float(line.rsplit(" ", 1)[1]))
        return out



# ------------------------------------------------------------- failure logs

#: Servers started and not yet cleaned up.
LIVE: list = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for server in LIVE:
            report.sections.append((f"fstore serve log ({server.log})", server.log_text()[-4000:]))


# ------------------------------------------------------------- the test data

from datetime import datetime, timedelta, timezone  # noqa: E402

UTC = timezone.utc
#: Event time of the users' rows (user 3's is an hour later).
T0 = datetime(2026, 11, 20, tzinfo=UTC)

DEFS = {
    "entities.fdl": """
entity user {
  key user_id: int64
}

entity item {
  key item_id: string
}
""",
    "views.fdl": """
source users {
  type = parquet
  path = "data/users.parquet"
  timestamp = ts
}

view profile {
  entity = user
  source = users
  features {
    age: int64 = age
    score: float64 = score
    name: string = name
    premium: bool = premium
    embedding: array<float32> = embedding
    signup: timestamp = signup
  }
}

# The same rows with a ttl: OUTSIDE_MAX_AGE two days after their event time.
view fresh {
  entity = user
  source = users
  ttl = 2d
  features {
    level: int64 = level
  }
}

source items {
  type = parquet
  path = "data/items.parquet"
  timestamp = updated_at
}

view item_info {
  entity = item
  source = items
  features {
    price: float64 = price
    tags: array<string> = tags
    counts: array<int64> = counts
  }
}
""",
    "services.fdl": """
service ranker {
  features = [profile.*]
}

# Two entities: a request carries user_id and item_id.
service pair {
  features = [profile.age, item_info.*]
}

service fresh_v1 {
  features = [fresh.level, profile.age]
}

# services.shed.max_in_flight = 0 in the test config: always shed.
service shed {
  features = [profile.age]
}
""",
}

#: Sheds every lookup of `shed` with RESOURCE_EXHAUSTED.
CONFIG = """
[services.shed]
max_in_flight = 0
"""

USERS = {
    "user_id": [1, 2, 3],
    "age": [30, None, 50],
    "score": [0.5, None, -1.25],
    "name": ["ada", None, "Émile ☃"],
    "premium": [True, None, False],
    "embedding": [[0.25, -0.5, 1.0], None, []],
    "signup": [T0 - timedelta(days=100), None, T0 - timedelta(days=1, microseconds=-7)],
    "level": [1, 2, 3],
    "ts": [T0, T0, T0 + timedelta(hours=1)],
}

ITEMS = {
    "item_id": ["sku-1", "sku-2"],
    "price": [9.99, None],
    "tags": [["red", "new"], None],
    "counts": [[1, 2, 3], []],
    "updated_at": [T0, T0],
}


def write_users(data_dir: Path, rows=USERS, name="users.parquet") -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ts = pa.timestamp("us", tz="UTC")
    schema = pa.schema(
        [
            ("user_id", pa.int64()),
            ("age", pa.int64()),
            ("score", pa.float64()),
            ("name", pa.string()),
            ("premium", pa.bool_()),
            ("embedding", pa.list_(pa.float32())),
            ("signup", ts),
            ("level", pa.int64()),
            ("ts", ts),
        ]
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / name
    pq.write_table(pa.table(rows, schema=schema), path)
    return path


def write_items(data_dir: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("item_id", pa.string()),
            ("price", pa.float64()),
            ("tags", pa.list_(pa.string())),
            ("counts", pa.list_(pa.int64())),
            ("updated_at", pa.timestamp("us", tz="UTC")),
        ]
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "items.parquet"
    pq.write_table(pa.table(ITEMS, schema=schema), path)
    return path


def write_data(data_dir: Path) -> None:
    write_users(data_dir)
    write_items(data_dir)


@pytest.fixture
def make_server():
    """Start servers with the given definitions, data and config; all are
    killed when the test ends."""
    started = []

    def make(defs=None, data=write_data, config=CONFIG, env=None, tls_ca=None, tls_identity=None) -> FstoreServer:
        server = FstoreServer(DEFS if defs is None else defs, data, config, env, tls_ca, tls_identity)
        started.append(server)
        return server.start()

    yield make
    for server in started:
        server.cleanup()


@pytest.fixture(scope="session")
def server():
    """The shared server of the read-only tests: DEFS, their data, CONFIG."""
    s = FstoreServer(DEFS, write_data, CONFIG)
    try:
        s.start()
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def client(server):
    from fstore_client import Client

    with Client(server.addr, timeout=10) as c:
        yield c
