//! Which build of the kernels runs: the widest instruction set the CPU reports at run time.
//!
//! This module holds the only `unsafe` code in ponder: each `#[target_feature]` function is
//! safe to run only on a CPU with those features, so calling it is `unsafe`, and each call is
//! guarded by the run-time detection in [`Isa::best`]. A caller can ask for a narrower build
//! (to compare them), never a wider one than the CPU has.
#![allow(unsafe_code)]

use std::sync::OnceLock;

use crate::kernel;
use crate::matrix::{Prepared, QMatrix};

/// An instruction-set level the kernels are built for, narrowest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Isa {
    /// The target's baseline (SSE2 on x86-64, NEON on aarch64).
    Baseline,
    /// x86-64 AVX2 with FMA: 8-lane vectors (AVX-512 CPUs run this build too).
    Avx2,
}

impl Isa {
    /// The widest level this CPU supports (detected once per process).
    pub fn best() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(detect)
    }

    /// The level's name, as `ponder bench` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
        }
    }
}

#[cfg(all(target_arch = "x86_64", not(miri)))]
fn detect() -> Isa {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Isa::Avx2
    } else {
        Isa::Baseline
    }
}

#[cfg(not(all(target_arch = "x86_64", not(miri))))]
fn detect() -> Isa {
    Isa::Baseline
}

/// Whether `mul_add` is one instruction in the baseline build (aarch64 always has FMA).
const BASELINE_FMA: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));

/// Rows `r0..` of `W · xᵀ` into `out` with the build for `isa`, capped at [`Isa::best`].
pub(crate) fn rows(isa: Isa, m: &QMatrix, r0: usize, prep: &Prepared<'_>, out: &mut [f32]) {
    match isa.min(Isa::best()) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: the level is capped at `Isa::best()`, which is `Avx2` only when the CPU
            // reported avx2 and fma at run time.
            unsafe { crate::avx2::rows(m, r0, prep, out) }
        }
        _ => kernel::rows::<BASELINE_FMA>(m, r0, prep.x, prep.n, out),
    }
}

/// [`crate::attention::attend`] with the build for `isa`, capped at [`Isa::best`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    isa: Isa,
    q: &[f32],
    segments: &[crate::attention::Segment<'_>],
    stride: usize,
    offset: usize,
    len: usize,
    out: &mut [f32],
    scores: &mut Vec<f32>,
) {
    match isa.min(Isa::best()) {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => {
            // SAFETY: capped at `Isa::best()`, which is `Avx2` only when the CPU reported avx2
            // and fma at run time.
            unsafe { crate::avx2::attend(q, segments, stride, offset, len, out, scores) }
        }
        _ => crate::attention::attend_with(
            |a, b| a.iter().zip(b).map(|(x, y)| x * y).sum(),
            |a, x, y| y.iter_mut().zip(x).for_each(|(y, x)| *y += a * x),
            q,
            segments,
            stride,
            offset,
            len,
            out,
            scores,
        ),
    }
}
