//! The sign-ins under way: each started sign-in's state, nonce and PKCE verifier, kept here (never
//! in the browser) until its callback comes back or it expires, and the issuer's discovery
//! document, cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openidconnect::core::CoreProviderMetadata;
use openidconnect::core::CoreResponseType;
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, CsrfToken, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, Scope,
};
use subtle::ConstantTimeEq;

use super::{ASYMMETRIC, Person, Provider, RelyingClient, SignInError};

/// How long a started sign-in waits for its callback.
pub const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// Sign-ins waiting at once; starting one beyond it drops the oldest (a page elsewhere that
/// starts sign-ins in a loop can only push out others', never grow the map).
const MAX_PENDING: usize = 256;
/// How long a discovery document (and the JWKS fetched with it) is used before it is fetched
/// again; a sign-in that fails on it fetches it again at once.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);

/// The sign-ins under way, by the SHA-256 of the cookie binding each to its browser (the cookie
/// itself is not kept), and the cached discovery.
#[derive(Default)]
pub struct SignIns {
    pending: Mutex<HashMap<[u8; 32], Pending>>,
    /// The last discovery document and JWKS, with the issuer they are of and when they came.
    discovered: Mutex<Option<Discovered>>,
}

struct Pending {
    expires: Instant,
    /// The issuer the sign-in went to: a reload that changes the issuer voids it.
    issuer: String,
    state: CsrfToken,
    nonce: Nonce,
    verifier: PkceCodeVerifier,
}

#[derive(Clone)]
struct Discovered {
    issuer: String,
    at: Instant,
    metadata: Arc<CoreProviderMetadata>,
}

/// A started sign-in: where to send the browser, and the value of the cookie binding it.
pub struct Started {
    pub authorize_url: String,
    pub binding: String,
}

/// What the issuer sent the browser back with (the query of the callback).
#[derive(Debug, Default)]
pub struct Callback {
    pub code: Option<String>,
    pub state: Option<String>,
    /// An `error` the issuer sent instead of a code.
    pub error: Option<String>,
}

impl Callback {
    /// The callback's parameters from a URL query (percent-decoded).
    pub fn from_query(query: &str) -> Callback {
        let mut callback = Callback::default();
        for (key, value) in openidconnect::url::form_urlencoded::parse(query.as_bytes()) {
            let slot = match &*key {
                "code" => &mut callback.code,
                "state" => &mut callback.state,
                "error" => &mut callback.error,
                _ => continue,
            };
            slot.get_or_insert_with(|| value.into_owned());
        }
        callback
    }
}

impl SignIns {
    /// Starts a sign-in through `provider`.
    pub async fn begin(&self, provider: &Provider) -> Result<Started, SignInError> {
        let client = self.client(provider, false).await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = client
            .authorize_url(
                AuthenticationFlow::<CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        for scope in &provider.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, state, nonce) = request.url();
        let binding = hex(&crate::random::bytes::<32>());
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.expires > now);
        if pending.len() >= MAX_PENDING
            && let Some(oldest) = pending.iter().min_by_key(|(_, p)| p.expires).map(|(k, _)| *k)
        {
            pending.remove(&oldest);
        }
        let entry =
            Pending { expires: now + PENDING_TTL, issuer: provider.issuer().to_owned(), state, nonce, verifier };
        pending.insert(digest(&binding), entry);
        Ok(Started { authorize_url: url.to_string(), binding })
    }

    /// Finishes the sign-in the browser's `binding` cookie stands for with the issuer's
    /// `callback`. The sign-in is taken whatever the outcome: a callback is good once.
    pub async fn finish(
        &self,
        provider: &Provider,
        binding: Option<&str>,
        callback: &Callback,
    ) -> Result<Person, SignInError> {
        let pending = {
            let mut map = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            binding.and_then(|b| map.remove(&digest(b)))
        };
        let pending = pending
            .filter(|p| p.expires > Instant::now() && p.issuer == provider.issuer())
            .ok_or(SignInError::NotStarted)?;
        let state = callback.state.as_deref().unwrap_or("");
        if !bool::from(state.as_bytes().ct_eq(pending.state.secret().as_bytes())) {
            return Err(SignInError::StateMismatch);
        }
        if let Some(error) = &callback.error {
            // Only the error code, which RFC 6749 limits to printable ASCII, and not too much of it.
            let error: String = error.chars().filter(|c| c.is_ascii_graphic()).take(64).collect();
            return Err(SignInError::Refused(error));
        }
        let code = callback.code.clone().ok_or(SignInError::NoCode)?;
        let client = self.client(provider, false).await?;
        let tokens = client
            .exchange_code(AuthorizationCode::new(code))
            .map_err(|e| SignInError::Exchange(e.to_string()))?
            .set_pkce_verifier(pending.verifier)
            .request_async(&provider.http)
            .await
            .map_err(|e| match e {
                // The issuer refused the code: forged, replayed at the issuer, or expired.
                openidconnect::RequestTokenError::ServerResponse(refusal) => {
                    SignInError::CodeRefused(refusal.error().as_ref().to_owned())
                }
                other => {
                    self.forget();
                    SignInError::Exchange(chain(&other))
                }
            })?;
        let id_token = openidconnect::TokenResponse::id_token(&tokens).ok_or(SignInError::NoIdToken)?;
        let verified = {
            let verifier = client.id_token_verifier().set_allowed_algs(ASYMMETRIC);
            id_token.claims(&verifier, &pending.nonce).map(|c| provider.person(c))
        };
        match verified {
            Ok(person) => person,
            // A key the cached JWKS does not hold: the issuer may have rotated its keys. Fetch
            // them again and verify once more.
            Err(ClaimsVerificationError::SignatureVerification(_)) => {
                let client = self.client(provider, true).await?;
                let verifier = client.id_token_verifier().set_allowed_algs(ASYMMETRIC);
                let claims =
                    id_token.claims(&verifier, &pending.nonce).map_err(|e| SignInError::IdToken(e.to_string()))?;
                provider.person(claims)
            }
            Err(e) => Err(SignInError::IdToken(e.to_string())),
        }
    }

    /// A client of `provider` from its discovery document: the cached one unless `fresh`.
    async fn client(&self, provider: &Provider, fresh: bool) -> Result<RelyingClient, SignInError> {
        let metadata = self.discover(provider, fresh).await?;
        let client = RelyingClient::from_provider_metadata(
            (*metadata).clone(),
            provider.client_id.clone(),
            Some(provider.client_secret.clone()),
        )
        .set_redirect_uri(provider.redirect.clone());
        Ok(client)
    }

    async fn discover(&self, provider: &Provider, fresh: bool) -> Result<Arc<CoreProviderMetadata>, SignInError> {
        let cached = self.discovered.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(d) = cached.filter(|d| !fresh && d.issuer == provider.issuer() && d.at.elapsed() < DISCOVERY_TTL) {
            return Ok(d.metadata);
        }
        // Fetched outside the lock: two sign-ins at once may both fetch, and both are right.
        let metadata = CoreProviderMetadata::discover_async(provider.issuer.clone(), &provider.http)
            .await
            .map_err(|e| SignInError::Unavailable(chain(&e)))?;
        let metadata = Arc::new(metadata);
        let discovered =
            Discovered { issuer: provider.issuer().to_owned(), at: Instant::now(), metadata: metadata.clone() };
        *self.discovered.lock().unwrap_or_else(|e| e.into_inner()) = Some(discovered);
        Ok(metadata)
    }

    /// Drops the cached discovery, so the next sign-in fetches it again.
    fn forget(&self) {
        self.discovered.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

/// An error and its causes, one sentence.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut inner = error.source();
    while let Some(e) = inner {
        text.push_str(": ");
        text.push_str(&e.to_string());
        inner = e.source();
    }
    text
}

fn digest(binding: &str) -> [u8; 32] {
    crate::digest::sha256(binding.as_bytes())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callback_query_is_decoded_and_the_first_value_wins() {
        let c = Callback::from_query("code=a%2Fb&state=s1&state=s2&iss=x");
        assert_eq!((c.code.as_deref(), c.state.as_deref(), c.error.as_deref()), (Some("a/b"), Some("s1"), None));
        let c = Callback::from_query("error=access_denied&state=s");
        assert_eq!(c.error.as_deref(), Some("access_denied"));
    }
}
