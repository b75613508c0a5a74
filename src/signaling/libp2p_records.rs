//! Provider records that other peers store at this node: admitted within bounds, and swept
//! when they expire.
//!
//! kad's `MemoryStore` checks only its total number of keys, and drops another peer's record
//! only when a lookup of that key happens to meet it after its expiry. Left alone, one
//! stranger could fill the store with records for random keys that nobody ever looks up, and
//! once it is full this node could no longer store the records of its own mailboxes
//! (`start_providing` adds to the same store). So a record from another peer is stored only
//! while that peer has fewer than `per_provider` records here and the foreign records leave
//! `reserved` keys of the store free for our own; and every record is removed when its time
//! is up.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use libp2p::kad::RecordKey;
use tokio::time::Instant;

/// How often expired records are looked for.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The foreign provider records this node holds, and when each expires.
pub(super) struct ForeignRecords {
    expires: HashMap<(RecordKey, PeerId), Instant>,
    capacity: usize,
    per_provider: usize,
    ttl: Duration,
    sweep_at: Option<Instant>,
}

impl ForeignRecords {
    /// Room for `store_keys - reserved` records, at most `per_provider` from one peer, each
    /// kept `ttl` after its last announcement.
    pub(super) fn new(
        store_keys: usize,
        reserved: usize,
        per_provider: usize,
        ttl: Duration,
    ) -> Self {
        Self {
            expires: HashMap::new(),
            capacity: store_keys.saturating_sub(reserved),
            per_provider,
            ttl,
            sweep_at: None,
        }
    }

    /// Whether to store `provider`'s record for `key` now. A record already held is renewed;
    /// a new one is refused when the store's share for strangers or the provider's share is
    /// used up.
    pub(super) fn admit(&mut self, key: &RecordKey, provider: PeerId, now: Instant) -> bool {
        let entry = (key.clone(), provider);
        if let Some(expires) = self.expires.get_mut(&entry) {
            *expires = now + self.ttl;
            return true;
        }
        if self.expires.len() >= self.capacity {
            return false;
        }
        // At most `capacity` entries (about a thousand): a scan is cheaper than a second map.
        let from_provider = self.expires.keys().filter(|(_, p)| *p == provider).count();
        if from_provider >= self.per_provider {
            return false;
        }
        self.expires.insert(entry, now + self.ttl);
        self.sweep_at.get_or_insert(now + SWEEP_INTERVAL);
        true
    }

    /// When [`Self::take_expired`] should run next; `None` while nothing is held.
    pub(super) fn sweep_at(&self) -> Option<Instant> {
        self.sweep_at
    }

    /// Forgets and returns the records whose time is up, if a sweep is due.
    pub(super) fn take_expired(&mut self, now: Instant) -> Vec<(RecordKey, PeerId)> {
        if self.sweep_at.is_none_or(|at| at > now) {
            return Vec::new();
        }
        let expired: Vec<(RecordKey, PeerId)> = self
            .expires
            .iter()
            .filter(|(_, expires)| **expires <= now)
            .map(|(entry, _)| entry.clone())
            .collect();
        for entry in &expired {
            self.expires.remove(entry);
        }
        self.sweep_at = (!self.expires.is_empty()).then(|| now + SWEEP_INTERVAL);
        expired
    }

    /// How many records from other peers are held.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.expires.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> RecordKey {
        RecordKey::new(&[n; 32])
    }

    #[test]
    fn one_stranger_cannot_take_more_than_its_share_and_strangers_leave_the_reserve_free() {
        let now = Instant::now();
        let mut records = ForeignRecords::new(10, 4, 3, Duration::from_secs(60));
        let (greedy, other) = (PeerId::random(), PeerId::random());
        let admitted = (0..10)
            .filter(|n| records.admit(&key(*n), greedy, now))
            .count();
        assert_eq!(admitted, 3, "one provider holds at most its share");
        // A renewal of a held record is always admitted.
        assert!(records.admit(&key(0), greedy, now));
        let admitted = (10..20)
            .filter(|n| records.admit(&key(*n), other, now))
            .count();
        assert_eq!(admitted, 3);
        assert_eq!(
            records.len(),
            6,
            "10 keys minus the 4 kept for our own mailboxes"
        );
        assert!(!records.admit(&key(30), PeerId::random(), now));
    }

    #[test]
    fn records_are_swept_when_their_time_is_up_unless_renewed() {
        let start = Instant::now();
        let mut records = ForeignRecords::new(100, 0, 10, Duration::from_secs(60));
        let provider = PeerId::random();
        assert!(records.admit(&key(1), provider, start));
        assert!(records.admit(&key(2), provider, start));
        assert!(
            records.take_expired(start).is_empty(),
            "no sweep is due yet"
        );
        // Renewed half-way: key 2 lives on.
        assert!(records.admit(&key(2), provider, start + Duration::from_secs(30)));
        let expired = records.take_expired(start + Duration::from_secs(61));
        assert_eq!(expired, vec![(key(1), provider)]);
        assert_eq!(records.len(), 1);
        assert!(records.sweep_at().is_some());
        let expired = records.take_expired(start + Duration::from_secs(130));
        assert_eq!(expired, vec![(key(2), provider)]);
        assert_eq!(records.sweep_at(), None, "nothing held: no more wakeups");
    }
}
