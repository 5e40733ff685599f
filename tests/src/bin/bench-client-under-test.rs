//! The bench-client binary, for integration tests.

fn main() -> std::process::ExitCode {
    bench_client::cli_main()
}
