//! Community discovery in the daemon: the group subscription, the sans-IO [`Membership`],
//! and the peers it wants (static `[[peer]]`s and discovered members) for the ICE driver's
//! [`PeerSet`](super::peer_set::PeerSet).
//!
//! The driver owns one [`Community`]: it hands it what the group mailbox delivers, wakes it
//! at [`Community::poll_timeout`], publishes what [`Community::poll_announcement`] returns
//! (sealed from our key to the community key), and after [`Community::poll_changes`] says the
//! members changed, reconciles the peer set with [`Community::desired`].

use std::sync::PoisonError;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::mpsc;
use wice_core::addresses::AddressError;
use wice_core::community::{
    AnnouncementDrop, Membership, MembershipConfig, MembershipCounters, MembershipEvent, Profile,
};
use wice_core::keys::{PrivateKey, PublicKey};
use wice_core::log_limit::LogLimit;
use wice_core::signaling::{SenderPolicy, SignalingMessage};

use crate::config::{
    CommunityConfig, Config, PeerConfig, RouteOffer, RoutingConfig, accepted_routes,
};
use crate::signaling::{Received, Signaling};
use crate::status::CommunityStatus;

/// The community side of one node.
pub(crate) struct Community {
    membership: Membership,
    group: PrivateKey,
    statics: Vec<PeerConfig>,
    /// Which announced networks and exit node to take.
    routing: RoutingConfig,
    /// For the drop lines: anyone who knows the community's public key can cause them.
    refusals: LogLimit,
    /// The counters last put in the status snapshot.
    published: Option<MembershipCounters>,
}

impl Community {
    /// Joins `config`'s community (when it has one) through `signaling`'s backends.
    /// Returns the community and the group mailbox's deliveries.
    pub(crate) async fn start(
        config: &Config,
        signaling: &Signaling,
    ) -> Result<Option<(Self, mpsc::Receiver<Received>)>, AddressError> {
        let Some(community) = &config.community else {
            return Ok(None);
        };
        let membership = membership(config, community)?;
        let group = community.key.private_key().clone();
        let received = signaling
            .subscribe_group(group.clone(), SenderPolicy::AnyKey)
            .await;
        tracing::info!(
            community = %community.key.public_key(),
            addresses = ?membership.own_addresses(),
            "community joined"
        );
        let community = Self {
            membership,
            group,
            statics: config.peers.clone(),
            routing: config.routing.clone(),
            refusals: LogLimit::per_second(5),
            published: None,
        };
        Ok(Some((community, received)))
    }

    /// Subscribes the group again on a new signaling (a reload replaced the backends).
    pub(crate) async fn resubscribe(&self, signaling: &Signaling) -> mpsc::Receiver<Received> {
        signaling
            .subscribe_group(self.group.clone(), SenderPolicy::AnyKey)
            .await
    }

    /// The community key announcements are sealed to.
    pub(crate) fn recipient(&self) -> PublicKey {
        self.group.public_key()
    }

    /// Handles one delivery; anything but an announcement is ignored.
    pub(crate) fn handle_received(&mut self, now: Instant, received: Received) {
        let Received { sender, message } = received;
        let SignalingMessage::Announcement(announcement) = message else {
            return;
        };
        if let Err(drop) = self
            .membership
            .handle_announcement(now, sender, announcement)
            && let Some(suppressed) = self.refusals.allow(now)
        {
            match drop {
                AnnouncementDrop::NotAllowed(_) | AnnouncementDrop::Denied(_) => {
                    let refused = self.membership.counters().not_allowed;
                    tracing::info!(%sender, %drop, refused, suppressed, "community announcement refused");
                }
                _ => tracing::debug!(%sender, %drop, suppressed, "community announcement dropped"),
            }
        }
    }

    /// Expires silent members.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        self.membership.handle_timeout(now);
    }

    /// When to call [`Community::handle_timeout`] and [`Community::poll_announcement`].
    pub(crate) fn poll_timeout(&self) -> Option<Instant> {
        self.membership.poll_timeout()
    }

    /// Our announcement when one is due.
    pub(crate) fn poll_announcement(&mut self, now: Instant) -> Option<SignalingMessage> {
        self.membership
            .poll_announcement(now)
            .map(SignalingMessage::Announcement)
    }

    /// Our leaving announcement.
    pub(crate) fn leave(&mut self) -> Option<SignalingMessage> {
        self.membership.leave().map(SignalingMessage::Announcement)
    }

    /// Puts the membership counters where `wice status` and the metrics read them.
    /// Called after every input of the driver's loop: only a change takes the lock.
    pub(crate) fn publish_status(&mut self, snapshot: &super::ice_driver::SharedSnapshot) {
        let counters = self.membership.counters();
        if self.published == Some(counters) {
            return;
        }
        self.published = Some(counters);
        let status = CommunityStatus::from_counters(&counters);
        snapshot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .community = Some(status);
    }

    /// Logs what changed; true when the members (and so the wanted peers) changed.
    pub(crate) fn poll_changes(&mut self) -> bool {
        let mut changed = false;
        while let Some(event) = self.membership.poll_event() {
            match event {
                MembershipEvent::Joined(member) => {
                    changed = true;
                    tracing::info!(peer = %member.key(), name = %member.announcement.name, addresses = ?member.addresses, "community member joined");
                }
                MembershipEvent::Updated(member) => {
                    changed = true;
                    tracing::info!(peer = %member.key(), name = %member.announcement.name, "community member updated");
                }
                MembershipEvent::Left(key) => {
                    changed = true;
                    tracing::info!(peer = %key, "community member left");
                }
                MembershipEvent::Expired(key) => {
                    changed = true;
                    tracing::info!(peer = %key, "community member expired");
                }
                MembershipEvent::Removed(key) => {
                    changed = true;
                    tracing::info!(peer = %key, "community member removed (no longer accepted)");
                }
                MembershipEvent::Refused { key, reason } => {
                    tracing::warn!(peer = %key, ?reason, "community member refused");
                }
            }
        }
        changed
    }

    /// Applies a reloaded config's `[community]` (and which routes to take) at `now`.
    /// Members the new `allow`/`deny` refuse are removed; a changed name or profile is
    /// announced at once. With another passphrase we leave the old community: the returned
    /// leave announcement goes to the old community key (the returned recipient), and the
    /// caller subscribes the new group with [`Community::resubscribe`].
    pub(crate) fn handle_config(
        &mut self,
        now: Instant,
        config: &Config,
        community: &CommunityConfig,
    ) -> Option<(PublicKey, SignalingMessage)> {
        let old_group = self.group.public_key();
        let moved = community.key.public_key() != old_group;
        let leave = if moved {
            self.membership
                .leave()
                .map(|message| (old_group, SignalingMessage::Announcement(message)))
        } else {
            None
        };
        self.group = community.key.private_key().clone();
        self.membership
            .handle_config(now, settings(config, community));
        match profile(config, community) {
            Ok(profile) => self.membership.set_profile(profile),
            Err(error) => tracing::warn!(%error, "community profile unchanged"),
        }
        self.routing = config.routing.clone();
        if moved {
            tracing::info!(community = %community.key.public_key(), "community changed (new passphrase)");
        }
        leave
    }

    /// The static peers changed (a reload).
    pub(crate) fn set_statics(&mut self, peers: Vec<PeerConfig>) {
        self.statics = peers;
    }

    /// Every peer the node should have: the static ones, then each member that is not one,
    /// with its derived addresses as allowed IPs and ICE for its path.
    pub(crate) fn desired(&self) -> Vec<PeerConfig> {
        let mut peers = self.statics.clone();
        for member in self.membership.members() {
            if peers.iter().any(|p| p.public_key == member.key()) {
                continue;
            }
            let announced = &member.announcement;
            let name = (!announced.name.is_empty()).then_some(announced.name.as_str());
            let offer = RouteOffer {
                public_key: &announced.public_key,
                name,
                routes: &announced.networks,
                exit_node: announced.exit_node,
            };
            let mut allowed_ips = member.allowed_ips();
            allowed_ips.extend(accepted_routes(&offer, &self.routing));
            peers.push(PeerConfig {
                public_key: member.key(),
                name: name.map(str::to_owned),
                allowed_ips,
                endpoint: None,
                persistent_keepalive: None,
                preshared_key: None,
            });
        }
        peers
    }
}

fn membership(config: &Config, community: &CommunityConfig) -> Result<Membership, AddressError> {
    let settings = settings(config, community);
    let profile = profile(config, community)?;
    // Numbered from the wall clock, so a restarted node's announcements are newer.
    let first_sequence = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(1);
    let mut membership = Membership::new(
        config.interface.private_key.clone(),
        settings,
        profile,
        first_sequence,
    )?;
    for peer in &config.peers {
        membership.reserve(peer.public_key, &[], "")?;
    }
    Ok(membership)
}

fn settings(config: &Config, community: &CommunityConfig) -> MembershipConfig {
    let mut settings = MembershipConfig::new(
        community.key.clone(),
        config.interface.derive_prefixes.clone(),
    );
    settings.allow = community.allow.clone();
    settings.deny = community.deny.clone();
    settings.announce_interval = community.announce_interval;
    settings.expire_after = community.expire_after;
    settings
}

/// What we announce: our name, derived addresses, routed networks and exit node offer.
fn profile(config: &Config, community: &CommunityConfig) -> Result<Profile, AddressError> {
    let own = config.interface.private_key.public_key();
    Ok(Profile {
        name: community.name.clone(),
        addresses: wice_core::addresses::derive_addresses(&own, &config.interface.derive_prefixes)?,
        networks: config.interface.routes.clone(),
        exit_node: config.routing.advertise_exit_node,
        ..Profile::default()
    })
}
