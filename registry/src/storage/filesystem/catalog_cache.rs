//! The filesystem backend's list of repositories, kept between catalog
//! requests: walking the tree costs a directory read per repository on
//! every `GET /v2/_catalog`.
//!
//! Exact for this process: repository folders are never removed, and
//! every write of this process under `repositories/` (links and tags, the
//! only writes that add a repository) marks the list stale once it is done.
//! What another process adds to the same folder shows within [`MAX_AGE`].

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a list is trusted against writes of other processes.
pub(super) const MAX_AGE: Duration = Duration::from_secs(1);

#[derive(Default)]
pub(super) struct CatalogCache {
    /// Bumped after each write that may have added a repository.
    changes: AtomicU64,
    kept: Mutex<Option<Kept>>,
}

struct Kept {
    /// `changes` as read before the walk that made `repositories`.
    at_change: u64,
    taken: Instant,
    repositories: Arc<Vec<String>>,
}

/// Either the kept list, or the mark to store a fresh walk under.
pub(super) enum Lookup {
    Kept(Arc<Vec<String>>),
    Walk { mark: u64 },
}

impl CatalogCache {
    /// Call after (never before) a write under `repositories/` is done, so
    /// a walk that could have missed it is not kept.
    pub(super) fn changed(&self) {
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn lookup(&self) -> Lookup {
        // Read before looking: a write finishing meanwhile makes the
        // stored mark older than the next lookup's, so it walks again.
        let mark = self.changes.load(Ordering::SeqCst);
        match &*self.lock() {
            Some(k) if k.at_change == mark && k.taken.elapsed() < MAX_AGE => {
                Lookup::Kept(k.repositories.clone())
            }
            _ => Lookup::Walk { mark },
        }
    }

    /// Keep a walk started at `mark`, unless a walk started later is kept.
    pub(super) fn store(&self, mark: u64, repositories: Arc<Vec<String>>) {
        let mut kept = self.lock();
        if kept.as_ref().is_some_and(|k| k.at_change > mark) {
            return;
        }
        *kept = Some(Kept {
            at_change: mark,
            taken: Instant::now(),
            repositories,
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(names: &[&str]) -> Arc<Vec<String>> {
        Arc::new(names.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn a_write_after_the_walk_started_makes_it_stale() {
        let cache = CatalogCache::default();
        let Lookup::Walk { mark } = cache.lookup() else {
            panic!("nothing kept yet");
        };
        cache.changed(); // a push finished while the walk ran
        cache.store(mark, list(&["a"]));
        assert!(matches!(cache.lookup(), Lookup::Walk { .. }));
        let Lookup::Walk { mark } = cache.lookup() else {
            unreachable!()
        };
        cache.store(mark, list(&["a", "b"]));
        let Lookup::Kept(kept) = cache.lookup() else {
            panic!("the fresh walk was not kept");
        };
        assert_eq!(*kept, *list(&["a", "b"]));
        // An older walk finishing late does not replace it.
        cache.store(mark.saturating_sub(1), list(&["a"]));
        assert!(matches!(cache.lookup(), Lookup::Kept(k) if k.len() == 2));
    }
}
