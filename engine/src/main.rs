//! The `uringtls` binary; see [`uringtls::cli`].

fn main() -> std::process::ExitCode {
    uringtls::cli::main()
}
