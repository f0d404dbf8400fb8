fn main() {
    few_malloc_arenas();
    std::process::exit(herald::cli::main());
}

/// glibc gives each thread that allocates an arena of its own (up to 8 per
/// core), and keeps what is freed in each: a send builds messages on every
/// core and on tokio's blocking pool, so a 100,000-recipient run held 35 MB
/// and a dry run 66 MB of freed arenas while less than 10 MB was in use
/// (heaptrack). One arena, trimmed past 128 KB, keeps the process's memory
/// what it uses (measured by scripts/bench-memory.sh); the threads share
/// it at no measurable cost, as they spend their time in building and
/// signing, not in malloc. Set before any thread starts.
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
