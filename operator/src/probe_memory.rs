//! Which probes (a bucket's write and delete, an upstream's login)
//! succeeded with exactly these settings, so later reconciles do not probe
//! them again.
//!
//! Without it every reconcile re-probed, and a configuration already
//! accepted turned `ConfigValid=False` whenever its upstream was briefly
//! unreachable — during the registry's own rollout when it mirrors from
//! itself, or in an outage the proxy cache exists to ride out — which
//! also blocked every other change (a certificate renewal) until the
//! upstream came back. Once accepted, such failures are the registry's to
//! report (its mirror status and metrics). Any changed input (endpoint,
//! keys, password, CA) is probed again; failures are never remembered, so
//! a fixed Secret is picked up at once.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

/// Fingerprints kept before the memory starts over (then each
/// configuration is probed once more).
const KEPT: usize = 10_000;

#[derive(Default)]
pub struct ProbeMemory {
    passed: Mutex<HashSet<[u8; 32]>>,
}

impl ProbeMemory {
    /// The result of `probe` for `settings`: `Ok` without probing when
    /// these very settings (`kind` tells probes of different things
    /// apart) passed before.
    pub async fn check<S: Hash>(
        &self,
        kind: &str,
        settings: &S,
        probe: impl Future<Output = Result<(), String>>,
    ) -> Result<(), String> {
        let key = fingerprint(kind, settings);
        if self.lock().contains(&key) {
            return Ok(());
        }
        probe.await?;
        let mut passed = self.lock();
        if passed.len() >= KEPT {
            passed.clear();
        }
        passed.insert(key);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<[u8; 32]>> {
        self.passed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// SHA-256 over what `Hash` feeds: the settings hold passwords, so only
/// this digest is kept, and a collision cannot pass a wrong password.
fn fingerprint<S: Hash>(kind: &str, settings: &S) -> [u8; 32] {
    struct Sha(Sha256);
    impl Hasher for Sha {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            0 // unused: the digest is read from the state
        }
    }
    let mut h = Sha(Sha256::new());
    kind.hash(&mut h);
    settings.hash(&mut h);
    h.0.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn probe(calls: &AtomicUsize, result: Result<(), String>) -> Result<(), String> {
        calls.fetch_add(1, Ordering::SeqCst);
        result
    }

    #[tokio::test]
    async fn a_passed_probe_is_not_repeated_a_failed_one_is() {
        let memory = ProbeMemory::default();
        let calls = AtomicUsize::new(0);
        let bad = ("registry.example", "wrong");
        let good = ("registry.example", "right");
        let refused = Err("401 Unauthorized".to_string());
        assert!(
            memory
                .check("upstream", &bad, probe(&calls, refused.clone()))
                .await
                .is_err()
        );
        assert!(
            memory
                .check("upstream", &bad, probe(&calls, refused))
                .await
                .is_err()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 2, "failures are probed again");
        memory
            .check("upstream", &good, probe(&calls, Ok(())))
            .await
            .unwrap();
        let down = Err("connection refused".to_string());
        memory
            .check("upstream", &good, probe(&calls, down.clone()))
            .await
            .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            3,
            "the passed settings were not probed again"
        );
        // The same settings probed as something else are not taken as passed.
        assert!(
            memory
                .check("bucket", &good, probe(&calls, down))
                .await
                .is_err()
        );
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }
}
