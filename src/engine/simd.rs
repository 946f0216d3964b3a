//! CPU vector-width dispatch: the crate's only `unsafe` code, two small functions.
//!
//! The build targets x86-64-v3 (AVX2 + FMA, `.cargo/config.toml`), which every x86-64 server
//! CPU of the last decade has. Many also have AVX-512, which doubles the width of the engine's
//! hot elementwise loops (the recurrent gates, forward and backward: about a third of an LSTM
//! step). [`vectorised`] runs a closure compiled for AVX-512 when the CPU reports it at run
//! time, and as is otherwise. Both paths compute bit-identical results: the loops do the same
//! IEEE operations per element in the same order (no fused multiply-adds are formed, and the
//! reductions' lane structure is fixed in the source, not by the vector width).
//!
//! [`clear_upper_vector_state`]: faer's AVX-512 GEMM microkernels return with the upper halves
//! of the vector registers dirty (no `vzeroupper`). Code that runs next with the narrower
//! encodings then carries a false dependency on those bits: measured here, the LSTM gate loops
//! ran 2-3x slower after every product (an LSTM step went from 2.1 to 4.8 ms). `linalg::gemm`
//! issues the `vzeroupper` after each product.
//!
//! Depends on nothing but `std`.

/// Runs `f`, compiled with AVX-512 when the CPU has it. `f` must be `#[inline(always)]` (a
/// closure marked so, calling `#[inline(always)]` code) for its body to be compiled inside the
/// AVX-512 function; anything it calls that is not inlined runs as compiled.
#[inline(always)]
pub fn vectorised<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    if has_avx512() {
        #[allow(unsafe_code)]
        // SAFETY: `with_avx512` only requires the features `has_avx512` just detected.
        return unsafe { with_avx512(f) };
    }
    f()
}

#[cfg(target_arch = "x86_64")]
#[inline]
fn has_avx512() -> bool {
    // Cached by std after the first call (an atomic load).
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
        && std::arch::is_x86_feature_detected!("avx512bw")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512bw,avx512dq")]
fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// `vzeroupper`, when the CPU has AVX (see the module doc); nothing elsewhere.
#[cfg(target_arch = "x86_64")]
#[inline]
pub fn clear_upper_vector_state() {
    if std::arch::is_x86_feature_detected!("avx") {
        #[allow(unsafe_code)]
        // SAFETY: the intrinsic needs AVX, which was just detected. It zeroes bits 128 and up of
        // vector registers 0-15; the compiler models it as overwriting those registers, so it
        // keeps no value in them across it (LLVM emits the same instruction itself when leaving
        // AVX code).
        unsafe {
            std::arch::x86_64::_mm256_zeroupper()
        }
    }
}

/// Nothing to clear off x86-64.
#[cfg(not(target_arch = "x86_64"))]
#[inline]
pub fn clear_upper_vector_state() {}

#[cfg(test)]
mod tests {
    use super::vectorised;

    /// The dispatched closure computes what the plain one does, bit for bit (see the module doc).
    #[test]
    fn vectorised_matches_the_plain_loop_bit_for_bit() {
        let x: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.37).sin() * 9.0).collect();
        #[inline(always)]
        fn work(x: &[f32]) -> Vec<f32> {
            x.iter().map(|&v| crate::engine::scalar::exp_f32(-v.abs()) / (1.0 + v * v)).collect()
        }
        let plain = work(&x);
        let fast = vectorised(
            #[inline(always)]
            || work(&x),
        );
        assert!(plain.iter().zip(&fast).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
