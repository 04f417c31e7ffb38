//! A hint to the CPU to start loading a cache line now.
//!
//! Burst processing looks up many independent entries of tables far larger
//! than the cache. Issued one lookup at a time, each load waits for memory
//! in turn; prefetching every entry of the burst first puts all the misses
//! in flight together (VPP's "dual/quad loop" and DPDK's
//! `rte_prefetch0`). The standard library has no stable prefetch, so this
//! is edgefwd's one `unsafe` outside the port drivers, in a crate of its
//! own so that the forwarding core can forbid `unsafe` outright.
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

/// [`prefetch`] of where element `i` of `s` is, without a bounds check: an
/// index past the end prefetches some other address, which is harmless. For
/// walks that pick one of two tables without a branch.
#[inline(always)]
pub fn prefetch_index<T>(s: &[T], i: usize) -> *const u8 {
    s.as_ptr().wrapping_add(i).cast()
}

/// Starts loading the cache line at `p` (from [`prefetch_index`]); any
/// address will do, as for [`prefetch`].
#[inline(always)]
pub fn prefetch_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 takes any address, never faults and changes no
    // architectural state; SSE, which has it, is part of x86_64.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Starts loading the cache line at `p` for writing (PREFETCHW: the line
/// comes exclusive, so a store to it need not ask the other cores again);
/// any address will do, as for [`prefetch`].
#[inline(always)]
pub fn prefetch_write_addr(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHW, like PREFETCHT0, takes any address, never faults
    // and changes no architectural state; where the CPU lacks it, it is a
    // NOP.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_ET0};
        _mm_prefetch::<_MM_HINT_ET0>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}
