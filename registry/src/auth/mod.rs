//! Who may push and pull: accounts from a file, HTTP Basic and bearer
//! tokens, rights per namespace, anonymous pull per namespace.
//!
//! The files (accounts, token signing secret) are read again when they
//! change, so a rotated Secret needs no restart. Turning authentication on
//! or off, or pointing at other files, needs one.

pub mod accounts;
pub mod limiter;
pub mod token;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};

use arc_swap::ArcSwap;
use sha2::{Digest as _, Sha256};

use accounts::{AccountsFile, Action, namespace_of};
use limiter::FailedLogins;
use token::{Claims, Scope, TokenError, TokenKey};

/// The `service` of our challenges and the audience of our tokens.
pub const SERVICE: &str = "quarry-registry";

/// Path of the token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// Checked against when the account does not exist, so a wrong name takes
/// as long as a wrong password.
static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| accounts::hash_password("quarry-dummy").unwrap_or_default());

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No credentials.
    Anonymous,
    /// HTTP Basic with a valid password.
    Account(String),
    /// A valid bearer token.
    Token(Claims),
}

impl Caller {
    /// The account behind the caller, if any.
    pub fn account(&self) -> Option<&str> {
        match self {
            Caller::Anonymous => None,
            Caller::Account(name) => Some(name),
            Caller::Token(claims) if claims.sub.is_empty() => None,
            Caller::Token(claims) => Some(&claims.sub),
        }
    }
}

/// The answer to "may this caller do this here?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// 401 with a challenge: credentials (or a token with this scope)
    /// would be accepted.
    Challenge,
    /// 403: the account does not have the right.
    Deny,
}

/// The authentication state of a running registry.
pub struct Auth {
    accounts_path: PathBuf,
    key_path: PathBuf,
    accounts: ArcSwap<AccountsFile>,
    key: ArcSwap<TokenKey>,
    /// sha256 of the files as last loaded, to notice changes.
    loaded: Mutex<[u8; 32]>,
    /// Credentials already checked with bcrypt: salted fingerprint of
    /// name + password -> the hash they matched. Valid while the account
    /// keeps that hash.
    verified: Mutex<HashMap<[u8; 32], String>>,
    salt: [u8; 32],
    pub failed_logins: FailedLogins,
    /// bcrypt checks running at once (each takes a core for tens of
    /// milliseconds): a flood of logins must not starve pulls.
    password_checks: tokio::sync::Semaphore,
}

/// How long a login waits for a free password check before it is told to
/// come back (429).
const PASSWORD_CHECK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Every password check slot stayed busy for `PASSWORD_CHECK_WAIT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordChecksBusy;

/// Password checks run at once by default: one per core.
pub fn default_password_checks() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("accounts_path", &self.accounts_path)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

fn read_key(path: &Path) -> Result<(Vec<u8>, TokenKey), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("AUTH_TOKEN_KEY_FILE: cannot read {}: {e}", path.display()))?;
    let key = TokenKey::from_secret(&bytes)
        .map_err(|e| format!("AUTH_TOKEN_KEY_FILE {}: {e}", path.display()))?;
    Ok((bytes, key))
}

fn read_accounts(path: &Path) -> Result<(Vec<u8>, AccountsFile), String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("AUTH_ACCOUNTS_FILE: cannot read {}: {e}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let file = AccountsFile::from_yaml(&text).map_err(|problems| {
        format!(
            "AUTH_ACCOUNTS_FILE {}:\n  - {}",
            path.display(),
            problems.join("\n  - ")
        )
    })?;
    Ok((bytes, file))
}

fn fingerprint(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().into()
}

impl Auth {
    /// Authentication from an accounts file and a token signing key file
    /// (both re-read by `reload`).
    pub fn from_files(accounts_path: &Path, key_path: &Path) -> Result<Auth, String> {
        let (accounts_path, key_path) = (accounts_path.to_path_buf(), key_path.to_path_buf());
        let (account_bytes, accounts) = read_accounts(&accounts_path)?;
        let (key_bytes, key) = read_key(&key_path)?;
        Ok(Auth {
            accounts_path,
            key_path,
            accounts: ArcSwap::from_pointee(accounts),
            key: ArcSwap::from_pointee(key),
            loaded: Mutex::new(fingerprint(&[&account_bytes, &key_bytes])),
            verified: Mutex::new(HashMap::new()),
            salt: rand::random(),
            failed_logins: FailedLogins::default(),
            password_checks: tokio::sync::Semaphore::new(default_password_checks()),
        })
    }

    /// The same with at most `checks` bcrypt checks at once (at least 1).
    pub fn with_password_checks(mut self, checks: usize) -> Auth {
        self.password_checks = tokio::sync::Semaphore::new(checks.max(1));
        self
    }

    /// Read the files again; swap them in when they changed and are valid.
    /// `Ok(true)`: new content in force. A bad file keeps the old content.
    pub fn reload(&self) -> Result<bool, String> {
        let (account_bytes, accounts) = read_accounts(&self.accounts_path)?;
        let (key_bytes, key) = read_key(&self.key_path)?;
        let print = fingerprint(&[&account_bytes, &key_bytes]);
        let mut loaded = self.loaded.lock().unwrap_or_else(|e| e.into_inner());
        if *loaded == print {
            return Ok(false);
        }
        self.accounts.store(std::sync::Arc::new(accounts));
        self.key.store(std::sync::Arc::new(key));
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        *loaded = print;
        Ok(true)
    }

    /// The account named `name` when `password` is its password.
    /// Takes a bcrypt check (tens of milliseconds) unless these exact
    /// credentials were checked before; `Err` when no check could start
    /// within `PASSWORD_CHECK_WAIT`.
    pub async fn check_password(
        &self,
        name: &str,
        password: &str,
    ) -> Result<Option<String>, PasswordChecksBusy> {
        let accounts = self.accounts.load_full();
        let current_hash = accounts.accounts.get(name).map(|a| a.password_hash.clone());
        let print = fingerprint(&[&self.salt, name.as_bytes(), password.as_bytes()]);
        if let Some(hash) = &current_hash {
            let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
            if verified.get(&print) == Some(hash) {
                return Ok(Some(name.to_string()));
            }
        }
        let _slot = tokio::time::timeout(PASSWORD_CHECK_WAIT, self.password_checks.acquire())
            .await
            .map_err(|_| PasswordChecksBusy)?
            .map_err(|_| PasswordChecksBusy)?;
        let hash = current_hash.clone().unwrap_or_else(|| DUMMY_HASH.clone());
        let password = password.to_string();
        let matches =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
        match (matches, current_hash) {
            (true, Some(hash)) => {
                let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
                if verified.len() > 10_000 {
                    verified.clear();
                }
                verified.insert(print, hash);
                Ok(Some(name.to_string()))
            }
            _ => Ok(None),
        }
    }

    /// Check a bearer token.
    pub fn verify_token(&self, token: &str) -> Result<Claims, TokenError> {
        self.key.load().verify(token, SERVICE)
    }

    /// Sign a token for `account` (None: anonymous).
    pub fn issue_token(
        &self,
        account: Option<&str>,
        access: Vec<Scope>,
        lifetime_secs: u64,
    ) -> Result<(String, Claims), String> {
        self.key
            .load()
            .issue(account.unwrap_or_default(), SERVICE, access, lifetime_secs)
    }

    /// Whether `account` exists now.
    pub fn has_account(&self, account: &str) -> bool {
        self.accounts.load().accounts.contains_key(account)
    }

    /// What `account` (None: anonymous) may do in `repo` now.
    pub fn rights(&self, account: Option<&str>, repo: &str, anonymous: &[String]) -> Vec<Action> {
        let mut rights = match account {
            Some(name) => self.accounts.load().rights(name, repo),
            None => vec![],
        };
        if anonymous_may_pull(anonymous, repo) && !rights.contains(&Action::Pull) {
            rights.insert(0, Action::Pull);
        }
        rights
    }

    /// Whether `account` (None: anonymous) may pull from every namespace.
    pub fn may_pull_everywhere(&self, account: Option<&str>, anonymous: &[String]) -> bool {
        let everywhere = |access: &std::collections::BTreeMap<String, Vec<Action>>| {
            access
                .get(accounts::ALL_NAMESPACES)
                .is_some_and(|a| a.contains(&Action::Pull))
        };
        anonymous.iter().any(|n| n == accounts::ALL_NAMESPACES)
            || account.is_some_and(|name| {
                self.accounts
                    .load()
                    .accounts
                    .get(name)
                    .is_some_and(|a| everywhere(&a.access))
            })
    }

    /// Whether `caller` may do `action` in `repo`; what to answer if not.
    pub fn decide(
        &self,
        caller: &Caller,
        repo: &str,
        action: Action,
        anonymous: &[String],
    ) -> Verdict {
        let account_may = self
            .rights(caller.account(), repo, anonymous)
            .contains(&action);
        match caller {
            Caller::Anonymous if account_may => Verdict::Allow,
            Caller::Anonymous => Verdict::Challenge,
            Caller::Account(_) if account_may => Verdict::Allow,
            Caller::Account(_) => Verdict::Deny,
            // A token must grant the action and the account must still
            // have it (a removed right takes effect at once).
            Caller::Token(claims) => {
                let token_grants = claims.access.iter().any(|s| s.allows(repo, action));
                match (token_grants, account_may) {
                    (true, true) => Verdict::Allow,
                    // A new token with this scope would be granted.
                    (false, true) => Verdict::Challenge,
                    (_, false) if caller.account().is_none() => Verdict::Challenge,
                    (_, false) => Verdict::Deny,
                }
            }
        }
    }
}

/// Read the accounts and key files again every `every`; log what changed
/// and why a bad file was not taken.
pub async fn watch(auth: std::sync::Arc<Auth>, every: std::time::Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_error = None::<String>;
    loop {
        tick.tick().await;
        let auth_now = auth.clone();
        match tokio::task::spawn_blocking(move || auth_now.reload()).await {
            Ok(Ok(true)) => {
                last_error = None;
                tracing::info!(
                    accounts = auth.accounts.load().accounts.len(),
                    "accounts or token key reloaded"
                );
            }
            Ok(Ok(false)) => last_error = None,
            Ok(Err(e)) => {
                if last_error.as_ref() != Some(&e) {
                    tracing::warn!(error = %e, "accounts or token key file changed but is not valid; keeping the previous one");
                    last_error = Some(e);
                }
            }
            Err(e) => tracing::warn!(error = %e, "accounts reload task failed"),
        }
    }
}

/// Whether anonymous callers may pull from `repo`.
pub fn anonymous_may_pull(anonymous: &[String], repo: &str) -> bool {
    let ns = namespace_of(repo);
    anonymous
        .iter()
        .any(|n| n == accounts::ALL_NAMESPACES || n == ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_with(dir: &Path, accounts_yaml: &str) -> Auth {
        let accounts = dir.join("accounts.yaml");
        let key = dir.join("token.key");
        std::fs::write(&accounts, accounts_yaml).unwrap();
        std::fs::write(&key, [1u8; 40]).unwrap();
        Auth::from_files(&accounts, &key).unwrap()
    }

    fn accounts_yaml(hash: &str) -> String {
        format!(
            "accounts:\n  admin:\n    password_hash: \"{hash}\"\n    access: {{\"*\": [pull, push, delete]}}\n  team+reader:\n    password_hash: \"{hash}\"\n    access: {{team: [pull]}}\n"
        )
    }

    /// With every check slot taken, a login waits, then is told to come
    /// back; a cached login needs no slot.
    #[tokio::test]
    async fn password_checks_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = auth_with(dir.path(), &accounts_yaml(&hash)).with_password_checks(1);
        assert_eq!(
            auth.check_password("admin", "pw").await,
            Ok(Some("admin".into()))
        );
        let held = auth.password_checks.acquire().await.unwrap();
        let started = std::time::Instant::now();
        assert_eq!(
            auth.check_password("admin", "wrong").await,
            Err(PasswordChecksBusy)
        );
        assert!(started.elapsed() >= PASSWORD_CHECK_WAIT);
        assert_eq!(
            auth.check_password("admin", "pw").await,
            Ok(Some("admin".into()))
        );
        drop(held);
        assert_eq!(auth.check_password("admin", "wrong").await, Ok(None));
    }

    #[tokio::test]
    async fn passwords_are_checked_and_cached_per_hash() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = auth_with(dir.path(), &accounts_yaml(&hash));
        assert_eq!(
            auth.check_password("admin", "pw").await,
            Ok(Some("admin".into()))
        );
        assert_eq!(
            auth.check_password("admin", "pw").await,
            Ok(Some("admin".into()))
        );
        assert_eq!(auth.check_password("admin", "wrong").await, Ok(None));
        assert_eq!(auth.check_password("ghost", "pw").await, Ok(None));
        // A new password in the file: the cached one no longer works.
        let new_hash = bcrypt::hash("pw2", 4).unwrap();
        std::fs::write(dir.path().join("accounts.yaml"), accounts_yaml(&new_hash)).unwrap();
        assert_eq!(auth.reload(), Ok(true));
        assert_eq!(auth.reload(), Ok(false));
        assert_eq!(auth.check_password("admin", "pw").await, Ok(None));
        assert_eq!(
            auth.check_password("admin", "pw2").await,
            Ok(Some("admin".into()))
        );
        // A broken file keeps what is in force.
        std::fs::write(dir.path().join("accounts.yaml"), "accounts: [").unwrap();
        assert!(auth.reload().is_err());
        assert_eq!(
            auth.check_password("admin", "pw2").await,
            Ok(Some("admin".into()))
        );
    }

    #[test]
    fn verdicts() {
        let dir = tempfile::tempdir().unwrap();
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = auth_with(dir.path(), &accounts_yaml(&hash));
        let public = vec!["public".to_string()];
        let reader = Caller::Account("team+reader".into());
        use Verdict::*;
        assert_eq!(
            auth.decide(&Caller::Anonymous, "team/a", Action::Pull, &public),
            Challenge
        );
        assert_eq!(
            auth.decide(&Caller::Anonymous, "public/a", Action::Pull, &public),
            Allow
        );
        assert_eq!(
            auth.decide(&Caller::Anonymous, "public/a", Action::Push, &public),
            Challenge
        );
        assert_eq!(auth.decide(&reader, "team/a", Action::Pull, &public), Allow);
        assert_eq!(auth.decide(&reader, "team/a", Action::Push, &public), Deny);
        assert_eq!(auth.decide(&reader, "other/a", Action::Pull, &public), Deny);
        assert_eq!(
            auth.decide(&reader, "public/x", Action::Pull, &public),
            Allow
        );

        let scope = |s: &str| Scope::parse(s).unwrap();
        let (_, claims) = auth
            .issue_token(Some("admin"), vec![scope("repository:a:pull,push")], 60)
            .unwrap();
        let token = Caller::Token(claims);
        assert_eq!(auth.decide(&token, "a", Action::Push, &public), Allow);
        // Same account, other repository: a new token would be granted.
        assert_eq!(auth.decide(&token, "b", Action::Push, &public), Challenge);
        let (_, claims) = auth
            .issue_token(
                Some("team+reader"),
                vec![scope("repository:team/a:pull,push")],
                60,
            )
            .unwrap();
        let token = Caller::Token(claims);
        assert_eq!(auth.decide(&token, "team/a", Action::Pull, &public), Allow);
        assert_eq!(auth.decide(&token, "team/a", Action::Push, &public), Deny);
        let (_, claims) = auth.issue_token(None, vec![], 60).unwrap();
        assert_eq!(
            auth.decide(&Caller::Token(claims), "team/a", Action::Pull, &public),
            Challenge
        );
    }
}
