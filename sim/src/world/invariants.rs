//! What must hold at any time in a simulation.

use std::time::Duration;

use super::Simulation;

impl Simulation {
    /// Checks what must hold at any time; returns every violation.
    pub fn check_invariants(&mut self) -> Vec<String> {
        let mut violations = Vec::new();
        let now = self.clock.now();
        let peers = self.nodes.len().saturating_sub(1);
        for (index, node) in self.nodes.iter().enumerate() {
            if !node.up {
                continue;
            }
            if let Some((deadline, reason)) = node.deadline
                && deadline + Duration::from_secs(1) < now
            {
                violations.push(format!(
                    "node {index}: deadline {deadline:?} ({reason:?}) left in the past"
                ));
            }
            for (peer, status) in node.controller.status() {
                let _ = peer;
                if status.restarts > 1_000 {
                    violations.push(format!("node {index}: {} restarts", status.restarts));
                }
            }
        }
        for (index, site) in self.sites.iter_mut().enumerate() {
            let nodes_here = self.nodes.iter().filter(|n| n.site == index).count();
            if let Some(nat) = site.nat.as_mut() {
                let mappings = nat.mappings(now);
                // One per remote address (a symmetric NAT) for every candidate pair and the
                // server, with room for restarts.
                let bound = nodes_here * (4 * peers + 8) * 4;
                if mappings > bound {
                    violations.push(format!(
                        "site {index}: {mappings} NAT mappings for {nodes_here} nodes"
                    ));
                }
            }
        }
        if self.stats.wrong_source > 0 {
            violations.push(format!(
                "{} datagrams asked to leave from an address their node does not have",
                self.stats.wrong_source
            ));
        }
        if self.queue.len() > 64 * self.nodes.len().max(1) * (peers + 1) {
            violations.push(format!("{} datagrams in flight", self.queue.len()));
        }
        violations
    }
}
