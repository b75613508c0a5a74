//! The scenarios: each takes the backend kind and builds its own deployment.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant, SystemTime};

use rand_core::OsRng;
use wice::signaling::{BackendError, Inbox};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::signaling::{Envelope, Sealer};

use super::{Kind, World};
use crate::signaling::{Peer, QUIET, WAIT, description, exchange_until_all_heard, session_id};

/// Every peer multicasts one description to all the others; each receives exactly one from
/// each other peer, attributed to the right sender.
pub(super) async fn all_to_all_delivery_reaches_every_peer_with_the_right_sender(kind: Kind) {
    let world = World::new(kind).await;
    let mut peers = world.peers(5).await;
    let keys: Vec<PublicKey> = peers.iter().map(Peer::public).collect();
    for (i, peer) in peers.iter().enumerate() {
        let others: Vec<PublicKey> = keys.iter().copied().filter(|k| *k != keys[i]).collect();
        peer.publish(&others, &description(i as u64, 0)).await;
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        let mut from = BTreeMap::new();
        for _ in 0..keys.len() - 1 {
            let got = peer.next(WAIT).await;
            let sender_index = keys
                .iter()
                .position(|k| *k == got.sender)
                .expect("a known sender");
            assert_eq!(
                session_id(&got.message),
                sender_index as u64,
                "content matches its sender"
            );
            assert!(
                from.insert(sender_index, ()).is_none(),
                "one message per sender"
            );
        }
        assert!(!from.contains_key(&i), "nobody receives its own message");
        peer.assert_nothing_for(QUIET).await;
    }
}

/// One publish to a group reaches exactly the group.
pub(super) async fn a_multicast_reaches_exactly_its_group(kind: Kind) {
    let world = World::new(kind).await;
    let mut peers = world.peers(6).await;
    let group: Vec<PublicKey> = peers[1..4].iter().map(Peer::public).collect();
    peers[0].publish(&group, &description(42, 1)).await;
    let sender = peers[0].public();
    for peer in &mut peers[1..4] {
        let got = peer.next(WAIT).await;
        assert_eq!((got.sender, session_id(&got.message)), (sender, 42));
    }
    for peer in &mut peers[4..] {
        peer.assert_nothing_for(QUIET).await;
    }
    peers[0].assert_nothing_for(Duration::ZERO).await;
}

/// Envelopes sealed in one order and published in another are all accepted.
pub(super) async fn reordered_envelopes_are_all_accepted(kind: Kind) {
    let world = World::new(kind).await;
    let mut bob = world.peer().await;
    let alice = PrivateKey::generate();
    let mut sealer = Sealer::new(&alice);
    let mut envelopes: Vec<_> = (0..12)
        .map(|i| {
            sealer
                .seal(
                    &bob.public(),
                    &description(i, i),
                    SystemTime::now(),
                    &mut OsRng,
                )
                .expect("seal")
        })
        .collect();
    // A fixed shuffle: newest first, then the rest interleaved.
    envelopes.reverse();
    envelopes.swap(1, 9);
    envelopes.swap(3, 6);
    let (backend, _alice_inbox) = world.publisher(&alice).await;
    for chunk in envelopes.chunks(4) {
        backend.publish(chunk.to_vec()).await.expect("publish");
    }
    let mut seen = BTreeSet::new();
    for _ in 0..12 {
        let got = bob.next(WAIT).await;
        assert_eq!(got.sender, alice.public_key());
        seen.insert(session_id(&got.message));
    }
    assert_eq!(seen, (0..12).collect());
    assert_eq!(bob.signaling.counters().open.replayed, 0);
    assert_eq!(bob.signaling.counters().open.accepted, 12);
}

/// An envelope for a key nobody has subscribed is dropped, not kept for later.
pub(super) async fn envelopes_for_unknown_recipients_are_dropped_not_queued(kind: Kind) {
    let world = World::new(kind).await;
    let alice = world.peer().await;
    let late_key = PrivateKey::generate();
    alice
        .publish(&[late_key.public_key()], &description(1, 0))
        .await;
    world.wait_until_dropped().await;
    let mut late = Peer::start(late_key, vec![world.backend()]).await;
    late.assert_nothing_for(QUIET).await;
    // The subscription works: a message sent now arrives.
    alice.publish(&[late.public()], &description(2, 0)).await;
    assert_eq!(session_id(&late.next(WAIT).await.message), 2);
}

/// Members of a group (a community key every member holds) each subscribe the group key
/// on their own connection; one envelope sealed to the group key reaches every member once,
/// more members than a server keeps subscriptions of one node's key, and nobody else.
pub(super) async fn a_group_key_reaches_every_member_however_many(kind: Kind) {
    const MEMBERS: usize = 7;
    let world = World::new(kind).await;
    let community = PrivateKey::generate();
    let mut members = Vec::with_capacity(MEMBERS);
    for _ in 0..MEMBERS {
        let own = PrivateKey::generate();
        let (backend, own_inbox) = world.publisher(&own).await;
        let (group_inbox, group_rx) = Inbox::channel(16);
        backend
            .subscribe_group(community.clone(), group_inbox)
            .await
            .expect("subscribe the group key");
        members.push((own, backend, own_inbox, group_rx));
    }
    // Someone who is not a member, subscribed to its own key only.
    let outsider = PrivateKey::generate();
    let (_outsider_backend, mut outsider_inbox) = world.publisher(&outsider).await;

    let announcer = members[2].0.clone();
    let announcement = Sealer::new(&announcer)
        .seal(
            &community.public_key(),
            &description(7, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal");
    members[2]
        .1
        .publish(vec![announcement.clone()])
        .await
        .expect("publish to the group");

    for (index, (_, _, _, group_rx)) in members.iter_mut().enumerate() {
        let got = tokio::time::timeout(WAIT, group_rx.recv())
            .await
            .unwrap_or_else(|_| panic!("member {index} of {MEMBERS} got nothing"))
            .expect("inbox open");
        assert_eq!(got.envelope.sender, announcer.public_key());
        assert_eq!(got.envelope.nonce, announcement.nonce, "member {index}");
    }
    tokio::time::sleep(QUIET).await;
    for (index, (_, _, own_inbox, group_rx)) in members.iter_mut().enumerate() {
        assert!(
            group_rx.try_recv().is_err(),
            "member {index}: one copy only"
        );
        assert!(
            own_inbox.try_recv().is_err(),
            "member {index}: not on its own key"
        );
    }
    assert!(
        outsider_inbox.try_recv().is_err(),
        "the outsider hears nothing"
    );
}

/// A backend publishes only envelopes whose sender is a key it subscribed (proved): a
/// stranger can neither replay a peer's genuine envelope nor forge one in a peer's name,
/// publishing before any subscription is refused, and what does arrive names its sealer.
pub(super) async fn a_backend_publishes_only_as_keys_it_proved(kind: Kind) {
    let world = World::new(kind).await;
    let alice = PrivateKey::generate();
    let mut bob = world.peer().await;
    let mallory = PrivateKey::generate();
    let (mallory_backend, _mallory_inbox) = world.publisher(&mallory).await;

    // Nothing subscribed yet: refused outright.
    let unproven = world.backend();
    let genuine = Sealer::new(&alice)
        .seal(
            &bob.public(),
            &description(1, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal");
    assert!(
        matches!(
            unproven.publish(vec![genuine.clone()]).await,
            Err(BackendError::Refused { .. })
        ),
        "publishing with no key proven is refused"
    );

    // Mallory replays Alice's genuine envelope, and forges one in Alice's name.
    let mut forged: Envelope = Sealer::new(&mallory)
        .seal(
            &bob.public(),
            &description(2, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal");
    forged.sender = alice.public_key();
    let _ = mallory_backend.publish(vec![genuine, forged]).await;
    bob.assert_nothing_for(QUIET).await;

    // Her own envelope goes through, under her own name.
    let own = Sealer::new(&mallory)
        .seal(
            &bob.public(),
            &description(3, 0),
            SystemTime::now(),
            &mut OsRng,
        )
        .expect("seal");
    mallory_backend.publish(vec![own]).await.expect("publish");
    let got = bob.next(WAIT).await;
    assert_eq!(
        (got.sender, session_id(&got.message)),
        (mallory.public_key(), 3)
    );
    assert_eq!(bob.signaling.counters().open.accepted, 1);
}

/// The server side restarts under connected peers: every client subscribes again by
/// itself (own keys and group keys), and delivery resumes with no action from the node.
pub(super) async fn every_subscription_is_restored_after_the_server_side_restarts(kind: Kind) {
    let mut world = World::new(kind).await;
    let mut peers = world.peers(4).await;
    let keys: Vec<PublicKey> = peers.iter().map(Peer::public).collect();
    let community = PrivateKey::generate();
    let member = PrivateKey::generate();
    let (member_backend, _member_inbox) = world.publisher(&member).await;
    let (group_inbox, mut group_rx) = Inbox::channel(16);
    member_backend
        .subscribe_group(community.clone(), group_inbox)
        .await
        .expect("subscribe the group key");
    exchange_until_all_heard(&mut peers, &keys, 0).await;

    world.restart_server_side().await;

    exchange_until_all_heard(&mut peers, &keys, 1).await;
    // The group subscription came back too: publish until it is heard.
    let mut sealer = Sealer::new(&member);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Instant::now() < deadline,
            "the group subscription never came back"
        );
        let envelope = sealer
            .seal(
                &community.public_key(),
                &description(9, 0),
                SystemTime::now(),
                &mut OsRng,
            )
            .expect("seal");
        let _ = member_backend.publish(vec![envelope]).await;
        if let Ok(Some(got)) =
            tokio::time::timeout(Duration::from_millis(200), group_rx.recv()).await
        {
            assert_eq!(got.envelope.sender, member.public_key());
            break;
        }
    }
}
