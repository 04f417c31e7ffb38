//! A hint to the CPU to start loading a cache line now.
//!
//! Burst processing looks up many independent entries of tables far larger
//! than the cache. Issued one lookup at a time, each load waits for memory
//! in turn; prefetching every entry of the burst first puts all the misses
//! in flight together (VPP's "dual/quad loop" and DPDK's
//! `rte_prefetch0`). The standard library has no stable prefetch, so this
//! is the crate's one `unsafe` outside the port drivers.
#![allow(unsafe_code)]

/// Starts loading the cache line holding `x` into every cache level. A
/// hint only: it never faults, reads nothing back, and does nothing on
/// targets without an instruction for it.
#[inline(always)]
pub fn prefetch<T>(x: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 takes any address, never faults and changes no
    // architectural state; SSE, which has it, is part of x86_64. `x` is a
    // live reference, so the address is valid anyway.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>((x as *const T).cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}
