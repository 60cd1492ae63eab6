// mimalloc: mapping allocates many small values; the system allocator spent a fifth of
// the run in malloc/free (perf, bench/run.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Freed memory goes back to the system at once, not after a delay: a huge page or
    // record that was just read must not still count while the next step allocates
    // (peak memory is the caps, not the caps twice). Option numbers: mimalloc 2's
    // `mi_option_e` (`purge_delay` 15, `arena_eager_commit` 4).
    // SAFETY: setting options before other threads exist, as mimalloc documents.
    unsafe {
        libmimalloc_sys::mi_option_set(15, 0);
        libmimalloc_sys::mi_option_set(4, 0);
    }
    sluice::cli::main()
}
