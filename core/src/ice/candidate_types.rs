//! Which kinds of local candidate a node gathers (`[ice] candidate_types`).

/// Which local candidates to gather.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidateTypes {
    /// Interface addresses.
    pub host: bool,
    /// Addresses STUN servers see us at.
    pub srflx: bool,
    /// TURN relay allocations.
    pub relay: bool,
}

impl CandidateTypes {
    /// Every type: the default.
    pub const ALL: Self = Self {
        host: true,
        srflx: true,
        relay: true,
    };
}
