//! fstore's public gRPC contract ([`proto`], generated from
//! `proto/fstore/v1/fstore.proto`) and a typed client for it.
//!
//! A model server in Rust depends on this crate alone: it builds no store,
//! no RocksDB and no Kafka client.
//!
//! ```no_run
//! # async fn example() -> Result<(), fstore_client::Error> {
//! use fstore_client::{proto, Client, ClientOptions};
//!
//! let options = ClientOptions { api_key: Some("fsk_...".into()), ..ClientOptions::default() };
//! let mut client = Client::connect("127.0.0.1:6566", &options).await?;
//! let request = proto::GetOnlineFeaturesRequest {
//!     selector: Some(proto::get_online_features_request::Selector::FeatureService("ranker_v1".into())),
//!     entities: [("user_id".to_string(), proto::Values { values: vec![proto::Value {
//!         kind: Some(proto::value::Kind::Int64Value(42)),
//!     }] })]
//!     .into(),
//!     ..Default::default()
//! };
//! let response = client.serving.get_online_features(request).await?;
//! # let _ = response;
//! # Ok(())
//! # }
//! ```
//!
//! The `fstore` command line's client commands (`get`, `ingest`, `apply`,
//! `bench`, ...) reach a server through the same [`ClientOptions`].

#![forbid(unsafe_code)]

use std::path::PathBuf;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::proto::{feature_admin_client::FeatureAdminClient, feature_serving_client::FeatureServingClient};

/// The public gRPC contract, generated from `proto/fstore/v1/fstore.proto`
/// (client and server code).
pub mod proto {
    #![allow(clippy::all)]
    tonic::include_proto!("fstore.v1");

    /// Encoded descriptors of the contract, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/fstore_descriptor.bin"));
}

/// Feast's online serving API (`proto/feast/`), which an fstore server also
/// answers: Feast's `ServingService` and its value types.
pub mod feast {
    #![allow(clippy::all)]

    /// `feast.types`: Feast's values.
    pub mod types {
        tonic::include_proto!("feast.types");
    }

    /// `feast.serving`: `ServingService` (client and server code).
    pub mod serving {
        tonic::include_proto!("feast.serving");
    }
}

/// Why a client could not be set up or connect.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("bad server address {url}: {source}")]
    Address { url: String, source: tonic::transport::Error },
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuring TLS: {0}")]
    Tls(tonic::transport::Error),
    #[error("connecting to the fstore server at {url} (is `fstore serve` running?): {source}")]
    Connect { url: String, source: tonic::transport::Error },
    #[error("the API key must be printable ASCII")]
    ApiKey,
    #[error(transparent)]
    Status(#[from] tonic::Status),
}

/// How to reach a server: API key and TLS.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ClientOptions {
    /// API key sent as `authorization: Bearer <key>`.
    #[cfg_attr(feature = "clap", arg(long, global = true, env = "FSTORE_API_KEY", hide_env_values = true))]
    pub api_key: Option<String>,
    /// Connect with TLS, trusting this CA certificate (PEM).
    #[cfg_attr(feature = "clap", arg(long, global = true))]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require one.
    #[cfg_attr(feature = "clap", arg(long, global = true, requires = "tls_key"))]
    pub tls_cert: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[cfg_attr(feature = "clap", arg(long, global = true, requires = "tls_cert"))]
    pub tls_key: Option<PathBuf>,
}

/// Both services of one server, over one connection, with the options' API key.
#[derive(Clone)]
pub struct Client {
    pub serving: FeatureServingClient<Authed>,
    pub admin: FeatureAdminClient<Authed>,
}

impl Client {
    /// Connect to `addr` (`host:port` or a URL).
    pub async fn connect(addr: &str, options: &ClientOptions) -> Result<Client, Error> {
        let channel = options.connect(addr).await?;
        Ok(Client { serving: options.serving(channel.clone())?, admin: options.admin(channel)? })
    }
}

/// Adds the API key to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

pub type Authed = InterceptedService<Channel, Bearer>;

impl ClientOptions {
    /// `host:port` or a URL; TLS options turn a bare address into https.
    pub fn url(&self, addr: &str) -> String {
        if addr.contains("://") {
            addr.to_string()
        } else if self.tls_ca.is_some() {
            format!("https://{addr}")
        } else {
            format!("http://{addr}")
        }
    }

    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, Error> {
        let url = self.url(addr);
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|source| Error::Address { url: url.clone(), source })?;
        if let Some(ca) = &self.tls_ca {
            let read =
                |p: &PathBuf| std::fs::read(p).map_err(|source| Error::Read { path: p.clone(), source });
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).map_err(Error::Tls)?;
        }
        Ok(endpoint)
    }

    pub async fn connect(&self, addr: &str) -> Result<Channel, Error> {
        let url = self.url(addr);
        self.endpoint(addr)?.connect().await.map_err(|source| Error::Connect { url, source })
    }

    pub fn bearer(&self) -> Result<Bearer, Error> {
        let value = match &self.api_key {
            Some(key) => Some(format!("Bearer {}", key.trim()).parse().map_err(|_| Error::ApiKey)?),
            None => None,
        };
        Ok(Bearer(value))
    }

    pub fn serving(&self, channel: Channel) -> Result<FeatureServingClient<Authed>, Error> {
        Ok(FeatureServingClient::with_interceptor(channel, self.bearer()?))
    }

    pub fn admin(&self, channel: Channel) -> Result<FeatureAdminClient<Authed>, Error> {
        Ok(FeatureAdminClient::with_interceptor(channel, self.bearer()?))
    }
}
