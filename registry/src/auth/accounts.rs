//! Accounts: users and robot accounts with bcrypt password hashes and
//! per-namespace rights, read from a YAML file (a mounted Secret).
//!
//! ```yaml
//! accounts:
//!   admin:
//!     password_hash: "$2b$12$..."     # quarry-registry hash-password
//!     access:
//!       "*": [pull, push, delete]     # every namespace
//!   team-a+ci:                        # a robot account, Quay's org+name style
//!     password_hash: "$2b$12$..."
//!     access:
//!       team-a: [pull, push]
//! ```
//!
//! A namespace is the first path segment of a repository name (`team-a` in
//! `team-a/app/api`), like Quay's organizations.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// bcrypt cost of hashes this program makes (about 60 ms on one core).
pub const HASH_COST: u32 = 10;

/// Key under which the operator stores the accounts file in its Secret.
pub const ACCOUNTS_FILE_KEY: &str = "accounts.yaml";

pub use crate::names::{ALL_NAMESPACES, valid_namespace};

/// What an account may do in a repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read manifests, blobs, tags and referrers.
    Pull,
    /// Upload blobs and manifests, create and move tags.
    Push,
    /// Delete manifests, tags and blobs.
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        }
    }

    /// The action named by a token scope (`*` is every action).
    pub fn parse_scope_action(s: &str) -> Vec<Action> {
        match s {
            "pull" => vec![Action::Pull],
            "push" => vec![Action::Push],
            "delete" => vec![Action::Delete],
            "*" => vec![Action::Pull, Action::Push, Action::Delete],
            _ => vec![],
        }
    }
}

/// One account: a user or a robot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// bcrypt hash of the password (`$2b$…`, `$2y$…` or `$2a$…`).
    pub password_hash: String,
    /// Namespace (or `*`) -> rights there.
    #[serde(default)]
    pub access: BTreeMap<String, Vec<Action>>,
}

/// The accounts file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsFile {
    /// Account name -> account.
    #[serde(default)]
    pub accounts: BTreeMap<String, Account>,
}

/// Account names: what `docker login` accepts and a robot's `org+name`.
fn valid_account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@'))
}

impl AccountsFile {
    /// Parse and check a file's text; every problem is listed.
    pub fn from_yaml(text: &str) -> Result<AccountsFile, Vec<String>> {
        let file: AccountsFile = if text.trim().is_empty() {
            AccountsFile::default()
        } else {
            serde_norway::from_str(text)
                .map_err(|e| vec![format!("not a valid accounts file: {e}")])?
        };
        let problems = file.problems();
        if problems.is_empty() {
            Ok(file)
        } else {
            Err(problems)
        }
    }

    /// Read and check a file.
    pub fn load(path: &Path) -> Result<AccountsFile, Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| vec![format!("cannot read {}: {e}", path.display())])?;
        Self::from_yaml(&text).map_err(|problems| {
            problems
                .into_iter()
                .map(|p| format!("{}: {p}", path.display()))
                .collect()
        })
    }

    /// Semantic checks the types cannot express.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, account) in &self.accounts {
            if !valid_account_name(name) {
                problems.push(format!(
                    "accounts.{name:?}: account names use letters, digits and . _ - + @"
                ));
            }
            if bcrypt_parts(&account.password_hash).is_none() {
                problems.push(format!(
                    "accounts.{name}.password_hash: not a bcrypt hash ($2b$<cost>$<53 characters>); make one with `quarry-registry hash-password`"
                ));
            }
            for ns in account.access.keys() {
                if !valid_namespace(ns) {
                    problems.push(format!(
                        "accounts.{name}.access.{ns:?}: not a namespace (the first segment of a repository name) or \"*\""
                    ));
                }
            }
        }
        problems
    }

    /// The rights `account` has in repository `repo`.
    pub fn rights(&self, account: &str, repo: &str) -> Vec<Action> {
        let Some(account) = self.accounts.get(account) else {
            return vec![];
        };
        rights_in(&account.access, repo)
    }
}

/// The rights an access map grants in `repo` (its namespace entry plus `*`).
pub fn rights_in(access: &BTreeMap<String, Vec<Action>>, repo: &str) -> Vec<Action> {
    let ns = namespace_of(repo);
    let mut rights: Vec<Action> = access
        .iter()
        .filter(|(pattern, _)| pattern.as_str() == ALL_NAMESPACES || pattern.as_str() == ns)
        .flat_map(|(_, actions)| actions.iter().copied())
        .collect();
    rights.sort();
    rights.dedup();
    rights
}

/// The namespace of a repository: its first path segment.
pub fn namespace_of(repo: &str) -> &str {
    repo.split('/').next().unwrap_or(repo)
}

/// `Some(cost)` when `hash` has the shape of a bcrypt hash.
fn bcrypt_parts(hash: &str) -> Option<u32> {
    let rest = hash
        .strip_prefix("$2b$")
        .or_else(|| hash.strip_prefix("$2y$"))
        .or_else(|| hash.strip_prefix("$2a$"))?;
    let (cost, tail) = rest.split_once('$')?;
    let cost: u32 = cost.parse().ok()?;
    ((4..=31).contains(&cost) && tail.len() == 53).then_some(cost)
}

/// A bcrypt hash of `password`, for the accounts file.
pub fn hash_password(password: &str) -> Result<String, bcrypt::BcryptError> {
    bcrypt::hash(password, HASH_COST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_accounts_and_rights() {
        let hash = hash_password("secret").unwrap();
        let yaml = format!(
            "accounts:\n  admin:\n    password_hash: \"{hash}\"\n    access: {{\"*\": [pull, push, delete]}}\n  team-a+ci:\n    password_hash: \"{hash}\"\n    access: {{team-a: [pull], team-b: [push]}}\n"
        );
        let file = AccountsFile::from_yaml(&yaml).unwrap();
        assert_eq!(
            file.rights("admin", "x/y"),
            vec![Action::Pull, Action::Push, Action::Delete]
        );
        assert_eq!(file.rights("team-a+ci", "team-a/app"), vec![Action::Pull]);
        assert_eq!(file.rights("team-a+ci", "team-a"), vec![Action::Pull]);
        assert_eq!(file.rights("team-a+ci", "team-ab/app"), vec![]);
        assert_eq!(file.rights("nobody", "team-a/app"), vec![]);
    }

    #[test]
    fn every_problem_is_named() {
        let yaml = "accounts:\n  \"bad name\":\n    password_hash: plain\n    access: {\"Team/A\": [pull]}\n";
        let problems = AccountsFile::from_yaml(yaml).unwrap_err();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[1].contains("password_hash"), "{problems:?}");
        assert!(problems[2].contains("Team/A"), "{problems:?}");
        let problems = AccountsFile::from_yaml("accounts:\n  a:\n    pasword: x\n").unwrap_err();
        assert!(problems[0].contains("pasword"), "{problems:?}");
        let problems = AccountsFile::from_yaml(
            "accounts:\n  a:\n    password_hash: x\n    access: {a: [pul]}\n",
        )
        .unwrap_err();
        assert!(problems[0].contains("pul"), "{problems:?}");
    }
}
