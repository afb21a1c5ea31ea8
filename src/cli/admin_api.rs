//! The running gateway's admin API as the commands that talk to it see it (`deliveries`,
//! `access`): where it is, the token, and one call at a time.

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Where the admin API is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    #[arg(long, value_name = "FILE", default_value = super::DEFAULT_CONFIG, help = super::CONFIG_HELP)]
    config: PathBuf,
    /// The admin API's base URL (default: `listen.admin` of the configuration).
    #[arg(long, value_name = "URL")]
    admin: Option<String>,
}

/// A client of one gateway's admin API, with the admin token.
pub struct AdminClient {
    base: String,
    token: String,
    /// The configuration's partners, for the width of a partner column.
    pub partner_ids: Vec<String>,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl AdminClient {
    /// The client `args` describe: the token from PASSERELLE_ADMIN_TOKEN or the configuration.
    pub fn new(args: &AdminArgs) -> anyhow::Result<Self> {
        let config = super::load_config(&args.config)?;
        let token = std::env::var("PASSERELLE_ADMIN_TOKEN")
            .ok()
            .or_else(|| config.settings.admin.token.as_deref().map(str::to_owned))
            .context("no admin token: set PASSERELLE_ADMIN_TOKEN or admin.token_file")?;
        let base = args.admin.clone().unwrap_or_else(|| format!("http://{}", config.settings.listen.admin));
        Ok(AdminClient {
            base: base.trim_end_matches('/').to_owned(),
            token,
            partner_ids: config.settings.partners.keys().map(|p| p.to_string()).collect(),
            http: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
        })
    }

    /// `method path`: the answer's status and its JSON body (null if it is not JSON).
    pub async fn call(&self, method: Method, path: &str) -> anyhow::Result<(u16, Value)> {
        self.call_with(method, path, &[]).await
    }

    /// The same, with more request headers (`Accept-Language`).
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<(u16, Value)> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("authorization", format!("Bearer {}", self.token));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = self
            .http
            .request(request.body(Full::new(Bytes::new()))?)
            .await
            .with_context(|| format!("the admin API at {} does not answer", self.base))?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
    }
}
