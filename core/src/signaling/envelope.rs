//! Sealing and opening envelopes: crypto_box from the sender's WireGuard key to the
//! recipient's, with replay protection and a counter for every way an envelope is refused.
//!
//! An [`Envelope`] is all a backend sees: sender key, recipient key, a fresh random nonce,
//! and the ciphertext of a `SealedContent` (the keys again, a counter, the message).
//! [`Sealer`] makes envelopes; [`Opener`] checks and opens them, in this order:
//!
//! 1. size: an envelope over [`MAX_ENVELOPE_LEN`] is refused unread (`Oversized`);
//! 2. addressing: the recipient must be our key (`WrongRecipient`), and with
//!    [`SenderPolicy::Only`] the sender must be a configured peer (`UnknownSender`);
//! 3. authentication: the box must open with the sender's public key and our private key
//!    (`Truncated` when it cannot even hold the tag, `Tampered` when the tag fails);
//! 4. content: the plaintext must decode (`Malformed`), name the same sender and recipient
//!    as the envelope (`Reflected`: XSalsa20-Poly1305 has no associated data, and the key
//!    A→B equals B→A, so an envelope turned around would otherwise open), carry a sealing
//!    time near our clock (`Stale`, `FromTheFuture`) and a known message kind (`Unusable`);
//! 5. replay: the counter must be new in the window of the sender's boot
//!    (one replay window per boot; `Replayed`, `TooOld`). The window moves only after everything
//!    above passed.
//!
//! Time and order are separate on purpose: the counter (1, 2, 3, ... per random boot id)
//! orders and de-duplicates and never looks at a clock, so a clock jump cannot wedge it; the
//! sealing time is the sender's honest clock, checked only for freshness, so a sender whose
//! clock ran fast is heard again as soon as its clock is right.
//!
//! Everything here is pure: time comes in as `now: SystemTime`, randomness as an RNG.

use std::collections::HashMap;
use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crypto_box::aead::{Aead as _, AeadCore as _};
use crypto_box::{Nonce, SalsaBox};
use prost::Message as _;
use prost::bytes::Bytes;
use rand_core::CryptoRngCore;
use wice_proto::signaling as proto;

use super::message::{MessageError, SignalingMessage};
use super::replay::{ReplayError, SenderWindows};
pub use super::size_limits::MAX_ENVELOPE_LEN;
use crate::keys::{KEY_LEN, PrivateKey, PublicKey};

/// Length of a crypto_box nonce.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag at the front of every ciphertext.
const TAG_LEN: usize = 16;
/// How far a sender's clock (its sealing time) may be from ours, either way, before its
/// content is refused. Without this bound a receiver that just started (empty replay
/// windows) would accept a recording of any old envelope.
pub(crate) const MAX_CLOCK_SKEW: Duration = Duration::from_secs(600);
/// Most senders whose replay windows an [`Opener`] keeps with [`SenderPolicy::AnyKey`]; when
/// full, the sender heard from least recently is forgotten.
const MAX_TRACKED_SENDERS: usize = 4096;
/// Most precomputed shared keys a [`Sealer`] or [`Opener`] caches.
const MAX_CACHED_BOXES: usize = 1024;

/// What a backend carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Who sealed it (claimed until it opens).
    pub sender: PublicKey,
    /// Whose key it is sealed to.
    pub recipient: PublicKey,
    /// The crypto_box nonce.
    pub nonce: [u8; NONCE_LEN],
    /// The sealed `SealedContent`, tag included.
    pub ciphertext: Bytes,
}

/// Why bytes are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Longer than [`MAX_ENVELOPE_LEN`].
    #[error("{len} bytes; an envelope is at most {MAX_ENVELOPE_LEN}")]
    Oversized {
        /// Its length.
        len: usize,
    },
    /// Not protobuf, or cut short.
    #[error("not a protobuf envelope: {0}")]
    Malformed(String),
    /// A key field that is not 32 bytes.
    #[error("{field} is {len} bytes; a key is 32")]
    BadKeyLength {
        /// `sender` or `recipient`.
        field: &'static str,
        /// Its length.
        len: usize,
    },
    /// A nonce that is not 24 bytes.
    #[error("nonce is {len} bytes; a nonce is 24")]
    BadNonceLength {
        /// Its length.
        len: usize,
    },
}

impl Envelope {
    /// Parses an encoded envelope, refusing oversized input before decoding it.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(EnvelopeError::Oversized { len: bytes.len() });
        }
        let raw =
            proto::Envelope::decode(bytes).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        Self::from_proto(raw)
    }

    /// Checks the field lengths of a decoded envelope.
    fn from_proto(raw: proto::Envelope) -> Result<Self, EnvelopeError> {
        let key = |field, bytes: &[u8]| {
            <[u8; KEY_LEN]>::try_from(bytes)
                .map(PublicKey::from_bytes)
                .map_err(|_| EnvelopeError::BadKeyLength {
                    field,
                    len: bytes.len(),
                })
        };
        let sender = key("sender", &raw.sender)?;
        let recipient = key("recipient", &raw.recipient)?;
        let nonce = <[u8; NONCE_LEN]>::try_from(raw.nonce.as_ref()).map_err(|_| {
            EnvelopeError::BadNonceLength {
                len: raw.nonce.len(),
            }
        })?;
        Ok(Self {
            sender,
            recipient,
            nonce,
            ciphertext: raw.ciphertext,
        })
    }

    /// The protobuf form.
    fn to_proto(&self) -> proto::Envelope {
        proto::Envelope {
            sender: Bytes::copy_from_slice(self.sender.as_bytes()),
            recipient: Bytes::copy_from_slice(self.recipient.as_bytes()),
            nonce: Bytes::copy_from_slice(&self.nonce),
            ciphertext: self.ciphertext.clone(),
        }
    }

    /// The encoded envelope, as backends carry it.
    pub fn encode(&self) -> Bytes {
        Bytes::from(self.to_proto().encode_to_vec())
    }

    /// Length of [`Envelope::encode`]'s output, without encoding.
    pub fn encoded_len(&self) -> usize {
        self.to_proto().encoded_len()
    }
}

/// Microseconds since the Unix epoch; 0 for times before it.
fn unix_micros(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A bounded cache of precomputed X25519 shared keys, one per peer.
struct BoxCache {
    secret: crypto_box::SecretKey,
    boxes: HashMap<PublicKey, SalsaBox>,
}

impl BoxCache {
    fn new(private: &PrivateKey) -> Self {
        Self {
            secret: crypto_box::SecretKey::from(private.to_bytes()),
            boxes: HashMap::new(),
        }
    }

    fn get(&mut self, peer: &PublicKey) -> &SalsaBox {
        if self.boxes.len() >= MAX_CACHED_BOXES && !self.boxes.contains_key(peer) {
            // Peers are few; when an open policy meets many keys, start over rather than
            // track recency.
            self.boxes.clear();
        }
        self.boxes.entry(*peer).or_insert_with(|| {
            SalsaBox::new(&crypto_box::PublicKey::from(peer.to_bytes()), &self.secret)
        })
    }
}

/// Why a message could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// The message breaks a limit receivers enforce.
    #[error("message would be refused: {0}")]
    InvalidMessage(#[from] MessageError),
    /// The sealed envelope would be larger than [`MAX_ENVELOPE_LEN`].
    #[error("sealed envelope would be {len} bytes; at most {MAX_ENVELOPE_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
}

/// Seals messages from one node's key.
pub struct Sealer {
    public: PublicKey,
    boxes: BoxCache,
    /// Drawn from the RNG at the first seal; a new sealer (a restart) draws a new one.
    boot_id: Option<u64>,
    last_counter: u64,
}

impl Sealer {
    /// A sealer for `private`'s node.
    pub fn new(private: &PrivateKey) -> Self {
        Self {
            public: private.public_key(),
            boxes: BoxCache::new(private),
            boot_id: None,
            last_counter: 0,
        }
    }

    /// Seals `message` to `recipient` with a fresh random nonce from `rng`. The counter is one
    /// past the last (1 for the first of this sealer's boot); `now` is sealed only as the
    /// sealing time receivers check for freshness.
    pub fn seal(
        &mut self,
        recipient: &PublicKey,
        message: &SignalingMessage,
        now: SystemTime,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Envelope, SealError> {
        message.validate()?;
        let counter = self.last_counter.saturating_add(1);
        let boot_id = *self.boot_id.get_or_insert_with(|| rng.next_u64());
        let content = proto::SealedContent {
            sender: Bytes::copy_from_slice(self.public.as_bytes()),
            recipient: Bytes::copy_from_slice(recipient.as_bytes()),
            counter,
            message: Some(message.to_proto()),
            boot_id,
            sealed_at_micros: unix_micros(now),
        };
        let nonce = SalsaBox::generate_nonce(rng);
        let ciphertext = self
            .boxes
            .get(recipient)
            .encrypt(&nonce, content.encode_to_vec().as_slice())
            // XSalsa20-Poly1305 fails only on messages beyond 2^38 bytes.
            .map_err(|_| SealError::TooLarge { len: usize::MAX })?;
        let envelope = Envelope {
            sender: self.public,
            recipient: *recipient,
            nonce: nonce.into(),
            ciphertext: Bytes::from(ciphertext),
        };
        let len = envelope.encoded_len();
        if len > MAX_ENVELOPE_LEN {
            return Err(SealError::TooLarge { len });
        }
        self.last_counter = counter;
        Ok(envelope)
    }
}

/// Which senders an [`Opener`] accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SenderPolicy {
    /// Anyone who can seal to our key (discovery, tests).
    AnyKey,
    /// Only these keys: a node's configured peers.
    Only(HashSet<PublicKey>),
}

impl SenderPolicy {
    fn allows(&self, sender: &PublicKey) -> bool {
        match self {
            Self::AnyKey => true,
            Self::Only(keys) => keys.contains(sender),
        }
    }
}

/// Why an envelope was refused. Each has a counter in [`OpenCounters`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// Larger than [`MAX_ENVELOPE_LEN`].
    #[error("envelope of {len} bytes; at most {MAX_ENVELOPE_LEN}")]
    Oversized {
        /// Its encoded length.
        len: usize,
    },
    /// Addressed to another key.
    #[error("addressed to {0}, not to us")]
    WrongRecipient(PublicKey),
    /// From a key the policy does not accept.
    #[error("from {0}, which is not a configured peer")]
    UnknownSender(PublicKey),
    /// A ciphertext too short to hold the authentication tag.
    #[error("ciphertext of {len} bytes cannot hold the 16-byte tag")]
    Truncated {
        /// Its length.
        len: usize,
    },
    /// The tag did not verify: changed in transit, or not sealed by the claimed sender.
    #[error("does not authenticate as sealed by {0}")]
    Tampered(PublicKey),
    /// Authentic, but the plaintext is not a `SealedContent`.
    #[error("authentic but undecodable: {0}")]
    Malformed(String),
    /// The sealed keys differ from the envelope's: an envelope turned around or re-addressed.
    #[error("sealed keys do not match the envelope's (reflected or re-addressed)")]
    Reflected,
    /// The sealing time is more than ten minutes (the clock skew allowed) behind our clock.
    #[error("sealed at {sealed_at} µs, more than {max:?} behind our clock", max = MAX_CLOCK_SKEW)]
    Stale {
        /// The sender's sealing time (µs since the epoch).
        sealed_at: u64,
    },
    /// The sealing time is more than ten minutes (the clock skew allowed) ahead of our clock.
    #[error("sealed at {sealed_at} µs, more than {max:?} ahead of our clock", max = MAX_CLOCK_SKEW)]
    FromTheFuture {
        /// The sender's sealing time (µs since the epoch).
        sealed_at: u64,
    },
    /// Seen before, or older than the replay window remembers.
    #[error("replayed: {0}")]
    Replayed(ReplayError),
    /// Authentic and fresh, but a message this version cannot use.
    #[error("unusable message: {0}")]
    Unusable(MessageError),
}

/// How many envelopes an [`Opener`] accepted, and refused for each reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenCounters {
    /// Opened and handed on.
    pub accepted: u64,
    /// [`OpenError::Oversized`].
    pub oversized: u64,
    /// [`OpenError::WrongRecipient`].
    pub wrong_recipient: u64,
    /// [`OpenError::UnknownSender`].
    pub unknown_sender: u64,
    /// [`OpenError::Truncated`].
    pub truncated: u64,
    /// [`OpenError::Tampered`].
    pub tampered: u64,
    /// [`OpenError::Malformed`].
    pub malformed: u64,
    /// [`OpenError::Reflected`].
    pub reflected: u64,
    /// [`OpenError::Stale`] and [`OpenError::FromTheFuture`].
    pub clock_skew: u64,
    /// [`OpenError::Replayed`].
    pub replayed: u64,
    /// [`OpenError::Unusable`].
    pub unusable: u64,
}

impl OpenCounters {
    /// Every refusal, whatever the reason.
    pub fn rejected(&self) -> u64 {
        self.oversized
            + self.wrong_recipient
            + self.unknown_sender
            + self.truncated
            + self.tampered
            + self.malformed
            + self.reflected
            + self.clock_skew
            + self.replayed
            + self.unusable
    }

    fn count(&mut self, error: &OpenError) {
        let counter = match error {
            OpenError::Oversized { .. } => &mut self.oversized,
            OpenError::WrongRecipient(_) => &mut self.wrong_recipient,
            OpenError::UnknownSender(_) => &mut self.unknown_sender,
            OpenError::Truncated { .. } => &mut self.truncated,
            OpenError::Tampered(_) => &mut self.tampered,
            OpenError::Malformed(_) => &mut self.malformed,
            OpenError::Reflected => &mut self.reflected,
            OpenError::Stale { .. } | OpenError::FromTheFuture { .. } => &mut self.clock_skew,
            OpenError::Replayed(_) => &mut self.replayed,
            OpenError::Unusable(_) => &mut self.unusable,
        };
        *counter += 1;
    }
}

/// Opens envelopes addressed to one node's key.
pub struct Opener {
    public: PublicKey,
    boxes: BoxCache,
    policy: SenderPolicy,
    windows: HashMap<PublicKey, SenderWindows>,
    /// Grows with every accepted envelope: which sender was heard from least recently.
    tick: u64,
    counters: OpenCounters,
}

impl Opener {
    /// An opener for `private`'s node accepting senders by `policy`.
    pub fn new(private: &PrivateKey, policy: SenderPolicy) -> Self {
        Self {
            public: private.public_key(),
            boxes: BoxCache::new(private),
            policy,
            windows: HashMap::new(),
            tick: 0,
            counters: OpenCounters::default(),
        }
    }

    /// Replaces the sender policy (peers added or removed); replay windows of senders no
    /// longer allowed are dropped.
    pub fn set_policy(&mut self, policy: SenderPolicy) {
        self.windows.retain(|sender, _| policy.allows(sender));
        self.policy = policy;
    }

    /// What has been accepted and refused so far.
    pub fn counters(&self) -> OpenCounters {
        self.counters
    }

    /// Checks and opens `envelope` (see the module docs for the order of checks), counting
    /// the outcome. Returns the authenticated sender and its message.
    pub fn open(
        &mut self,
        envelope: &Envelope,
        now: SystemTime,
    ) -> Result<(PublicKey, SignalingMessage), OpenError> {
        let result = self.try_open(envelope, now);
        match &result {
            Ok(_) => self.counters.accepted += 1,
            Err(error) => self.counters.count(error),
        }
        result
    }

    /// Parses encoded envelope bytes, then opens them; bytes that are not an envelope count
    /// as [`OpenError::Oversized`] or [`OpenError::Malformed`].
    pub fn open_bytes(
        &mut self,
        bytes: &[u8],
        now: SystemTime,
    ) -> Result<(PublicKey, SignalingMessage), OpenError> {
        match Envelope::decode(bytes) {
            Ok(envelope) => self.open(&envelope, now),
            Err(error) => {
                let error = match error {
                    EnvelopeError::Oversized { len } => OpenError::Oversized { len },
                    other => OpenError::Malformed(other.to_string()),
                };
                self.counters.count(&error);
                Err(error)
            }
        }
    }

    fn try_open(
        &mut self,
        envelope: &Envelope,
        now: SystemTime,
    ) -> Result<(PublicKey, SignalingMessage), OpenError> {
        let len = envelope.encoded_len();
        if len > MAX_ENVELOPE_LEN {
            return Err(OpenError::Oversized { len });
        }
        if envelope.recipient != self.public {
            return Err(OpenError::WrongRecipient(envelope.recipient));
        }
        let sender = envelope.sender;
        if !self.policy.allows(&sender) {
            return Err(OpenError::UnknownSender(sender));
        }
        if envelope.ciphertext.len() < TAG_LEN {
            return Err(OpenError::Truncated {
                len: envelope.ciphertext.len(),
            });
        }
        let plaintext = self
            .boxes
            .get(&sender)
            .decrypt(
                Nonce::from_slice(&envelope.nonce),
                envelope.ciphertext.as_ref(),
            )
            .map_err(|_| OpenError::Tampered(sender))?;
        let content = proto::SealedContent::decode(plaintext.as_slice())
            .map_err(|e| OpenError::Malformed(e.to_string()))?;
        if content.sender.as_ref() != sender.as_bytes()
            || content.recipient.as_ref() != self.public.as_bytes()
        {
            return Err(OpenError::Reflected);
        }
        let counter = content.counter;
        // A sender from before boot ids sealed its clock as the counter.
        let sealed_at = if content.sealed_at_micros == 0 {
            counter
        } else {
            content.sealed_at_micros
        };
        let now_micros = unix_micros(now);
        let skew = u64::try_from(MAX_CLOCK_SKEW.as_micros()).unwrap_or(u64::MAX);
        if sealed_at < now_micros.saturating_sub(skew) {
            return Err(OpenError::Stale { sealed_at });
        }
        if sealed_at > now_micros.saturating_add(skew) {
            return Err(OpenError::FromTheFuture { sealed_at });
        }
        let message = content
            .message
            .ok_or(OpenError::Unusable(MessageError::UnknownKind))
            .and_then(|m| SignalingMessage::from_proto(m).map_err(OpenError::Unusable));
        // A replayed envelope must count as replayed even when its message is unusable, so
        // the window is consulted first; an unusable message still moves it.
        self.tick += 1;
        let tick = self.tick;
        self.window(&sender)
            .accept(content.boot_id, counter, tick)
            .map_err(OpenError::Replayed)?;
        Ok((sender, message?))
    }

    fn window(&mut self, sender: &PublicKey) -> &mut SenderWindows {
        if self.windows.len() >= MAX_TRACKED_SENDERS
            && !self.windows.contains_key(sender)
            && let Some(quietest) = self
                .windows
                .iter()
                .min_by_key(|(_, windows)| windows.last_heard())
                .map(|(key, _)| *key)
        {
            // Forgetting a window reopens it only for counters within MAX_CLOCK_SKEW of now.
            self.windows.remove(&quietest);
        }
        self.windows.entry(*sender).or_default()
    }
}

#[cfg(test)]
#[path = "envelope_tests.rs"]
mod tests;
