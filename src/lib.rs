pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod signaling;
pub mod status;
pub mod system;
