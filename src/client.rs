//! How the CLI's client commands (`get`, `ingest`, `apply`, `bench`, ...)
//! reach a server: address, TLS and API key in one place.

use std::path::PathBuf;

use anyhow::Context;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::proto::{feature_admin_client::FeatureAdminClient, feature_serving_client::FeatureServingClient};

/// Connection settings shared by every client command.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct ClientOptions {
    /// API key sent as `authorization: Bearer <key>`.
    #[arg(long, global = true, env = "FSTORE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Connect with TLS, trusting this CA certificate (PEM).
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for servers that require one.
    #[arg(long, global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Key of the client certificate (PEM).
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
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

    pub fn endpoint(&self, addr: &str) -> anyhow::Result<Endpoint> {
        let url = self.url(addr);
        let mut endpoint =
            Endpoint::from_shared(url.clone()).with_context(|| format!("bad server address {url}"))?;
        if let Some(ca) = &self.tls_ca {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(ca)?));
            if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
                tls = tls.identity(Identity::from_pem(read(cert)?, read(key)?));
            }
            endpoint = endpoint.tls_config(tls).context("configuring TLS")?;
        }
        Ok(endpoint)
    }

    pub async fn connect(&self, addr: &str) -> anyhow::Result<Channel> {
        let url = self.url(addr);
        self.endpoint(addr)?
            .connect()
            .await
            .with_context(|| format!("connecting to the fstore server at {url} (is `fstore serve` running?)"))
    }

    pub fn bearer(&self) -> anyhow::Result<Bearer> {
        let value = match &self.api_key {
            Some(key) => Some(
                format!("Bearer {}", key.trim()).parse().context("the API key must be printable ASCII")?,
            ),
            None => None,
        };
        Ok(Bearer(value))
    }

    pub fn serving(&self, channel: Channel) -> anyhow::Result<FeatureServingClient<Authed>> {
        Ok(FeatureServingClient::with_interceptor(channel, self.bearer()?))
    }

    pub fn admin(&self, channel: Channel) -> anyhow::Result<FeatureAdminClient<Authed>> {
        Ok(FeatureAdminClient::with_interceptor(channel, self.bearer()?))
    }
}
