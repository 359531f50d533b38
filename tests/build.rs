//! Decides which end-to-end tests this machine can run, so that a test which cannot run here
//! is reported by `cargo test` as ignored (with its reason) instead of passing without having
//! tested anything. A build script has no side effects: it only reads facts (environment,
//! `/proc/self/status`, `PATH`); the real attempt is the test's own.
//!
//! `recap_tmpfs`: `a_full_disk_stops_scheduling_says_why_and_keeps_what_was_written` may mount
//! its small tmpfs: the target is Linux and the machine building it (tests run where they are
//! built), the build runs with `CAP_SYS_ADMIN` in its effective capabilities (as root usually
//! has; read from `CapEff` in `/proc/self/status`), and a `mount` binary is on `PATH`. A
//! seccomp filter or LSM that still vetoes the mount is not visible from here: the test then
//! fails loudly, naming `mount`'s error, rather than skipping. `RECAP_TEST_TMPFS=0` turns the
//! test off and `=1` on without looking. The decision is cached with the build; changing
//! `RECAP_TEST_TMPFS`, `PATH` or this file decides again.

use std::path::Path;

/// `CAP_SYS_ADMIN`'s bit in the capability sets (`linux/capability.h`).
const CAP_SYS_ADMIN: u32 = 21;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RECAP_TEST_TMPFS");
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rustc-check-cfg=cfg(recap_tmpfs)");
    let can = match std::env::var("RECAP_TEST_TMPFS").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => may_mount_tmpfs(),
    };
    if can {
        println!("cargo::rustc-cfg=recap_tmpfs");
    }
}

/// Whether the facts allow `mount -t tmpfs`; reads only, mounts nothing.
fn may_mount_tmpfs() -> bool {
    // Only where the tests will run on the machine that builds them.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("TARGET").ok() != std::env::var("HOST").ok()
    {
        return false;
    }
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    has_sys_admin(&status) && on_path("mount")
}

/// Whether the `CapEff:` line of a `/proc/<pid>/status` text holds `CAP_SYS_ADMIN`.
fn has_sys_admin(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_ADMIN) != 0)
}

/// Whether an executable file `name` is in a folder of `PATH`.
fn on_path(name: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(name)))
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}
