//! Process-wide allocator settings, applied once at startup before the runtime starts threads.
//!
//! glibc's malloc gives every thread that contends an arena of its own (up to 8 per core) and
//! keeps freed memory in them; it also raises its mmap threshold after a large block is freed,
//! so the next large block (argon2 uses 19 MiB per password hash) stays in an arena for good.
//! Measured with a 100,000-machine fleet, both together added tens of MiB of resident memory
//! that held nothing.

/// Arenas for the whole process: the async workers and the blocking pool share two.
const ARENAS: i32 = 2;
/// Blocks from this size up are mapped and unmapped on their own (a fixed threshold also stops
/// glibc from raising it).
const MMAP_THRESHOLD_BYTES: i32 = 1 << 20;

pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; it is called before other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, ARENAS);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES);
    }
}
