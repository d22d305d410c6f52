"""The client's cached description of the services follows the server's
definitions when they change (ApplyDefinitions on a running server)."""

import pytest

import fstore_client as fc
from conftest import DEFS
from fstore_client import Client, proto

pb = proto.fstore_pb2


def apply(client, defs):
    admin = proto.fstore_pb2_grpc.FeatureAdminStub(client.channel)
    files = [pb.DefinitionFile(name=name, text=text) for name, text in defs.items()]
    report = admin.ApplyDefinitions(pb.ApplyDefinitionsRequest(files=files))
    assert report.applied, report
    return report


def test_a_new_service_a_removed_one_and_a_changed_key_type(make_server):
    server = make_server()
    with Client(server.addr) as client:
        assert client.get_online_features("ranker", entities={"user_id": [1]})["profile.age"] == [30]

        # A service added after the client cached the list is found.
        added = dict(DEFS)
        added["more.fdl"] = "service names_v1 {\n  features = [profile.name]\n}\n"
        apply(client, added)
        r = client.get_online_features("names_v1", entities={"user_id": [1, 999]})
        assert r["profile.name"] == ["ada", None]
        # Typed by the service's description, not guessed from the values.
        r = client.get_online_features("names_v1", entities={"user_id": [999]})
        assert r.types["profile.name"] == "string"
        assert str(r.to_arrow().schema.field("profile.name").type) == "string"

        # A service removed: the server's word, once the client has checked its list.
        apply(client, DEFS)
        with pytest.raises(fc.InvalidArgument, match="unknown feature service `names_v1`"):
            client.get_online_features("names_v1", entities={"user_id": [1]})

        # A key whose type changed: the cached int64 is refreshed, and the
        # client now refuses the int it would have sent.
        changed = dict(DEFS)
        changed["entities.fdl"] = DEFS["entities.fdl"].replace("key user_id: int64", "key user_id: string")
        # (the parquet column stays int64; the views are only asked for keys here)
        report = apply(client, changed)
        assert report.services or report.views
        with pytest.raises(fc.InvalidArgument) as e:
            client.get_online_features("ranker", entities={"user_id": [1]})
        assert "`user_id` is string" in e.value.message and not e.value.from_server
        r = client.get_online_features("ranker", entities={"user_id": ["1"]})
        assert r.statuses["profile.age"] == [fc.FieldStatus.NOT_FOUND]
