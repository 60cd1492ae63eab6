// mimalloc: mapping allocates many small values; the system allocator spent a fifth of
// the run in malloc/free (perf, bench/run.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    sluice::cli::main()
}
