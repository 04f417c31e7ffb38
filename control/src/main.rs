//! The `edgefwd` binary; see `edgefwd --help` and the README.
#![deny(unsafe_code)]

fn main() -> std::process::ExitCode {
    edgefwd_control::cli::main()
}
