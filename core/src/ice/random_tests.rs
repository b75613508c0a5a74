//! Credentials and wire-visible ids are unpredictable in production and reproducible in
//! tests (issue 9, finding 3).

use std::net::SocketAddr;
use std::time::Instant;

use super::tests::key;
use super::*;
use crate::ice::CandidateTypes;
use crate::session::rng::IceRandom;

const STUN_SERVER: &str = "203.0.113.1:3478";

fn with_stun_server() -> Sources {
    Sources {
        candidate_types: CandidateTypes::ALL,
        host: vec!["10.0.0.1:51820".parse().unwrap()],
        stun: vec![STUN_SERVER.parse().unwrap()],
        turn: Vec::new(),
        mesh: Vec::new(),
    }
}

/// A controller as the daemon makes one: randomness from the OS.
fn production(t0: Instant) -> Controller {
    Controller::new(
        key(1),
        &[key(2)],
        with_stun_server(),
        IceRandom::from_os(),
        t0,
    )
}

/// A controller as tests make one: randomness from a fixed seed.
fn seeded(seed: u64, t0: Instant) -> Controller {
    Controller::new(
        key(1),
        &[key(2)],
        with_stun_server(),
        IceRandom::from_seed(seed),
        t0,
    )
}

/// What a STUN server operator or anyone on path sees: the probe's transaction id.
fn probe_transaction_id(controller: &mut Controller) -> u128 {
    let server: SocketAddr = STUN_SERVER.parse().unwrap();
    let probe = std::iter::from_fn(|| controller.poll_transmit())
        .find(|d| d.destination == server)
        .expect("a STUN probe");
    let mut id = [0u8; 16];
    id[4..].copy_from_slice(&probe.contents[8..20]);
    u128::from_be_bytes(id)
}

/// What the peer receives through signaling (and only it): our ufrag and password.
fn first_credentials(controller: &mut Controller) -> (String, String) {
    let (_, offer) = controller.poll_offer().expect("a first offer");
    (offer.ice_ufrag, offer.ice_pwd)
}

/// The attack of issue 9 finding 3 against the SplitMix64 stream that used to make every id:
/// the transaction id's top 64 bits were one raw output; inverting the output function gives
/// the state, stepping back one output gives the session's seed, and the session's own
/// SplitMix64 then yields its id, ufrag and password.
mod splitmix_attack {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    const M1: u64 = 0xbf58_476d_1ce4_e5b9;
    const M2: u64 = 0x94d0_49bb_1331_11eb;
    const ICE_CHARS: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

    fn mix(mut z: u64) -> u64 {
        z = (z ^ (z >> 30)).wrapping_mul(M1);
        z = (z ^ (z >> 27)).wrapping_mul(M2);
        z ^ (z >> 31)
    }

    fn inverse(a: u64) -> u64 {
        // Newton's iteration for the inverse modulo 2^64 (a is odd).
        let mut x = a;
        for _ in 0..6 {
            x = x.wrapping_mul(2u64.wrapping_sub(a.wrapping_mul(x)));
        }
        x
    }

    fn unshift(z: u64, shift: u32) -> u64 {
        let mut x = z;
        for _ in 0..64 / shift + 1 {
            x = z ^ (x >> shift);
        }
        x
    }

    fn unmix(z: u64) -> u64 {
        let z = unshift(z, 31).wrapping_mul(inverse(M2));
        let z = unshift(z, 27).wrapping_mul(inverse(M1));
        unshift(z, 30)
    }

    /// The (ufrag, pwd) the old code gave the first session, from the first probe's id.
    pub(super) fn predict_credentials(transaction_id: u128) -> (String, String) {
        let output = (transaction_id >> 32) as u64;
        let probe_state = unmix(output);
        let session_seed = mix(probe_state.wrapping_sub(GAMMA));
        let mut state = session_seed;
        let mut next = || {
            state = state.wrapping_add(GAMMA);
            mix(state)
        };
        let _session_id = next();
        let mut text = |len: usize| -> String {
            (0..len)
                .map(|_| char::from(ICE_CHARS[(next() % 62) as usize]))
                .collect()
        };
        let ufrag = text(16);
        let pwd = text(22);
        (ufrag, pwd)
    }

    #[test]
    fn the_inversion_undoes_the_output_function() {
        for z in [0u64, 1, 0xdead_beef, u64::MAX, GAMMA] {
            assert_eq!(unmix(mix(z)), z);
        }
    }
}

#[test]
fn one_probe_transaction_id_no_longer_reveals_the_session_password() {
    let t0 = Instant::now();
    let mut controller = production(t0);
    let (ufrag, pwd) = first_credentials(&mut controller);
    let transaction = probe_transaction_id(&mut controller);
    let (predicted_ufrag, predicted_pwd) = splitmix_attack::predict_credentials(transaction);
    assert_ne!(
        predicted_pwd, pwd,
        "the password was recovered from a transaction id"
    );
    assert_ne!(predicted_ufrag, ufrag);
}

#[test]
fn two_production_nodes_draw_different_credentials_and_transaction_ids() {
    let t0 = Instant::now();
    let mut a = production(t0);
    let mut b = production(t0);
    assert_ne!(first_credentials(&mut a), first_credentials(&mut b));
    assert_ne!(probe_transaction_id(&mut a), probe_transaction_id(&mut b));
}

#[test]
fn the_same_test_seed_gives_the_same_credentials_and_transaction_ids() {
    let t0 = Instant::now();
    let mut a = seeded(7, t0);
    let mut b = seeded(7, t0);
    let mut c = seeded(8, t0);
    let creds = first_credentials(&mut a);
    assert_eq!(creds, first_credentials(&mut b));
    assert_ne!(creds, first_credentials(&mut c));
    let id = probe_transaction_id(&mut a);
    assert_eq!(id, probe_transaction_id(&mut b));
    assert_ne!(id, probe_transaction_id(&mut c));
}
