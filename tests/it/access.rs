//! Who may call: API keys scoped to feature services with a separate admin
//! scope, and TLS with client certificates, against the real server.

use std::time::Duration;

use fstore::proto;
use tonic::Code;

use crate::util::*;

const DEFS: &str = r#"
entity user {
  key user_id: int64
}

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
    tier: string = tier
  }
}

view secret {
  entity = user
  source = users
  features {
    score: int64 = age * 7
  }
}

service public_v1 {
  features = [profile.*]
}

service fraud_v1 {
  features = [profile.age, secret.score]
}
"#;

fn write_users(root: &std::path::Path) {
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use std::sync::Arc;
    let dir = root.join("defs/data");
    std::fs::create_dir_all(&dir).unwrap();
    write_parquet(
        &dir.join("users.parquet"),
        vec![
            ("user_id", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            ("age", Arc::new(Int64Array::from(vec![30, 40, 50]))),
            ("tier", Arc::new(StringArray::from(vec!["a", "b", "c"]))),
            ("ts", Arc::new(TimestampMicrosecondArray::from(vec![1_000_000; 3]).with_timezone("UTC"))),
        ],
    );
}

fn key_entry(name: &str, key: &str, services: &[&str], admin: bool) -> String {
    let services: Vec<String> = services.iter().map(|s| format!("{s:?}")).collect();
    format!(
        "{{ name = {name:?}, sha256 = {:?}, services = [{}], admin = {admin} }}",
        fstore::serve::auth::digest_hex(key),
        services.join(", ")
    )
}

fn lookup(service: &str) -> proto::GetOnlineFeaturesRequest {
    request_service(service, vec![("user_id", vec![int(1), int(2)])])
}

#[test]
fn keys_are_required_scoped_to_services_and_admin_is_separate() {
    let reader = "fsk_reader_0123456789";
    let ops = "fsk_ops_0123456789";
    let keys = format!(
        "[{}, {}]",
        key_entry("ranker", reader, &["public_v1"], false),
        key_entry("ops", ops, &[], true)
    );
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
    write_users(builder.root());
    let server = builder.env("FSTORE_AUTH__KEYS", &keys).start();

    // (what, key, call, expected code, text the message must contain)
    type Call = fn(&str) -> proto::GetOnlineFeaturesRequest;
    let lookups: Vec<(&str, Option<&str>, Call, Code, &str)> = vec![
        ("no key", None, |_| lookup("public_v1"), Code::Unauthenticated, "missing API key"),
        ("unknown key", Some("fsk_nope"), |_| lookup("public_v1"), Code::Unauthenticated, "unknown API key"),
        ("service in scope", Some(reader), |_| lookup("public_v1"), Code::Ok, ""),
        (
            "service out of scope",
            Some(reader),
            |_| lookup("fraud_v1"),
            Code::PermissionDenied,
            "API key `ranker` may not read feature service `fraud_v1`",
        ),
        (
            "unknown service out of scope",
            Some(reader),
            |_| lookup("nope"),
            Code::PermissionDenied,
            "may not read feature service `nope`",
        ),
        (
            "refs within a service in scope",
            Some(reader),
            |_| request_refs(&["profile.tier"], vec![("user_id", vec![int(1)])]),
            Code::Ok,
            "",
        ),
        (
            "refs outside the scope",
            Some(reader),
            |_| request_refs(&["profile.age", "secret.score"], vec![("user_id", vec![int(1)])]),
            Code::PermissionDenied,
            "may not read `secret.score`",
        ),
        (
            "admin key without services",
            Some(ops),
            |_| lookup("public_v1"),
            Code::PermissionDenied,
            "API key `ops` may not read feature service `public_v1`",
        ),
    ];
    let rt = rt();
    rt.block_on(async {
        let mut serving = server.serving().await;
        for (what, key, make, code, text) in lookups {
            let message = make("");
            let request = match key {
                Some(k) => with_key(message, k),
                None => tonic::Request::new(message),
            };
            match serving.get_online_features(request).await {
                Ok(r) => {
                    assert_eq!(code, Code::Ok, "{what}: served, but should be {code:?}");
                    assert!(!r.into_inner().features.is_empty(), "{what}");
                }
                Err(status) => {
                    assert_eq!(status.code(), code, "{what}: {status:?}");
                    assert!(status.message().contains(text), "{what}: `{}` lacks `{text}`", status.message());
                }
            }
        }
        // A bare key, without the Bearer scheme.
        let mut request = tonic::Request::new(lookup("public_v1"));
        request.metadata_mut().insert("authorization", reader.parse().unwrap());
        let status = serving.get_online_features(request).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        assert!(status.message().contains("Bearer <key>"), "{}", status.message());
        assert!(!status.message().contains(reader), "the key is never echoed");

        // The list shows only what the key may read.
        let listed = serving
            .list_feature_services(with_key(proto::ListFeatureServicesRequest {}, reader))
            .await
            .unwrap()
            .into_inner();
        let names: Vec<_> = listed.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["public_v1"]);

        // Admin calls need the admin scope.
        let mut admin = server.admin().await;
        let status = admin.get_status(with_key(proto::GetStatusRequest {}, reader)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(status.message().contains("admin = true"), "{}", status.message());
        let ingest = proto::IngestParquetRequest { source: "users".into(), ..Default::default() };
        let status = admin.ingest_parquet(with_key(ingest.clone(), reader)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        let status = admin.ingest_parquet(tonic::Request::new(ingest.clone())).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated);
        let apply = proto::ApplyDefinitionsRequest { files: vec![], dry_run: true };
        let status = admin.apply_definitions(with_key(apply.clone(), reader)).await.unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert!(admin.get_status(with_key(proto::GetStatusRequest {}, ops)).await.is_ok());
        assert!(admin.ingest_parquet(with_key(ingest, ops)).await.is_ok());
        assert!(admin.apply_definitions(with_key(apply, ops)).await.is_ok());

        // Health stays open to load balancers.
        let mut health = tonic_health::pb::health_client::HealthClient::new(server.channel().await.unwrap());
        let reply = health.check(tonic_health::pb::HealthCheckRequest { service: String::new() }).await;
        assert!(reply.is_ok(), "{reply:?}");
    });

    // The CLI sends the key from --api-key or FSTORE_API_KEY.
    let out = server.cli(&["get", "--service", "public_v1", "--key", "user_id=1"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("missing API key"), "{}", stderr(&out));
    let out = server.cli(&["get", "--service", "public_v1", "--key", "user_id=1", "--api-key", reader]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("30"), "{}", stdout(&out));
    let out = std::process::Command::new(bin())
        .args(["get", "--service", "public_v1", "--key", "user_id=2", "--addr", &server.addr()])
        .env("FSTORE_API_KEY", reader)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("40"), "{}", stdout(&out));

    let metrics = server.metrics_text();
    let refused = metrics
        .lines()
        .find(|l| l.starts_with("fstore_requests_refused_total{reason=\"unauthenticated\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .expect("the refusal counter");
    assert!(refused >= 5, "{refused}");
}

#[test]
fn a_key_entry_that_is_not_a_sha256_stops_the_server_with_the_reason() {
    let out = std::process::Command::new(bin())
        .arg("serve")
        .env("FSTORE_AUTH__KEYS", "[{ name = \"x\", sha256 = \"plaintext-key\", services = [\"*\"] }]")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("sha256 must be 64 hex digits"), "{}", stderr(&out));
}

struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
    stranger: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf = |names: Vec<String>, issuer: &Issuer<'_, KeyPair>| {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(names).unwrap().signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let server = leaf(vec!["localhost".into(), "127.0.0.1".into()], &issuer);
    let client = leaf(vec!["model-server".into()], &issuer);
    // Signed by another CA: not to be trusted.
    let other_key = KeyPair::generate().unwrap();
    let mut other_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    other_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let other = Issuer::new(other_params, other_key);
    let stranger = leaf(vec!["stranger".into()], &other);
    Pki { ca: ca_cert.pem(), server, client, stranger }
}

#[test]
fn tls_with_required_client_certificates() {
    let pki = pki();
    let builder = ServerBuilder::new(&[("defs.fdl", DEFS)]);
    write_users(builder.root());
    let files = builder.root().join("tls");
    std::fs::create_dir_all(&files).unwrap();
    let write = |name: &str, text: &str| {
        let path = files.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (ca, server_cert, server_key) =
        (write("ca.pem", &pki.ca), write("server.pem", &pki.server.0), write("server.key", &pki.server.1));
    let (client_cert, client_key) = (write("client.pem", &pki.client.0), write("client.key", &pki.client.1));
    let server = builder
        .env("FSTORE_TLS__CERT", &server_cert)
        .env("FSTORE_TLS__KEY", &server_key)
        .env("FSTORE_TLS__CLIENT_CA", &ca)
        .tls(ClientTls { ca_pem: pki.ca.clone(), identity: Some(pki.client.clone()) })
        .start();

    let rt = rt();
    rt.block_on(async {
        // With the client certificate: served.
        let mut serving = server.serving().await;
        let r = serving.get_online_features(lookup("public_v1")).await.unwrap().into_inner();
        assert_eq!(column(&r, "profile.age").values[1], int(40));

        // Without one, with a stranger's, or in plain text: no call succeeds.
        let port = server.port;
        let attempt = |identity: Option<(String, String)>, tls: bool| {
            let ca = pki.ca.clone();
            async move {
                let url = if tls {
                    format!("https://localhost:{port}")
                } else {
                    format!("http://127.0.0.1:{port}")
                };
                let mut endpoint = tonic::transport::Channel::from_shared(url).unwrap();
                if tls {
                    let mut config = tonic::transport::ClientTlsConfig::new()
                        .ca_certificate(tonic::transport::Certificate::from_pem(ca));
                    if let Some((cert, key)) = identity {
                        config = config.identity(tonic::transport::Identity::from_pem(cert, key));
                    }
                    endpoint = endpoint.tls_config(config).unwrap();
                }
                let endpoint = endpoint.timeout(Duration::from_secs(5));
                match endpoint.connect().await {
                    Err(_) => false,
                    Ok(channel) => {
                        let mut client = proto::feature_serving_client::FeatureServingClient::new(channel);
                        client.get_online_features(lookup("public_v1")).await.is_ok()
                    }
                }
            }
        };
        assert!(!attempt(None, true).await, "no client certificate");
        assert!(!attempt(Some(pki.stranger.clone()), true).await, "a certificate from another CA");
        assert!(!attempt(None, false).await, "plain text");
        assert!(attempt(Some(pki.client.clone()), true).await, "the control: a good certificate");
    });

    // The CLI with --tls-ca and a client certificate.
    let out = std::process::Command::new(bin())
        .args(["get", "--service", "public_v1", "--key", "user_id=3", "--addr"])
        .arg(format!("localhost:{}", server.port))
        .args(["--tls-ca", &ca, "--tls-cert", &client_cert, "--tls-key", &client_key])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("50"), "{}", stdout(&out));
}
