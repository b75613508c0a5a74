//! How datagrams cross the simulated network: a node's LAN, its NAT, the links, the server,
//! and the hand-off to the receiving node as its datapath would do it.

use std::net::SocketAddr;
use std::time::Duration;

use super::{Payload, Simulation};
use crate::nat::v4;
use crate::product::{DatagramKind, classify, is_stun};
use crate::topology::{LinkProfile, Owner, SERVER, SiteKind, owner};

impl Simulation {
    /// The link profile at the far end of `to`, if anything is there.
    fn far_link(&self, to: SocketAddr) -> Option<(LinkProfile, bool)> {
        match owner(to.ip()) {
            Owner::Server => Some((self.config.server_link, false)),
            Owner::Nat(site) | Owner::Public(site) => self.sites.get(site).map(|s| (s.link, s.cut)),
            Owner::Lan(_) | Owner::Nowhere => None,
        }
    }

    fn link_delay(&mut self, link: LinkProfile) -> Duration {
        let jitter = link.jitter.as_micros() as u64;
        let extra = if jitter == 0 {
            0
        } else {
            self.net_rng.below(jitter)
        };
        link.delay + Duration::from_micros(extra)
    }

    pub(super) fn send_from_node(
        &mut self,
        index: usize,
        source: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
    ) {
        let now = self.clock.now();
        self.nodes[index].datagrams_sent += 1;
        self.stats.datagrams += 1;
        let site = self.nodes[index].site;
        let same_lan = match owner(to.ip()) {
            Owner::Lan(s) => s == site && matches!(self.sites[site].kind, SiteKind::Nat(_)),
            Owner::Public(s) => s == site && self.sites[site].kind == SiteKind::Public,
            _ => false,
        };
        if same_lan {
            let at = now + self.config.lan_delay;
            self.schedule(
                at,
                Payload::Datagram {
                    from: source,
                    to,
                    data,
                    lan: true,
                },
            );
            return;
        }
        if matches!(owner(to.ip()), Owner::Lan(_)) {
            self.stats.unroutable += 1;
            return;
        }
        if self.sites[site].cut {
            self.stats.lost += 1;
            return;
        }
        let from = match self.sites[site].nat.as_mut() {
            Some(nat) => {
                let (Some(private), Some(destination)) = (v4(source), v4(to)) else {
                    self.stats.unroutable += 1;
                    return;
                };
                match nat.outbound(now, private, destination) {
                    Some(public) => SocketAddr::V4(public),
                    None => {
                        self.stats.nat_dropped += 1;
                        return;
                    }
                }
            }
            None => source,
        };
        let near = self.sites[site].link;
        let near_cut = self.sites[site].cut;
        self.internet(from, to, data, Some((near, near_cut)));
    }

    pub(super) fn server_sends(&mut self, out: Vec<crate::turn::ServerTransmit>) {
        for transmit in out {
            self.stats.datagrams += 1;
            let link = self.config.server_link;
            self.internet(
                transmit.from,
                transmit.to,
                transmit.data,
                Some((link, false)),
            );
        }
    }

    /// Puts a datagram with public addresses on the internet, through the sender's link
    /// (`near`) and the receiver's.
    fn internet(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        data: Vec<u8>,
        near: Option<(LinkProfile, bool)>,
    ) {
        let Some(far) = self.far_link(to) else {
            self.stats.unroutable += 1;
            return;
        };
        let mut delay = Duration::ZERO;
        for (link, cut) in near.into_iter().chain([far]) {
            if cut || self.net_rng.chance(link.loss) {
                self.stats.lost += 1;
                return;
            }
            delay += self.link_delay(link);
        }
        let at = self.clock.now() + delay;
        self.schedule(
            at,
            Payload::Datagram {
                from,
                to,
                data,
                lan: false,
            },
        );
    }

    pub(super) fn arrive(&mut self, from: SocketAddr, to: SocketAddr, data: Vec<u8>, lan: bool) {
        let now = self.clock.now();
        if lan {
            return self.deliver(from, to, &data);
        }
        match owner(to.ip()) {
            Owner::Server => {
                let out = self.server.handle_datagram(&self.clock, from, to, &data);
                self.server_sends(out);
            }
            Owner::Nat(site) => {
                let private = match (
                    self.sites.get_mut(site).and_then(|s| s.nat.as_mut()),
                    v4(from),
                ) {
                    (Some(nat), Some(remote)) => nat.inbound(now, remote, to.port()),
                    _ => None,
                };
                match private {
                    Some(private) => self.deliver(from, SocketAddr::V4(private), &data),
                    None => self.stats.nat_dropped += 1,
                }
            }
            Owner::Public(_) => self.deliver(from, to, &data),
            Owner::Lan(_) | Owner::Nowhere => self.stats.unroutable += 1,
        }
    }

    /// Hands a datagram to the node at `to`, as the datapath would: STUN and TURN to the
    /// controller, WireGuard (the stand-in) to the stand-in.
    fn deliver(&mut self, from: SocketAddr, to: SocketAddr, data: &[u8]) {
        let now = self.clock.now();
        let Some(&index) = self.by_address.get(&to) else {
            self.stats.unroutable += 1;
            return;
        };
        let node = &mut self.nodes[index];
        if !node.up {
            self.stats.to_down_node += 1;
            return;
        }
        // The datapath's demux, by the same rule (`wice_core::wire::classify`).
        let kind = classify(data);
        let channel_data = from == SERVER && kind == DatagramKind::ChannelData;
        let mut answer = None;
        let to_controller = if kind == DatagramKind::Stun {
            true
        } else if channel_data {
            let len = usize::from(u16::from_be_bytes([data[2], data[3]]));
            match data.get(4..4 + len) {
                Some(inner) if is_stun(inner) => true,
                Some(inner) => match node.handle_marker(inner, now) {
                    Some(reply) => {
                        answer = reply;
                        false
                    }
                    None => true,
                },
                None => true,
            }
        } else if from == SERVER {
            true
        } else {
            match node.handle_marker(data, now) {
                Some(reply) => {
                    answer = reply;
                    false
                }
                None => true,
            }
        };
        if to_controller {
            node.controller.handle_datagram(now, from, Some(to), data);
            node.dirty = true;
        }
        if let Some(peer) = answer {
            self.send_marker(index, &peer);
        }
    }
}
