//! The shipped systemd unit (`control/dist/edgefwd.service`) is one
//! systemd itself accepts: `systemd-analyze verify` with the unit's
//! `/usr/bin/edgefwd` pointed at the binary just built, and no warning.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_edgefwd");

#[test]
fn the_unit_file_passes_systemd_analyze_verify() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/dist/edgefwd.service"))
            .unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/edgefwd run"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgefwd.service");
    std::fs::write(&path, unit.replace("/usr/bin/edgefwd", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", path.to_str().unwrap()])
        .output()
        .expect("systemd-analyze (Debian's systemd package) is needed: .ci/run installs it");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "systemd-analyze verify failed: {stderr}"
    );
    // A directive systemd does not understand is only a warning.
    let own: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("edgefwd.service"))
        .collect();
    assert!(own.is_empty(), "systemd-analyze verify warned: {own:?}");
}
