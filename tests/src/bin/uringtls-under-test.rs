//! The engine binary, for integration tests.

fn main() -> std::process::ExitCode {
    uringtls::cli::main()
}
