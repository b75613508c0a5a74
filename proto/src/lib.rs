//! wice wire messages. Empty until the signaling layer lands.
