// mimalloc: mapping allocates many small values; the system allocator spent a fifth of
// the run in malloc/free (perf, bench/run.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

// mimalloc 3's `mi_option_e` numbers (libmimalloc-sys exports only some of them); the
// test below checks each against the option's documented default.
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;
const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() -> std::process::ExitCode {
    // Peak memory is the caps, not the caps twice: freed memory goes back to the
    // system at once, not after a delay (a huge page or record that was just read must
    // not still count while the next step allocates), and memory is not handed out in
    // transparent huge pages, which made a 256 MiB body take 40 MB more (mimalloc's
    // own `allow_thp` is read before `main`, when its arena is already asked for them).
    // SAFETY: setting options before other threads exist, as mimalloc documents; the
    // prctl takes plain integers and changes only how this process's memory is paged.
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, 0);
        libmimalloc_sys::mi_option_set(ARENA_EAGER_COMMIT, 0);
        #[cfg(target_os = "linux")]
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
    sluice::cli::main()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_numbers_are_mimallocs() {
        // SAFETY: reading options is safe at any time.
        let get = |option| unsafe { libmimalloc_sys::mi_option_get(option) };
        assert_eq!(get(ARENA_EAGER_COMMIT), 2);
        assert_eq!(get(PURGE_DELAY), 1000);
    }
}
