//! Who is in the community right now, from the announcements heard: a sans-IO state machine.
//!
//! # Driving
//!
//! - [`Membership::handle_announcement`] with every announcement opened from the group
//!   mailbox (the envelope's authenticated sender beside it);
//! - [`Membership::handle_timeout`] at [`Membership::poll_timeout`];
//! - then drain [`Membership::poll_event`] (members joined, updated, left, expired, refused)
//!   and [`Membership::poll_announcement`] (our own signed announcement, to publish to the
//!   community key);
//! - [`Membership::leave`] on a clean shutdown, for the last announcement.
//!
//! # Rules
//!
//! - Our announcement goes out at start, every [`MembershipConfig::announce_interval`]
//!   (default [`ANNOUNCE_INTERVAL`]), when our profile changes, and when a new member joins
//!   (so it learns about us without waiting for the interval), at most once per
//!   [`ANSWER_HOLDDOWN`] for joins.
//! - A member not heard from for [`MembershipConfig::expire_after`] (default
//!   [`EXPIRE_AFTER`]) expires.
//! - An announcement is accepted only when the envelope's sender is the announced key, its
//!   sequence is newer than the last one accepted from that key (or remembered for a member
//!   that left or expired, for [`TOMBSTONE_TIME`]), its key passes `deny`/`allow`, and its
//!   signature verifies (which needs the community's membership secret: only passphrase
//!   holders can sign). Every refusal is counted in [`MembershipCounters`].
//! - A member's tunnel addresses are the ones derived from its key in our
//!   [`MembershipConfig::derive_prefixes`] ([`crate::addresses`]), never ones it claims; a key
//!   whose derived address or whose name another member (or we, or a static peer) already has
//!   is refused and reported once ([`MembershipEvent::Refused`]); the first holder keeps it.
//! - The table holds at most [`MembershipConfig::max_members`] (default [`MAX_MEMBERS`]);
//!   a new key beyond that is refused and counted.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::announcement::{Announcement, Profile};
use super::key::CommunityKey;
use crate::addresses::{AddressBook, AddressError, Collision, derive_addresses};
use crate::keys::{PrivateKey, PublicKey};
use crate::signaling::MessageError;

/// Default time between our periodic announcements.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(30);
/// Default silence after which a member expires: four announce intervals, so three lost
/// announcements in a row do not drop a member.
pub const EXPIRE_AFTER: Duration = Duration::from_secs(120);
/// Least time between two announcements sent to answer joins.
pub const ANSWER_HOLDDOWN: Duration = Duration::from_secs(1);
/// Default cap on the member table.
pub const MAX_MEMBERS: usize = 1024;
/// How long the last sequence of a member that left or expired is remembered, so a replay
/// of one of its old announcements cannot bring it back.
pub const TOMBSTONE_TIME: Duration = Duration::from_secs(3600);

/// How a node takes part in a community.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// The community's key.
    pub community: CommunityKey,
    /// When set, only these keys are accepted.
    pub allow: Option<HashSet<PublicKey>>,
    /// Keys never accepted.
    pub deny: HashSet<PublicKey>,
    /// Time between periodic announcements.
    pub announce_interval: Duration,
    /// Silence after which a member expires.
    pub expire_after: Duration,
    /// Cap on the member table.
    pub max_members: usize,
    /// Prefixes members' tunnel addresses are derived in.
    pub derive_prefixes: Vec<IpNet>,
}

impl MembershipConfig {
    /// The defaults for `community`, deriving addresses in `derive_prefixes`.
    pub fn new(community: CommunityKey, derive_prefixes: Vec<IpNet>) -> Self {
        Self {
            community,
            allow: None,
            deny: HashSet::new(),
            announce_interval: ANNOUNCE_INTERVAL,
            expire_after: EXPIRE_AFTER,
            max_members: MAX_MEMBERS,
            derive_prefixes,
        }
    }
}

/// A member as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Its latest accepted announcement.
    pub announcement: Announcement,
    /// Its tunnel addresses, derived from its key in our prefixes.
    pub addresses: Vec<IpAddr>,
}

impl Member {
    /// Its WireGuard key.
    pub fn key(&self) -> PublicKey {
        self.announcement.public_key
    }

    /// Its allowed IPs: a /32 or /128 per derived address.
    pub fn allowed_ips(&self) -> Vec<IpNet> {
        self.addresses.iter().map(|a| IpNet::from(*a)).collect()
    }
}

/// Why a member is refused, reported once per key and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Its derived address is another key's.
    AddressCollision(Collision),
    /// Its name is another key's.
    NameCollision {
        /// The name.
        name: String,
        /// Who has it.
        holder: PublicKey,
    },
}

/// What changed in the membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipEvent {
    /// A new member.
    Joined(Member),
    /// A member announced a different profile.
    Updated(Member),
    /// A member said it leaves.
    Left(PublicKey),
    /// A member went silent.
    Expired(PublicKey),
    /// A member that new settings (a reload) no longer accept: outside `allow`, inside
    /// `deny`, or in the community we left for another passphrase's.
    Removed(PublicKey),
    /// A key was refused for a collision; the holder keeps the address or name.
    Refused {
        /// The refused key.
        key: PublicKey,
        /// Why.
        reason: Refusal,
    },
}

/// Why an announcement was dropped. Each has a counter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnouncementDrop {
    /// The envelope came from another key than the one announced.
    #[error("sealed by {sender}, announces {announced}")]
    SenderMismatch {
        /// The envelope's sender.
        sender: PublicKey,
        /// The announced key.
        announced: PublicKey,
    },
    /// Our own announcement, back from the group.
    #[error("our own announcement")]
    Own,
    /// In `deny`.
    #[error("{0} is denied")]
    Denied(PublicKey),
    /// Not in `allow`.
    #[error("{0} is not allowed")]
    NotAllowed(PublicKey),
    /// Not newer than the last accepted from this key.
    #[error("sequence {sequence} of {key} is not newer than {last}")]
    Stale {
        /// The key.
        key: PublicKey,
        /// The announcement's sequence.
        sequence: u64,
        /// The last accepted (or remembered) one.
        last: u64,
    },
    /// The signature does not verify: not by the announced key, or not by a passphrase
    /// holder.
    #[error("bad signature for {0}")]
    BadSignature(PublicKey),
    /// The table is full.
    #[error("member table full; {0} refused")]
    Full(PublicKey),
    /// Its address or name collides (reported as [`MembershipEvent::Refused`]).
    #[error("{0:?}")]
    Collision(Refusal),
    /// A leaving announcement from a key that is not a member.
    #[error("{0} leaves but was not a member")]
    NotAMember(PublicKey),
}

/// Announcements received, accepted and dropped by reason, and members joined, left and
/// expired. Every received announcement is either accepted or counted under one drop reason,
/// so `received` is `accepted` plus [`MembershipCounters::rejected`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MembershipCounters {
    /// Announcements handed to [`Membership::handle_announcement`].
    pub received: u64,
    /// Accepted (new, updated, refreshed or leaving).
    pub accepted: u64,
    /// [`AnnouncementDrop::SenderMismatch`].
    pub sender_mismatch: u64,
    /// [`AnnouncementDrop::Own`].
    pub own: u64,
    /// [`AnnouncementDrop::Denied`] and [`AnnouncementDrop::NotAllowed`].
    pub not_allowed: u64,
    /// [`AnnouncementDrop::Stale`].
    pub stale: u64,
    /// [`AnnouncementDrop::BadSignature`].
    pub bad_signature: u64,
    /// [`AnnouncementDrop::Full`].
    pub full: u64,
    /// [`AnnouncementDrop::Collision`].
    pub collision: u64,
    /// [`AnnouncementDrop::NotAMember`].
    pub not_a_member: u64,
    /// Members that joined (a first accepted announcement, or one after leaving or expiring).
    pub joined: u64,
    /// Members that said they leave.
    pub left: u64,
    /// Members that expired.
    pub expired: u64,
    /// Members now (not a counter: set by [`Membership::counters`]).
    pub members: u64,
}

impl MembershipCounters {
    /// The drop counters by reason, with stable names (status JSON keys, metric labels).
    pub fn rejected_by_reason(&self) -> [(&'static str, u64); 8] {
        [
            ("sender_mismatch", self.sender_mismatch),
            ("own", self.own),
            ("not_allowed", self.not_allowed),
            ("stale", self.stale),
            ("bad_signature", self.bad_signature),
            ("full", self.full),
            ("collision", self.collision),
            ("not_a_member", self.not_a_member),
        ]
    }

    /// Announcements dropped, all reasons together.
    pub fn rejected(&self) -> u64 {
        self.rejected_by_reason().iter().map(|(_, n)| n).sum()
    }

    fn count(&mut self, drop: &AnnouncementDrop) {
        let counter = match drop {
            AnnouncementDrop::SenderMismatch { .. } => &mut self.sender_mismatch,
            AnnouncementDrop::Own => &mut self.own,
            AnnouncementDrop::Denied(_) | AnnouncementDrop::NotAllowed(_) => &mut self.not_allowed,
            AnnouncementDrop::Stale { .. } => &mut self.stale,
            AnnouncementDrop::BadSignature(_) => &mut self.bad_signature,
            AnnouncementDrop::Full(_) => &mut self.full,
            AnnouncementDrop::Collision(_) => &mut self.collision,
            AnnouncementDrop::NotAMember(_) => &mut self.not_a_member,
        };
        *counter += 1;
    }
}

struct Entry {
    member: Member,
    last_heard: Instant,
}

/// The membership state machine. See the module docs.
pub struct Membership {
    private: PrivateKey,
    public: PublicKey,
    config: MembershipConfig,
    profile: Profile,
    next_sequence: u64,
    members: HashMap<PublicKey, Entry>,
    book: AddressBook,
    names: HashMap<String, PublicKey>,
    /// Last sequence of members that left or expired, until when it is kept.
    tombstones: HashMap<PublicKey, (u64, Instant)>,
    /// Keys refused for a collision, so each is reported once per reason.
    reported: HashMap<PublicKey, Refusal>,
    events: VecDeque<MembershipEvent>,
    /// When our next announcement is due; `None`: at once.
    next_announce: Option<Instant>,
    /// When we last announced, for [`ANSWER_HOLDDOWN`].
    last_sent: Option<Instant>,
    counters: MembershipCounters,
}

impl Membership {
    /// A node with `private`'s key and `profile`, in `config`'s community. `first_sequence`
    /// numbers our first announcement; pass the wall clock in microseconds since the Unix
    /// epoch so a restarted node's announcements are newer than its last ones.
    ///
    /// Our own name and derived addresses are reserved: a member claiming them is refused.
    pub fn new(
        private: PrivateKey,
        config: MembershipConfig,
        profile: Profile,
        first_sequence: u64,
    ) -> Result<Self, AddressError> {
        let public = private.public_key();
        let mut membership = Self {
            private,
            public,
            config,
            profile: Profile::default(),
            next_sequence: first_sequence.max(1),
            members: HashMap::new(),
            book: AddressBook::new(),
            names: HashMap::new(),
            tombstones: HashMap::new(),
            reported: HashMap::new(),
            events: VecDeque::new(),
            next_announce: None,
            last_sent: None,
            counters: MembershipCounters::default(),
        };
        membership.reserve(public, &[], "")?;
        membership.set_profile(profile);
        Ok(membership)
    }

    /// Reserves `key`'s derived addresses, `addresses` and `name` (a static peer, or us):
    /// a member claiming them is refused.
    pub fn reserve(
        &mut self,
        key: PublicKey,
        addresses: &[IpAddr],
        name: &str,
    ) -> Result<(), AddressError> {
        let mut all = derive_addresses(&key, &self.config.derive_prefixes)?;
        all.extend_from_slice(addresses);
        // A reserved key collides with nobody reserved earlier by construction of the
        // config; a static peer's address taken by another static peer is the config's
        // business, so the first keeps it here.
        let _ = self.book.claim(&key, &all);
        if !name.is_empty() {
            self.names.entry(name.to_owned()).or_insert(key);
        }
        Ok(())
    }

    /// Applies new settings (a reload) at `now`: members that `allow`/`deny` no longer
    /// accept are removed; a new community key (another passphrase) removes every member,
    /// since they are in the old community. Either way our next announcement goes out at
    /// once. The derive prefixes stay (a restart changes them): members' addresses must not
    /// move under a running tunnel.
    pub fn handle_config(&mut self, now: Instant, config: MembershipConfig) {
        let new_community = config.community.public_key() != self.config.community.public_key();
        let derive_prefixes = std::mem::take(&mut self.config.derive_prefixes);
        self.config = MembershipConfig {
            derive_prefixes,
            ..config
        };
        let refused: Vec<(PublicKey, u64)> = self
            .members
            .iter()
            .filter(|(key, _)| new_community || !self.admits(key))
            .map(|(key, entry)| (*key, entry.member.announcement.sequence))
            .collect();
        for (key, sequence) in refused {
            self.remove(now, &key, sequence);
            self.events.push_back(MembershipEvent::Removed(key));
        }
        self.next_announce = None;
    }

    fn admits(&self, key: &PublicKey) -> bool {
        !self.config.deny.contains(key)
            && self
                .config
                .allow
                .as_ref()
                .is_none_or(|allow| allow.contains(key))
    }

    /// Our key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// Our tunnel addresses, derived from our key.
    pub fn own_addresses(&self) -> Vec<IpAddr> {
        derive_addresses(&self.public, &self.config.derive_prefixes).unwrap_or_default()
    }

    /// Replaces what we announce; the next announcement goes out at once.
    pub fn set_profile(&mut self, profile: Profile) {
        if let Some(old) = self.names.get(&self.profile.name)
            && *old == self.public
        {
            self.names.remove(&self.profile.name);
        }
        if !profile.name.is_empty() {
            self.names
                .entry(profile.name.clone())
                .or_insert(self.public);
        }
        self.profile = profile;
        self.next_announce = None;
    }

    /// The members now, in no particular order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values().map(|entry| &entry.member)
    }

    /// The member with `key`.
    pub fn member(&self, key: &PublicKey) -> Option<&Member> {
        self.members.get(key).map(|entry| &entry.member)
    }

    /// What was accepted and dropped so far.
    pub fn counters(&self) -> MembershipCounters {
        MembershipCounters {
            members: self.members.len() as u64,
            ..self.counters
        }
    }

    /// Handles an announcement opened from the group mailbox, sealed by `sender`.
    pub fn handle_announcement(
        &mut self,
        now: Instant,
        sender: PublicKey,
        announcement: Announcement,
    ) -> Result<(), AnnouncementDrop> {
        self.counters.received += 1;
        let result = self.accept(now, sender, announcement);
        match &result {
            Ok(()) => self.counters.accepted += 1,
            Err(drop) => self.counters.count(drop),
        }
        result
    }

    fn accept(
        &mut self,
        now: Instant,
        sender: PublicKey,
        announcement: Announcement,
    ) -> Result<(), AnnouncementDrop> {
        let key = announcement.public_key;
        if sender != key {
            return Err(AnnouncementDrop::SenderMismatch {
                sender,
                announced: key,
            });
        }
        if key == self.public {
            return Err(AnnouncementDrop::Own);
        }
        if self.config.deny.contains(&key) {
            return Err(AnnouncementDrop::Denied(key));
        }
        if let Some(allow) = &self.config.allow
            && !allow.contains(&key)
        {
            return Err(AnnouncementDrop::NotAllowed(key));
        }
        // The sequence first: a replay costs a lookup, not a signature check.
        let last = self
            .members
            .get(&key)
            .map(|entry| entry.member.announcement.sequence)
            .or_else(|| self.tombstones.get(&key).map(|(sequence, _)| *sequence));
        if let Some(last) = last
            && announcement.sequence <= last
        {
            return Err(AnnouncementDrop::Stale {
                key,
                sequence: announcement.sequence,
                last,
            });
        }
        if !self.members.contains_key(&key) && announcement.leaving {
            // Nothing to remove; not worth a signature check.
            return Err(AnnouncementDrop::NotAMember(key));
        }
        if !announcement.verify(&self.config.community) {
            return Err(AnnouncementDrop::BadSignature(key));
        }
        if announcement.leaving {
            self.remove(now, &key, announcement.sequence);
            self.counters.left += 1;
            self.events.push_back(MembershipEvent::Left(key));
            return Ok(());
        }
        if let Some(entry) = self.members.get_mut(&key) {
            let changed = entry.member.announcement.profile() != announcement.profile();
            entry.last_heard = now;
            if changed {
                let old_name = entry.member.announcement.name.clone();
                let new_name = announcement.name.clone();
                if new_name != old_name {
                    if let Some(refusal) = self.name_collision(&key, &new_name) {
                        // Keep the old profile; the new one waits for the name to be free.
                        return Err(self.refuse(key, refusal));
                    }
                    self.names.remove(&old_name);
                    if !new_name.is_empty() {
                        self.names.insert(new_name, key);
                    }
                }
            }
            let entry = self.members.get_mut(&key).expect("present above");
            entry.member.announcement = announcement;
            if changed {
                self.events
                    .push_back(MembershipEvent::Updated(entry.member.clone()));
            }
            return Ok(());
        }
        if self.members.len() >= self.config.max_members {
            return Err(AnnouncementDrop::Full(key));
        }
        let addresses = derive_addresses(&key, &self.config.derive_prefixes).unwrap_or_default();
        if let Some(collision) = self.book.collision(&key, &addresses) {
            return Err(self.refuse(key, Refusal::AddressCollision(collision)));
        }
        if let Some(refusal) = self.name_collision(&key, &announcement.name) {
            return Err(self.refuse(key, refusal));
        }
        let _ = self.book.claim(&key, &addresses);
        if !announcement.name.is_empty() {
            self.names.insert(announcement.name.clone(), key);
        }
        self.tombstones.remove(&key);
        self.reported.remove(&key);
        let member = Member {
            announcement,
            addresses,
        };
        self.counters.joined += 1;
        self.events
            .push_back(MembershipEvent::Joined(member.clone()));
        self.members.insert(
            key,
            Entry {
                member,
                last_heard: now,
            },
        );
        self.answer_join(now);
        Ok(())
    }

    fn name_collision(&self, key: &PublicKey, name: &str) -> Option<Refusal> {
        if name.is_empty() {
            return None;
        }
        self.names
            .get(name)
            .filter(|holder| *holder != key)
            .map(|holder| Refusal::NameCollision {
                name: name.to_owned(),
                holder: *holder,
            })
    }

    fn refuse(&mut self, key: PublicKey, reason: Refusal) -> AnnouncementDrop {
        if self.reported.get(&key) != Some(&reason) {
            if self.reported.len() >= self.config.max_members {
                self.reported.clear();
            }
            self.reported.insert(key, reason.clone());
            self.events.push_back(MembershipEvent::Refused {
                key,
                reason: reason.clone(),
            });
        }
        AnnouncementDrop::Collision(reason)
    }

    /// A new member should hear from us soon, not at the next interval.
    fn answer_join(&mut self, now: Instant) {
        let earliest = self
            .last_sent
            .map_or(now, |last| (last + ANSWER_HOLDDOWN).max(now));
        if self.next_announce.is_some_and(|at| at > earliest) {
            self.next_announce = Some(earliest);
        }
    }

    fn remove(&mut self, now: Instant, key: &PublicKey, last_sequence: u64) {
        if let Some(entry) = self.members.remove(key) {
            let name = &entry.member.announcement.name;
            if self.names.get(name) == Some(key) {
                self.names.remove(name);
            }
            self.book.release(key);
        }
        if self.tombstones.len() >= self.config.max_members
            && let Some(oldest) = self
                .tombstones
                .iter()
                .min_by_key(|(_, (_, until))| *until)
                .map(|(key, _)| *key)
        {
            self.tombstones.remove(&oldest);
        }
        self.tombstones
            .insert(*key, (last_sequence, now + TOMBSTONE_TIME));
    }

    /// Expires silent members and forgets old tombstones.
    pub fn handle_timeout(&mut self, now: Instant) {
        let expire_after = self.config.expire_after;
        let silent: Vec<(PublicKey, u64)> = self
            .members
            .iter()
            .filter(|(_, entry)| now >= entry.last_heard + expire_after)
            .map(|(key, entry)| (*key, entry.member.announcement.sequence))
            .collect();
        for (key, sequence) in silent {
            self.remove(now, &key, sequence);
            self.counters.expired += 1;
            self.events.push_back(MembershipEvent::Expired(key));
        }
        self.tombstones.retain(|_, (_, until)| *until > now);
    }

    /// When [`Membership::handle_timeout`] or [`Membership::poll_announcement`] has work:
    /// the next announcement or the next expiry, whichever is first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let expiry = self
            .members
            .values()
            .map(|entry| entry.last_heard + self.config.expire_after)
            .min();
        match (self.next_announce, expiry) {
            // An announcement due at once goes out at the caller's next
            // `poll_announcement`, which follows every input.
            (None, expiry) => expiry,
            (Some(at), None) => Some(at),
            (Some(at), Some(expiry)) => Some(at.min(expiry)),
        }
    }

    /// Our signed announcement when one is due at `now`.
    pub fn poll_announcement(&mut self, now: Instant) -> Option<Announcement> {
        if self.next_announce.is_some_and(|at| at > now) {
            return None;
        }
        self.next_announce = Some(now + self.config.announce_interval);
        self.last_sent = Some(now);
        self.sign(false)
    }

    /// Our last announcement: we are leaving.
    pub fn leave(&mut self) -> Option<Announcement> {
        self.sign(true)
    }

    fn sign(&mut self, leaving: bool) -> Option<Announcement> {
        let sequence = self.next_sequence;
        self.next_sequence = self.next_sequence.saturating_add(1);
        match Announcement::sign(
            &self.private,
            &self.config.community,
            &self.profile,
            leaving,
            sequence,
        ) {
            Ok(announcement) => Some(announcement),
            Err(error) => {
                tracing::warn!(%error, "our community profile is invalid; not announced");
                None
            }
        }
    }

    /// The next change, in order.
    pub fn poll_event(&mut self) -> Option<MembershipEvent> {
        self.events.pop_front()
    }
}

/// Checks a profile before it is used (a config's name and host names).
pub fn validate_profile(profile: &Profile) -> Result<(), MessageError> {
    Announcement {
        public_key: PublicKey::from_bytes([0; 32]),
        name: profile.name.clone(),
        addresses: profile.addresses.clone(),
        networks: profile.networks.clone(),
        exit_node: profile.exit_node,
        hostnames: profile.hostnames.clone(),
        leaving: false,
        sequence: 0,
        signature: [0; 64],
    }
    .validate()
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
