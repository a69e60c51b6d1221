//! Process-wide settings for a long computation in this process: the `asc` binary applies them
//! at start, and so do the benchmarks that time it. A program embedding the library decides for
//! itself (these change how the whole process allocates).

/// Keeps freed memory in the process instead of handing it back to the kernel, with glibc's
/// allocator.
///
/// Why: a training step allocates and frees the same large activation tensors (56 MB for one
/// 16-channel layer of a batch of 32 × 128 × 216) on every step. glibc serves every allocation
/// over 32 MB (its largest mmap threshold) with a fresh `mmap` and returns it with `munmap` when
/// freed, so every step page-faults and zero-fills all of its activations again: 20 % of a
/// training epoch in `perf` (page faults, the kernel's page clearing and accounting). With mmap
/// off and no trimming, freed blocks are reused; on the development set that made `asc train`
/// about 1.45× faster (docs/benchmarks.md). The cost: memory freed after the peak is not
/// returned to the system until the process ends, which for a training or inference run is
/// when it would stop being used anyway.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; it is called before any thread starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        // -1 is "never trim" (mallopt(3)); i32::MAX still trimmed a top chunk over 2 GiB, which
        // UBN's training steps reach (the heap then shrank and re-faulted every step).
        libc::mallopt(libc::M_TRIM_THRESHOLD, -1);
    }
}
