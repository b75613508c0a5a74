//! `[community]` changes by `wice reload`, without a restart: a key put in `deny` is removed
//! at once and its announcements are refused and counted, taken out of `deny` it comes back;
//! a new passphrase leaves the old community (its members drop the node at once, not after
//! `expire_after`) and joins the new one, where a second node that moves over finds it.

use std::process::Command;
use std::time::{Duration, Instant};

use wice_lab::netns::write_private;
use wice_lab::{Lab, LabOptions, NatKind};

use crate::harness::*;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
const DERIVE: &str = "\"10.77.0.0/16\", \"fd77::/64\"";
/// Long enough that a removal seen within seconds is the reload's doing, not an expiry.
const EXPIRE_AFTER: Duration = Duration::from_secs(60);
/// How soon a change must show.
const PROMPTLY: Duration = Duration::from_secs(10);

fn community(passphrase: &str, extra: &str) -> String {
    format!(
        "passphrase = \"{passphrase}\"\nannounce_interval = 2\nexpire_after = {}\n{extra}",
        EXPIRE_AFTER.as_secs()
    )
}

/// Rewrites node `i`'s config file and has it reload; the reload's summary.
fn reload_with(lab: &Lab, i: usize, config: &str) -> String {
    let path = lab.dir.path(&format!("{}.toml", lab.node(i).label));
    write_private(&path, config).expect("write config");
    let out = Command::new(WICE)
        .args(["reload", "--socket"])
        .arg(&lab.node(i).socket)
        .output()
        .expect("run wice reload");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "reload of {} refused: {text} {}",
        lab.node(i).label,
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn community_counter(lab: &Lab, i: usize, pointer: &str) -> u64 {
    lab.status(i)
        .and_then(|s| s["community"].pointer(pointer).and_then(|v| v.as_u64()))
        .unwrap_or(0)
}

#[test]
fn a_reload_applies_community_deny_and_a_new_passphrase_without_a_restart() {
    let test = "a_reload_applies_community_deny_and_a_new_passphrase_without_a_restart";
    if !root_or_skip(test) {
        return;
    }
    let mut lab = Lab::new(LabOptions::new(WICE)).expect("lab");
    lab.start_signal().expect("wice signal");
    let site = lab.add_site(NatKind::Public).expect("site");
    let a = lab.add_node(site, "a").expect("a");
    let b = lab.add_node(site, "b").expect("b");
    let c = lab.add_node(site, "c").expect("c");
    let old = "the old passphrase";
    let new = "the new passphrase";
    let config = |lab: &Lab, i: usize, passphrase: &str, extra: &str| {
        lab.community_config(i, DERIVE, &community(passphrase, extra))
    };
    let since = Instant::now();
    for i in [a, b, c] {
        let text = config(&lab, i, old, "");
        lab.spawn_node_with(i, &text).expect("spawn");
    }
    lab.wait_connected(&Lab::pairs(&[a, b, c]), since, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: {e}\n{}", lab.logs(30)));
    let pid_a = lab.node(a).pid;

    // a denies c: c is gone from a at once; b keeps it; c's announcements are refused.
    let deny = format!("deny = [\"{}\"]\n", lab.node(c).public_key);
    let summary = reload_with(&lab, a, &config(&lab, a, old, &deny));
    assert!(!summary.contains("not applied"), "{test}: {summary}");
    let gone = wait_until(PROMPTLY, || lab.peer_status(a, c).is_none())
        .unwrap_or_else(|| panic!("{test}: a still has c after deny\n{}", lab.logs(30)));
    eprintln!("{test}: FIGURE a denied member was removed {gone:?} after the reload");
    assert!(lab.peer_status(a, b).is_some(), "{test}: a keeps b");
    assert!(lab.peer_status(b, c).is_some(), "{test}: b keeps c");
    assert!(
        wait_until(PROMPTLY, || community_counter(
            &lab,
            a,
            "/announcements_rejected/not_allowed"
        ) >= 1)
        .is_some(),
        "{test}: a counts c's refused announcements"
    );
    assert_eq!(community_counter(&lab, a, "/members"), 1);

    // c is allowed again: it comes back.
    let back = Instant::now();
    reload_with(&lab, a, &config(&lab, a, old, ""));
    lab.wait_connected(&[(a, c)], back, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: c back: {e}\n{}", lab.logs(30)));

    // a takes a new passphrase: it leaves the old community (b and c drop it at once, long
    // before expire_after) and sees nobody there.
    reload_with(&lab, a, &config(&lab, a, new, ""));
    let left = wait_until(PROMPTLY, || {
        lab.peer_status(b, a).is_none()
            && lab.peer_status(c, a).is_none()
            && lab.peer_status(a, b).is_none()
            && lab.peer_status(a, c).is_none()
    })
    .unwrap_or_else(|| panic!("{test}: a not split off\n{}", lab.logs(30)));
    eprintln!("{test}: FIGURE a new passphrase split a off in {left:?}");
    assert!(lab.peer_status(b, c).is_some(), "{test}: b and c stay");

    // b moves over too: a and b find each other in the new community; c has neither.
    let moved = Instant::now();
    reload_with(&lab, b, &config(&lab, b, new, ""));
    lab.wait_connected(&[(a, b)], moved, CONNECT_TIMEOUT)
        .unwrap_or_else(|e| panic!("{test}: new community: {e}\n{}", lab.logs(30)));
    assert!(
        wait_until(PROMPTLY, || lab.peer_status(c, b).is_none()).is_some(),
        "{test}: c drops b when it leaves"
    );
    assert_eq!(lab.node(a).pid, pid_a, "{test}: a was never restarted");
}
