//! Community discovery: nodes that share a passphrase find each other through the signaling
//! backends' group delivery, with no `[[peer]]` list.
//!
//! - [`key`]: the community key pair and membership secret, from the passphrase (Argon2id);
//! - [`announcement`]: what a member says about itself, signed by its WireGuard key
//!   ([`xeddsa`]) over the membership secret;
//! - [`membership`]: the [`Membership`] state machine: who is in, who joined, left or went
//!   silent, our own periodic announcements.
//!
//! What a passphrase holder can do: open every announcement (see who is in, their names,
//! addresses and routed networks), and join with a key of its own. What it cannot do:
//! announce, change or remove another member's key (each announcement is signed by the key it
//! names), or take a member's derived address or name (the first holder keeps it).

pub mod announcement;
pub mod key;
pub mod membership;
pub mod xeddsa;

pub use self::announcement::{Announcement, Profile};
pub use self::key::{CommunityKey, CommunityKeyError};
pub use self::membership::{
    AnnouncementDrop, Member, Membership, MembershipConfig, MembershipCounters, MembershipEvent,
    Refusal,
};
