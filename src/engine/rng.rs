//! Deterministic random streams.
//!
//! Every random choice of a run derives from its one seed, but each purpose (init, data, shuffling,
//! dropout) draws from its own ChaCha stream, so that turning dropout on does not change the
//! initial weights, and adding a layer does not change the data.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// The engine's random number generator: portable and reproducible across platforms.
pub type Rng = ChaCha8Rng;

/// What a stream is used for; the discriminant is the ChaCha stream id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Parameter initialisation.
    Init = 1,
    /// Dataset generation.
    Data = 2,
    /// Train/validation split and per-epoch shuffling.
    Shuffle = 3,
    /// Dropout masks.
    Dropout = 4,
}

/// The generator for `stream` of the run seeded with `seed`.
pub fn rng(seed: u64, stream: Stream) -> Rng {
    let mut r = ChaCha8Rng::seed_from_u64(seed);
    r.set_stream(stream as u64);
    r
}
