"""Errors: bad requests (refused by the client or by the server), API keys
and TLS, against real servers."""

import subprocess
from pathlib import Path

import grpc
import pytest

import fstore_client as fc
from conftest import key_digest
from fstore_client import Client

READER_KEY = "fsk_reader_0123456789abcdef"
OPS_KEY = "fsk_ops_0123456789abcdef"


def test_unknown_service_is_the_servers_invalid_argument(client):
    with pytest.raises(fc.InvalidArgument) as e:
        client.get_online_features("nope", entities={"user_id": [1]})
    assert e.value.from_server
    assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "unknown feature service `nope`" in e.value.message
    assert "fresh_v1, pair, ranker, shed" in e.value.message
    assert isinstance(e.value, fc.FstoreError) and isinstance(e.value, ValueError)


def test_unknown_feature_ref(client):
    with pytest.raises(fc.InvalidArgument) as e:
        client.get_online_features(features=["profile.agee"], entities={"user_id": [1]})
    assert e.value.from_server
    assert "profile.agee" in e.value.message


def test_wrong_key_types_are_refused_before_sending(client):
    cases = [
        ({"user_id": [1, "2"]}, "entity key `user_id` value 1 is a str ('2'); `user_id` is int64"),
        ({"user_id": [1.5]}, "entity key `user_id` value 0 is a float (1.5); `user_id` is int64"),
        ({"user_id": [True]}, "entity key `user_id` value 0 is a bool (True); `user_id` is int64"),
        ({"user_id": [1, None]}, "entity key `user_id` value 1 is None; entity keys cannot be null"),
        ({"user_id": [2**63]}, "outside int64's range"),
    ]
    for entities, message in cases:
        with pytest.raises(fc.InvalidArgument) as e:
            client.get_online_features("ranker", entities=entities)
        assert message in str(e.value), entities
        assert not e.value.from_server
    with pytest.raises(fc.InvalidArgument, match=r"entity key `item_id` value 0 is an int \(7\); `item_id` is string"):
        client.get_online_features("pair", entities={"user_id": [1], "item_id": [7]})


def test_key_columns_missing_unexpected_or_of_different_lengths(client):
    with pytest.raises(fc.InvalidArgument, match=r"missing entity key column `item_id`; feature service `pair` needs"):
        client.get_online_features("pair", entities={"user_id": [1]})
    with pytest.raises(fc.InvalidArgument, match="unexpected entity key column `item_id`"):
        client.get_online_features("ranker", entities={"user_id": [1], "item_id": ["x"]})
    with pytest.raises(fc.InvalidArgument, match="`user_id` has 2 values, `item_id` has 1"):
        client.get_online_features("pair", entities={"user_id": [1, 2], "item_id": ["x"]})


def test_bad_arguments(client):
    with pytest.raises(fc.InvalidArgument, match="either a feature service"):
        client.get_online_features(entities={"user_id": [1]})
    with pytest.raises(fc.InvalidArgument, match="either a feature service"):
        client.get_online_features("ranker", features=["profile.age"], entities={"user_id": [1]})
    with pytest.raises(fc.InvalidArgument, match="request_time must be a datetime"):
        client.get_online_features("ranker", entities={"user_id": [1]}, request_time=12345)
    with pytest.raises(fc.InvalidArgument, match="declares no request fields"):
        client.get_online_features("ranker", entities={"user_id": [1]}, request_data={"x": 1.0})
    with pytest.raises(fc.InvalidArgument, match="request_data goes with a feature service"):
        client.get_online_features(features=["profile.age"], entities={"user_id": [1]}, request_data={"x": 1})


def test_the_server_checks_key_types_itself(server):
    """What the client refuses, the server refuses too, in the same words
    (here with the client's checks bypassed through the raw stubs)."""
    from fstore_client import proto

    pb = proto.fstore_pb2
    with Client(server.addr) as client:
        stub = proto.fstore_pb2_grpc.FeatureServingStub(client.channel)
        request = pb.GetOnlineFeaturesRequest(feature_service="ranker")
        request.entities["user_id"].values.append(pb.Value(string_value="1"))
        with pytest.raises(grpc.RpcError) as e:
            stub.GetOnlineFeatures(request)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert e.value.details() == "entity key `user_id` value 0 is a string; `user_id` is int64"


# ---------------------------------------------------------------- API keys


def auth_config() -> str:
    return f"""
[services.shed]
max_in_flight = 0

[[auth.keys]]
name = "ranker"
sha256 = "{key_digest(READER_KEY)}"
services = ["ranker"]

[[auth.keys]]
name = "ops"
sha256 = "{key_digest(OPS_KEY)}"
admin = true
"""


@pytest.fixture
def auth_server(make_server):
    return make_server(config=auth_config())


def test_api_keys(auth_server):
    addr = auth_server.addr
    with Client(addr) as c:
        with pytest.raises(fc.Unauthenticated) as e:
            c.get_online_features("ranker", entities={"user_id": [1]})
        assert "missing API key" in e.value.message
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
        with pytest.raises(fc.Unauthenticated):
            c.list_feature_services()
    with Client(addr, api_key="fsk_wrong") as c:
        with pytest.raises(fc.Unauthenticated, match="unknown API key"):
            c.get_online_features("ranker", entities={"user_id": [1]})
    with Client(addr, api_key=READER_KEY) as c:
        assert [s.name for s in c.list_feature_services()] == ["ranker"]
        assert c.get_online_features("ranker", entities={"user_id": [1]})["profile.age"] == [30]
        # A service outside the key's scope.
        with pytest.raises(fc.PermissionDenied) as e:
            c.get_online_features("pair", entities={"user_id": [1], "item_id": ["sku-1"]})
        assert "API key `ranker` may not read feature service `pair`" in e.value.message
        with pytest.raises(fc.PermissionDenied):
            c.get_online_features(features=["item_info.price"], entities={"item_id": ["sku-1"]})
    # An admin key reads no features.
    with Client(addr, api_key=OPS_KEY) as c:
        with pytest.raises(fc.PermissionDenied, match="may not read feature service `ranker`"):
            c.get_online_features("ranker", entities={"user_id": [1]})
    # A key with a space or a non-ASCII character is refused at once.
    with pytest.raises(ValueError, match="printable ASCII"):
        Client(addr, api_key="two words")


# ---------------------------------------------------------------- TLS


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_pki(d: Path):
    """A CA, a server certificate for localhost and 127.0.0.1, and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
             "-days", "2", "-subj", "/CN=fstore test CA", cwd=d)
    (d / "server.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for who, cn in (("server", "localhost"), ("client", "model-server")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{who}.key", "-out", f"{who}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{who}.pem", "-days", "2", "-extfile", f"{who}.ext", cwd=d)
    # rustls reads PKCS#8 keys.
    for who in ("server", "client"):
        _openssl("pkcs8", "-topk8", "-nocrypt", "-in", f"{who}.key", "-out", f"{who}.p8.key", cwd=d)


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode != 0,
                    reason="openssl makes the test certificates")
def test_tls_with_client_certificates(make_server, tmp_path):
    make_pki(tmp_path)
    ca = (tmp_path / "ca.pem").read_bytes()
    server = make_server(
        env={
            "FSTORE_TLS__CERT": str(tmp_path / "server.pem"),
            "FSTORE_TLS__KEY": str(tmp_path / "server.p8.key"),
            "FSTORE_TLS__CLIENT_CA": str(tmp_path / "ca.pem"),
        },
        tls_ca=ca,
        tls_identity=((tmp_path / "client.pem").read_bytes(), (tmp_path / "client.p8.key").read_bytes()),
    )
    tls = fc.TlsConfig.from_files(ca=tmp_path / "ca.pem", cert=tmp_path / "client.pem", key=tmp_path / "client.p8.key")
    with Client(server.addr, tls=tls) as c:
        assert c.get_online_features("ranker", entities={"user_id": [3]})["profile.age"] == [50]
    with Client(f"https://{server.addr}", tls=tls) as c:
        assert c.health()
    # Without a client certificate, or in plain text: nothing is served.
    for kwargs in ({"tls": fc.TlsConfig(ca_pem=ca)}, {"tls": False}):
        with Client(server.addr, timeout=3, retries=0, **kwargs) as c:
            with pytest.raises(fc.FstoreError) as e:
                c.get_online_features("ranker", entities={"user_id": [3]})
            assert isinstance(e.value, (fc.Unavailable, fc.Internal, fc.Unauthenticated)), repr(e.value)
    with pytest.raises(ValueError, match="does not look like PEM"):
        fc.TlsConfig(ca_pem="not a certificate")
    with pytest.raises(ValueError, match="cert_pem and key_pem go together"):
        fc.TlsConfig(ca_pem=ca, cert_pem=(tmp_path / "client.pem").read_bytes())
