//! The Kubernetes backend's objects: one `Envelope` custom resource per (sender, recipient),
//! its name and labels, and reading one back out of what the API server hands us.
//!
//! ```yaml
//! apiVersion: signaling.wice.dev/v1
//! kind: Envelope
//! metadata:
//!   name: e-<32 hex: hash of (sender, recipient)>
//!   labels:
//!     signaling.wice.dev/recipient: <32 hex: hash of the recipient key>
//!     signaling.wice.dev/sender: <32 hex: hash of the sender key>
//! spec:
//!   envelope: <base64 of the sealed envelope>
//!   expires: <unix seconds after which the sender deletes it>
//! ```
//!
//! An object is the *latest* envelope from one sender to one recipient, overwritten by the
//! next (server-side apply), not one entry of a stream: the number of objects is bounded by
//! the pairs that talk, and each watcher sees every overwrite as a `MODIFIED` event. Keys
//! appear only hashed (label values are at most 63 characters, and the object list does not
//! spell out who talks to whom by key); the envelope inside says who it is from and for,
//! authenticated end to end, and the receiver checks it against its own key.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use blake2::{Blake2s256, Digest as _};
use serde_json::{Value, json};

use wice_core::keys::PublicKey;
use wice_core::signaling::envelope::{Envelope, MAX_ENVELOPE_LEN};

/// The custom resource's API group.
pub const GROUP: &str = "signaling.wice.dev";
/// Its version.
pub const VERSION: &str = "v1";
/// Its kind.
pub const KIND: &str = "Envelope";
/// Its plural (the resource name in URLs and RBAC rules).
pub const PLURAL: &str = "envelopes";
/// The label holding the hash of the recipient key: what each node's watch selects on.
pub const RECIPIENT_LABEL: &str = "signaling.wice.dev/recipient";
/// The label holding the hash of the sender key: what the sender's garbage collection
/// selects on.
pub const SENDER_LABEL: &str = "signaling.wice.dev/sender";

/// The longest `spec.envelope` accepted: base64 of the largest envelope.
pub const MAX_ENCODED_LEN: usize = MAX_ENVELOPE_LEN.div_ceil(3) * 4;

/// 32 hex digits of a BLAKE2s hash of `parts` under `domain`.
fn hex_hash(domain: &[u8], parts: &[&PublicKey]) -> String {
    let mut hash = Blake2s256::new();
    hash.update(domain);
    for part in parts {
        hash.update(part.as_bytes());
    }
    let digest = hash.finalize();
    let mut hex = String::with_capacity(32);
    for byte in &digest[..16] {
        hex.push_str(&format!("{byte:02x}"));
    }
    hex
}

/// The label value naming `key`, as recipient or sender.
pub fn key_label(key: &PublicKey) -> String {
    hex_hash(b"wice kubernetes key label v1", &[key])
}

/// The object name of the envelopes from `sender` to `recipient`.
pub fn object_name(sender: &PublicKey, recipient: &PublicKey) -> String {
    format!(
        "e-{}",
        hex_hash(b"wice kubernetes object name v1", &[sender, recipient])
    )
}

/// The object carrying `envelope` until `expires` (unix seconds), as a server-side apply
/// body. `owner`: the pod (name, uid) whose deletion lets Kubernetes' garbage collector
/// delete the object too, when the node runs in a pod.
pub fn envelope_object(
    envelope: &Envelope,
    expires: u64,
    owner: Option<&(String, String)>,
) -> Value {
    let mut metadata = json!({
        "name": object_name(&envelope.sender, &envelope.recipient),
        "labels": {
            RECIPIENT_LABEL: key_label(&envelope.recipient),
            SENDER_LABEL: key_label(&envelope.sender),
        },
    });
    if let Some((name, uid)) = owner {
        metadata["ownerReferences"] = json!([{
            "apiVersion": "v1",
            "kind": "Pod",
            "name": name,
            "uid": uid,
        }]);
    }
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"),
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "envelope": BASE64.encode(envelope.encode()),
            "expires": expires,
        },
    })
}

/// Why an object from the API server was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejected {
    /// No `spec.envelope` string, too long, not base64, or not an envelope.
    Malformed,
    /// An envelope for another key than the one watched.
    Misaddressed,
}

/// The envelope in an object's `spec` (the object's `data` beside its metadata), if it is a
/// well-formed envelope for `recipient`. Sizes are checked before anything is decoded.
pub fn envelope_in(data: &Value, recipient: &PublicKey) -> Result<Envelope, Rejected> {
    let encoded = data
        .get("spec")
        .and_then(|spec| spec.get("envelope"))
        .and_then(Value::as_str)
        .filter(|text| text.len() <= MAX_ENCODED_LEN)
        .ok_or(Rejected::Malformed)?;
    let bytes = BASE64.decode(encoded).map_err(|_| Rejected::Malformed)?;
    let envelope = Envelope::decode(&bytes).map_err(|_| Rejected::Malformed)?;
    if envelope.recipient != *recipient {
        return Err(Rejected::Misaddressed);
    }
    Ok(envelope)
}

/// When an object's sender will delete it (unix seconds); 0 when it does not say.
pub fn expires_of(data: &Value) -> u64 {
    data.get("spec")
        .and_then(|spec| spec.get("expires"))
        .and_then(Value::as_u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(sender: u8, recipient: u8) -> Envelope {
        Envelope {
            sender: PublicKey::from_bytes([sender; 32]),
            recipient: PublicKey::from_bytes([recipient; 32]),
            nonce: [7; 24],
            ciphertext: prost::bytes::Bytes::from_static(&[9; 40]),
        }
    }

    #[test]
    fn names_and_labels_are_valid_kubernetes_names_and_differ_per_pair() {
        let (a, b) = (
            PublicKey::from_bytes([1; 32]),
            PublicKey::from_bytes([2; 32]),
        );
        let label = key_label(&a);
        assert_eq!(label.len(), 32);
        assert!(label.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(object_name(&a, &b), object_name(&b, &a));
        assert!(object_name(&a, &b).len() <= 63);
        assert_ne!(key_label(&a), key_label(&b));
    }

    #[test]
    fn an_envelope_round_trips_through_its_object() {
        let sent = envelope(1, 2);
        let object = envelope_object(&sent, 99, None);
        assert_eq!(
            object["metadata"]["labels"][RECIPIENT_LABEL],
            key_label(&sent.recipient)
        );
        assert_eq!(expires_of(&object), 99);
        let got = envelope_in(&object, &sent.recipient).expect("an envelope");
        assert_eq!(got.encode(), sent.encode());
    }

    #[test]
    fn the_crd_admits_the_largest_envelope() {
        let crd = include_str!("../../deploy/kubernetes/10-crd.yaml");
        let max_length: usize = crd
            .lines()
            .find_map(|line| line.trim().strip_prefix("maxLength: "))
            .and_then(|n| n.parse().ok())
            .expect("maxLength in the CRD");
        assert!(
            max_length >= MAX_ENCODED_LEN,
            "{max_length} < {MAX_ENCODED_LEN}"
        );
        assert!(
            crd.contains(&format!("group: {GROUP}")) && crd.contains(&format!("plural: {PLURAL}"))
        );
    }

    #[test]
    fn bad_objects_are_rejected_without_decoding_oversized_input() {
        let me = PublicKey::from_bytes([2; 32]);
        let for_other = envelope_object(&envelope(1, 3), 0, None);
        assert_eq!(
            envelope_in(&for_other, &me).err(),
            Some(Rejected::Misaddressed)
        );
        for spec in [
            json!({}),
            json!({"envelope": 5}),
            json!({"envelope": "not base64!"}),
            json!({"envelope": BASE64.encode(b"not an envelope")}),
            json!({"envelope": "A".repeat(MAX_ENCODED_LEN + 4)}),
        ] {
            let object = json!({ "spec": spec });
            assert_eq!(
                envelope_in(&object, &me).err(),
                Some(Rejected::Malformed),
                "{object}"
            );
        }
        assert_eq!(
            envelope_in(&json!("string"), &me).err(),
            Some(Rejected::Malformed)
        );
    }
}
