//! Runtime choice of the instruction set for the numerical hot loops (the Runge–Kutta stepper and the
//! metapopulation right-hand side).
//!
//! The crate is built for the portable x86-64 baseline (SSE2: two f64 per vector), but the loops that dominate a
//! solve (stage combinations, error norm, dense output, the coupling's dot products) run about 25 % faster when
//! compiled for AVX2 (four per vector), which almost every x86-64 CPU since 2013 has. [`with_avx2`] runs a closure
//! compiled a second time with the x86-64-v3 features (AVX2, FMA, …) when the CPU reports them at run time, and as
//! built otherwise. The selection is done by `pulp` (already in the workspace), so this crate needs no `unsafe`.
//!
//! The two builds give the same results bit for bit: Rust never fuses a multiply and an add into an FMA on its own
//! (no fast-math), and vectorising keeps every floating-point operation and its order; only the width of the
//! registers changes. `tests` check it on whole solves.

/// Runs `f` compiled for x86-64-v3 (AVX2) when `enabled` and the CPU has those features, else as built. For the
/// wider instructions to be used, everything `f` does in its hot loop must be inlined into it (`#[inline(always)]`
/// on the functions it calls for that); a call that is not inlined runs its baseline code.
#[inline(always)]
pub(crate) fn with_avx2<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    if enabled {
        if let Some(simd) = pulp::x86::V3::try_new() {
            return simd.vectorize(f);
        }
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    let _ = enabled;
    f()
}

/// Whether [`with_avx2`] uses the AVX2 build on this CPU (when enabled).
pub fn avx2_available() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        pulp::x86::V3::try_new().is_some()
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}
