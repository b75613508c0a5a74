//! Community discovery in the namespace lab: nodes whose configs hold no `[[peer]]` find each
//! other through `wice signal`'s group delivery; a node that joins later is added by everyone
//! without a restart; one that stops cleanly is removed; one that is killed expires; another
//! passphrase sees nobody; a key outside `allow` is refused and counted.

use std::time::{Duration, Instant};

use wice_lab::{Lab, LabOptions, NatKind};

use crate::harness::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const DERIVE: &str = "\"10.77.0.0/16\", \"fd77::/64\"";
/// Short knobs so the test sees an expiry in seconds, not minutes.
const KNOBS: &str = "announce_interval = 2\nexpire_after = 6\n";

fn community(passphrase: &str, extra: &str) -> String {
    format!("passphrase = \"{passphrase}\"\n{KNOBS}{extra}")
}

fn peer_count(lab: &Lab, i: usize) -> usize {
    lab.status(i)
        .and_then(|s| s["peers"].as_array().map(Vec::len))
        .unwrap_or(0)
}

#[test]
fn community_members_find_each_other_join_leave_and_expire_without_any_peer_in_their_configs() {
    let test =
        "community_members_find_each_other_join_leave_and_expire_without_any_peer_in_their_configs";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_signal().expect("wice signal");
    let public = lab.add_site(NatKind::Public).expect("site");
    let eim = lab.add_site(NatKind::EndpointIndependent).expect("site");
    let a = lab.add_node(public, "a").expect("a");
    let b = lab.add_node(eim, "b").expect("b");
    let c = lab.add_node(public, "c").expect("c");
    let d = lab.add_node(eim, "d").expect("d");
    let stranger = lab.add_node(public, "e").expect("e");
    let outsider = lab.add_node(public, "f").expect("f");
    let members = [a, b, c, d];
    // a accepts only the members; f holds the passphrase but is not in a's allow list.
    let allow: Vec<String> = members
        .iter()
        .map(|&i| format!("\"{}\"", lab.node(i).public_key))
        .collect();
    let allow = format!("allow = [{}]\n", allow.join(", "));
    let pass = "lab community passphrase";
    let configs: Vec<String> = (0..6)
        .map(|i| {
            let extra = if i == a { allow.as_str() } else { "" };
            let passphrase = if i == stranger {
                "another passphrase"
            } else {
                pass
            };
            lab.community_config(i, DERIVE, &community(passphrase, extra))
        })
        .collect();
    assert!(!configs[a].contains("[[peer]]"));

    let since = Instant::now();
    for &i in &[a, b, c] {
        lab.spawn_node_with(i, &configs[i]).expect("spawn");
    }
    lab.wait_connected(&Lab::pairs(&[a, b, c]), since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: first three: {e}\n{}", lab.logs(30)));
    eprintln!("{test}: a, b, c connected after {:?}", since.elapsed());

    // d joins: every node adds it and connects, nobody restarts.
    let joined = Instant::now();
    lab.spawn_node_with(d, &configs[d]).expect("spawn d");
    let d_pairs: Vec<(usize, usize)> = [a, b, c].iter().map(|&i| (i, d)).collect();
    let reports = lab
        .wait_connected(&d_pairs, joined, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: d joining: {e}\n{}", lab.logs(30)));
    let reach = reports.iter().map(|r| r.setup).max().unwrap_or_default();
    eprintln!("{test}: FIGURE new node reached all 3 members in {reach:?}");

    // The stranger (another passphrase) and the outsider (not in a's allow list) start.
    lab.spawn_node_with(stranger, &configs[stranger])
        .expect("spawn e");
    lab.spawn_node_with(outsider, &configs[outsider])
        .expect("spawn f");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(
        peer_count(&lab, stranger),
        0,
        "another passphrase sees nobody"
    );
    for &i in &members {
        assert!(lab.peer_status(i, stranger).is_none(), "and nobody sees it");
    }
    assert!(
        lab.peer_status(a, outsider).is_none(),
        "outside a's allow list"
    );
    assert!(
        lab.peer_status(b, outsider).is_some(),
        "b has no allow list"
    );
    let a_log = std::fs::read_to_string(&lab.node(a).log).unwrap_or_default();
    assert!(
        a_log.contains("community announcement refused") && a_log.contains("refused=1"),
        "a counts the refusal:\n{}",
        lab.logs(20)
    );
    lab.stop_node(stranger, libc::SIGTERM);
    lab.stop_node(outsider, libc::SIGTERM);

    // d stops cleanly: every node removes it at once (its leaving announcement).
    lab.stop_node(d, libc::SIGTERM);
    let removed = wait_until(Duration::from_secs(4), || {
        [a, b, c].iter().all(|&i| lab.peer_status(i, d).is_none())
    });
    let removed = removed.unwrap_or_else(|| panic!("{test}: d not removed\n{}", lab.logs(30)));
    eprintln!("{test}: FIGURE a clean leave removed everywhere in {removed:?}");

    // c is killed: it expires after expire_after (6 s), not before 4 s.
    lab.stop_node(c, libc::SIGKILL);
    let killed = Instant::now();
    let expired = wait_until(Duration::from_secs(15), || {
        [a, b].iter().all(|&i| lab.peer_status(i, c).is_none())
    })
    .unwrap_or_else(|| panic!("{test}: c did not expire\n{}", lab.logs(30)));
    assert!(
        killed.elapsed() >= Duration::from_secs(4),
        "expired too early: {:?}",
        killed.elapsed()
    );
    eprintln!(
        "{test}: FIGURE a killed node expired everywhere after {expired:?} (expire_after 6 s)"
    );
    assert!(
        lab.peer_status(a, b).is_some(),
        "a and b still have each other"
    );
}
