//! Changing a running engine the way `wg set` does: a new private key, a
//! peer's preshared key, keepalive, endpoint and allowed IPs, read back as
//! configuration for `wg showconf`.
//!
//! Every change happens under the peer table's write lock, so the packet
//! threads see it whole from their next batch.

use std::collections::HashMap;
use std::sync::Arc;

use boringtun::noise::Tunn;
use boringtun::x25519::PublicKey;
use ipnet::IpNet;

use crate::endpoint::Endpoint;
use crate::engine::{Engine, Identity, PeerTableError};
use crate::peer::{Peer, PeerConfig};

impl Identity {
    /// A tunnel to the peer `config` names, issuing receiver indices in `slot`.
    pub(crate) fn new_tunn(&self, config: &PeerConfig, slot: u32) -> Tunn {
        Tunn::new(
            self.private_key.clone(),
            PublicKey::from(config.public_key),
            config.preshared_key,
            config.persistent_keepalive.filter(|s| *s > 0),
            slot,
            Some(Arc::clone(&self.tunn_rate_limiter)),
        )
    }
}

impl Engine {
    /// Replaces the device's private key. Every peer keeps its settings but
    /// loses its sessions (they were keyed with the old identity) and
    /// handshakes again on its next packet. A peer whose public key is the
    /// new own key is removed, as WireGuard does; its key is returned.
    pub fn set_private_key(&self, private_key: [u8; 32]) -> Option<[u8; 32]> {
        let mut table = self.table_mut();
        table.identity = Identity::new(private_key);
        let own = table.identity.public_key.to_bytes();
        let removed = table.by_key.remove(&own).map(|slot| {
            table.allowed_ips.remove_value(&slot);
            table.slots[slot as usize] = None;
            own
        });
        let identity = &table.identity;
        for peer in table.slots.iter().flatten() {
            peer.lock().tunn.set_static_private(
                identity.private_key.clone(),
                identity.public_key,
                Some(Arc::clone(&identity.tunn_rate_limiter)),
            );
        }
        removed
    }

    /// Adds the peer, or brings an existing one to `config`: its allowed IPs
    /// become exactly `config.allowed_ips` (a network another peer had moves
    /// to this one), its endpoint changes only when `config.endpoint` is set.
    /// A changed preshared key or keepalive needs a new tunnel (boringtun
    /// fixes both at creation): the peer then handshakes again.
    pub fn configure_peer(&self, config: &PeerConfig) -> Result<(), PeerTableError> {
        let mut table = self.table_mut();
        let Some(&slot) = table.by_key.get(&config.public_key) else {
            drop(table);
            return self.add_peer(config);
        };
        let Some(peer) = table.slots[slot as usize].clone() else {
            return Err(PeerTableError::Full);
        };
        let keepalive = config.persistent_keepalive.filter(|s| *s > 0);
        if peer.preshared_key != config.preshared_key || peer.keepalive != keepalive {
            let endpoint = config
                .endpoint
                .map(Endpoint::Direct)
                .or(peer.lock().endpoint);
            let replacement = Peer::new(slot, config, table.identity.new_tunn(config, slot));
            replacement.lock().endpoint = endpoint;
            table.slots[slot as usize] = Some(Arc::new(replacement));
        } else if let Some(endpoint) = config.endpoint {
            peer.lock().endpoint = Some(Endpoint::Direct(crate::udp::unmap(endpoint)));
        }
        table.allowed_ips.remove_value(&slot);
        table
            .allowed_ips
            .insert_many(config.allowed_ips.iter().copied(), slot);
        Ok(())
    }

    /// The device's private key (`wg showconf` prints it).
    pub fn private_key(&self) -> [u8; 32] {
        self.table().identity.private_key.to_bytes()
    }

    /// Every peer's configuration as it stands, in slot order: the endpoint
    /// is where its packets go now (a relayed peer's is its TURN server),
    /// the allowed IPs those the routing table gives it.
    pub fn peer_configs(&self) -> Vec<PeerConfig> {
        let table = self.table();
        let mut allowed: HashMap<u32, Vec<IpNet>> = HashMap::new();
        for (net, slot) in table.allowed_ips.iter() {
            allowed.entry(*slot).or_default().push(net);
        }
        table
            .peers()
            .map(|peer| PeerConfig {
                public_key: peer.public_key,
                preshared_key: peer.preshared_key,
                persistent_keepalive: peer.keepalive,
                endpoint: peer.lock().endpoint.map(Endpoint::destination),
                allowed_ips: allowed.remove(&peer.slot).unwrap_or_default(),
            })
            .collect()
    }
}
