fn main() -> std::process::ExitCode {
    bench_client::cli_main()
}
