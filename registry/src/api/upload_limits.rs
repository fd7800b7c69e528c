//! Bounds on unfinished uploads, so one client cannot fill the disk or the
//! session table: sessions open at once and bytes staged in them, each
//! overall and per client (the account, or the address when anonymous).
//!
//! The ledger is this replica's: it counts the sessions this process has
//! seen (created here, or resumed here after a restart or from another
//! replica). Bytes are charged as they arrive, so two chunks streaming at
//! once cannot together pass a limit; a refused chunk is rolled back by
//! storage and its charge returned.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::RegistryConfig;
use crate::error::RegistryError;

/// Who holds a session, for the per-client limits.
pub(crate) fn client_key(account: Option<&str>, ip: std::net::IpAddr) -> String {
    match account {
        Some(account) => format!("account {account:?}"),
        None => format!("address {ip}"),
    }
}

/// The limits in force, read from the config of the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub sessions: usize,
    pub sessions_per_client: usize,
    pub staged_bytes: u64,
    pub staged_bytes_per_client: u64,
    /// Sessions idle longer than this are purged by storage; the ledger
    /// forgets them too.
    pub stale_after: Duration,
}

impl Limits {
    pub fn of(config: &RegistryConfig) -> Limits {
        Limits {
            sessions: config.maximum_upload_sessions,
            sessions_per_client: config.maximum_upload_sessions_per_client,
            staged_bytes: config.maximum_staged_upload_bytes,
            staged_bytes_per_client: config.maximum_staged_upload_bytes_per_client,
            stale_after: Duration::from_secs(config.blob_upload_stale_seconds),
        }
    }
}

/// Why bytes of a body were refused: carried inside the body stream's
/// `io::Error`, so the handler can answer 413 rather than 400.
#[derive(Debug, thiserror::Error)]
#[error(
    "the upload would stage {would_hold} bytes for {holder}, over {key} = {limit}; finish or cancel other uploads first"
)]
pub(crate) struct StagedBytesExceeded {
    pub holder: String,
    pub key: &'static str,
    pub limit: u64,
    pub would_hold: u64,
}

struct Session {
    client: String,
    staged: u64,
    touched: Instant,
}

/// The sessions, with running totals kept beside them: bytes are charged
/// for every chunk of every upload, so a charge must not walk the map.
#[derive(Default)]
struct Book {
    sessions: HashMap<String, Session>,
    staged_total: u64,
    /// Per client: sessions held and bytes they stage.
    by_client: HashMap<String, (usize, u64)>,
}

impl Book {
    /// Add a session unless `id` is already known.
    fn insert(&mut self, id: &str, client: &str, staged: u64) {
        if self.sessions.contains_key(id) {
            return;
        }
        let totals = self.by_client.entry(client.to_string()).or_default();
        totals.0 += 1;
        totals.1 += staged;
        self.staged_total += staged;
        self.sessions.insert(
            id.to_string(),
            Session {
                client: client.to_string(),
                staged,
                touched: Instant::now(),
            },
        );
    }

    fn remove(&mut self, id: &str) {
        let Some(session) = self.sessions.remove(id) else {
            return;
        };
        self.staged_total -= session.staged;
        if let Some(totals) = self.by_client.get_mut(&session.client) {
            totals.0 -= 1;
            totals.1 -= session.staged;
            if totals.0 == 0 {
                self.by_client.remove(&session.client);
            }
        }
    }

    /// Set what session `id` stages (and note it active).
    fn set_staged(&mut self, id: &str, staged: u64) {
        let Some(session) = self.sessions.get_mut(id) else {
            return;
        };
        self.staged_total = self.staged_total - session.staged + staged;
        if let Some(totals) = self.by_client.get_mut(&session.client) {
            totals.1 = totals.1 - session.staged + staged;
        }
        session.staged = staged;
        session.touched = Instant::now();
    }

    fn forget_stale(&mut self, stale_after: Duration) {
        let now = Instant::now();
        let stale: Vec<String> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.duration_since(s.touched) >= stale_after)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove(&id);
        }
    }

    fn of_client(&self, client: &str) -> (usize, u64) {
        self.by_client.get(client).copied().unwrap_or_default()
    }
}

/// This replica's open upload sessions and the bytes they hold.
#[derive(Default)]
pub struct UploadLedger {
    book: Mutex<Book>,
}

impl UploadLedger {
    fn book(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the map half-updated
        // in a way that matters more than losing the counts.
        self.book
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Admit a new session for `client`, or say which limit it would pass.
    pub(crate) fn open(
        &self,
        limits: &Limits,
        id: &str,
        client: &str,
    ) -> Result<(), RegistryError> {
        let mut book = self.book();
        book.forget_stale(limits.stale_after);
        if book.sessions.len() >= limits.sessions {
            return Err(RegistryError::UploadSessionsBusy(format!(
                "this registry holds {} unfinished upload sessions, the limit MAXIMUM_UPLOAD_SESSIONS; retry when uploads finish",
                book.sessions.len()
            )));
        }
        let (held, _) = book.of_client(client);
        if held >= limits.sessions_per_client {
            return Err(RegistryError::UploadSessionsBusy(format!(
                "{client} holds {held} unfinished upload sessions, the limit MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT; finish or cancel some (idle sessions expire after {} s)",
                limits.stale_after.as_secs()
            )));
        }
        book.insert(id, client, 0);
        Ok(())
    }

    /// Note a session this replica did not open (it resumes an upload
    /// started before a restart or on another replica), holding `size`.
    pub(crate) fn adopt(&self, id: &str, client: &str, size: u64) {
        self.book().insert(id, client, size);
    }

    /// Whether session `id` may hold `n` more bytes.
    pub(crate) fn check(
        &self,
        limits: &Limits,
        id: &str,
        n: u64,
    ) -> Result<(), StagedBytesExceeded> {
        Self::fits(&self.book(), limits, id, n)
    }

    /// Charge `n` more bytes to session `id`, or refuse them.
    pub(crate) fn charge(
        &self,
        limits: &Limits,
        id: &str,
        n: u64,
    ) -> Result<(), StagedBytesExceeded> {
        let mut book = self.book();
        Self::fits(&book, limits, id, n)?;
        if let Some(staged) = book.sessions.get(id).map(|s| s.staged) {
            book.set_staged(id, staged + n);
        }
        Ok(())
    }

    fn fits(book: &Book, limits: &Limits, id: &str, n: u64) -> Result<(), StagedBytesExceeded> {
        // Sessions this replica does not know are not charged here.
        let Some(client) = book.sessions.get(id).map(|s| s.client.as_str()) else {
            return Ok(());
        };
        let (_, of_client) = book.of_client(client);
        if of_client + n > limits.staged_bytes_per_client {
            return Err(StagedBytesExceeded {
                holder: client.to_string(),
                key: "MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT",
                limit: limits.staged_bytes_per_client,
                would_hold: of_client + n,
            });
        }
        let total = book.staged_total;
        if total + n > limits.staged_bytes {
            return Err(StagedBytesExceeded {
                holder: "all unfinished uploads of this registry".into(),
                key: "MAXIMUM_STAGED_UPLOAD_BYTES",
                limit: limits.staged_bytes,
                would_hold: total + n,
            });
        }
        Ok(())
    }

    /// Set what session `id` holds after a request, as storage reports it
    /// (a refused or broken chunk was rolled back).
    pub(crate) fn settle(&self, id: &str, size: u64) {
        self.book().set_staged(id, size);
    }

    /// The session ended: committed, cancelled or failed.
    pub(crate) fn close(&self, id: &str) {
        self.book().remove(id);
    }
}

/// A charge callback for one request's body.
pub(crate) fn charger(
    ledger: Arc<UploadLedger>,
    limits: Limits,
    id: String,
) -> impl FnMut(u64) -> Result<(), StagedBytesExceeded> + Send + 'static {
    move |n| ledger.charge(&limits, &id, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            sessions: 3,
            sessions_per_client: 2,
            staged_bytes: 100,
            staged_bytes_per_client: 60,
            stale_after: Duration::from_secs(3600),
        }
    }

    #[test]
    fn sessions_are_bounded_per_client_and_overall() {
        let ledger = UploadLedger::default();
        let l = limits();
        ledger.open(&l, "a1", "alice").unwrap();
        ledger.open(&l, "a2", "alice").unwrap();
        let e = ledger.open(&l, "a3", "alice").unwrap_err().to_string();
        assert!(e.contains("MAXIMUM_UPLOAD_SESSIONS_PER_CLIENT"), "{e}");
        ledger.open(&l, "b1", "bob").unwrap();
        let e = ledger.open(&l, "c1", "carol").unwrap_err().to_string();
        assert!(e.contains("MAXIMUM_UPLOAD_SESSIONS;"), "{e}");
        ledger.close("a1");
        ledger.open(&l, "c1", "carol").unwrap();
    }

    #[test]
    fn stale_sessions_are_forgotten_with_their_bytes() {
        let ledger = UploadLedger::default();
        let l = Limits {
            stale_after: Duration::ZERO,
            ..limits()
        };
        ledger.open(&l, "a1", "alice").unwrap();
        ledger.charge(&l, "a1", 60).unwrap();
        // Opening a2 forgets a1 (idle for longer than zero): its bytes and
        // its place no longer count.
        ledger.open(&l, "a2", "alice").unwrap();
        ledger.open(&l, "a3", "alice").unwrap();
        ledger.charge(&l, "a3", 60).unwrap();
        let book = ledger.book();
        assert_eq!(book.staged_total, 60);
        assert_eq!(book.of_client("alice"), (1, 60));
    }

    #[test]
    fn bytes_are_charged_as_they_arrive_and_settled_after() {
        let ledger = UploadLedger::default();
        let l = limits();
        ledger.open(&l, "a1", "alice").unwrap();
        ledger.open(&l, "a2", "alice").unwrap();
        ledger.open(&l, "b1", "bob").unwrap();
        ledger.charge(&l, "a1", 40).unwrap();
        let e = ledger.charge(&l, "a2", 30).unwrap_err();
        assert_eq!(e.key, "MAXIMUM_STAGED_UPLOAD_BYTES_PER_CLIENT");
        assert_eq!(e.would_hold, 70);
        ledger.charge(&l, "a2", 20).unwrap();
        ledger.charge(&l, "b1", 40).unwrap();
        let e = ledger.charge(&l, "b1", 1).unwrap_err();
        assert_eq!(e.key, "MAXIMUM_STAGED_UPLOAD_BYTES");
        // A rolled-back chunk returns its charge.
        ledger.settle("a1", 0);
        ledger.charge(&l, "b1", 1).unwrap();
        // Unknown sessions (another replica's, say) are not charged here.
        ledger.charge(&l, "zz", 1_000).unwrap();
        ledger.adopt("zz", "zed", 5);
        assert!(ledger.charge(&l, "zz", 56).is_err());
    }
}
