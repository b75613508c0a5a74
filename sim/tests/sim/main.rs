//! The simulator's scenarios: one test binary, sentence names.

mod common;
mod figures;
mod lab_cases;
mod long_runs;
mod mesh;
mod offer_model;
mod seeds;
mod turn_loss;
