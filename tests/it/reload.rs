//! Live reload (`wice reload`, SIGHUP) in the namespace lab: peers removed and added and the
//! ICE servers changed while a ping and a transfer run over an unchanged tunnel, which must
//! lose nothing; a config with errors is refused and the running one stays.

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wice_lab::{Lab, LabOptions, NatKind};

use crate::harness::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(45);

/// `wice reload --socket` of lab node `i`: its stdout on success, its stderr otherwise.
fn reload(lab: &Lab, i: usize) -> Result<String, String> {
    let out = Command::new(WICE)
        .args(["reload", "--socket"])
        .arg(&lab.node(i).socket)
        .output()
        .expect("run wice reload");
    let text = |b: &[u8]| String::from_utf8_lossy(b).trim().to_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

/// Node `i`'s config file in the lab's directory.
fn config_path(lab: &Lab, i: usize) -> std::path::PathBuf {
    lab.dir.path(&format!("{}.toml", lab.node(i).label))
}

/// The config with the `[[peer]]` entry of `key` (its header, key and allowed IPs) left out.
fn without_peer(config: &str, key: &str) -> String {
    let lines: Vec<&str> = config.lines().collect();
    let at = lines
        .iter()
        .position(|l| *l == format!("public_key = \"{key}\""))
        .expect("the peer is in the config");
    assert_eq!(lines[at - 1], "[[peer]]");
    assert!(lines[at + 1].starts_with("allowed_ips"));
    let mut kept = lines[..at - 1].to_vec();
    kept.extend(&lines[at + 2..]);
    kept.join("\n") + "\n"
}

/// The config without its STUN-only server (the TURN server still answers STUN).
fn without_stun_server(config: &str) -> String {
    let stun_block = config
        .split("\n[[ice.servers]]")
        .find(|block| block.contains("urls = [\"stun:"))
        .expect("the lab config lists a STUN server");
    config.replacen(&format!("\n[[ice.servers]]{stun_block}"), "", 1)
}

/// The ICE view node `i` has of node `j`: its path's two ends.
fn path_of(lab: &Lab, i: usize, j: usize) -> (String, String) {
    let peer = lab.peer_status(i, j).expect("peer listed");
    (
        peer["ice"]["local_candidate"].to_string(),
        peer["ice"]["remote_candidate"].to_string(),
    )
}

#[test]
fn reload_adds_and_removes_peers_and_changes_ice_servers_without_loss_on_an_unchanged_tunnel() {
    let test =
        "reload_adds_and_removes_peers_and_changes_ice_servers_without_loss_on_an_unchanged_tunnel";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_signal().expect("wice signal");
    lab.start_turn().expect("coturn");
    let site = lab.add_site(NatKind::Public).expect("site");
    let eim = lab.add_site(NatKind::EndpointIndependent).expect("site");
    let (a, b, c) = (
        lab.add_node(site, "a").expect("a"),
        lab.add_node(eim, "b").expect("b"),
        lab.add_node(site, "c").expect("c"),
    );
    let since = Instant::now();
    lab.start_nodes(&[a, b, c]).expect("daemons start");
    lab.wait_connected(&Lab::pairs(&[a, b, c]), since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", lab.logs(25)));
    let path_before = path_of(&lab, a, b);

    // A ping every 20 ms from a to b for the whole reload sequence, and transfers.
    let b_overlay = lab.node(b).overlay.to_string();
    let mut ping = lab
        .node(a)
        .ns
        .command("ping")
        .args(["-n", "-q", "-i", "0.02", "-w", "14", &b_overlay])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ping");
    let reloading = AtomicBool::new(true);
    let transfers = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        let (a_ns, b_ns) = (&lab.node(a).ns, &lab.node(b).ns);
        let b_ip = lab.node(b).overlay;
        let (reloading, transfers) = (&reloading, &transfers);
        // Transfers back to back until the reloads are done; each one's checksum is checked.
        scope.spawn(move || {
            let mut port = 5201;
            while reloading.load(Ordering::Relaxed) {
                tcp_transfer(a_ns, b_ns, SocketAddr::new(b_ip.into(), port), 20_000_000);
                transfers.fetch_add(1, Ordering::Relaxed);
                port += 1;
            }
        });
        // Stops the transfers even when a step panics, so the scope can end.
        struct Done<'a>(&'a AtomicBool);
        impl Drop for Done<'_> {
            fn drop(&mut self) {
                self.0.store(false, Ordering::Relaxed);
            }
        }
        let _done = Done(reloading);
        reload_sequence(&lab, [a, b, c], test);
    });
    let transfers = transfers.load(Ordering::Relaxed);
    let output = ping.wait_with_output_compat();
    let line = output
        .lines()
        .find(|l| l.contains("packet loss"))
        .unwrap_or_else(|| panic!("no ping summary: {output}"))
        .to_owned();
    eprintln!("{test}: a → b during three reloads: {line}; {transfers} transfers of 20 MB intact");
    assert!(transfers >= 1);
    assert!(
        line.contains(" 0% packet loss"),
        "the unchanged tunnel lost packets: {line}"
    );
    assert_eq!(path_of(&lab, a, b), path_before, "a ↔ b kept its path");
}

/// Three reloads of node `a`: `c` removed, a broken config refused, `c` back with the
/// STUN-only server dropped (by SIGHUP).
fn reload_sequence(lab: &Lab, [a, _b, c]: [usize; 3], test: &str) {
    let original = std::fs::read_to_string(config_path(lab, a)).expect("a's config");
    std::thread::sleep(Duration::from_secs(1));

    // 1. c removed: a forgets it, the tunnel to b is untouched.
    let c_key = lab.node(c).public_key.clone();
    write_private(&config_path(lab, a), &without_peer(&original, &c_key)).expect("write");
    let summary = reload(lab, a).unwrap_or_else(|e| panic!("reload refused: {e}"));
    assert!(summary.contains("1 peer(s) removed"), "{summary}");
    assert!(lab.peer_status(a, c).is_none(), "c is gone from a's status");
    std::thread::sleep(Duration::from_secs(2));

    // 2. A config with a mistake is refused with its place; the running one stays.
    let broken = original.replace("listen_port = ", "listen_prt = ");
    write_private(&config_path(lab, a), &broken).expect("write");
    let refused = reload(lab, a).expect_err("a broken config is refused");
    assert!(
        refused.contains(".toml:") && refused.contains("listen_prt"),
        "{refused}"
    );
    assert!(
        lab.peer_status(a, c).is_none(),
        "the refused config added nothing"
    );

    // 3. c back and the STUN-only server dropped, by SIGHUP this time.
    let since = Instant::now();
    write_private(&config_path(lab, a), &without_stun_server(&original)).expect("write");
    // SAFETY: plain kill(2) to the daemon's PID.
    unsafe { libc::kill(lab.node(a).pid.expect("a runs") as i32, libc::SIGHUP) };
    lab.wait_connected(&[(a, c)], since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: c did not come back: {e}\n{}", lab.logs(25)));
    let log = std::fs::read_to_string(&lab.node(a).log).unwrap_or_default();
    assert!(
        log.contains("config reloaded") && log.contains("ICE servers changed"),
        "a logs the SIGHUP reload:\n{}",
        lab.logs(25)
    );
    std::thread::sleep(Duration::from_secs(1));
}

/// `Child::wait_with_output` for a child whose stdout is piped, as text.
trait WaitText {
    fn wait_with_output_compat(&mut self) -> String;
}

impl WaitText for std::process::Child {
    fn wait_with_output_compat(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut out) = self.stdout.take() {
            let _ = std::io::Read::read_to_string(&mut out, &mut text);
        }
        let _ = self.wait();
        text
    }
}
