//! WireGuard keys: Curve25519 private and public keys and the optional preshared key.
//!
//! Keys travel as standard base64 with padding (44 characters), exactly the text `wg genkey`,
//! `wg pubkey` and `wg genpsk` read and write, so keys can move between `wg` and `wice` freely.
//! Parsing trims surrounding whitespace because keys usually come from files or pipes that end
//! in a newline (`wice pubkey < private.key`).

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
// The same x25519-dalek 2 that boringtun re-exports, so these are the types its tunnels take.
use x25519_dalek as x25519;

/// Length in bytes of every WireGuard key (private, public and preshared).
pub const KEY_LEN: usize = 32;

/// Why a text could not be read as a WireGuard key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The text is not standard, padded base64.
    #[error("not valid base64")]
    InvalidBase64,
    /// The text is base64 but does not hold exactly 32 bytes.
    #[error("decodes to {len} bytes; a WireGuard key is 32 bytes")]
    WrongLength {
        /// Number of bytes the text decoded to.
        len: usize,
    },
}

/// Decodes a base64 key after trimming surrounding whitespace.
fn decode_key(text: &str) -> Result<[u8; KEY_LEN], KeyError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| KeyError::InvalidBase64)?;
    <[u8; KEY_LEN]>::try_from(bytes.as_slice())
        .map_err(|_| KeyError::WrongLength { len: bytes.len() })
}

fn encode_key(bytes: &[u8; KEY_LEN]) -> String {
    BASE64.encode(bytes)
}

/// Applies X25519 clamping (RFC 7748 §5) to a private scalar.
///
/// The curve arithmetic clamps anyway, but `wg genkey` stores the key already clamped, and
/// doing the same keeps our generated keys indistinguishable from `wg`'s.
#[cfg(any(test, feature = "os-rng"))]
fn clamp(bytes: &mut [u8; KEY_LEN]) {
    bytes[0] &= 248;
    bytes[31] &= 127;
    bytes[31] |= 64;
}

/// A node's Curve25519 private key.
///
/// `Debug` shows only the matching public key, so logging a config never leaks the secret.
#[derive(Clone)]
pub struct PrivateKey(x25519::StaticSecret);

impl PrivateKey {
    /// Generates a fresh key from the operating system's random source, clamped like
    /// `wg genkey` output.
    #[cfg(any(test, feature = "os-rng"))]
    pub fn generate() -> Self {
        use rand_core::RngCore as _;
        let mut bytes = [0u8; KEY_LEN];
        rand_core::OsRng.fill_bytes(&mut bytes);
        clamp(&mut bytes);
        Self::from_bytes(bytes)
    }

    /// Wraps raw key bytes as given; they are not clamped here because the X25519 operation
    /// clamps, and keeping them verbatim makes `to_base64` return what was read.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(x25519::StaticSecret::from(bytes))
    }

    /// Parses standard padded base64, ignoring surrounding whitespace.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self::from_bytes)
    }

    /// The public key peers use to identify this node.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(x25519::PublicKey::from(&self.0).to_bytes())
    }

    /// The key as standard padded base64, the format of `wg genkey`.
    pub fn to_base64(&self) -> String {
        encode_key(self.0.as_bytes())
    }

    /// A copy of the raw key bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public: {})", self.public_key())
    }
}

impl FromStr for PrivateKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::from_base64(text)
    }
}

/// A Curve25519 public key: the identity of a WireGuard peer.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// Wraps raw key bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parses standard padded base64, ignoring surrounding whitespace.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self)
    }

    /// The key as standard padded base64, the format of `wg pubkey`.
    pub fn to_base64(&self) -> String {
        encode_key(&self.0)
    }

    /// The raw key bytes.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// A copy of the raw key bytes.
    pub const fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl From<[u8; KEY_LEN]> for PublicKey {
    fn from(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }
}

impl From<x25519::PublicKey> for PublicKey {
    fn from(key: x25519::PublicKey) -> Self {
        Self(key.to_bytes())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_base64())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::from_base64(text)
    }
}

/// An optional symmetric key mixed into a peer's handshake (`wg genpsk`).
///
/// `Debug` redacts the bytes because this is a secret too.
#[derive(Clone)]
pub struct PresharedKey([u8; KEY_LEN]);

impl PresharedKey {
    /// Parses standard padded base64, ignoring surrounding whitespace.
    pub fn from_base64(text: &str) -> Result<Self, KeyError> {
        decode_key(text).map(Self)
    }

    /// The key as standard padded base64, the format of `wg genpsk`.
    pub fn to_base64(&self) -> String {
        encode_key(&self.0)
    }

    /// A copy of the raw key bytes, the form boringtun's tunnels take.
    pub const fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }
}

impl fmt::Debug for PresharedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PresharedKey(..)")
    }
}

impl FromStr for PresharedKey {
    type Err = KeyError;

    fn from_str(text: &str) -> Result<Self, KeyError> {
        Self::from_base64(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::process::{Command, Stdio};

    // RFC 7748 §6.1 test vectors, base64-encoded.
    const ALICE_PRIVATE: &str = "dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=";
    const ALICE_PUBLIC: &str = "hSDwCYkwp1R0i33ctD73Wg2/Og0mOBr066SpjqqbTmo=";
    const BOB_PRIVATE: &str = "XasIfmJKikt54X+Lg4AO5m87sSkmGLb9HC+LJ/+I4Os=";
    const BOB_PUBLIC: &str = "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=";

    #[test]
    fn rfc7748_private_keys_give_the_rfc_public_keys() {
        let alice = PrivateKey::from_base64(ALICE_PRIVATE).unwrap();
        assert_eq!(alice.public_key().to_base64(), ALICE_PUBLIC);
        let bob = PrivateKey::from_base64(BOB_PRIVATE).unwrap();
        assert_eq!(bob.public_key().to_base64(), BOB_PUBLIC);
    }

    #[test]
    fn private_key_base64_round_trips_verbatim_even_when_unclamped() {
        // Alice's RFC key is not clamped; it must come back exactly as read.
        let alice = PrivateKey::from_base64(ALICE_PRIVATE).unwrap();
        assert_eq!(alice.to_base64(), ALICE_PRIVATE);
        assert_eq!(
            PrivateKey::from_bytes(alice.to_bytes()).to_base64(),
            ALICE_PRIVATE
        );
    }

    #[test]
    fn public_and_preshared_keys_round_trip_through_base64() {
        let public = PublicKey::from_base64(ALICE_PUBLIC).unwrap();
        assert_eq!(public.to_base64(), ALICE_PUBLIC);
        assert_eq!(public.to_string(), ALICE_PUBLIC);
        assert_eq!(ALICE_PUBLIC.parse::<PublicKey>().unwrap(), public);

        let psk = PresharedKey([0x5a; KEY_LEN]);
        let again = PresharedKey::from_base64(&psk.to_base64()).unwrap();
        assert_eq!(again.to_bytes(), psk.to_bytes());
    }

    #[test]
    fn base64_is_44_characters_with_padding_like_wg() {
        let key = PrivateKey::generate();
        let text = key.to_base64();
        assert_eq!(text.len(), 44);
        assert!(text.ends_with('='));
        assert_eq!(key.public_key().to_base64().len(), 44);
    }

    #[test]
    fn parsing_ignores_surrounding_whitespace_and_newlines() {
        let with_newline = format!("  {ALICE_PRIVATE}\n");
        let alice = PrivateKey::from_base64(&with_newline).unwrap();
        assert_eq!(alice.public_key().to_base64(), ALICE_PUBLIC);
        let public = PublicKey::from_base64(&format!("\t{ALICE_PUBLIC}\r\n")).unwrap();
        assert_eq!(public, alice.public_key());
    }

    #[test]
    fn generated_private_keys_are_clamped_like_wg_genkey() {
        for _ in 0..64 {
            let bytes = PrivateKey::generate().to_bytes();
            assert_eq!(bytes[0] & 7, 0);
            assert_eq!(bytes[31] & 128, 0);
            assert_eq!(bytes[31] & 64, 64);
        }
    }

    #[test]
    fn two_generated_keys_differ() {
        assert_ne!(
            PrivateKey::generate().to_bytes(),
            PrivateKey::generate().to_bytes()
        );
    }

    #[test]
    fn text_that_is_not_base64_is_rejected_as_invalid_base64() {
        assert_eq!(
            PublicKey::from_base64("not a key!").unwrap_err(),
            KeyError::InvalidBase64
        );
        assert_eq!(
            PrivateKey::from_base64("dwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo").unwrap_err(),
            KeyError::InvalidBase64,
            "unpadded base64 is not what wg writes"
        );
        assert_eq!(KeyError::InvalidBase64.to_string(), "not valid base64");
    }

    #[test]
    fn base64_of_the_wrong_length_is_rejected_with_the_decoded_length() {
        let err = PresharedKey::from_base64("AAAA").unwrap_err();
        assert_eq!(err, KeyError::WrongLength { len: 3 });
        assert_eq!(
            err.to_string(),
            "decodes to 3 bytes; a WireGuard key is 32 bytes"
        );
        assert_eq!(
            PublicKey::from_base64("").unwrap_err(),
            KeyError::WrongLength { len: 0 }
        );
        let long = BASE64.encode([0u8; 33]);
        assert_eq!(
            PrivateKey::from_base64(&long).unwrap_err(),
            KeyError::WrongLength { len: 33 }
        );
    }

    #[test]
    fn debug_output_never_shows_secret_bytes() {
        let alice = PrivateKey::from_base64(ALICE_PRIVATE).unwrap();
        let shown = format!("{alice:?}");
        assert!(!shown.contains(ALICE_PRIVATE));
        assert_eq!(shown, format!("PrivateKey(public: {ALICE_PUBLIC})"));

        let psk = PresharedKey::from_base64(ALICE_PRIVATE).unwrap();
        assert_eq!(format!("{psk:?}"), "PresharedKey(..)");
    }

    #[test]
    fn static_secret_for_the_datapath_agrees_with_our_key() {
        let alice = PrivateKey::from_base64(ALICE_PRIVATE).unwrap();
        let bob = PublicKey::from_base64(BOB_PUBLIC).unwrap();
        // The datapath builds boringtun's x25519 types from the raw bytes.
        let ours = x25519::StaticSecret::from(alice.to_bytes())
            .diffie_hellman(&x25519::PublicKey::from(bob.to_bytes()));
        let theirs =
            x25519::StaticSecret::from(PrivateKey::from_base64(BOB_PRIVATE).unwrap().to_bytes())
                .diffie_hellman(&x25519::PublicKey::from(alice.public_key().to_bytes()));
        assert_eq!(ours.as_bytes(), theirs.as_bytes());
    }

    /// Runs `wg <subcommand>` with `input` on stdin and returns its trimmed stdout.
    fn run_wg(subcommand: &str, input: &str) -> String {
        let mut child = Command::new("wg")
            .arg(subcommand)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "wg {subcommand} failed");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    fn wg_is_installed() -> bool {
        Command::new("wg")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    #[test]
    fn keys_agree_byte_for_byte_with_the_wg_tool() {
        if !wg_is_installed() {
            // CI installs wireguard-tools: there a missing `wg` is a failure, not a skip.
            let in_ci =
                std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
            assert!(
                !in_ci,
                "the `wg` binary is not on PATH under CI (CI=true); .ci/run installs wireguard-tools"
            );
            eprintln!(
                "skipping: the `wg` binary is not on PATH, so there is nothing to compare with"
            );
            return;
        }
        for _ in 0..8 {
            // wg's keys read by us give wg's public key.
            let wg_private = run_wg("genkey", "");
            let wg_public = run_wg("pubkey", &format!("{wg_private}\n"));
            let ours = PrivateKey::from_base64(&wg_private).unwrap();
            assert_eq!(ours.to_base64(), wg_private);
            assert_eq!(ours.public_key().to_base64(), wg_public);
            assert_eq!(
                ours.public_key(),
                PublicKey::from_base64(&wg_public).unwrap()
            );

            // Our generated keys read by wg give our public key.
            let generated = PrivateKey::generate();
            let wg_public = run_wg("pubkey", &format!("{}\n", generated.to_base64()));
            assert_eq!(generated.public_key().to_base64(), wg_public);
        }
        // The RFC vector too, unclamped as it is.
        assert_eq!(run_wg("pubkey", ALICE_PRIVATE), ALICE_PUBLIC);
    }
}
