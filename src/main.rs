fn main() {
    few_malloc_arenas();
    std::process::exit(herald::cli::main());
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per
/// core), and keeps what is freed in each: a send builds messages on every
/// core and on tokio's blocking pool, so a 100,000-recipient send peaked at
/// 35 MB and a dry run at 72 MB while less than 10 MB was in use (heaptrack
/// against /proc's smaps: the rest was arenas of freed memory). One arena,
/// trimmed past 128 KB, keeps the process near what it uses (see
/// scripts/bench-memory.sh); the threads spend their time building and
/// signing, not in malloc, so sharing it costs them little. Set before any
/// thread starts.
fn few_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets malloc's tuning parameters; it is called
    // before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
        // Fixed rather than glibc's sliding thresholds, which grow with
        // the largest block freed and then keep that much in every arena.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
    }
}
