//! Cryptokey routing table: longest-prefix match from an IP address to a peer.
//!
//! The same table answers both questions WireGuard asks of allowed IPs:
//! outbound "which peer gets a packet for this destination?" and inbound
//! "may this peer send a packet from this source?".
//!
//! Layout: one sorted vector of masked network addresses per prefix length that
//! is actually in use, visited from the longest length to the shortest. Real
//! meshes use a handful of distinct lengths (/32 + /128 for host routes, maybe a
//! /24 or /64 per site), so a lookup is a few binary searches over contiguous
//! memory, with no hashing and no allocation. Inserts rebuild one vector, which
//! is fine: the table changes when peers change, not per packet.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// Longest-prefix-match table from IP networks to values (peer slots).
#[derive(Debug, Clone)]
pub struct AllowedIps<T> {
    v4: Family<u32, T>,
    v6: Family<u128, T>,
}

/// All prefixes of one address family, grouped by prefix length.
#[derive(Debug, Clone)]
struct Family<A, T> {
    /// `(prefix_len, entries sorted by network)`, sorted by descending prefix length.
    by_len: Vec<(u8, Vec<(A, T)>)>,
}

impl<T: Clone + PartialEq> Default for AllowedIps<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone + PartialEq> AllowedIps<T> {
    /// An empty table.
    pub fn new() -> Self {
        Self {
            v4: Family { by_len: Vec::new() },
            v6: Family { by_len: Vec::new() },
        }
    }

    /// Maps `net` (host bits are ignored) to `value`, replacing any previous value for
    /// exactly that network. Returns the value it replaced.
    pub fn insert(&mut self, net: IpNet, value: T) -> Option<T> {
        match net.trunc() {
            IpNet::V4(n) => self
                .v4
                .insert(n.prefix_len(), u32::from(n.network()), value),
            IpNet::V6(n) => self
                .v6
                .insert(n.prefix_len(), u128::from(n.network()), value),
        }
    }

    /// Maps every network in `nets` to `value`, like [`AllowedIps::insert`]
    /// for each, but sorting once instead of shifting per insert: tens of
    /// thousands of networks (`wg setconf`) take milliseconds, not seconds.
    pub fn insert_many(&mut self, nets: impl IntoIterator<Item = IpNet>, value: T) {
        for net in nets {
            match net.trunc() {
                IpNet::V4(n) => self
                    .v4
                    .push(n.prefix_len(), u32::from(n.network()), value.clone()),
                IpNet::V6(n) => {
                    self.v6
                        .push(n.prefix_len(), u128::from(n.network()), value.clone());
                }
            }
        }
        self.v4.normalize();
        self.v6.normalize();
    }

    /// Removes every network that maps to `value`.
    pub fn remove_value(&mut self, value: &T) {
        self.v4.retain(|v| v != value);
        self.v6.retain(|v| v != value);
    }

    /// The value of the longest prefix containing `addr`.
    #[inline]
    pub fn lookup(&self, addr: IpAddr) -> Option<&T> {
        match addr {
            IpAddr::V4(a) => self.lookup_v4(a),
            IpAddr::V6(a) => self.lookup_v6(a),
        }
    }

    /// The value of the longest IPv4 prefix containing `addr`.
    #[inline]
    pub fn lookup_v4(&self, addr: Ipv4Addr) -> Option<&T> {
        self.v4.lookup(u32::from(addr), 32)
    }

    /// The value of the longest IPv6 prefix containing `addr`.
    #[inline]
    pub fn lookup_v6(&self, addr: Ipv6Addr) -> Option<&T> {
        self.v6.lookup(u128::from(addr), 128)
    }

    /// Every network in the table with its value, longest prefixes first.
    pub fn iter(&self) -> impl Iterator<Item = (IpNet, &T)> {
        let v4 = self.v4.by_len.iter().flat_map(|(len, entries)| {
            entries.iter().map(move |(a, v)| {
                let net =
                    Ipv4Net::new(Ipv4Addr::from(*a), *len).expect("length came from an Ipv4Net");
                (IpNet::V4(net), v)
            })
        });
        let v6 = self.v6.by_len.iter().flat_map(|(len, entries)| {
            entries.iter().map(move |(a, v)| {
                let net =
                    Ipv6Net::new(Ipv6Addr::from(*a), *len).expect("length came from an Ipv6Net");
                (IpNet::V6(net), v)
            })
        });
        v4.chain(v6)
    }
}

/// Bit arithmetic the lookup needs from an address integer.
trait AddrBits: Copy + Ord {
    fn mask(self, len: u8, width: u8) -> Self;
}

impl AddrBits for u32 {
    #[inline]
    fn mask(self, len: u8, width: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u32::MAX << (width - len))
        }
    }
}

impl AddrBits for u128 {
    #[inline]
    fn mask(self, len: u8, width: u8) -> Self {
        if len == 0 {
            0
        } else {
            self & (u128::MAX << (width - len))
        }
    }
}

impl<A: AddrBits, T: Clone> Family<A, T> {
    fn insert(&mut self, len: u8, network: A, value: T) -> Option<T> {
        let group = match self.by_len.binary_search_by(|(l, _)| len.cmp(l)) {
            Ok(i) => &mut self.by_len[i].1,
            Err(i) => {
                self.by_len.insert(i, (len, Vec::new()));
                &mut self.by_len[i].1
            }
        };
        match group.binary_search_by(|(a, _)| a.cmp(&network)) {
            Ok(i) => Some(std::mem::replace(&mut group[i].1, value)),
            Err(i) => {
                group.insert(i, (network, value));
                None
            }
        }
    }

    /// Appends without keeping order; [`Family::normalize`] restores it.
    fn push(&mut self, len: u8, network: A, value: T) {
        match self.by_len.iter_mut().find(|(l, _)| *l == len) {
            Some((_, group)) => group.push((network, value)),
            None => self.by_len.push((len, vec![(network, value)])),
        }
    }

    /// Sorts after [`Family::push`]: groups by descending length, entries by
    /// network, and of equal networks the one pushed last wins.
    fn normalize(&mut self) {
        self.by_len.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        for (_, group) in &mut self.by_len {
            // Stable: equal networks stay in push order; reversed, the last
            // pushed comes first and `dedup` keeps it.
            group.sort_by_key(|(a, _)| *a);
            group.reverse();
            group.dedup_by(|(a, _), (b, _)| a == b);
            group.reverse();
        }
    }

    fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        for (_, entries) in &mut self.by_len {
            entries.retain(|(_, v)| keep(v));
        }
        self.by_len.retain(|(_, entries)| !entries.is_empty());
    }

    #[inline]
    fn lookup(&self, addr: A, width: u8) -> Option<&T> {
        self.by_len.iter().find_map(|(len, entries)| {
            let key = addr.mask(*len, width);
            entries
                .binary_search_by(|(a, _)| a.cmp(&key))
                .ok()
                .map(|i| &entries[i].1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test network parses")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    #[test]
    fn insert_many_matches_inserting_one_by_one() {
        let nets: Vec<IpNet> = (0..2000u32)
            .map(|i| {
                let i = i.wrapping_mul(2_654_435_761) % 5000;
                if i % 3 == 0 {
                    net(&format!("fd00::{i:x}/128"))
                } else {
                    net(&format!(
                        "10.{}.{}.0/{}",
                        i / 256 % 256,
                        i % 256,
                        20 + i % 13
                    ))
                }
            })
            .collect();
        let mut one_by_one = AllowedIps::new();
        one_by_one.insert(net("10.0.0.0/8"), 0);
        let mut bulk = one_by_one.clone();
        for (n, value) in nets.iter().zip(1..) {
            one_by_one.insert(*n, value % 7);
        }
        for value in 1..=7 {
            let mine: Vec<IpNet> = nets
                .iter()
                .zip(1..)
                .filter(|(_, v)| v % 7 == value % 7)
                .map(|(n, _)| *n)
                .collect();
            bulk.insert_many(mine, value % 7);
        }
        // Same networks; where a network was given twice the later value wins
        // in both (the bulk order differs, so compare the network sets).
        let a: Vec<IpNet> = one_by_one.iter().map(|(n, _)| n).collect();
        let b: Vec<IpNet> = bulk.iter().map(|(n, _)| n).collect();
        assert_eq!(a, b);
        for probe in ["10.3.4.5", "10.200.1.1", "fd00::3", "192.0.2.1"] {
            assert_eq!(
                one_by_one.lookup(ip(probe)).is_some(),
                bulk.lookup(ip(probe)).is_some()
            );
        }
    }

    #[test]
    fn longest_prefix_wins_for_ipv4() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 'a');
        t.insert(net("10.0.0.0/8"), 'b');
        t.insert(net("10.77.0.0/24"), 'c');
        t.insert(net("10.77.0.9/32"), 'd');
        assert_eq!(t.lookup(ip("10.77.0.9")), Some(&'d'));
        assert_eq!(t.lookup(ip("10.77.0.8")), Some(&'c'));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&'b'));
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(&'a'));
    }

    #[test]
    fn longest_prefix_wins_for_ipv6() {
        let mut t = AllowedIps::new();
        t.insert(net("fd77::/16"), 1);
        t.insert(net("fd77::/64"), 2);
        t.insert(net("fd77::2/128"), 3);
        assert_eq!(t.lookup(ip("fd77::2")), Some(&3));
        assert_eq!(t.lookup(ip("fd77::3")), Some(&2));
        assert_eq!(t.lookup(ip("fd77:1::3")), Some(&1));
        assert_eq!(t.lookup(ip("fd78::1")), None);
    }

    #[test]
    fn families_do_not_leak_into_each_other() {
        let mut t = AllowedIps::new();
        t.insert(net("0.0.0.0/0"), 4);
        assert_eq!(t.lookup(ip("::1")), None);
        assert_eq!(t.lookup(ip("::ffff:10.0.0.1")), None);
    }

    #[test]
    fn host_bits_are_ignored_on_insert() {
        let mut t = AllowedIps::new();
        t.insert(net("10.77.0.1/24"), 1);
        assert_eq!(t.lookup(ip("10.77.0.200")), Some(&1));
        assert_eq!(t.iter().next().map(|(n, _)| n), Some(net("10.77.0.0/24")));
    }

    #[test]
    fn removing_a_value_removes_all_its_networks() {
        let mut t = AllowedIps::new();
        t.insert(net("10.0.0.0/8"), 1);
        t.insert(net("10.1.0.0/16"), 2);
        t.insert(net("fd00::/8"), 2);
        t.remove_value(&2);
        assert_eq!(t.lookup(ip("10.1.0.1")), Some(&1));
        assert_eq!(t.lookup(ip("fd00::1")), None);
        assert_eq!(t.iter().count(), 1);
    }

    #[test]
    fn reinserting_a_network_replaces_its_value() {
        let mut t = AllowedIps::new();
        assert_eq!(t.insert(net("10.0.0.0/8"), 1), None);
        assert_eq!(t.insert(net("10.0.0.0/8"), 2), Some(1));
        assert_eq!(t.lookup(ip("10.9.9.9")), Some(&2));
    }

    /// The table against the obvious model: scan every entry, keep the longest match.
    #[test]
    fn agrees_with_a_linear_scan_on_random_tables() {
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        for round in 0..20 {
            let mut table = AllowedIps::new();
            let mut model: Vec<(IpNet, usize)> = Vec::new();
            for peer in 0..(50 + round * 10) {
                let v4 = Ipv4Net::new(
                    Ipv4Addr::from(rng.next() as u32 & 0x0AFF_FFFF),
                    (rng.next() % 33) as u8,
                )
                .expect("prefix length within 0..=32");
                let v6 = Ipv6Net::new(
                    Ipv6Addr::from(((rng.next() as u128) << 64) | 0xfd00 << 112),
                    (rng.next() % 129) as u8,
                )
                .expect("prefix length within 0..=128");
                for n in [IpNet::V4(v4.trunc()), IpNet::V6(v6.trunc())] {
                    table.insert(n, peer);
                    model.retain(|(m, _)| *m != n);
                    model.push((n, peer));
                }
            }
            for _ in 0..2000 {
                let probe = if rng.next().is_multiple_of(2) {
                    IpAddr::V4(Ipv4Addr::from(rng.next() as u32 & 0x0AFF_FFFF))
                } else {
                    IpAddr::V6(Ipv6Addr::from(
                        ((rng.next() as u128) << 64) | 0xfd00 << 112 | rng.next() as u128,
                    ))
                };
                let expected = model
                    .iter()
                    .filter(|(n, _)| n.contains(&probe))
                    .max_by_key(|(n, _)| n.prefix_len())
                    .map(|(_, p)| p);
                assert_eq!(table.lookup(probe), expected, "probe {probe}");
            }
        }
    }

    /// Deterministic generator so the model test is reproducible.
    struct XorShift(u64);
    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }
}
