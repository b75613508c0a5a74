//! The membership state machine against the rules in its module docs, with fake time.

use super::*;

const SEQ: u64 = 1_700_000_000_000_000;

fn community() -> CommunityKey {
    CommunityKey::from_secret([42; 32])
}

fn private(seed: u8) -> PrivateKey {
    PrivateKey::from_bytes([seed; 32])
}

fn profile(name: &str) -> Profile {
    Profile {
        name: name.to_owned(),
        ..Profile::default()
    }
}

fn prefixes() -> Vec<IpNet> {
    vec![
        "10.77.0.0/16".parse().unwrap(),
        "fd77::/64".parse().unwrap(),
    ]
}

fn node(seed: u8, name: &str, config: MembershipConfig) -> Membership {
    Membership::new(private(seed), config, profile(name), SEQ).expect("valid prefixes")
}

fn config() -> MembershipConfig {
    MembershipConfig::new(community(), prefixes())
}

fn announcement(seed: u8, name: &str, sequence: u64) -> Announcement {
    Announcement::sign(
        &private(seed),
        &community(),
        &profile(name),
        false,
        sequence,
    )
    .expect("valid")
}

fn events(membership: &mut Membership) -> Vec<MembershipEvent> {
    std::iter::from_fn(|| membership.poll_event()).collect()
}

#[test]
fn two_nodes_that_hear_each_other_become_members_with_addresses_derived_from_their_keys() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    let mut b = node(2, "b", config());
    let from_a = a.poll_announcement(now).expect("announces at once");
    let from_b = b.poll_announcement(now).expect("announces at once");
    b.handle_announcement(now, from_a.public_key, from_a)
        .unwrap();
    a.handle_announcement(now, from_b.public_key, from_b)
        .unwrap();
    let [MembershipEvent::Joined(b_in_a)] = &events(&mut a)[..] else {
        panic!("one join")
    };
    assert_eq!(b_in_a.key(), private(2).public_key());
    assert_eq!(b_in_a.announcement.name, "b");
    let expected =
        crate::addresses::derive_addresses(&private(2).public_key(), &prefixes()).unwrap();
    assert_eq!(b_in_a.addresses, expected);
    assert_eq!(
        b_in_a.allowed_ips(),
        vec![
            IpNet::new(expected[0], 32).unwrap(),
            IpNet::new(expected[1], 128).unwrap()
        ]
    );
    assert_eq!(b.own_addresses(), expected);
    assert!(
        matches!(&events(&mut b)[..], [MembershipEvent::Joined(m)] if m.key() == private(1).public_key())
    );
}

#[test]
fn our_announcement_repeats_every_interval_with_a_growing_sequence() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    let first = a.poll_announcement(now).unwrap();
    assert_eq!(first.sequence, SEQ);
    assert!(a.poll_announcement(now).is_none());
    assert_eq!(a.poll_timeout(), Some(now + ANNOUNCE_INTERVAL));
    assert!(a.poll_announcement(now + ANNOUNCE_INTERVAL / 2).is_none());
    let second = a.poll_announcement(now + ANNOUNCE_INTERVAL).unwrap();
    assert_eq!(second.sequence, SEQ + 1);
    a.set_profile(profile("renamed"));
    let third = a
        .poll_announcement(now + ANNOUNCE_INTERVAL)
        .expect("a change goes out at once");
    assert_eq!(third.name, "renamed");
    assert!(third.verify(&community()));
}

#[test]
fn an_envelope_from_another_key_than_the_announced_one_is_dropped_and_counted() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    let result = a.handle_announcement(now, private(3).public_key(), announcement(2, "b", SEQ));
    assert!(matches!(
        result,
        Err(AnnouncementDrop::SenderMismatch { .. })
    ));
    assert_eq!(a.counters().sender_mismatch, 1);
    assert_eq!(a.members().count(), 0);
    assert!(events(&mut a).is_empty());
}

#[test]
fn a_passphrase_holder_cannot_announce_or_remove_another_members_key() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    a.handle_announcement(now, private(2).public_key(), announcement(2, "b", SEQ))
        .unwrap();
    events(&mut a);
    // The holder (key 9) forges an envelope "from" key 2 (it can: the envelope is sealed to
    // the community key it holds) and signs the content with its own key.
    let mut forged =
        Announcement::sign(&private(9), &community(), &profile("evil"), true, SEQ + 5).unwrap();
    forged.public_key = private(2).public_key();
    let result = a.handle_announcement(now, private(2).public_key(), forged);
    assert_eq!(
        result,
        Err(AnnouncementDrop::BadSignature(private(2).public_key()))
    );
    assert_eq!(a.counters().bad_signature, 1);
    assert_eq!(
        a.member(&private(2).public_key())
            .unwrap()
            .announcement
            .name,
        "b"
    );
    assert!(events(&mut a).is_empty());
}

#[test]
fn a_key_without_the_passphrase_cannot_join_even_knowing_the_community_public_key() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    // An outsider knows the community's public key (it addresses every envelope) but not the
    // membership secret: its own, correctly signed announcement does not verify.
    let outsider = CommunityKey::from_secret([7; 32]);
    let signed = Announcement::sign(&private(5), &outsider, &profile("x"), false, SEQ).unwrap();
    let result = a.handle_announcement(now, private(5).public_key(), signed);
    assert_eq!(
        result,
        Err(AnnouncementDrop::BadSignature(private(5).public_key()))
    );
    assert_eq!(a.members().count(), 0);
}

#[test]
fn replayed_and_older_announcements_are_dropped_without_changing_anything() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    let b = announcement(2, "b", SEQ + 10);
    a.handle_announcement(now, b.public_key, b.clone()).unwrap();
    events(&mut a);
    assert!(matches!(
        a.handle_announcement(now, b.public_key, b.clone()),
        Err(AnnouncementDrop::Stale { .. })
    ));
    assert!(matches!(
        a.handle_announcement(now, b.public_key, announcement(2, "old-name", SEQ + 9)),
        Err(AnnouncementDrop::Stale { .. })
    ));
    assert_eq!(a.counters().stale, 2);
    assert_eq!(a.member(&b.public_key).unwrap().announcement.name, "b");
    assert!(events(&mut a).is_empty());
}

#[test]
fn a_member_that_leaves_is_removed_and_a_replay_of_its_old_announcement_does_not_bring_it_back() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    let mut b = node(2, "b", config());
    let hello = b.poll_announcement(now).unwrap();
    a.handle_announcement(now, hello.public_key, hello.clone())
        .unwrap();
    let bye = b.leave().unwrap();
    assert!(bye.leaving);
    a.handle_announcement(now, bye.public_key, bye).unwrap();
    let got = events(&mut a);
    assert!(matches!(got.last(), Some(MembershipEvent::Left(key)) if *key == hello.public_key));
    assert_eq!(a.members().count(), 0);
    assert!(matches!(
        a.handle_announcement(now, hello.public_key, hello),
        Err(AnnouncementDrop::Stale { .. })
    ));
    assert_eq!(a.members().count(), 0);
    // The same node restarted later numbers from a later clock: it is back.
    let mut b_again = Membership::new(private(2), config(), profile("b"), SEQ + 1_000_000).unwrap();
    let back = b_again.poll_announcement(now).unwrap();
    a.handle_announcement(now, back.public_key, back).unwrap();
    assert!(matches!(&events(&mut a)[..], [MembershipEvent::Joined(_)]));
}

#[test]
fn a_silent_member_expires_after_the_documented_time_and_not_before() {
    let start = Instant::now();
    let mut a = node(1, "a", config());
    a.poll_announcement(start);
    let b = announcement(2, "b", SEQ);
    a.handle_announcement(start, b.public_key, b).unwrap();
    events(&mut a);
    // A refresh resets the clock.
    let later = start + EXPIRE_AFTER / 2;
    a.handle_announcement(
        later,
        private(2).public_key(),
        announcement(2, "b", SEQ + 1),
    )
    .unwrap();
    assert!(events(&mut a).is_empty(), "same profile: no event");
    let expiry = later + EXPIRE_AFTER;
    assert!(a.poll_timeout().unwrap() <= expiry);
    a.handle_timeout(expiry - Duration::from_millis(1));
    assert!(events(&mut a).is_empty());
    a.handle_timeout(expiry);
    assert_eq!(
        events(&mut a),
        vec![MembershipEvent::Expired(private(2).public_key())]
    );
    assert_eq!(a.counters().expired, 1);
    assert_eq!(a.members().count(), 0);
}

#[test]
fn keys_outside_allow_or_inside_deny_are_refused_and_counted() {
    let now = Instant::now();
    let mut allow_config = config();
    allow_config.allow = Some([private(2).public_key()].into());
    allow_config.deny = [private(4).public_key()].into();
    let mut a = node(1, "a", allow_config);
    a.handle_announcement(now, private(2).public_key(), announcement(2, "b", SEQ))
        .unwrap();
    assert_eq!(
        a.handle_announcement(now, private(3).public_key(), announcement(3, "c", SEQ)),
        Err(AnnouncementDrop::NotAllowed(private(3).public_key()))
    );
    let mut deny_config = config();
    deny_config.deny = [private(4).public_key()].into();
    let mut d = node(1, "a", deny_config);
    assert_eq!(
        d.handle_announcement(now, private(4).public_key(), announcement(4, "d", SEQ)),
        Err(AnnouncementDrop::Denied(private(4).public_key()))
    );
    assert_eq!(a.counters().not_allowed, 1);
    assert_eq!(d.counters().not_allowed, 1);
    assert_eq!(a.members().count(), 1);
    assert_eq!(d.members().count(), 0);
}

#[test]
fn the_member_table_is_bounded_and_refusals_beyond_it_are_counted() {
    let now = Instant::now();
    let mut capped = config();
    capped.max_members = 3;
    let mut a = node(1, "a", capped);
    for seed in 10..20u8 {
        let _ = a.handle_announcement(
            now,
            private(seed).public_key(),
            announcement(seed, &format!("n{seed}"), SEQ),
        );
    }
    assert_eq!(a.members().count(), 3);
    assert_eq!(a.counters().full, 7);
}

#[test]
fn a_name_collision_is_refused_reported_once_and_the_first_holder_keeps_the_name() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    a.handle_announcement(now, private(2).public_key(), announcement(2, "db", SEQ))
        .unwrap();
    events(&mut a);
    for sequence in [SEQ, SEQ + 1] {
        let _ = a.handle_announcement(
            now,
            private(3).public_key(),
            announcement(3, "db", sequence),
        );
    }
    assert_eq!(
        events(&mut a),
        vec![MembershipEvent::Refused {
            key: private(3).public_key(),
            reason: Refusal::NameCollision {
                name: "db".to_owned(),
                holder: private(2).public_key()
            }
        }]
    );
    assert_eq!(a.counters().collision, 2);
    assert!(a.member(&private(3).public_key()).is_none());
    // Our own name is taken by us.
    let refused = a.handle_announcement(now, private(4).public_key(), announcement(4, "a", SEQ));
    assert!(matches!(refused, Err(AnnouncementDrop::Collision(_))));
}

#[test]
fn an_address_collision_is_refused_and_never_routed_to_the_second_key() {
    let now = Instant::now();
    // Two hosts in a /30: among a few keys, some derive our address or each other's.
    let mut tiny = config();
    tiny.derive_prefixes = vec!["192.0.2.0/30".parse().unwrap()];
    let mut a = node(1, "a", tiny);
    for seed in 2..10u8 {
        let _ = a.handle_announcement(
            now,
            private(seed).public_key(),
            announcement(seed, &format!("n{seed}"), SEQ),
        );
    }
    let members: Vec<_> = a.members().cloned().collect();
    assert_eq!(members.len(), 1, "two hosts: us and one member");
    assert_ne!(members[0].addresses, a.own_addresses());
    let refused: Vec<_> = events(&mut a)
        .into_iter()
        .filter_map(|event| match event {
            MembershipEvent::Refused {
                key,
                reason: Refusal::AddressCollision(collision),
            } => Some((key, collision)),
            _ => None,
        })
        .collect();
    assert_eq!(refused.len(), 7);
    for (key, collision) in refused {
        assert_eq!(collision.key, key);
        assert!(collision.holder == a.public_key() || collision.holder == members[0].key());
    }
}

#[test]
fn a_changed_profile_is_an_update() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    a.handle_announcement(now, private(2).public_key(), announcement(2, "b", SEQ))
        .unwrap();
    events(&mut a);
    a.handle_announcement(now, private(2).public_key(), announcement(2, "b2", SEQ + 1))
        .unwrap();
    let [MembershipEvent::Updated(member)] = &events(&mut a)[..] else {
        panic!("one update")
    };
    assert_eq!(member.announcement.name, "b2");
    // The old name is free again.
    a.handle_announcement(now, private(3).public_key(), announcement(3, "b", SEQ))
        .unwrap();
}

#[test]
fn a_join_is_answered_within_the_holddown_not_at_the_next_interval() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    a.poll_announcement(now).unwrap();
    let t = now + Duration::from_millis(100);
    a.handle_announcement(t, private(2).public_key(), announcement(2, "b", SEQ))
        .unwrap();
    assert_eq!(a.poll_timeout(), Some(now + ANSWER_HOLDDOWN));
    assert!(a.poll_announcement(t).is_none());
    assert!(a.poll_announcement(now + ANSWER_HOLDDOWN).is_some());
    // A refresh of a known member is no join: nothing sooner than the interval.
    a.handle_announcement(t, private(2).public_key(), announcement(2, "b", SEQ + 1))
        .unwrap();
    assert_eq!(
        a.poll_timeout(),
        Some(now + ANSWER_HOLDDOWN + ANNOUNCE_INTERVAL).min(Some(t + EXPIRE_AFTER))
    );
}

#[test]
fn the_counters_add_up_received_to_accepted_plus_rejected_and_track_joins_leaves_expiries_and_members()
 {
    let start = Instant::now();
    let mut allow = config();
    allow.allow = Some([2, 3, 4].map(|seed| private(seed).public_key()).into());
    let mut a = node(1, "a", allow);
    a.poll_announcement(start);
    for seed in [2, 3, 4] {
        let from = announcement(seed, &format!("n{seed}"), SEQ);
        a.handle_announcement(start, from.public_key, from).unwrap();
    }
    // Refused: not allowed, a replay, a mismatched sender.
    let _ = a.handle_announcement(start, private(5).public_key(), announcement(5, "e", SEQ));
    let _ = a.handle_announcement(start, private(2).public_key(), announcement(2, "n2", SEQ));
    let _ = a.handle_announcement(
        start,
        private(3).public_key(),
        announcement(2, "n2", SEQ + 1),
    );
    // 3 leaves; 4 is refreshed; 2 goes silent and expires.
    let mut three = Membership::new(private(3), config(), profile("n3"), SEQ + 10).unwrap();
    let leaving = three.leave().unwrap();
    a.handle_announcement(start, leaving.public_key, leaving)
        .unwrap();
    let refreshed = start + EXPIRE_AFTER / 2;
    let from = announcement(4, "n4", SEQ + 1);
    a.handle_announcement(refreshed, from.public_key, from)
        .unwrap();
    a.handle_timeout(start + EXPIRE_AFTER);

    let counters = a.counters();
    assert_eq!(counters.received, 8);
    assert_eq!(counters.accepted, 5, "three joins, a leave, a refresh");
    assert_eq!(counters.rejected(), 3);
    assert_eq!(counters.received, counters.accepted + counters.rejected());
    let by_reason: std::collections::BTreeMap<_, _> =
        counters.rejected_by_reason().into_iter().collect();
    assert_eq!(by_reason["not_allowed"], 1);
    assert_eq!(by_reason["stale"], 1);
    assert_eq!(by_reason["sender_mismatch"], 1);
    assert_eq!(
        (counters.joined, counters.left, counters.expired),
        (3, 1, 1)
    );
    assert_eq!(counters.members, 1, "only 4 is left");
}

#[test]
fn new_settings_remove_the_members_they_refuse_and_a_new_passphrase_removes_everyone() {
    let now = Instant::now();
    let mut a = node(1, "a", config());
    a.poll_announcement(now);
    for seed in [2, 3] {
        let from = announcement(seed, &format!("n{seed}"), SEQ);
        a.handle_announcement(now, from.public_key, from).unwrap();
    }
    events(&mut a);
    let three = private(3).public_key();
    let mut deny = config();
    deny.deny = [three].into();
    a.handle_config(now, deny.clone());
    assert_eq!(events(&mut a), vec![MembershipEvent::Removed(three)]);
    assert!(a.member(&three).is_none());
    assert!(
        a.poll_announcement(now).is_some(),
        "announces at once after a change"
    );
    let again = announcement(3, "n3", SEQ + 1);
    assert_eq!(
        a.handle_announcement(now, three, again),
        Err(AnnouncementDrop::Denied(three))
    );
    // Allowed again: its next announcement brings it back.
    a.handle_config(now, config());
    assert!(events(&mut a).is_empty());
    a.handle_announcement(now, three, announcement(3, "n3", SEQ + 2))
        .unwrap();
    assert!(matches!(&events(&mut a)[..], [MembershipEvent::Joined(m)] if m.key() == three));

    // Another passphrase: every member was in the old community.
    let mut other = config();
    other.community = CommunityKey::from_secret([43; 32]);
    a.handle_config(now, other);
    let mut removed = events(&mut a);
    removed.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(
        removed
            .iter()
            .all(|e| matches!(e, MembershipEvent::Removed(_)))
    );
    assert_eq!(a.members().count(), 0);
    let ours = a
        .poll_announcement(now)
        .expect("announces in the new community");
    let mut b = node(2, "n2", config());
    assert_eq!(
        b.handle_announcement(now, ours.public_key, ours.clone()),
        Err(AnnouncementDrop::BadSignature(ours.public_key)),
        "the old community cannot verify it"
    );
}
