//! Peers and servers changed while the controller runs (reload, community membership).

use std::time::Duration;
use std::time::Instant;

use super::tests::{Node, addr, host_only, key, run};
use super::*;
use crate::wire::Endpoint;

/// A node that starts with no peer at all, as a community member does.
fn lonely(first: u8, host: &str, t0: Instant) -> Node {
    let sources = host_only(host);
    let address = sources.host[0];
    Node {
        key: key(first),
        address,
        controller: Controller::new(key(first), &[], sources, u64::from(first), t0),
        paths: Vec::new(),
    }
}

#[test]
fn a_peer_added_while_running_connects_like_a_configured_one() {
    let t0 = Instant::now();
    let mut a = lonely(1, "10.0.0.1:51820", t0);
    let mut b = Node::new(2, 1, host_only("10.0.0.2:51820"), t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(200));
    assert!(
        a.paths.is_empty() && b.paths.is_empty(),
        "no path before the add"
    );
    assert!(
        a.controller.counters().unknown_sender > 0,
        "b's offer was refused"
    );

    assert!(a.controller.add_peer(now, key(2)));
    assert!(
        !a.controller.add_peer(now, key(2)),
        "a second add is a no-op"
    );
    assert!(
        !a.controller.add_peer(now, key(1)),
        "never a session with ourselves"
    );
    run(&mut a, &mut b, now, Duration::from_millis(500));
    assert_eq!(
        a.paths,
        [(
            key(2),
            Endpoint::Direct(addr("10.0.0.2:51820")),
            PathKind::Host
        )]
    );
    assert!(a.controller.status()[&key(2)].state.is_connected());
}

#[test]
fn a_removed_peer_is_forgotten_and_its_offers_are_refused() {
    let t0 = Instant::now();
    let mut a = Node::new(1, 2, host_only("10.0.0.1:51820"), t0);
    let mut b = Node::new(2, 1, host_only("10.0.0.2:51820"), t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(500));
    assert!(a.controller.status()[&key(2)].state.is_connected());

    assert!(a.controller.remove_peer(now, &key(2)));
    assert!(!a.controller.remove_peer(now, &key(2)));
    assert!(a.controller.status().is_empty());
    assert_eq!(
        a.controller.poll_offer(),
        None,
        "nothing queued for a removed peer"
    );
    let refused = a.controller.counters().unknown_sender;
    b.controller.remove_peer(now, &key(1));
    b.controller.add_peer(now, key(1)); // a new session: a new offer for a
    let (_, offer) = b.controller.poll_offer().expect("b offers again");
    a.controller.handle_signal(now, key(2), offer);
    assert_eq!(a.controller.counters().unknown_sender, refused + 1);
}

#[test]
fn a_new_stun_server_is_probed_and_the_working_path_stays() {
    let t0 = Instant::now();
    let mut a = Node::new(1, 2, host_only("10.0.0.1:51820"), t0);
    let mut b = Node::new(2, 1, host_only("10.0.0.2:51820"), t0);
    let now = run(&mut a, &mut b, t0, Duration::from_millis(500));
    let before = a.controller.status()[&key(2)].clone();
    assert!(before.state.is_connected());

    let stun = addr("192.0.2.7:3478");
    assert!(a.controller.handle_servers(now, vec![stun], Vec::new()));
    assert!(
        !a.controller.handle_servers(now, vec![stun], Vec::new()),
        "the same list again changes nothing"
    );
    let mut probed = false;
    while let Some(datagram) = a.controller.poll_transmit() {
        probed |= datagram.destination == stun;
    }
    assert!(probed, "the new STUN server is asked");
    let after = a.controller.status()[&key(2)].clone();
    assert!(after.state.is_connected(), "{after:?}");
    assert_eq!(after.remote_candidate, before.remote_candidate);
    assert_eq!(
        a.paths.len(),
        1,
        "no new path event: the tunnel was not touched"
    );
}
