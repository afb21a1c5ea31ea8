//! Operators: the named people and scripts that run the gateway, their roles, and what each role
//! may do.
//!
//! An operator holds one or more [`Grant`]s, each a [`Role`] limited, or not, to some partners
//! and agreements (a [`Scope`]). A role is a fixed set of [`Permission`]s:
//!
//! | role       | may |
//! |------------|-----|
//! | `viewer`   | the console, metrics, lists of deliveries and records, never a body |
//! | `operator` | what a viewer may, and replay and reload |
//! | `auditor`  | what a viewer may, and the audit trail, exports, bodies and access records |
//! | `admin`    | everything, operators and keys included |
//!
//! Credentials resolve to an [`Operator`] through the [`Directory`] built from the configuration:
//! a per-operator token (only its SHA-256 is kept, as for partner API keys), the shared bootstrap
//! token (the `admin` role, under the name [`BOOTSTRAP`]), or an OpenID Connect sign-in whose
//! groups map to grants. Nothing here knows HTTP: `http::admin` asks [`Operator::may`] and
//! [`Operator::may_on`] once per call, the one place calls are authorised.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use crate::digest::sha256;

/// The name the shared bootstrap token signs in under.
pub const BOOTSTRAP: &str = "bootstrap-admin";

/// Whether `s` may be an operator's name: what an identity provider's `preferred_username` or an
/// e-mail address usually is, lowercase; the operators file and OpenID sign-ins hold to it.
pub fn is_name(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_@".contains(&b))
}

/// A role, a fixed set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Viewer,
    Operator,
    Auditor,
    Admin,
}

/// One thing an admin call may need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// The console, metrics, the overview, lists of deliveries and records (no bodies).
    View,
    /// Re-send deliveries.
    Replay,
    /// Reload the configuration.
    Reload,
    /// Read the audit trail and export it.
    ReadAudit,
    /// Read the bodies of records and deliveries.
    ReadBodies,
    /// Read a person's access record.
    ReadAccess,
    /// List operators and manage keys.
    Administer,
}

impl Permission {
    /// Every permission, in order.
    pub const ALL: [Permission; 7] = [
        Permission::View,
        Permission::Replay,
        Permission::Reload,
        Permission::ReadAudit,
        Permission::ReadBodies,
        Permission::ReadAccess,
        Permission::Administer,
    ];

    /// The permission's name, as problem documents and the OpenAPI document say it.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::View => "view",
            Permission::Replay => "replay",
            Permission::Reload => "reload",
            Permission::ReadAudit => "read-audit",
            Permission::ReadBodies => "read-bodies",
            Permission::ReadAccess => "read-access",
            Permission::Administer => "administer",
        }
    }

    /// The roles that hold this permission, lowest first.
    pub fn roles(self) -> impl Iterator<Item = Role> {
        Role::ALL.into_iter().filter(move |r| r.grants(self))
    }
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Operator, Role::Auditor, Role::Admin];

    /// Whether this role holds `permission`.
    pub fn grants(self, permission: Permission) -> bool {
        use Permission as P;
        match self {
            Role::Admin => true,
            Role::Viewer => permission == P::View,
            Role::Operator => matches!(permission, P::View | P::Replay | P::Reload),
            Role::Auditor => matches!(permission, P::View | P::ReadAudit | P::ReadBodies | P::ReadAccess),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Auditor => "auditor",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| format!("`{s}` is not a role (viewer, operator, auditor, admin)"))
    }
}

/// What a grant is limited to; an empty list means no limit on that side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// Partner ids: a target is covered if one of the partners it involves (its sender, its
    /// recipient) is listed.
    pub partners: BTreeSet<String>,
    /// Agreement ids: a target is covered if its agreement is listed.
    pub agreements: BTreeSet<String>,
}

impl Scope {
    /// Whether the scope is the whole gateway.
    pub fn is_whole(&self) -> bool {
        self.partners.is_empty() && self.agreements.is_empty()
    }

    /// Whether the scope covers `target`.
    pub fn covers(&self, target: &Target<'_>) -> bool {
        let partners = self.partners.is_empty() || target.partners.iter().any(|p| self.partners.contains(*p));
        let agreements = self.agreements.is_empty() || target.agreement.is_some_and(|a| self.agreements.contains(a));
        partners && agreements
    }
}

/// What a call acts on, for scoped grants: the partners it involves and its agreement, if it
/// has one (a whole recipient has none, so an agreement-limited grant does not cover it).
#[derive(Debug, Clone, Copy, Default)]
pub struct Target<'a> {
    pub partners: &'a [&'a str],
    pub agreement: Option<&'a str>,
}

/// A role, limited to a scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: Role,
    pub scope: Scope,
}

impl Grant {
    /// `role` over the whole gateway.
    pub fn whole(role: Role) -> Self {
        Grant { role, scope: Scope::default() }
    }
}

/// How an operator proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The shared bootstrap token.
    Bootstrap,
    /// The operator's own token.
    Token,
    /// A sign-in through the OpenID provider.
    OpenId,
}

impl Credential {
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Bootstrap => "bootstrap-token",
            Credential::Token => "token",
            Credential::OpenId => "openid",
        }
    }
}

/// A signed-in operator: a name and what they may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub name: String,
    pub grants: Vec<Grant>,
    pub credential: Credential,
}

impl Operator {
    /// Whether some grant holds `permission`, over any scope (a list is then cut to the scope
    /// with [`Operator::may_on`]).
    pub fn may(&self, permission: Permission) -> bool {
        self.grants.iter().any(|g| g.role.grants(permission))
    }

    /// Whether some grant holds `permission` over the whole gateway.
    pub fn may_everywhere(&self, permission: Permission) -> bool {
        self.grants.iter().any(|g| g.role.grants(permission) && g.scope.is_whole())
    }

    /// Whether some grant holds `permission` over `target`.
    pub fn may_on(&self, permission: Permission, target: &Target<'_>) -> bool {
        self.grants.iter().any(|g| g.role.grants(permission) && g.scope.covers(target))
    }

    /// The name the audit trail gives this operator's acts: `operator:<name>`.
    pub fn actor(&self) -> String {
        format!("operator:{}", self.name)
    }

    /// The operator's roles, lowest first, each once.
    pub fn roles(&self) -> Vec<Role> {
        let roles: BTreeSet<Role> = self.grants.iter().map(|g| g.role).collect();
        roles.into_iter().collect()
    }
}

/// One operator as the configuration names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub grants: Vec<Grant>,
}

/// Every operator the configuration names, the digests of their tokens, the bootstrap token's
/// digest, and the OpenID groups' grants.
#[derive(Debug, Clone, Default)]
pub struct Directory {
    entries: BTreeMap<String, Entry>,
    /// SHA-256 of each operator token → the operator's name.
    tokens: BTreeMap<[u8; 32], String>,
    /// SHA-256 of the shared bootstrap token, if one is configured.
    bootstrap: Option<[u8; 32]>,
    /// OpenID group name → the grants its members hold.
    groups: BTreeMap<String, Vec<Grant>>,
}

impl Directory {
    /// A directory of `entries`, each with the SHA-256 digests of its tokens, and the bootstrap
    /// token in force, if any.
    pub fn new(entries: Vec<(Entry, Vec<[u8; 32]>)>, bootstrap: Option<&str>) -> Self {
        let mut directory = Directory { bootstrap: bootstrap.map(|t| sha256(t.as_bytes())), ..Default::default() };
        for (entry, digests) in entries {
            for digest in digests {
                directory.tokens.insert(digest, entry.name.clone());
            }
            directory.entries.insert(entry.name.clone(), entry);
        }
        directory
    }

    /// The directory with `group`'s members holding `grants` when they sign in through OpenID.
    pub fn with_group(mut self, group: &str, grants: Vec<Grant>) -> Self {
        self.groups.entry(group.to_owned()).or_default().extend(grants);
        self
    }

    /// The operator a presented token stands for: the bootstrap token, or an operator's own.
    /// Tokens are compared by their SHA-256 digest, so the lookup's timing says nothing of the
    /// token.
    pub fn by_token(&self, token: &str) -> Option<Operator> {
        self.by_token_digest(&sha256(token.as_bytes()))
    }

    /// [`Directory::by_token`], for a token already digested (a console session keeps only the
    /// digest of the token it was opened with).
    pub fn by_token_digest(&self, digest: &[u8; 32]) -> Option<Operator> {
        if self.bootstrap.as_ref().is_some_and(|b| bool::from(subtle::ConstantTimeEq::ct_eq(&b[..], &digest[..]))) {
            return Some(Operator {
                name: BOOTSTRAP.to_owned(),
                grants: vec![Grant::whole(Role::Admin)],
                credential: Credential::Bootstrap,
            });
        }
        let name = self.tokens.get(digest)?;
        let entry = self.entries.get(name)?;
        Some(Operator { name: entry.name.clone(), grants: entry.grants.clone(), credential: Credential::Token })
    }

    /// The operator an OpenID sign-in stands for: named by the provider, with the grants of
    /// their groups and of the entry of the same name, if any. `None` when that gives no grant
    /// (a person the gateway knows nothing about is not signed in).
    pub fn by_sign_in(&self, name: &str, groups: &[String]) -> Option<Operator> {
        let mut grants: Vec<Grant> = groups.iter().filter_map(|g| self.groups.get(g)).flatten().cloned().collect();
        if let Some(entry) = self.entries.get(name) {
            grants.extend(entry.grants.iter().cloned());
        }
        (!grants.is_empty()).then(|| Operator { name: name.to_owned(), grants, credential: Credential::OpenId })
    }

    /// Every operator the configuration names, by name.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values()
    }

    /// The OpenID groups and their grants.
    pub fn groups(&self) -> impl Iterator<Item = (&str, &[Grant])> {
        self.groups.iter().map(|(g, grants)| (g.as_str(), grants.as_slice()))
    }

    /// Whether the shared bootstrap token is configured.
    pub fn has_bootstrap(&self) -> bool {
        self.bootstrap.is_some()
    }

    /// Whether anyone at all can sign in.
    pub fn is_empty(&self) -> bool {
        self.bootstrap.is_none() && self.tokens.is_empty() && self.groups.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scoped(role: Role, partners: &[&str], agreements: &[&str]) -> Grant {
        Grant {
            role,
            scope: Scope {
                partners: partners.iter().map(|s| s.to_string()).collect(),
                agreements: agreements.iter().map(|s| s.to_string()).collect(),
            },
        }
    }

    #[test]
    fn each_role_holds_exactly_its_permissions() {
        use Permission as P;
        let held = |role: Role| -> Vec<Permission> { P::ALL.into_iter().filter(|p| role.grants(*p)).collect() };
        assert_eq!(held(Role::Viewer), [P::View]);
        assert_eq!(held(Role::Operator), [P::View, P::Replay, P::Reload]);
        assert_eq!(held(Role::Auditor), [P::View, P::ReadAudit, P::ReadBodies, P::ReadAccess]);
        assert_eq!(held(Role::Admin), P::ALL);
        assert_eq!(P::Replay.roles().collect::<Vec<_>>(), [Role::Operator, Role::Admin]);
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_scoped_grant_covers_only_its_partners_and_agreements() {
        let ontario = Operator {
            name: "ops-on".into(),
            grants: vec![Grant::whole(Role::Viewer), scoped(Role::Operator, &["on-vital-stats"], &[])],
            credential: Credential::Token,
        };
        let to_ontario = Target { partners: &["esdc-sin-registry", "on-vital-stats"], agreement: Some("birth-esdc") };
        let elsewhere = Target { partners: &["nt-vital-stats", "ottawa-city"], agreement: Some("birth-ottawa") };
        assert!(ontario.may(Permission::Replay));
        assert!(!ontario.may_everywhere(Permission::Replay));
        assert!(ontario.may_everywhere(Permission::View));
        assert!(ontario.may_on(Permission::Replay, &to_ontario));
        assert!(!ontario.may_on(Permission::Replay, &elsewhere));
        assert!(!ontario.may(Permission::ReadAudit));

        let one_agreement = scoped(Role::Operator, &[], &["birth-esdc"]);
        assert!(one_agreement.scope.covers(&to_ontario));
        assert!(!one_agreement.scope.covers(&elsewhere));
        // A whole recipient has no agreement: an agreement-limited grant does not cover it.
        assert!(!one_agreement.scope.covers(&Target { partners: &["esdc-sin-registry"], agreement: None }));
    }

    #[test]
    fn tokens_resolve_to_their_operator_and_the_bootstrap_token_to_an_admin() {
        let alice = Entry { name: "alice".into(), grants: vec![Grant::whole(Role::Auditor)] };
        let directory = Directory::new(vec![(alice, vec![sha256(b"alice-token")])], Some("shared"))
            .with_group("passerelle-ops", vec![Grant::whole(Role::Operator)]);
        let alice = directory.by_token("alice-token").expect("alice");
        assert_eq!(
            (alice.name.as_str(), alice.roles(), alice.credential),
            ("alice", vec![Role::Auditor], Credential::Token)
        );
        assert_eq!(alice.actor(), "operator:alice");
        let bootstrap = directory.by_token("shared").expect("bootstrap");
        assert_eq!((bootstrap.name.as_str(), bootstrap.roles()), (BOOTSTRAP, vec![Role::Admin]));
        assert!(directory.by_token("guess").is_none());

        let bob = directory.by_sign_in("bob", &["passerelle-ops".into(), "other".into()]).expect("bob");
        assert_eq!((bob.roles(), bob.credential), (vec![Role::Operator], Credential::OpenId));
        // Alice signing in through OpenID keeps her own grants too.
        let alice = directory.by_sign_in("alice", &["passerelle-ops".into()]).expect("alice");
        assert_eq!(alice.roles(), [Role::Operator, Role::Auditor]);
        assert!(directory.by_sign_in("mallory", &["other".into()]).is_none());
    }
}
