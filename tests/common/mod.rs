//! Helpers shared by the end-to-end tests: where the shared data is, and
//! loud refusals when a test cannot run here.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// True when running under CI (which must run every test).
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Says loudly that a test cannot run; under CI that is a failure.
pub fn cannot_run(test: &str, why: &str) {
    let msg = format!("{test}: NOT RUN: {why}");
    if in_ci() {
        panic!("{msg} (CI must run every test)");
    }
    eprintln!("\n!!!!!!!! {msg} !!!!!!!!\n");
}

/// The shared data directory: `$EDGEFWD_DATA`, else `../shared/data` beside
/// the repository.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("EDGEFWD_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"),
    }
}

/// A file or directory under the data directory, or a loud refusal.
pub fn need_data(test: &str, rel: &str) -> Option<PathBuf> {
    let p = data_dir().join(rel);
    if p.exists() {
        Some(p)
    } else {
        cannot_run(
            test,
            &format!("{} not found (set EDGEFWD_DATA)", p.display()),
        );
        None
    }
}

/// True when running as root, else a loud refusal.
pub fn need_root(test: &str) -> bool {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !root {
        cannot_run(test, "needs root (network namespaces)");
    }
    root
}

/// True when `tool` runs, else a loud refusal.
pub fn need_tool(test: &str, tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool).arg(arg).output().is_ok();
    if !ok {
        cannot_run(test, &format!("{tool} is not installed"));
    }
    ok
}

/// A fresh directory for a test's outputs, removed on drop.
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("edgefwd-{tag}-"))
        .tempdir()
        .expect("temp dir")
}
