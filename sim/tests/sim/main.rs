//! The simulator's scenarios: one test binary, sentence names.

mod common;
mod lab_cases;
