//! OpenID Connect sign-in for people: the gateway as a relying party of one issuer
//! (`[admin.oidc]`), so operators sign in to the console with their organisation's account and
//! their groups map to roles.
//!
//! The flow is the authorization code flow with PKCE (S256). [`SignIns::begin`] discovers the
//! issuer (cached, fetched again when a sign-in fails on it), keeps the state, the nonce and
//! the PKCE verifier server-side in a bounded map with an expiry, and gives back the issuer's
//! URL and a random value for a cookie that binds the sign-in to the browser that started it.
//! [`SignIns::finish`] takes that entry (once: a replayed callback finds nothing), checks the
//! state, exchanges the code, verifies the ID token against the issuer's JWKS (issuer, audience,
//! expiry, nonce; asymmetric signatures only) and reads the person's name and groups from it.
//! What the groups allow is not decided here: [`crate::operators::Directory::by_sign_in`] does
//! that at every call, under the configuration in force.
//!
//! The protocol is `openidconnect`'s; its HTTP client is [`transport::IssuerClient`], hyper-util
//! over rustls with ring, like every other client of the gateway.
//!
//! **Invariant:** nothing here logs or returns a code, a token, the client secret or a claim
//! other than the name and the groups.

mod flow;
pub mod transport;

use std::collections::BTreeMap;
use std::sync::Arc;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreErrorResponseType, CoreGenderClaim, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreTokenIntrospectionResponse, CoreTokenType,
};
use openidconnect::{
    AdditionalClaims, ClientId, ClientSecret, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IdTokenFields, IssuerUrl, RedirectUrl, StandardErrorResponse, StandardTokenResponse,
};
use serde::{Deserialize, Serialize};

pub use flow::{Callback, PENDING_TTL, SignIns, Started};
use transport::IssuerClient;

/// Groups read from one ID token at most (Entra ID, for one, stops listing them at 200).
pub const MAX_GROUPS: usize = 200;
/// The longest group name kept; a longer one is ignored.
const MAX_GROUP_LEN: usize = 256;

/// What `[admin.oidc]` says, resolved: plain values, the secret read from its source.
#[derive(Clone)]
pub struct ProviderSettings {
    /// The issuer, exactly as its discovery document and ID tokens name it.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Where the issuer sends the browser back: this gateway's `/console/oidc/callback`.
    pub redirect_url: String,
    /// Scopes asked for besides `openid`.
    pub scopes: Vec<String>,
    /// The claim naming the person; `None`: `preferred_username`, else `sub`.
    pub name_claim: Option<String>,
    /// The claim listing the person's groups.
    pub groups_claim: String,
}

impl std::fmt::Debug for ProviderSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the client secret.
        f.debug_struct("ProviderSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("redirect_url", &self.redirect_url)
            .field("scopes", &self.scopes)
            .field("name_claim", &self.name_claim)
            .field("groups_claim", &self.groups_claim)
            .finish_non_exhaustive()
    }
}

/// The issuer this gateway signs people in through, built from its settings: the URLs parsed and
/// a client that trusts the configured roots.
pub struct Provider {
    issuer: IssuerUrl,
    client_id: ClientId,
    client_secret: ClientSecret,
    redirect: RedirectUrl,
    scopes: Vec<String>,
    name_claim: Option<String>,
    groups_claim: String,
    http: IssuerClient,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider").field("issuer", &self.issuer.as_str()).finish_non_exhaustive()
    }
}

/// Why the settings do not make a provider.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("issuer `{0}` is not a URL")]
    Issuer(String),
    #[error("redirect_url `{0}` is not a URL")]
    Redirect(String),
}

impl Provider {
    /// The provider `settings` describe, reached through a client verifying with `tls`.
    pub fn new(settings: ProviderSettings, tls: &Arc<rustls::ClientConfig>) -> Result<Provider, ProviderError> {
        let issuer = IssuerUrl::new(settings.issuer.clone()).map_err(|_| ProviderError::Issuer(settings.issuer))?;
        let redirect = RedirectUrl::new(settings.redirect_url.clone())
            .map_err(|_| ProviderError::Redirect(settings.redirect_url))?;
        Ok(Provider {
            issuer,
            client_id: ClientId::new(settings.client_id),
            client_secret: ClientSecret::new(settings.client_secret),
            redirect,
            scopes: settings.scopes,
            name_claim: settings.name_claim,
            groups_claim: settings.groups_claim,
            http: IssuerClient::new(tls),
        })
    }

    /// The issuer's URL, as the sign-in page names it.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// The name and groups of a verified ID token's claims.
    fn person(&self, claims: &Claims) -> Result<Person, SignInError> {
        let extra = &claims.additional_claims().0;
        let named = |claim: &str| -> Option<String> {
            match extra.get(claim).and_then(|v| v.as_str()) {
                Some(s) => Some(s.to_owned()),
                None => match claim {
                    "sub" => Some(claims.subject().as_str().to_owned()),
                    "preferred_username" => claims.preferred_username().map(|u| u.as_str().to_owned()),
                    "email" => claims.email().map(|e| e.as_str().to_owned()),
                    _ => None,
                },
            }
        };
        let name = match &self.name_claim {
            Some(claim) => named(claim).ok_or_else(|| SignInError::NoName(claim.clone()))?,
            None => named("preferred_username").or_else(|| named("sub")).ok_or(SignInError::NoName("sub".into()))?,
        }
        .to_lowercase();
        if !crate::operators::is_name(&name) {
            return Err(SignInError::BadName);
        }
        let groups = match extra.get(&self.groups_claim) {
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            Some(serde_json::Value::Array(many)) => many
                .iter()
                .filter_map(|g| g.as_str())
                .filter(|g| !g.is_empty() && g.len() <= MAX_GROUP_LEN)
                .take(MAX_GROUPS)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Person { name, groups })
    }
}

/// A person the issuer vouched for: their name (lowercase) and their groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    pub name: String,
    pub groups: Vec<String>,
}

/// Why a sign-in did not end with a person. None of these carries a code, a token or a claim.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The issuer could not be discovered or reached: retrying later may help.
    #[error("the issuer is unavailable: {0}")]
    Unavailable(String),
    /// No sign-in waits for this browser: never started here, expired, or already finished (a
    /// replayed callback).
    #[error("no sign-in was started from this browser, or it has expired or already finished")]
    NotStarted,
    /// The callback's `state` is not the one this browser's sign-in was started with.
    #[error("the callback's state does not match the sign-in's")]
    StateMismatch,
    /// The issuer sent the browser back with an error (the person cancelled, or was refused).
    #[error("the issuer refused the sign-in: {0}")]
    Refused(String),
    /// The callback carries no code.
    #[error("the callback carries no authorization code")]
    NoCode,
    /// The token endpoint refused the code (its `error` code, never its description).
    #[error("the issuer refused the code: {0}")]
    CodeRefused(String),
    /// The code could not be exchanged: the token endpoint failed or could not be reached.
    #[error("the code could not be exchanged: {0}")]
    Exchange(String),
    /// The token response holds no ID token.
    #[error("the issuer's answer holds no ID token")]
    NoIdToken,
    /// The ID token failed verification (signature, issuer, audience, expiry or nonce).
    #[error("the ID token failed verification: {0}")]
    IdToken(String),
    /// The ID token does not name the person with the configured claim.
    #[error("the ID token has no `{0}` claim")]
    NoName(String),
    /// The person's name is not one an operator may have.
    #[error("the name in the ID token is not 1 to 64 of a-z, 0-9, `.`, `-`, `_`, `@`")]
    BadName,
}

impl SignInError {
    /// Whether the issuer (not the browser or the person) is at fault.
    pub fn is_upstream(&self) -> bool {
        matches!(self, SignInError::Unavailable(_) | SignInError::Exchange(_) | SignInError::NoIdToken)
    }
}

/// Every claim of an ID token besides those `openidconnect` reads itself, by name (the groups
/// and the name claims are configurable, so they cannot be fields).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(transparent)]
pub struct OtherClaims(BTreeMap<String, serde_json::Value>);

impl AdditionalClaims for OtherClaims {}

type Claims = openidconnect::IdTokenClaims<OtherClaims, CoreGenderClaim>;

type Tokens = StandardTokenResponse<
    IdTokenFields<
        OtherClaims,
        EmptyExtraTokenFields,
        CoreGenderClaim,
        CoreJweContentEncryptionAlgorithm,
        CoreJwsSigningAlgorithm,
    >,
    CoreTokenType,
>;

/// `openidconnect`'s client with [`OtherClaims`], as built from a discovery document.
type RelyingClient = openidconnect::Client<
    OtherClaims,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// The signature algorithms an ID token may use: asymmetric only, so a token cannot be forged
/// with the client secret (which the issuer's other clients' operators may know).
const ASYMMETRIC: [CoreJwsSigningAlgorithm; 9] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::RsaSsaPssSha384,
    CoreJwsSigningAlgorithm::RsaSsaPssSha512,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name_claim: Option<&str>) -> Provider {
        let settings = ProviderSettings {
            issuer: "https://idp.example.com".into(),
            client_id: "passerelle".into(),
            client_secret: "s".into(),
            redirect_url: "https://admin.example.com/console/oidc/callback".into(),
            scopes: vec!["profile".into()],
            name_claim: name_claim.map(str::to_owned),
            groups_claim: "groups".into(),
        };
        Provider::new(settings, &crate::tls::plain_client()).expect("valid settings")
    }

    fn claims(extra: serde_json::Value) -> Claims {
        let mut all = serde_json::json!({
            "iss": "https://idp.example.com", "aud": "passerelle", "exp": 2_000_000_000, "iat": 1_700_000_000,
            "sub": "f3c1-77",
        });
        all.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(all).expect("claims")
    }

    #[test]
    fn the_name_and_groups_come_from_the_configured_claims() {
        let person = provider(None)
            .person(&claims(serde_json::json!({"preferred_username": "Aude.Roy@Example.ca", "groups": ["a", 7, "b"]})))
            .unwrap();
        assert_eq!(person, Person { name: "aude.roy@example.ca".into(), groups: vec!["a".into(), "b".into()] });
        // Without preferred_username, the subject; one group as a string is one group.
        let person = provider(None).person(&claims(serde_json::json!({"groups": "ops"}))).unwrap();
        assert_eq!((person.name.as_str(), person.groups), ("f3c1-77", vec!["ops".to_owned()]));
        // A configured claim, standard or not.
        let upn = provider(Some("upn")).person(&claims(serde_json::json!({"upn": "ana@example.ca"}))).unwrap();
        assert_eq!(upn.name, "ana@example.ca");
        assert!(matches!(provider(Some("upn")).person(&claims(serde_json::json!({}))), Err(SignInError::NoName(_))));
        // A name an operator may not have is refused, and groups are bounded.
        let spaced = provider(None).person(&claims(serde_json::json!({"preferred_username": "Aude Roy"})));
        assert!(matches!(spaced, Err(SignInError::BadName)));
        let many: Vec<String> = (0..500).map(|i| format!("g{i}")).collect();
        let person = provider(None).person(&claims(serde_json::json!({"groups": many}))).unwrap();
        assert_eq!(person.groups.len(), MAX_GROUPS);
    }
}
