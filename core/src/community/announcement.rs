//! A community member's announcement: who it is, which addresses and networks it has, and a
//! signature by its WireGuard key that every member checks.
//!
//! The wire form is `wice_proto::signaling::Announcement`, one kind of `SignalingMessage`,
//! sealed in an ordinary envelope from the member's key to the community key. Decoding
//! enforces the limits below, so an announcement always fits in [`MAX_ENVELOPE_LEN`]
//! (checked when compiling, in `signaling::size_limits`).
//!
//! [`MAX_ENVELOPE_LEN`]: crate::signaling::MAX_ENVELOPE_LEN

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use prost::Message as _;
use prost::bytes::Bytes;
use wice_proto::signaling as proto;

use super::key::CommunityKey;
use super::xeddsa::{self, SIGNATURE_LEN};
use crate::keys::{KEY_LEN, PrivateKey, PublicKey};
use crate::signaling::MessageError;

/// Longest node name: one DNS label.
pub const MAX_NAME_LEN: usize = 63;
/// Most tunnel addresses one member announces.
pub const MAX_ADDRESSES: usize = 8;
/// Most networks one member routes.
pub const MAX_NETWORKS: usize = 32;
/// Most extra host names one member announces.
pub const MAX_HOSTNAMES: usize = 8;
/// Longest host name (RFC 1035).
pub const MAX_HOSTNAME_LEN: usize = 253;
/// Signed first, so a signature over an announcement means nothing anywhere else.
pub const SIGNATURE_DOMAIN: &[u8] = b"wice community announcement v1";

/// One member's announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// The member's WireGuard key; the envelope's sender must equal it.
    pub public_key: PublicKey,
    /// Its node name (a DNS label, or empty).
    pub name: String,
    /// Its tunnel addresses.
    pub addresses: Vec<IpAddr>,
    /// Networks it routes for the mesh.
    pub networks: Vec<IpNet>,
    /// It offers itself as an exit node.
    pub exit_node: bool,
    /// Extra host names.
    pub hostnames: Vec<String>,
    /// It is leaving.
    pub leaving: bool,
    /// Grows with every announcement of this member, across restarts.
    pub sequence: u64,
    /// XEdDSA by `public_key` over [`Announcement::signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

/// What a member says about itself, before it is numbered and signed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    /// Node name (a DNS label, or empty).
    pub name: String,
    /// Tunnel addresses.
    pub addresses: Vec<IpAddr>,
    /// Networks routed for the mesh.
    pub networks: Vec<IpNet>,
    /// Offers itself as an exit node.
    pub exit_node: bool,
    /// Extra host names.
    pub hostnames: Vec<String>,
}

impl Announcement {
    /// `profile` as `private`'s announcement number `sequence` to `community`, signed.
    pub fn sign(
        private: &PrivateKey,
        community: &CommunityKey,
        profile: &Profile,
        leaving: bool,
        sequence: u64,
    ) -> Result<Self, MessageError> {
        let mut announcement = Self {
            public_key: private.public_key(),
            name: profile.name.clone(),
            addresses: profile.addresses.clone(),
            networks: profile.networks.clone(),
            exit_node: profile.exit_node,
            hostnames: profile.hostnames.clone(),
            leaving,
            sequence,
            signature: [0; SIGNATURE_LEN],
        };
        announcement.validate()?;
        announcement.signature = xeddsa::sign(private, &announcement.signed_bytes(community));
        Ok(announcement)
    }

    /// True when the signature is `public_key`'s over this announcement to `community`.
    pub fn verify(&self, community: &CommunityKey) -> bool {
        xeddsa::verify(
            &self.public_key,
            &self.signed_bytes(community),
            &self.signature,
        )
    }

    /// What the signature covers: the domain, the community public key, the community's
    /// membership secret (so only passphrase holders can sign), and the protobuf encoding
    /// with the signature field empty (prost encodes known fields in field order, so every
    /// implementation that re-encodes gets the same bytes).
    pub fn signed_bytes(&self, community: &CommunityKey) -> Vec<u8> {
        let mut unsigned = self.to_proto();
        unsigned.signature = Bytes::new();
        let mut bytes = Vec::with_capacity(SIGNATURE_DOMAIN.len() + 2 * KEY_LEN + 512);
        bytes.extend_from_slice(SIGNATURE_DOMAIN);
        bytes.extend_from_slice(community.public_key().as_bytes());
        bytes.extend_from_slice(community.membership_secret());
        unsigned.encode(&mut bytes).unwrap_or_default();
        bytes
    }

    /// The member's profile, as announced.
    pub fn profile(&self) -> Profile {
        Profile {
            name: self.name.clone(),
            addresses: self.addresses.clone(),
            networks: self.networks.clone(),
            exit_node: self.exit_node,
            hostnames: self.hostnames.clone(),
        }
    }

    /// The protobuf form.
    pub fn to_proto(&self) -> proto::Announcement {
        proto::Announcement {
            public_key: Bytes::copy_from_slice(self.public_key.as_bytes()),
            name: self.name.clone(),
            addresses: self.addresses.iter().map(|a| ip_bytes(*a)).collect(),
            networks: self
                .networks
                .iter()
                .map(|n| proto::Network {
                    address: ip_bytes(n.addr()),
                    prefix_len: n.prefix_len().into(),
                })
                .collect(),
            exit_node: self.exit_node,
            hostnames: self.hostnames.clone(),
            leaving: self.leaving,
            sequence: self.sequence,
            signature: Bytes::copy_from_slice(&self.signature),
        }
    }

    /// Parses the protobuf form and checks the limits (not the signature).
    pub fn from_proto(raw: proto::Announcement) -> Result<Self, MessageError> {
        let public_key = <[u8; KEY_LEN]>::try_from(raw.public_key.as_ref())
            .map(PublicKey::from_bytes)
            .map_err(|_| MessageError::BadLength {
                field: "public_key",
                len: raw.public_key.len(),
            })?;
        let signature = <[u8; SIGNATURE_LEN]>::try_from(raw.signature.as_ref()).map_err(|_| {
            MessageError::BadLength {
                field: "signature",
                len: raw.signature.len(),
            }
        })?;
        check_count("addresses", raw.addresses.len(), MAX_ADDRESSES)?;
        check_count("networks", raw.networks.len(), MAX_NETWORKS)?;
        check_count("hostnames", raw.hostnames.len(), MAX_HOSTNAMES)?;
        let addresses = raw
            .addresses
            .iter()
            .map(|a| ip_from_bytes(a))
            .collect::<Result<Vec<_>, _>>()?;
        let networks = raw
            .networks
            .iter()
            .map(|n| {
                let address = ip_from_bytes(&n.address)?;
                let prefix_len =
                    u8::try_from(n.prefix_len).map_err(|_| MessageError::InvalidNetwork)?;
                IpNet::new(address, prefix_len).map_err(|_| MessageError::InvalidNetwork)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let announcement = Self {
            public_key,
            name: raw.name,
            addresses,
            networks,
            exit_node: raw.exit_node,
            hostnames: raw.hostnames,
            leaving: raw.leaving,
            sequence: raw.sequence,
            signature,
        };
        announcement.validate()?;
        Ok(announcement)
    }

    /// Checks the limits decoding enforces.
    pub fn validate(&self) -> Result<(), MessageError> {
        check_count("addresses", self.addresses.len(), MAX_ADDRESSES)?;
        check_count("networks", self.networks.len(), MAX_NETWORKS)?;
        check_count("hostnames", self.hostnames.len(), MAX_HOSTNAMES)?;
        if !self.name.is_empty() && !is_dns_label(&self.name) {
            return Err(MessageError::InvalidName("name"));
        }
        for hostname in &self.hostnames {
            if hostname.len() > MAX_HOSTNAME_LEN || !hostname.split('.').all(is_dns_label) {
                return Err(MessageError::InvalidName("hostnames"));
            }
        }
        Ok(())
    }
}

/// A DNS label as node names use it: 1 to 63 of `a-z`, `A-Z`, `0-9` and `-`, not at either
/// end.
pub fn is_dns_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= MAX_NAME_LEN
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !label.starts_with('-')
        && !label.ends_with('-')
}

fn check_count(field: &'static str, count: usize, max: usize) -> Result<(), MessageError> {
    if count > max {
        return Err(MessageError::TooMany { field, count, max });
    }
    Ok(())
}

fn ip_bytes(ip: IpAddr) -> Bytes {
    match ip {
        IpAddr::V4(v4) => Bytes::copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => Bytes::copy_from_slice(&v6.octets()),
    }
}

fn ip_from_bytes(bytes: &[u8]) -> Result<IpAddr, MessageError> {
    if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(v4)))
    } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(v6)))
    } else {
        Err(MessageError::InvalidAddress { len: bytes.len() })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn profile(name: &str) -> Profile {
        Profile {
            name: name.to_owned(),
            addresses: vec!["10.77.0.5".parse().unwrap(), "fd77::5".parse().unwrap()],
            networks: vec!["192.168.10.0/24".parse().unwrap()],
            exit_node: true,
            hostnames: vec!["db.example.internal".to_owned()],
        }
    }

    #[test]
    fn a_signed_announcement_round_trips_and_verifies_only_for_its_community() {
        let private = PrivateKey::from_bytes([5; 32]);
        let community = CommunityKey::from_secret([6; 32]);
        let other_community = CommunityKey::from_secret([7; 32]);
        let other = PrivateKey::from_bytes([7; 32]).public_key();
        let announcement = Announcement::sign(&private, &community, &profile("a"), false, 42)
            .expect("valid profile");
        let back = Announcement::from_proto(announcement.to_proto()).unwrap();
        assert_eq!(back, announcement);
        assert!(back.verify(&community));
        assert!(
            !back.verify(&other_community),
            "a signature is bound to its community"
        );
        let mut changed = back.clone();
        changed.sequence += 1;
        assert!(!changed.verify(&community));
        let mut changed = back.clone();
        changed.leaving = true;
        assert!(!changed.verify(&community), "nobody else can say we left");
        let mut changed = back;
        changed.public_key = other;
        assert!(
            !changed.verify(&community),
            "nor claim our profile for their key"
        );
    }

    #[test]
    fn oversized_or_malformed_announcements_are_refused_on_decode() {
        let private = PrivateKey::from_bytes([5; 32]);
        let community = CommunityKey::from_secret([6; 32]);
        let good = Announcement::sign(&private, &community, &profile("a"), false, 1)
            .unwrap()
            .to_proto();
        let mut raw = good.clone();
        raw.addresses = vec![Bytes::from_static(&[1, 2, 3, 4]); MAX_ADDRESSES + 1];
        assert!(matches!(
            Announcement::from_proto(raw),
            Err(MessageError::TooMany {
                field: "addresses",
                ..
            })
        ));
        let mut raw = good.clone();
        raw.hostnames = vec!["x".repeat(300)];
        assert_eq!(
            Announcement::from_proto(raw),
            Err(MessageError::InvalidName("hostnames"))
        );
        let mut raw = good.clone();
        raw.name = "no spaces".to_owned();
        assert_eq!(
            Announcement::from_proto(raw),
            Err(MessageError::InvalidName("name"))
        );
        let mut raw = good.clone();
        raw.networks[0].prefix_len = 33;
        assert_eq!(
            Announcement::from_proto(raw),
            Err(MessageError::InvalidNetwork)
        );
        let mut raw = good;
        raw.signature = Bytes::from_static(&[0; 3]);
        assert!(matches!(
            Announcement::from_proto(raw),
            Err(MessageError::BadLength {
                field: "signature",
                ..
            })
        ));
    }

    #[test]
    fn names_follow_dns_label_rules() {
        assert!(is_dns_label("node-7"));
        assert!(!is_dns_label("-node"));
        assert!(!is_dns_label("node-"));
        assert!(!is_dns_label("no_de"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }
}
