//! Live reload: SIGHUP or `wice reload` re-read the config file and apply the difference.
//!
//! Peers (added, removed, allowed IPs, keepalive, endpoint, preshared key), the STUN and
//! TURN servers, the signaling backends and a running community's `[community]` section
//! (passphrase, name, allow, deny, intervals) change in place; peers that did not change keep
//! their WireGuard session and their path. A config with errors is refused with the usual
//! `file:line: key: …` message and the running one stays. Settings of the interface itself
//! (name, key, port, addresses, MTU, sockets, candidate types, signaling on or off, derived
//! addresses, joining or leaving a community) need a restart: the reload applies the rest
//! and says which ones it left.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};
use wice_datapath::Engine;

use super::ice_driver::{DriverCommand, Reconfigure, Reconfigured};
use super::peer_set::{PeerSet, PeerSetEvent};
use super::{start_signaling, stun_servers, turn_servers};
use crate::config::{Config, IceConfig};
use crate::control::ReloadRequest;
use crate::sd_notify::Notifier;
use crate::status::Status;

/// Where a reload's peers go: the ICE driver when the node runs ICE (it owns the
/// controller), else a peer set of static peers kept here.
pub(super) enum Target {
    Driver(mpsc::Sender<DriverCommand>),
    Static {
        peer_set: Box<PeerSet>,
        engine: Arc<Engine>,
    },
}

/// Applies reloads one at a time, in the order asked.
pub(super) struct Reloader {
    pub(super) path: PathBuf,
    pub(super) running: Config,
    pub(super) target: Target,
    /// The `[ice]` section the address scan reads (for TURN servers).
    pub(super) ice: Arc<Mutex<IceConfig>>,
    pub(super) listen_port: u16,
    /// `SO_MARK` for new signaling connections while an exit node's policy routing is in
    /// place (it is set up at start and kept until exit).
    pub(super) socket_mark: Option<u32>,
    pub(super) notifier: Arc<Notifier>,
    pub(super) status: Arc<dyn Fn() -> Status + Send + Sync>,
    /// The hosts file block and the `added`/`removed` hooks.
    pub(super) peer_events: super::peer_events::SharedPeerEvents,
}

impl Reloader {
    /// Serves reload requests until every sender is gone.
    pub(super) async fn run(mut self, mut requests: mpsc::Receiver<ReloadRequest>) {
        while let Some(request) = requests.recv().await {
            self.notifier.reloading();
            let outcome = self.reload().await;
            match &outcome {
                Ok(summary) => tracing::info!(%summary, "config reloaded"),
                Err(error) => {
                    tracing::warn!(%error, "config reload refused; the running config stays");
                }
            }
            self.notifier
                .ready(&super::supervise::status_line(&(self.status)()));
            if let Some(reply) = request.reply {
                let _ = reply.send(outcome);
            }
        }
    }

    async fn reload(&mut self) -> Result<String, String> {
        let new = Config::load(&self.path).map_err(|error| error.to_string())?;
        let restart = needs_restart(
            &self.running,
            &new,
            matches!(self.target, Target::Driver(_)),
        );
        let (events, servers, backends) = match &mut self.target {
            Target::Static { peer_set, engine } => {
                let events = peer_set.reconcile(Instant::now(), &new.peers, engine, None);
                super::peer_events::lock(&self.peer_events).handle_peer_set(&events, &new.peers);
                (events, false, false)
            }
            Target::Driver(driver) => {
                let backends =
                    new.signaling != self.running.signaling && !new.signaling.backends.is_empty();
                let signaling = if backends {
                    let allowed = new.peers.iter().map(|p| p.public_key).collect();
                    Some(
                        start_signaling(&new, allowed, self.socket_mark)
                            .await
                            .map_err(|e| e.to_string())?,
                    )
                } else {
                    None
                };
                let (done, applied) = oneshot::channel();
                let change = Reconfigure {
                    peers: new.peers.clone(),
                    stun: stun_servers(&new.ice),
                    turn: turn_servers(&new.ice, self.listen_port),
                    signaling,
                    config: Box::new(new.clone()),
                    done,
                };
                driver
                    .send(DriverCommand::Reconfigure(Box::new(change)))
                    .await
                    .map_err(|_| "the ICE task is gone".to_owned())?;
                let Reconfigured { peers, servers } = applied
                    .await
                    .map_err(|_| "the ICE task is gone".to_owned())?;
                *self.ice.lock().unwrap_or_else(PoisonError::into_inner) = new.ice.clone();
                (peers, servers, backends)
            }
        };
        // (The driver told the hosts file and hooks itself: it knows the community's members.)
        let summary = summary(&events, servers, backends, &restart);
        // Keep the interface as it runs: what needs a restart is compared against that.
        let interface = self.running.interface.clone();
        let candidate_types = self.running.ice.candidate_types;
        let signaling_was = self.running.signaling.clone();
        self.running = new;
        if !restart.is_empty() {
            self.running.interface = interface;
            self.running.ice.candidate_types = candidate_types;
            if signaling_was.backends.is_empty() != self.running.signaling.backends.is_empty() {
                self.running.signaling = signaling_was;
            }
        }
        Ok(summary)
    }
}

/// The settings that changed but only take effect on a restart.
fn needs_restart(running: &Config, new: &Config, runs_ice: bool) -> Vec<&'static str> {
    let (old, now) = (&running.interface, &new.interface);
    let mut keys = Vec::new();
    let mut check = |changed: bool, key: &'static str| {
        if changed {
            keys.push(key);
        }
    };
    check(old.name != now.name, "interface.name");
    check(
        old.private_key.public_key() != now.private_key.public_key(),
        "interface.private_key",
    );
    check(old.listen_port != now.listen_port, "interface.listen_port");
    check(old.addresses != now.addresses, "interface.addresses");
    check(old.mtu != now.mtu, "interface.mtu");
    check(
        old.control_socket != now.control_socket,
        "interface.control_socket",
    );
    check(
        old.metrics_listen != now.metrics_listen,
        "interface.metrics_listen",
    );
    check(
        running.ice.candidate_types != new.ice.candidate_types,
        "ice.candidate_types",
    );
    check(
        runs_ice == new.signaling.backends.is_empty(),
        "signaling.backends (turning ICE on or off)",
    );
    // Policy routing is set up at start; a reload changes peers' allowed IPs but not it.
    let default_routes = |config: &Config| {
        crate::system::policy_routing::default_route_families(
            config.peers.iter().flat_map(|peer| &peer.allowed_ips),
        )
    };
    check(
        default_routes(running) != default_routes(new),
        "peer allowed_ips 0.0.0.0/0 or ::/0 (an exit node)",
    );
    check(
        running.routing.policy_routing() != new.routing.policy_routing(),
        "routing.table and routing.fwmark",
    );
    check(running.hosts != new.hosts, "interface.hosts_file");
    // A running community follows its section (passphrase, name, allow, deny, intervals);
    // joining or leaving one, or moving the derived addresses, needs a restart.
    check(
        running.community.is_some() != new.community.is_some(),
        "community (joining or leaving one)",
    );
    check(
        old.derive_prefixes != now.derive_prefixes,
        "interface.derive_addresses",
    );
    check(running.hooks != new.hooks, "hook");
    keys
}

/// One line a person reads: `2 peers added (…), 1 removed (…); ICE servers changed`.
fn summary(
    events: &[PeerSetEvent],
    servers: bool,
    backends: bool,
    restart: &[&'static str],
) -> String {
    let mut by_label: [(&str, Vec<String>); 3] = [
        ("added", Vec::new()),
        ("removed", Vec::new()),
        ("updated", Vec::new()),
    ];
    for event in events {
        let (index, key) = match event {
            PeerSetEvent::Added(key) => (0, key),
            PeerSetEvent::Removed(key) => (1, key),
            PeerSetEvent::Updated(key) => (2, key),
        };
        by_label[index].1.push(key.to_string());
    }
    let mut parts: Vec<String> = by_label
        .iter()
        .filter(|(_, keys)| !keys.is_empty())
        .map(|(label, keys)| format!("{} peer(s) {label} ({})", keys.len(), keys.join(", ")))
        .collect();
    if servers {
        parts.push("ICE servers changed".to_owned());
    }
    if backends {
        parts.push("signaling backends changed".to_owned());
    }
    if parts.is_empty() {
        parts.push("nothing changed".to_owned());
    }
    if !restart.is_empty() {
        parts.push(format!("not applied until restart: {}", restart.join(", ")));
    }
    parts.join("; ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use std::path::Path;
    use wice_core::keys::PrivateKey;

    fn config(port: u16, peers: &[PublicKeyText], backends: &str) -> Config {
        let key = PrivateKey::from_bytes([7; 32]).to_base64();
        let mut text = format!(
            "[interface]\nprivate_key = \"{key}\"\nlisten_port = {port}\naddresses = [\"10.77.0.1/24\"]\n"
        );
        for peer in peers {
            text.push_str(&format!(
                "[[peer]]\npublic_key = \"{}\"\nallowed_ips = [\"10.77.0.{}/32\"]\n",
                peer.0, peer.1
            ));
        }
        if !backends.is_empty() {
            text.push_str(&format!("[signaling]\nbackends = [\"{backends}\"]\n"));
        }
        Config::parse_offline(Path::new("n.toml"), &text).unwrap()
    }

    struct PublicKeyText(String, u8);

    fn peer(n: u8) -> PublicKeyText {
        PublicKeyText(PrivateKey::from_bytes([n; 32]).public_key().to_base64(), n)
    }

    #[test]
    fn interface_settings_are_named_as_needing_a_restart_and_peers_are_not() {
        let running = config(51820, &[peer(2)], "inprocess");
        let same_interface = config(51820, &[peer(3)], "inprocess");
        assert!(needs_restart(&running, &same_interface, true).is_empty());
        let new_port = config(51821, &[peer(2)], "inprocess");
        assert_eq!(
            needs_restart(&running, &new_port, true),
            ["interface.listen_port"]
        );
        let no_signaling = config(51820, &[peer(2)], "");
        assert_eq!(
            needs_restart(&running, &no_signaling, true),
            ["signaling.backends (turning ICE on or off)"]
        );
    }

    #[test]
    fn gaining_or_losing_an_exit_node_waits_for_a_restart() {
        let running = config(51820, &[peer(2)], "inprocess");
        let mut exit = running.clone();
        exit.peers[0].allowed_ips.push("0.0.0.0/0".parse().unwrap());
        let reason = ["peer allowed_ips 0.0.0.0/0 or ::/0 (an exit node)"];
        assert_eq!(needs_restart(&running, &exit, true), reason);
        assert_eq!(needs_restart(&exit, &running, true), reason);
        let mut other_table = running.clone();
        other_table.routing.table = 1000;
        assert_eq!(
            needs_restart(&running, &other_table, true),
            ["routing.table and routing.fwmark"]
        );
    }

    #[test]
    fn the_summary_says_what_changed_per_peer_and_what_waits_for_a_restart() {
        let key = PrivateKey::from_bytes([2; 32]).public_key();
        let text = summary(
            &[PeerSetEvent::Added(key), PeerSetEvent::Removed(key)],
            true,
            false,
            &["interface.mtu"],
        );
        assert_eq!(
            text,
            format!(
                "1 peer(s) added ({key}); 1 peer(s) removed ({key}); ICE servers changed; \
                 not applied until restart: interface.mtu"
            )
        );
        assert_eq!(summary(&[], false, false, &[]), "nothing changed");
    }
}
