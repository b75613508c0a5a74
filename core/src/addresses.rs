//! Tunnel addresses derived from public keys, so that a node's address follows from its key and
//! nobody has to hand addresses out.
//!
//! The function, fixed and documented so that every implementation agrees:
//!
//! ```text
//! digest = SHA-256("wice address v1" || prefix address bytes (4 or 16) || prefix length (1 byte)
//!                  || public key (32 bytes))
//! x      = the first 16 bytes of digest, as a big-endian u128
//! hosts  = 2^(host bits) - 2 for IPv4 (no network or broadcast address),
//!          2^(host bits) - 1 for IPv6 (no subnet-router anycast address, host part 0)
//! host   = 1 + x mod hosts
//! address = prefix network address + host
//! ```
//!
//! An IPv4 prefix must leave at least 2 host bits (`/30` or shorter), an IPv6 one at least 1
//! (`/127` or shorter). Two keys can land on one address (in a `/16`, a few hundred nodes make
//! it likely); [`AddressBook`] finds such collisions so the caller refuses the second key
//! instead of routing one address to two nodes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use sha2::{Digest as _, Sha256};

use crate::keys::PublicKey;

/// The domain string hashed before everything else.
pub const ADDRESS_DOMAIN: &[u8] = b"wice address v1";

/// Why no address can be derived in a prefix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    /// The prefix leaves too few host bits.
    #[error(
        "{prefix} is too small to derive addresses in; use /30 or shorter for IPv4, /127 or shorter for IPv6"
    )]
    PrefixTooSmall {
        /// The prefix.
        prefix: IpNet,
    },
}

/// Checks that addresses can be derived in `prefix`.
pub fn check_prefix(prefix: &IpNet) -> Result<(), AddressError> {
    let host_bits = u32::from(prefix.max_prefix_len() - prefix.prefix_len());
    let needed = match prefix {
        IpNet::V4(_) => 2,
        IpNet::V6(_) => 1,
    };
    if host_bits < needed {
        return Err(AddressError::PrefixTooSmall { prefix: *prefix });
    }
    Ok(())
}

/// The address of `key` in `prefix` (see the module docs for the function).
pub fn derive_address(key: &PublicKey, prefix: &IpNet) -> Result<IpAddr, AddressError> {
    check_prefix(prefix)?;
    let network = prefix.network();
    let mut hash = Sha256::new();
    hash.update(ADDRESS_DOMAIN);
    match network {
        IpAddr::V4(v4) => hash.update(v4.octets()),
        IpAddr::V6(v6) => hash.update(v6.octets()),
    }
    hash.update([prefix.prefix_len()]);
    hash.update(key.as_bytes());
    let digest = hash.finalize();
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    let x = u128::from_be_bytes(first);
    let host_bits = u32::from(prefix.max_prefix_len() - prefix.prefix_len());
    // 2^host_bits, saturating for a /0 IPv6 prefix (128 host bits).
    let size = 1u128.checked_shl(host_bits).unwrap_or(0);
    let address = match network {
        IpAddr::V4(v4) => {
            let hosts = size - 2;
            let host = 1 + x % hosts;
            // host < 2^32 since host bits ≤ 32.
            IpAddr::V4(Ipv4Addr::from(u32::from(v4) | host as u32))
        }
        IpAddr::V6(v6) => {
            let hosts = size.wrapping_sub(1);
            let host = if hosts == u128::MAX {
                x.max(1)
            } else {
                1 + x % hosts
            };
            IpAddr::V6(Ipv6Addr::from(u128::from(v6) | host))
        }
    };
    Ok(address)
}

/// The addresses of `key` in each of `prefixes`, in order.
pub fn derive_addresses(key: &PublicKey, prefixes: &[IpNet]) -> Result<Vec<IpAddr>, AddressError> {
    prefixes.iter().map(|p| derive_address(key, p)).collect()
}

/// Two keys that claim one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("address {address} of {key} is already {holder}'s")]
pub struct Collision {
    /// The address.
    pub address: IpAddr,
    /// Who had it first (and keeps it).
    pub holder: PublicKey,
    /// Who asked for it.
    pub key: PublicKey,
}

/// Which key holds which address: the first key to claim an address keeps it.
#[derive(Debug, Default, Clone)]
pub struct AddressBook {
    holders: HashMap<IpAddr, PublicKey>,
}

impl AddressBook {
    /// An empty book.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first address of `addresses` that another key already holds.
    pub fn collision(&self, key: &PublicKey, addresses: &[IpAddr]) -> Option<Collision> {
        addresses.iter().find_map(|address| {
            self.holders
                .get(address)
                .filter(|holder| *holder != key)
                .map(|holder| Collision {
                    address: *address,
                    holder: *holder,
                    key: *key,
                })
        })
    }

    /// Gives `addresses` to `key` unless one collides; then nothing changes.
    pub fn claim(&mut self, key: &PublicKey, addresses: &[IpAddr]) -> Result<(), Collision> {
        if let Some(collision) = self.collision(key, addresses) {
            return Err(collision);
        }
        for address in addresses {
            self.holders.insert(*address, *key);
        }
        Ok(())
    }

    /// Frees every address `key` holds.
    pub fn release(&mut self, key: &PublicKey) {
        self.holders.retain(|_, holder| holder != key);
    }

    /// Who holds `address`.
    pub fn holder(&self, address: &IpAddr) -> Option<&PublicKey> {
        self.holders.get(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> PublicKey {
        PublicKey::from_bytes([byte; 32])
    }

    fn net(text: &str) -> IpNet {
        text.parse().expect("prefix")
    }

    #[test]
    fn a_derived_address_is_a_fixed_function_of_key_and_prefix() {
        // Test vectors (checked against an independent Python implementation of the module
        // docs): any change to the function changes every node's address.
        let k = key(7);
        assert_eq!(
            derive_address(&k, &net("10.77.0.0/16"))
                .unwrap()
                .to_string(),
            "10.77.72.123"
        );
        assert_eq!(
            derive_address(&k, &net("fd77::/64")).unwrap().to_string(),
            "fd77::944:bf3d:b2ae:b188"
        );
        assert_eq!(
            derive_address(&k, &net("10.77.0.0/16")),
            derive_address(&k, &net("10.77.0.0/16"))
        );
        assert_ne!(
            derive_address(&k, &net("10.77.0.0/16")),
            derive_address(&key(8), &net("10.77.0.0/16"))
        );
    }

    #[test]
    fn derived_addresses_stay_inside_the_prefix_and_avoid_network_and_broadcast() {
        for prefix in ["192.0.2.0/30", "192.0.2.0/29", "10.0.0.0/8", "0.0.0.0/0"] {
            let prefix = net(prefix);
            for byte in 0..=255u8 {
                let address = derive_address(&key(byte), &prefix).unwrap();
                assert!(prefix.contains(&address), "{address} outside {prefix}");
                assert_ne!(address, prefix.network(), "{prefix}");
                assert_ne!(address, prefix.broadcast(), "{prefix}");
            }
        }
        for prefix in ["fd00::/127", "fd00::/120", "fd77::/64", "::/0"] {
            let prefix = net(prefix);
            for byte in 0..=255u8 {
                let address = derive_address(&key(byte), &prefix).unwrap();
                assert!(prefix.contains(&address), "{address} outside {prefix}");
                assert_ne!(address, prefix.network(), "{prefix}");
            }
        }
    }

    #[test]
    fn a_prefix_without_room_for_a_host_is_refused() {
        assert_eq!(
            derive_address(&key(1), &net("192.0.2.0/31")),
            Err(AddressError::PrefixTooSmall {
                prefix: net("192.0.2.0/31")
            })
        );
        assert!(derive_address(&key(1), &net("fd00::1/128")).is_err());
    }

    #[test]
    fn the_host_bits_of_a_prefix_written_with_them_set_do_not_matter() {
        assert_eq!(
            derive_address(&key(3), &net("10.77.1.2/16")),
            derive_address(&key(3), &net("10.77.0.0/16"))
        );
    }

    #[test]
    fn a_second_key_on_a_taken_address_is_refused_and_the_first_keeps_it() {
        // In a /30 there are two hosts: among a few keys two must collide.
        let prefix = net("192.0.2.0/30");
        let mut book = AddressBook::new();
        let mut refused = None;
        for byte in 0..8u8 {
            let address = derive_address(&key(byte), &prefix).unwrap();
            if let Err(collision) = book.claim(&key(byte), &[address]) {
                refused = Some((byte, collision));
                break;
            }
        }
        let (byte, collision) = refused.expect("a collision among 8 keys in 2 hosts");
        assert_eq!(collision.key, key(byte));
        assert_ne!(collision.holder, key(byte));
        assert_eq!(book.holder(&collision.address), Some(&collision.holder));
        // Releasing the holder frees the address for the other key.
        book.release(&collision.holder);
        book.claim(&key(byte), &[collision.address]).unwrap();
        // A key re-claiming its own address is no collision.
        book.claim(&key(byte), &[collision.address]).unwrap();
    }
}
