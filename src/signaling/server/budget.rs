//! Memory budgets for queued envelopes: per source key, per source address, and for the
//! whole server. Every queued envelope copy holds a [`Charge`] that returns its bytes when
//! the copy leaves the server (sent, dropped, or its subscription ended), so the books
//! cannot drift. The per-recipient budget is the subscriber's own queue
//! ([`SubscriberQueue`](super::SubscriberQueue)).
//!
//! Order of checks for a new copy: its source key, then its source address (either over →
//! refused, counted), then the global budget (over → refused, counted). A source over
//! budget loses its *new* envelopes; it cannot push out anyone else's.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use wice_core::keys::PublicKey;

/// Byte limits on what is queued, summed over every subscriber queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Bytes queued from one proven sender key.
    pub per_sender_key: usize,
    /// Bytes queued from one source address (IPv6: its /64).
    pub per_source_ip: usize,
    /// Bytes queued overall.
    pub global: usize,
}

impl Default for BudgetLimits {
    fn default() -> Self {
        Self {
            per_sender_key: 4 << 20,
            per_source_ip: 16 << 20,
            global: 256 << 20,
        }
    }
}

/// Which budget refused a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    /// The sender key's.
    SenderKey,
    /// The source address's.
    SourceIp,
    /// The server's.
    Global,
}

#[derive(Default)]
struct Books {
    global: usize,
    by_key: HashMap<PublicKey, usize>,
    by_ip: HashMap<IpAddr, usize>,
}

/// The budgets and what is charged against them now. Entries exist only while bytes are
/// queued, so the maps are bounded by the global budget.
pub struct Budgets {
    limits: BudgetLimits,
    books: Mutex<Books>,
}

/// The IPv6 /64 (or the IPv4 address) a budget is kept for: one host usually holds a /64.
pub(super) fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

impl Budgets {
    /// Nothing charged yet.
    pub fn new(limits: BudgetLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            books: Mutex::new(Books::default()),
        })
    }

    /// Bytes queued overall now.
    pub fn queued_bytes(&self) -> usize {
        self.books().global
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Charges `len` bytes from `key` at `ip`, or says which budget is exhausted.
    pub fn try_charge(
        self: &Arc<Self>,
        key: PublicKey,
        ip: Option<IpAddr>,
        len: usize,
    ) -> Result<Charge, OverBudget> {
        let ip = ip.map(source_of);
        let mut books = self.books();
        if books.by_key.get(&key).copied().unwrap_or(0) + len > self.limits.per_sender_key {
            return Err(OverBudget::SenderKey);
        }
        if let Some(ip) = ip
            && books.by_ip.get(&ip).copied().unwrap_or(0) + len > self.limits.per_source_ip
        {
            return Err(OverBudget::SourceIp);
        }
        if books.global + len > self.limits.global {
            return Err(OverBudget::Global);
        }
        books.global += len;
        *books.by_key.entry(key).or_default() += len;
        if let Some(ip) = ip {
            *books.by_ip.entry(ip).or_default() += len;
        }
        Ok(Charge {
            budgets: Arc::clone(self),
            key,
            ip,
            len,
        })
    }

    fn release(&self, key: &PublicKey, ip: Option<IpAddr>, len: usize) {
        let mut books = self.books();
        books.global = books.global.saturating_sub(len);
        if let Some(left) = books.by_key.get_mut(key) {
            *left = left.saturating_sub(len);
            if *left == 0 {
                books.by_key.remove(key);
            }
        }
        if let Some(ip) = ip
            && let Some(left) = books.by_ip.get_mut(&ip)
        {
            *left = left.saturating_sub(len);
            if *left == 0 {
                books.by_ip.remove(&ip);
            }
        }
    }
}

/// Bytes charged for one queued copy; returned when dropped.
pub struct Charge {
    budgets: Arc<Budgets>,
    key: PublicKey,
    ip: Option<IpAddr>,
    len: usize,
}

impl Charge {
    /// The bytes charged.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True for an empty envelope (never queued in practice).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.budgets.release(&self.key, self.ip, self.len);
    }
}

impl std::fmt::Debug for Charge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Charge({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    const IP: Option<IpAddr> = Some(IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)));

    #[test]
    fn each_budget_refuses_beyond_its_limit_and_dropping_a_charge_frees_it() {
        let budgets = Budgets::new(BudgetLimits {
            per_sender_key: 100,
            per_source_ip: 150,
            global: 200,
        });
        let a = budgets.try_charge(key(1), IP, 100).expect("within");
        assert_eq!(
            budgets.try_charge(key(1), IP, 1).err(),
            Some(OverBudget::SenderKey)
        );
        let b = budgets.try_charge(key(2), IP, 50).expect("within");
        assert_eq!(
            budgets.try_charge(key(3), IP, 1).err(),
            Some(OverBudget::SourceIp)
        );
        let c = budgets.try_charge(key(3), None, 50).expect("within");
        assert_eq!(
            budgets.try_charge(key(4), None, 1).err(),
            Some(OverBudget::Global)
        );
        drop((a, b, c));
        assert_eq!(budgets.queued_bytes(), 0);
        assert!(budgets.books().by_key.is_empty() && budgets.books().by_ip.is_empty());
    }

    #[test]
    fn addresses_of_one_ipv6_64_share_a_budget() {
        let one: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let two: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        assert_eq!(source_of(one), source_of(two));
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        assert_eq!(source_of(mapped), IP.expect("ip"));
    }
}
