//! The file-descriptor budget: raise RLIMIT_NOFILE to its hard limit at start, and size the
//! connection limit from it so accepting never runs the process out of descriptors.

/// Descriptors kept free of connections: the listener, the runtime, logs, TLS files.
pub(super) const FD_RESERVE: u64 = 64;

/// Raises the soft RLIMIT_NOFILE to the hard limit and returns the soft limit now in force
/// (`None` when it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; no other memory is touched.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut limit) } != 0 {
        return None;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const raised) } == 0 {
            limit.rlim_cur = limit.rlim_max;
        }
    }
    Some(limit.rlim_cur)
}

/// The connection limit that fits `fd_limit` (one descriptor per connection).
pub(super) fn connections_for(fd_limit: Option<u64>, configured: u64) -> u64 {
    match fd_limit {
        Some(limit) => configured.min(limit.saturating_sub(FD_RESERVE).max(1)),
        None => configured,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_leaves_room_for_the_reserve() {
        assert_eq!(connections_for(Some(1024), 100_000), 1024 - FD_RESERVE);
        assert_eq!(connections_for(Some(1 << 20), 100_000), 100_000);
        assert_eq!(connections_for(None, 5), 5);
        assert_eq!(connections_for(Some(10), 5), 1);
    }
}
