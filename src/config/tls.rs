//! The TLS the configuration names, built from the files it was read from: the partner
//! listener's (or a trusted proxy's forwarding), PostgreSQL's, and the span collector's.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::model::TlsSettings;
use super::raw;
use super::sources::{Sources, ms, problem, resolve};
use crate::problem::Problem;
use crate::telemetry::otlp::OtlpSettings;

/// `[tls]`: the partner listener's TLS, or, on a plaintext listener, the proxy whose forwarded
/// client certificates are believed.
pub(super) fn load_tls(
    files: &Sources,
    path: &Path,
    base: &Path,
    raw: &raw::RawTls,
    problems: &mut Vec<Problem>,
) -> (TlsSettings, Option<crate::tls::ServerTls>, Option<crate::auth::Forwarding>) {
    let read = |file: &Path| files.read(file);
    let resolved = |list: &[String]| list.iter().map(|f| resolve(base, Some(f), "")).collect::<Vec<_>>();
    let ca_files = resolved(&raw.client_ca_files);
    let crl_files = resolved(&raw.crl_files);
    let plaintext = raw.insecure_plaintext.unwrap_or(false);
    let mut settings = TlsSettings {
        handshake_timeout: ms(raw.handshake_timeout_ms, 10_000),
        files: ca_files.iter().chain(&crl_files).cloned().collect(),
        key_files: Vec::new(),
    };
    let fix = Some("run `passerelle dev-pki` for a development PKI, or point tls.* at your certificates");
    if plaintext {
        let mut proxies = Vec::new();
        for ip in &raw.trusted_proxies {
            match ip.parse::<std::net::IpAddr>() {
                Ok(ip) => proxies.push(ip),
                Err(_) => {
                    problems.push(problem(path, format!("tls.trusted_proxies: `{ip}` is not an IP address"), None))
                }
            }
        }
        let mut header = None;
        if let Some(h) = &raw.client_cert_header {
            match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => header = Some(name),
                Err(_) => {
                    problems.push(problem(path, format!("tls.client_cert_header `{h}` is not a header name"), None))
                }
            }
        }
        if header.is_some() {
            if proxies.is_empty() {
                problems.push(problem(path, "tls.client_cert_header needs tls.trusted_proxies", None));
            }
            if ca_files.is_empty() {
                problems.push(problem(
                    path,
                    "tls.client_cert_header needs tls.client_ca_files to verify forwarded certificates",
                    None,
                ));
            }
        }
        let mut verifier = None;
        if !ca_files.is_empty() {
            match crate::tls::client_verifier(&ca_files, &crl_files, &read) {
                Ok(v) => verifier = Some(v),
                Err(e) => problems.push(problem(path, format!("tls: {e}"), fix)),
            }
        }
        let forwarding = match (header, verifier) {
            (Some(header), Some(verifier)) => Some(crate::auth::Forwarding { header, proxies, verifier }),
            _ => None,
        };
        return (settings, None, forwarding);
    }
    let (Some(cert), Some(key)) = (&raw.cert_file, &raw.key_file) else {
        problems.push(problem(
            path,
            "the partner listener needs tls.cert_file and tls.key_file (or tls.insecure_plaintext = true behind a TLS-terminating proxy)",
            fix,
        ));
        return (settings, None, None);
    };
    let (cert, key) = (resolve(base, Some(cert), ""), resolve(base, Some(key), ""));
    settings.files.extend([cert.clone(), key.clone()]);
    settings.key_files.push(key.clone());
    let server = if ca_files.is_empty() {
        crate::tls::server_tls_without_clients(&cert, &key, &read)
    } else {
        crate::tls::server_tls(&cert, &key, &ca_files, &crl_files, &read)
    };
    match server {
        Ok(server) => return (settings, Some(server), None),
        Err(e) => problems.push(problem(path, format!("tls: {e}"), fix)),
    }
    (settings, None, None)
}

/// TLS to PostgreSQL: with `store.ca_file` the connection requires TLS and verifies the server
/// against that CA; without it the connection is plain, and a URL asking for TLS is a problem
/// (the gateway never encrypts without knowing whom it talks to). The store sets `sslmode` from
/// the result (`store::postgres::connect`); this checks what the operator wrote against it.
pub(super) fn postgres_tls(
    files: &Sources,
    path: &Path,
    base: &Path,
    store: &raw::RawStore,
    config: &tokio_postgres::Config,
    problems: &mut Vec<Problem>,
) -> Option<Arc<rustls::ClientConfig>> {
    use tokio_postgres::config::SslMode;
    let Some(ca_file) = store.ca_file.as_deref() else {
        if config.get_ssl_mode() == SslMode::Require {
            problems.push(problem(
                path,
                "store.url asks for TLS (sslmode=require) but store.ca_file is not set",
                Some("set store.ca_file to the CA that signed the database server's certificate"),
            ));
        }
        return None;
    };
    if config.get_ssl_mode() == SslMode::Disable {
        problems.push(problem(
            path,
            "store.ca_file is set but store.url says sslmode=disable",
            Some("remove sslmode=disable from store.url, or remove store.ca_file"),
        ));
        return None;
    }
    let ca_file = resolve(base, Some(ca_file), "");
    match crate::tls::recipient_client(&[ca_file], None, None, &|file| files.read(file)) {
        Ok(tls) => Some(tls),
        Err(e) => {
            problems.push(problem(path, format!("store.ca_file: {e}"), None));
            None
        }
    }
}

/// `[telemetry]`: an OTLP/HTTP collector's URL must be `http` or `https`, and an `https` one
/// needs the CA of the collector's certificate.
pub(super) fn load_telemetry(
    files: &Sources,
    path: &Path,
    base: &Path,
    raw: &raw::RawTelemetry,
    problems: &mut Vec<Problem>,
) -> Option<OtlpSettings> {
    // No collector, no export.
    let endpoint = raw.otlp_endpoint.as_deref()?.trim_end_matches('/');
    let uri = endpoint.parse::<http::Uri>().ok().filter(|u| u.authority().is_some());
    let https = match uri.as_ref().and_then(|u| u.scheme_str()) {
        Some("http") => false,
        Some("https") => true,
        _ => {
            problems.push(problem(
                path,
                format!("telemetry.otlp_endpoint `{endpoint}` is not an http:// or https:// URL"),
                Some("give the collector's OTLP/HTTP base URL, such as http://127.0.0.1:4318"),
            ));
            return None;
        }
    };
    let ca_files: Vec<PathBuf> = raw.otlp_ca_file.iter().map(|f| resolve(base, Some(f), "")).collect();
    if https && ca_files.is_empty() {
        problems.push(problem(
            path,
            "telemetry.otlp_endpoint is https but telemetry.otlp_ca_file is not set",
            Some("name the CA (PEM) of the collector's certificate"),
        ));
        return None;
    }
    let tls = match crate::tls::recipient_client(&ca_files, None, None, &|file| files.read(file)) {
        Ok(tls) => tls,
        Err(e) => {
            problems.push(problem(path, format!("telemetry.otlp_ca_file: {e}"), None));
            return None;
        }
    };
    Some(OtlpSettings {
        traces_url: format!("{endpoint}/v1/traces"),
        tls,
        service_name: raw.service_name.clone().unwrap_or_else(|| "passerelle".to_owned()),
    })
}
