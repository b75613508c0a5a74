//! An input to the controller costs what it touches (issue 10 finding 4): one peer's offer
//! drives that peer's session, not a walk over every session.

use std::time::{Duration, Instant};

use super::tests::{host_only, key};
use super::*;
use crate::keys::PublicKey;

/// A node with forty peers, settled (its one host candidate handed to every session).
fn forty_peers(t0: Instant) -> Controller {
    let peers: Vec<PublicKey> = (2..42).map(key).collect();
    Controller::new(key(1), &peers, host_only("10.0.0.1:51820"), 1, t0)
}

#[test]
fn one_peers_offer_drives_only_that_peers_session() {
    let t0 = Instant::now();
    let mut hub = forty_peers(t0);
    while hub.poll_offer().is_some() {}
    let mut spoke = Controller::new(key(2), &[key(1)], host_only("10.0.0.2:51820"), 2, t0);
    let (_, offer) = spoke.poll_offer().expect("the spoke's first offer");
    let before = hub.sessions_driven;
    hub.handle_signal(t0 + Duration::from_millis(1), key(2), offer);
    assert_eq!(
        hub.sessions_driven - before,
        1,
        "an offer from one of forty peers drives its session alone"
    );
}
