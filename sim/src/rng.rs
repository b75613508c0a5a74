//! The simulator's randomness: one seeded ChaCha stream per purpose, so adding a draw in one
//! place does not change the others.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A seeded generator.
#[derive(Debug, Clone)]
pub struct SimRng(ChaCha8Rng);

impl SimRng {
    /// The generator for `purpose` under the simulation's `seed`.
    pub fn new(seed: u64, purpose: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(purpose);
        Self(rng)
    }

    /// True with probability `p` (0 never draws).
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.0.random_bool(p.min(1.0))
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(0..n)
    }

    /// 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0.random()
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        self.0.random()
    }
}

/// A rand_core 0.6 generator over a [`SimRng`], for the envelope sealer (crypto_box's nonces).
/// Deterministic by design: only the simulation uses it.
pub struct SealRng(pub SimRng);

impl rand_core_06::RngCore for SealRng {
    fn next_u32(&mut self) -> u32 {
        self.0.0.random()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.0.random()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.0.fill(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.0.0.fill(dest);
        Ok(())
    }
}

impl rand_core_06::CryptoRng for SealRng {}
