//! Generated accounts: the `admin` and `robot` accounts the operator makes
//! when the resource names no accounts Secret, the registry's accounts
//! file for them, the token signing key and the robot's pull secret.
//! Passwords and keys are made once and read back ever after; everything
//! derived from them is deterministic, so a resync writes nothing.

use std::collections::BTreeMap;

use base64::Engine;
use quarry_registry::auth::accounts::{
    ALL_NAMESPACES, Account, AccountsFile, Action, hash_password,
};
use rand::RngExt;
use sha2::{Digest, Sha256};

/// Name of the generated account with every right everywhere.
pub const ADMIN: &str = "admin";
/// Name of the generated pull-only account.
pub const ROBOT: &str = "robot";
/// Keys of the credentials Secret.
pub const ADMIN_USERNAME: &str = "admin-username";
pub const ADMIN_PASSWORD: &str = "admin-password";
pub const ROBOT_USERNAME: &str = "robot-username";
pub const ROBOT_PASSWORD: &str = "robot-password";
/// Key of the token signing secret in the auth Secret.
pub const TOKEN_KEY: &str = "token.key";
/// Shortest token signing secret the operator keeps (the registry's
/// minimum).
pub const MIN_TOKEN_KEY_LEN: usize = 32;

/// The generated accounts' names and passwords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub admin_username: String,
    pub admin_password: String,
    pub robot_username: String,
    pub robot_password: String,
}

/// A random password: 32 letters and digits (about 190 bits).
pub fn random_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

/// A random token signing secret: 64 hex digits (256 bits).
pub fn random_token_key() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    hex::encode(bytes)
}

impl Credentials {
    /// Fresh accounts.
    pub fn generate() -> Credentials {
        Credentials {
            admin_username: ADMIN.into(),
            admin_password: random_password(),
            robot_username: ROBOT.into(),
            robot_password: random_password(),
        }
    }

    /// Read back from the credentials Secret's data; None when a key is
    /// missing or empty (then they are generated again).
    pub fn from_data(data: &BTreeMap<String, Vec<u8>>) -> Option<Credentials> {
        let get = |k: &str| {
            data.get(k)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .filter(|v| !v.is_empty())
        };
        Some(Credentials {
            admin_username: get(ADMIN_USERNAME)?,
            admin_password: get(ADMIN_PASSWORD)?,
            robot_username: get(ROBOT_USERNAME)?,
            robot_password: get(ROBOT_PASSWORD)?,
        })
    }

    /// The credentials Secret's data.
    pub fn to_data(&self) -> BTreeMap<String, Vec<u8>> {
        BTreeMap::from([
            (
                ADMIN_USERNAME.into(),
                self.admin_username.clone().into_bytes(),
            ),
            (
                ADMIN_PASSWORD.into(),
                self.admin_password.clone().into_bytes(),
            ),
            (
                ROBOT_USERNAME.into(),
                self.robot_username.clone().into_bytes(),
            ),
            (
                ROBOT_PASSWORD.into(),
                self.robot_password.clone().into_bytes(),
            ),
        ])
    }

    /// Identifies these credentials (to know whether an accounts file was
    /// made from them) without revealing them.
    pub fn fingerprint(&self) -> String {
        source_fingerprint(&format!(
            "generated\0{}\0{}\0{}\0{}",
            self.admin_username, self.admin_password, self.robot_username, self.robot_password
        ))
    }

    /// The registry's accounts file for these accounts (bcrypt hashes;
    /// salted, so made only when the credentials change).
    pub fn accounts_yaml(&self) -> Result<String, String> {
        let hash = |p: &str| hash_password(p).map_err(|e| format!("bcrypt: {e}"));
        let file = AccountsFile {
            accounts: BTreeMap::from([
                (
                    self.admin_username.clone(),
                    Account {
                        password_hash: hash(&self.admin_password)?,
                        access: BTreeMap::from([(
                            ALL_NAMESPACES.to_string(),
                            vec![Action::Pull, Action::Push, Action::Delete],
                        )]),
                    },
                ),
                (
                    self.robot_username.clone(),
                    Account {
                        password_hash: hash(&self.robot_password)?,
                        access: BTreeMap::from([(ALL_NAMESPACES.to_string(), vec![Action::Pull])]),
                    },
                ),
            ]),
        };
        let text = serde_norway::to_string(&file).map_err(|e| e.to_string())?;
        Ok(format!(
            "# Generated by quarry-operator for the accounts in the credentials Secret.\n{text}"
        ))
    }

    /// `.dockerconfigjson` for the robot, for each host clients may use.
    pub fn robot_docker_config(&self, hosts: &[String]) -> String {
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.robot_username, self.robot_password));
        let auths: BTreeMap<&str, serde_json::Value> = hosts
            .iter()
            .map(|h| {
                (
                    h.as_str(),
                    serde_json::json!({
                        "username": self.robot_username,
                        "password": self.robot_password,
                        "auth": auth,
                    }),
                )
            })
            .collect();
        serde_json::json!({ "auths": auths }).to_string()
    }
}

/// sha256 (hex) of where an accounts file came from.
pub fn source_fingerprint(source: &str) -> String {
    hex::encode(Sha256::digest(source.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_accounts_round_trip_and_verify() {
        let c = Credentials::generate();
        assert_eq!(c.admin_password.len(), 32);
        assert_ne!(c.admin_password, c.robot_password);
        assert_eq!(Credentials::from_data(&c.to_data()), Some(c.clone()));
        let mut partial = c.to_data();
        partial.remove(ROBOT_PASSWORD);
        assert_eq!(Credentials::from_data(&partial), None);
        let yaml = c.accounts_yaml().unwrap();
        let file = AccountsFile::from_yaml(&yaml).unwrap();
        assert_eq!(
            file.rights("admin", "team/app"),
            vec![Action::Pull, Action::Push, Action::Delete]
        );
        assert_eq!(file.rights("robot", "team/app"), vec![Action::Pull]);
        assert!(bcrypt::verify(&c.admin_password, &file.accounts["admin"].password_hash).unwrap());
        assert_eq!(c.fingerprint(), c.clone().fingerprint());
        assert_ne!(c.fingerprint(), Credentials::generate().fingerprint());
        assert!(random_token_key().len() >= MIN_TOKEN_KEY_LEN);
    }

    #[test]
    fn docker_config_is_deterministic() {
        let c = Credentials {
            admin_username: "admin".into(),
            admin_password: "a".into(),
            robot_username: "robot".into(),
            robot_password: "r".into(),
        };
        let hosts = vec!["b.example:5000".to_string(), "a.example".to_string()];
        let json = c.robot_docker_config(&hosts);
        assert_eq!(json, c.robot_docker_config(&hosts));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["auths"]["a.example"]["auth"], "cm9ib3Q6cg==");
    }
}
