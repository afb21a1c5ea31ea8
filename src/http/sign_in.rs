//! Sign-in to the console through the OpenID provider of `[admin.oidc]`, for people:
//! `GET /console/oidc/login` sends the browser to the issuer, `GET /console/oidc/callback`
//! finishes the sign-in ([`crate::oidc`] does the protocol) and opens a console session.
//!
//! The sign-in is bound to the browser that started it by a cookie ([`BINDING_COOKIE`]:
//! `HttpOnly`, `Secure`, `SameSite=Lax` so that it comes back on the issuer's redirect, and
//! only on these two routes); the callback clears it whatever the outcome. The session remembers
//! the person's name and groups, not their grants: [`crate::operators::Directory::by_sign_in`]
//! resolves them again at every call, so a reload that removes a group's mapping applies at the
//! next click. A person whose groups map to no role gets a refusal page, and no session.

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;

use super::console::{self, Identity};
use super::i18n::Lang;
use super::state::State;
use super::text_response;
use crate::config::Config;
use crate::oidc::{Callback, SignInError};
use crate::server::RequestBody;

/// The cookie binding a started sign-in to its browser.
pub const BINDING_COOKIE: &str = "passerelle_oidc";
/// The path the binding cookie is sent on: the two sign-in routes only.
const BINDING_PATH: &str = "/console/oidc";

const REFUSED: &str = include_str!("sign-in-refused.html");

/// Renders an HTML page with a CSP nonce (the admin API's own, so every page has the same headers).
pub type Render = fn(StatusCode, &str, String) -> Response<Full<Bytes>>;

/// The console's sign-in page, offering the OpenID provider when one is configured.
pub fn login_page(config: &Config, lang: &str, nonce: &str, failed: bool) -> String {
    let page = console::login(lang, nonce, failed);
    let Some(provider) = &config.built.oidc else { return page };
    let issuer = escape(provider.issuer());
    let offer = format!(
        "<p class=\"oidc\"><a id=\"oidc-sign-in\" href=\"{BINDING_PATH}/login\">\
         <span class=\"en\">Sign in with {issuer}</span><span class=\"fr\">Se connecter avec {issuer}</span></a></p>"
    );
    page.replace("<!--OIDC-->", &offer)
}

/// `GET /console/oidc/login`: 303 to the issuer, with the cookie binding the sign-in to this
/// browser; without `[admin.oidc]`, 303 to the sign-in page (which then offers only the token).
pub async fn login(state: &State, config: &Config, lang: Lang, nonce: &str, render: Render) -> Response<Full<Bytes>> {
    let Some(provider) = &config.built.oidc else { return to_sign_in_page() };
    match state.sign_ins.begin(provider).await {
        Ok(started) => {
            let mut response = text_response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
            let h = response.headers_mut();
            if let Ok(location) = HeaderValue::from_str(&started.authorize_url) {
                h.insert(header::LOCATION, location);
            }
            if let Ok(cookie) = HeaderValue::from_str(&binding_cookie(Some(&started.binding))) {
                h.insert(header::SET_COOKIE, cookie);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            tracing::warn!(message = "OpenID sign-in could not start.", %error);
            render(StatusCode::BAD_GATEWAY, nonce, refusal(lang_tag(lang), nonce, Refusal::Unavailable))
        }
    }
}

/// `GET /console/oidc/callback`: verifies the issuer's answer and, when the person's groups
/// give them a role, starts their console session and sends them to `/console`. Without
/// `[admin.oidc]` (removed by a reload while a sign-in was under way), 303 to the sign-in page.
pub async fn callback(
    state: &State,
    config: &Config,
    req: &Request<RequestBody>,
    lang: Lang,
    nonce: &str,
    render: Render,
) -> Response<Full<Bytes>> {
    let Some(provider) = &config.built.oidc else { return to_sign_in_page() };
    let lang_tag = lang_tag(lang);
    let cookies = req.headers().get(header::COOKIE).and_then(|v| v.to_str().ok());
    let binding = cookies.and_then(|c| cookie(c, BINDING_COOKIE));
    let callback = Callback::from_query(req.uri().query().unwrap_or(""));
    let mut response = match state.sign_ins.finish(provider, binding, &callback).await {
        Err(error) => {
            tracing::warn!(message = "OpenID sign-in refused.", %error);
            let status = if error.is_upstream() { StatusCode::BAD_GATEWAY } else { StatusCode::BAD_REQUEST };
            render(status, nonce, refusal(lang_tag, nonce, Refusal::of(&error)))
        }
        Ok(person) => match config.built.operators.by_sign_in(&person.name, &person.groups) {
            None => {
                tracing::warn!(
                    message = "OpenID sign-in refused: no group maps to a role.",
                    operator = %person.name,
                    groups = person.groups.len(),
                );
                render(StatusCode::FORBIDDEN, nonce, refusal(lang_tag, nonce, Refusal::NoRole))
            }
            Some(operator) => {
                tracing::info!(
                    message = "Console sign-in.",
                    operator = %operator.name,
                    credential = operator.credential.as_str(),
                );
                let session =
                    state.console.sessions.start(Identity::SignIn { name: person.name, groups: person.groups });
                let mut page = render(StatusCode::OK, nonce, onward(lang_tag));
                if let Ok(cookie) = HeaderValue::from_str(&console::set_cookie(Some(&session))) {
                    page.headers_mut().append(header::SET_COOKIE, cookie);
                }
                page
            }
        },
    };
    if let Ok(cookie) = HeaderValue::from_str(&binding_cookie(None)) {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// `303 See Other` to the console's sign-in page.
fn to_sign_in_page() -> Response<Full<Bytes>> {
    let mut response = text_response(StatusCode::SEE_OTHER, "text/plain; charset=utf-8", "");
    response.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/console"));
    response
}

/// The page a successful sign-in answers with: it goes on to `/console` from this origin. (A
/// `303` would be the end of a redirect chain the issuer started, cross-site, and the browser
/// would hold back the session's `SameSite=Strict` cookie on it.)
fn onward(lang: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url=/console\"><title>Passerelle</title></head>\
         <body><p><a id=\"onward\" href=\"/console\">Console</a></p></body></html>"
    )
}

/// Why a callback was refused, as the person reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// Signed in at the issuer, but no group maps to a role here.
    NoRole,
    /// A callback that is not the answer to a sign-in this browser started (replayed, expired,
    /// tampered with).
    NotThisSignIn,
    /// The issuer said no, or the person cancelled.
    Refused,
    /// The issuer's answer could not be verified or used.
    Unverified,
    /// The issuer could not be reached or did not answer as it should.
    Unavailable,
}

impl Refusal {
    fn of(error: &SignInError) -> Refusal {
        match error {
            SignInError::NotStarted | SignInError::StateMismatch | SignInError::NoCode => Refusal::NotThisSignIn,
            SignInError::Refused(_) => Refusal::Refused,
            SignInError::IdToken(_) | SignInError::NoName(_) | SignInError::BadName | SignInError::CodeRefused(_) => {
                Refusal::Unverified
            }
            SignInError::Unavailable(_) | SignInError::Exchange(_) | SignInError::NoIdToken => Refusal::Unavailable,
        }
    }

    fn slug(self) -> &'static str {
        match self {
            Refusal::NoRole => "no-role",
            Refusal::NotThisSignIn => "not-this-sign-in",
            Refusal::Refused => "refused-by-issuer",
            Refusal::Unverified => "unverified",
            Refusal::Unavailable => "issuer-unavailable",
        }
    }

    /// Title and detail, in English then French.
    fn text(self) -> [&'static str; 4] {
        match self {
            Refusal::NoRole => [
                "You are signed in, but you hold no role here",
                "Vous êtes connecté, mais vous n'avez aucun rôle ici",
                "None of your groups is mapped to a role in this gateway. Ask its administrators to give one of your groups a role.",
                "Aucun de vos groupes n'est associé à un rôle dans cette passerelle. Demandez à ses administrateurs d'attribuer un rôle à l'un de vos groupes.",
            ],
            Refusal::NotThisSignIn => [
                "This sign-in cannot be finished",
                "Cette connexion ne peut pas être terminée",
                "The answer does not belong to a sign-in started from this browser, or it has already been used or has expired. Start again.",
                "La réponse n'appartient pas à une connexion commencée dans ce navigateur, ou elle a déjà servi ou a expiré. Recommencez.",
            ],
            Refusal::Refused => [
                "The identity provider did not sign you in",
                "Le fournisseur d'identité ne vous a pas connecté",
                "The sign-in was cancelled or refused at the identity provider.",
                "La connexion a été annulée ou refusée chez le fournisseur d'identité.",
            ],
            Refusal::Unverified => [
                "The identity provider's answer could not be verified",
                "La réponse du fournisseur d'identité n'a pas pu être vérifiée",
                "The gateway could not verify who you are from the identity provider's answer. The administrators can find the reason in the gateway's log.",
                "La passerelle n'a pas pu vérifier votre identité à partir de la réponse du fournisseur d'identité. Les administrateurs trouveront la raison dans le journal de la passerelle.",
            ],
            Refusal::Unavailable => [
                "The identity provider is unavailable",
                "Le fournisseur d'identité est indisponible",
                "The gateway could not complete the sign-in with the identity provider. Try again in a moment.",
                "La passerelle n'a pas pu terminer la connexion auprès du fournisseur d'identité. Réessayez dans un moment.",
            ],
        }
    }
}

fn refusal(lang: &str, nonce: &str, refusal: Refusal) -> String {
    let [title_en, title_fr, detail_en, detail_fr] = refusal.text();
    REFUSED
        .replace("{{LANG}}", lang)
        .replace("{{NONCE}}", nonce)
        .replace("{{REASON}}", refusal.slug())
        .replace("{{TITLE_EN}}", title_en)
        .replace("{{TITLE_FR}}", &escape(title_fr))
        .replace("{{DETAIL_EN}}", detail_en)
        .replace("{{DETAIL_FR}}", &escape(detail_fr))
}

/// The binding cookie's `Set-Cookie` (or, with `None`, one that clears it).
fn binding_cookie(value: Option<&str>) -> String {
    let attributes = format!("Path={BINDING_PATH}; HttpOnly; Secure; SameSite=Lax");
    match value {
        Some(v) => format!("{BINDING_COOKIE}={v}; {attributes}; Max-Age={}", crate::oidc::PENDING_TTL.as_secs()),
        None => format!("{BINDING_COOKIE}=; {attributes}; Max-Age=0"),
    }
}

/// The value of cookie `name` in a `Cookie` header.
fn cookie<'h>(header: &'h str, name: &str) -> Option<&'h str> {
    header.split(';').find_map(|pair| pair.trim().strip_prefix(name)?.strip_prefix('='))
}

fn lang_tag(lang: Lang) -> &'static str {
    match lang {
        Lang::Fr => "fr",
        Lang::En => "en",
    }
}

/// `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_binding_cookie_is_secure_lax_and_only_on_the_sign_in_routes() {
        let set = binding_cookie(Some("abc"));
        for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/console/oidc"] {
            assert!(set.contains(attribute), "{set}");
        }
        assert!(binding_cookie(None).contains("Max-Age=0"));
        assert_eq!(cookie("a=1; passerelle_oidc=xyz; b=2", BINDING_COOKIE), Some("xyz"));
        assert_eq!(cookie("passerelle_oidcx=1", BINDING_COOKIE), None);
    }

    #[test]
    fn every_refusal_page_is_in_both_languages() {
        for r in [Refusal::NoRole, Refusal::NotThisSignIn, Refusal::Refused, Refusal::Unverified, Refusal::Unavailable]
        {
            let page = refusal("en", "n", r);
            assert!(!page.contains("{{"), "{page}");
            assert!(page.contains(&format!("data-reason=\"{}\"", r.slug())));
        }
    }
}
