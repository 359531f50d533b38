//! Probes what this machine lets the end-to-end tests do, so that a test which cannot run here
//! is reported by `cargo test` as ignored (with its reason) instead of passing without having
//! tested anything.
//!
//! `recap_tmpfs`: a tmpfs can be mounted with `mount -t tmpfs` (root with `CAP_SYS_ADMIN` in
//! this mount namespace, a `mount` binary, no seccomp or LSM veto), exactly as
//! `a_full_disk_stops_scheduling_says_why_and_keeps_what_was_written` mounts its small disk.
//! The probe is that mount itself, once, of a 64 KiB tmpfs on a folder under `OUT_DIR`,
//! unmounted right away (a few milliseconds). `RECAP_TEST_TMPFS=0` turns the test off and
//! `=1` on without probing; changing it (or this file) probes again. The result is cached with
//! the build, so a test compiled "can mount" that then cannot fails loudly rather than skips.

use std::path::PathBuf;
use std::process::{Command, Stdio};

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=RECAP_TEST_TMPFS");
    println!("cargo::rustc-check-cfg=cfg(recap_tmpfs)");
    let can = match std::env::var("RECAP_TEST_TMPFS").as_deref() {
        Ok("0") => false,
        Ok("1") => true,
        _ => probe_tmpfs(),
    };
    if can {
        println!("cargo::rustc-cfg=recap_tmpfs");
    }
}

fn probe_tmpfs() -> bool {
    // Only where the tests will run on the machine that builds them.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux")
        || std::env::var("TARGET").ok() != std::env::var("HOST").ok()
    {
        return false;
    }
    let Some(out) = std::env::var_os("OUT_DIR") else {
        return false;
    };
    let dir = PathBuf::from(out).join("tmpfs-probe");
    if std::fs::create_dir_all(&dir).is_err() {
        return false;
    }
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if mounted {
        let unmounted = Command::new("umount")
            .arg(&dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !unmounted {
            println!(
                "cargo::warning=the tmpfs probe could not unmount {}; unmount it by hand",
                dir.display()
            );
        }
    }
    let _ = std::fs::remove_dir(&dir);
    mounted
}
