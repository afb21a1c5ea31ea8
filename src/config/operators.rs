//! The operators file (`[admin] operators_file`): named operators, their grants and the digests
//! of their tokens, checked against the partners and agreements and built into the
//! [`Directory`] the admin API authorises by.
//!
//! ```toml
//! [[operator]]
//! name = "amelie.roy"
//! roles = ["viewer"]                       # over the whole gateway
//! token_sha256 = ["9f86d08…"]              # printf %s "$TOKEN" | sha256sum
//!
//! [[operator.grant]]                       # a role over some partners or agreements
//! role = "operator"
//! partners = ["on-vital-stats"]
//! ```

use std::collections::BTreeSet;
use std::path::Path;

use super::raw;
use super::sources::{Sources, problem};
use crate::operators::{BOOTSTRAP, Directory, Entry, Grant, Role, Scope, is_name};
use crate::problem::Problem;

/// What grants may name: the partners and agreements the configuration defines.
pub(super) struct Known<'a> {
    pub partners: BTreeSet<&'a str>,
    pub agreements: BTreeSet<&'a str>,
}

/// The directory of the operators file (none: only the bootstrap token, if any), with the
/// bootstrap token in force.
pub(super) fn load(
    files: &Sources,
    file: Option<&Path>,
    bootstrap: Option<&str>,
    known: &Known<'_>,
    problems: &mut Vec<Problem>,
) -> Directory {
    let Some(file) = file else { return Directory::new(Vec::new(), bootstrap) };
    let Some(raw) = files.read_toml::<raw::RawOperators>(file, problems) else {
        return Directory::new(Vec::new(), bootstrap);
    };
    let mut names = BTreeSet::new();
    let mut digests = BTreeSet::new();
    let mut entries = Vec::new();
    for op in &raw.operators {
        let at = |message: String| problem(file, format!("operator `{}`: {message}", op.name), None);
        if !is_name(&op.name) || op.name == BOOTSTRAP {
            problems.push(problem(
                file,
                format!(
                    "operator name `{}` must be 1 to 64 of a-z, 0-9, `.`, `-`, `_`, `@`, and not `{BOOTSTRAP}`",
                    op.name
                ),
                None,
            ));
            continue;
        }
        if !names.insert(op.name.as_str()) {
            problems.push(at("is defined twice".into()));
            continue;
        }
        let mut grants = Vec::new();
        for role in &op.roles {
            match role.parse::<Role>() {
                Ok(role) => grants.push(Grant::whole(role)),
                Err(e) => problems.push(at(e)),
            }
        }
        for g in &op.grant {
            grants.extend(grant(g, known).map_err(|e| problems.push(at(e))).ok());
        }
        if grants.is_empty() {
            problems.push(at("holds no role: give it `roles` or an `[[operator.grant]]`".into()));
        }
        let mut tokens = Vec::new();
        for hex in &op.token_sha256 {
            match crate::digest::decode_hex(hex).and_then(|b| <[u8; 32]>::try_from(b).ok()) {
                Some(d) if digests.insert(d) => tokens.push(d),
                Some(_) => {
                    problems.push(at("a token digest is listed twice: each token belongs to one operator".into()))
                }
                None => problems.push(at(format!("token_sha256 `{hex}` is not 64 hex digits"))),
            }
        }
        entries.push((Entry { name: op.name.clone(), grants }, tokens));
    }
    Directory::new(entries, bootstrap)
}

/// One grant, its role known and its partners and agreements defined.
pub(super) fn grant(raw: &raw::RawGrant, known: &Known<'_>) -> Result<Grant, String> {
    let role = raw.role.parse::<Role>()?;
    let unknown_partner = raw.partners.iter().find(|p| !known.partners.contains(p.as_str()));
    let unknown_agreement = raw.agreements.iter().find(|a| !known.agreements.contains(a.as_str()));
    if let Some(p) = unknown_partner {
        return Err(format!("grant of `{role}` names partner `{p}`, which the partners file does not define"));
    }
    if let Some(a) = unknown_agreement {
        return Err(format!("grant of `{role}` names agreement `{a}`, which no agreement file defines"));
    }
    let scope = Scope {
        partners: raw.partners.iter().cloned().collect(),
        agreements: raw.agreements.iter().cloned().collect(),
    };
    Ok(Grant { role, scope })
}
