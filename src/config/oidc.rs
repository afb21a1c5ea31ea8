//! `[admin.oidc]`: the OpenID provider people sign in to the console through, and the grants
//! its groups map to.
//!
//! ```toml
//! [admin.oidc]
//! issuer = "https://login.example.gc.ca/realms/passerelle"
//! client_id = "passerelle-console"
//! client_secret_env = "PASSERELLE_OIDC_SECRET"     # or client_secret_file
//! redirect_url = "https://passerelle-admin.example.gc.ca/console/oidc/callback"
//!
//! [[admin.oidc.group]]
//! group = "passerelle-operators"
//! role = "operator"
//! partners = ["on-vital-stats"]                     # optional, as in an operator's grant
//! ```
//!
//! An `http://` issuer is accepted on loopback only (a test or a local provider); anywhere else
//! the ID token and the client secret would cross the network in the clear.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use super::model::OidcSettings;
use super::operators::{Known, grant};
use super::raw;
use super::sources::{Sources, problem, resolve};
use crate::oidc::{Provider, ProviderSettings};
use crate::operators::{Directory, Grant};
use crate::problem::Problem;

/// The path the redirect URL must end with: the route that finishes a sign-in.
pub const CALLBACK_PATH: &str = "/console/oidc/callback";

/// The settings and the provider `[admin.oidc]` describes (none without one), and `directory`
/// with its groups' grants.
pub(super) fn load(
    files: &Sources,
    path: &Path,
    base: &Path,
    raw: Option<&raw::RawOidc>,
    mut directory: Directory,
    known: &Known<'_>,
    problems: &mut Vec<Problem>,
) -> (Option<OidcSettings>, Option<Arc<Provider>>, Directory) {
    let Some(raw) = raw else { return (None, None, directory) };
    let before = problems.len();
    let mut report = |message: String, fix: Option<&str>| problems.push(problem(path, message, fix));

    match url(&raw.issuer) {
        Some(u) if u.scheme() == "https" || (u.scheme() == "http" && is_loopback(&u)) => {}
        Some(u) if u.scheme() == "http" => report(
            format!("admin.oidc.issuer `{}` is plain http on a host other than loopback", raw.issuer),
            Some("use the issuer's https URL; http is accepted for 127.0.0.1, ::1 and localhost only"),
        ),
        _ => report(format!("admin.oidc.issuer `{}` is not an https URL", raw.issuer), None),
    }
    match url(&raw.redirect_url) {
        Some(u) if matches!(u.scheme(), "http" | "https") && u.path().ends_with(CALLBACK_PATH) => {}
        _ => report(
            format!("admin.oidc.redirect_url `{}` is not an http(s) URL ending in {CALLBACK_PATH}", raw.redirect_url),
            Some("the admin listener's public URL followed by /console/oidc/callback, as registered with the provider"),
        ),
    }
    if raw.client_id.trim().is_empty() {
        report("admin.oidc.client_id is empty".into(), None);
    }
    for (key, value) in [("groups_claim", &raw.groups_claim), ("name_claim", &raw.name_claim)] {
        if value.as_deref().is_some_and(|v| v.trim().is_empty()) {
            report(format!("admin.oidc.{key} is empty"), None);
        }
    }

    let secret_file = raw.client_secret_file.as_deref().map(|f| resolve(base, Some(f), ""));
    let secret = match (&raw.client_secret_env, &secret_file) {
        (Some(var), None) => match std::env::var(var) {
            Ok(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            _ => {
                report(
                    format!("admin.oidc.client_secret_env names `{var}`, which is not set or empty"),
                    Some("set the variable in the gateway's environment (the secret is never written in the file)"),
                );
                None
            }
        },
        (None, Some(file)) => match files.read(file).map(|b| String::from_utf8_lossy(&b).trim().to_owned()) {
            Ok(s) if !s.is_empty() => Some(s),
            Ok(_) => {
                report(format!("admin.oidc.client_secret_file {} is empty", file.display()), None);
                None
            }
            Err(e) => {
                report(format!("admin.oidc.client_secret_file {} cannot be read: {e}", file.display()), None);
                None
            }
        },
        _ => {
            report("admin.oidc needs exactly one of client_secret_env and client_secret_file".into(), None);
            None
        }
    };

    let ca_file = raw.ca_file.as_deref().map(|f| resolve(base, Some(f), ""));
    let tls = match &ca_file {
        Some(ca) => crate::tls::recipient_client(std::slice::from_ref(ca), None, None, &|f| files.read(f)),
        None => crate::tls::system_client(),
    };
    let tls = tls.map_err(|e| report(format!("admin.oidc: the issuer's TLS: {e}"), None)).ok();

    let mut groups: Vec<(String, Grant)> = Vec::new();
    for g in &raw.group {
        if g.group.trim().is_empty() {
            report("an [[admin.oidc.group]] has an empty group name".into(), None);
            continue;
        }
        let as_grant =
            raw::RawGrant { role: g.role.clone(), partners: g.partners.clone(), agreements: g.agreements.clone() };
        match grant(&as_grant, known) {
            Ok(granted) => groups.push((g.group.clone(), granted)),
            Err(e) => report(format!("admin.oidc group `{}`: {e}", g.group), None),
        }
    }
    if raw.group.is_empty() {
        report(
            "admin.oidc maps no group to a role: nobody could sign in through it".into(),
            Some("add an [[admin.oidc.group]] with a group and a role"),
        );
    }

    if problems.len() > before {
        return (None, None, directory);
    }
    let (Some(secret), Some(tls)) = (secret, tls) else { return (None, None, directory) };
    let provider = ProviderSettings {
        issuer: raw.issuer.clone(),
        client_id: raw.client_id.clone(),
        client_secret: secret,
        redirect_url: raw.redirect_url.clone(),
        scopes: raw.scopes.clone().unwrap_or_else(|| vec!["profile".to_owned()]),
        name_claim: raw.name_claim.clone(),
        groups_claim: raw.groups_claim.clone().unwrap_or_else(|| "groups".to_owned()),
    };
    let built = match Provider::new(provider.clone(), &tls) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            problems.push(problem(path, format!("admin.oidc: {e}"), None));
            return (None, None, directory);
        }
    };
    for (group, granted) in groups {
        directory = directory.with_group(&group, vec![granted]);
    }
    (Some(OidcSettings { provider, secret_file, ca_file }), Some(built), directory)
}

fn url(text: &str) -> Option<openidconnect::url::Url> {
    openidconnect::url::Url::parse(text).ok()
}

/// Whether the URL's host is this machine: 127.0.0.0/8, ::1 or `localhost`.
fn is_loopback(u: &openidconnect::url::Url) -> bool {
    match u.host() {
        Some(openidconnect::url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(openidconnect::url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(openidconnect::url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_are_loopback() {
        for (text, loopback) in [
            ("http://127.0.0.1:4000/", true),
            ("http://127.8.0.1/", true),
            ("http://[::1]:80/", true),
            ("http://LOCALHOST/x", true),
            ("http://10.0.0.1/", false),
            ("http://localhost.example.com/", false),
        ] {
            assert_eq!(is_loopback(&url(text).unwrap()), loopback, "{text}");
        }
    }
}
