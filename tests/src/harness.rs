//! Test helpers: locate the workspace's binaries, run `recap-sim` as a child process.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};

/// Path of a binary built by this workspace (`capture`, `recap-sim`, ...), found next to the
/// running test executable (`target/<profile>/deps/..`).
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("invariant: the test knows its own path");
    let mut dir = exe
        .parent()
        .expect("invariant: an executable lives in a folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// Starts a workspace binary in the background with its output discarded (for tests that
/// signal or kill it mid-run; the caller stops it by its PID and reaps it).
pub fn spawn_bin(name: &str, args: &[&str]) -> Child {
    Command::new(workspace_bin(name))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {name}: {e}"))
}

/// A running `recap-sim`, killed (by PID) and reaped when dropped.
pub struct SimProcess {
    child: Child,
    port: u16,
}

impl SimProcess {
    /// Starts `recap-sim --port 0 ARGS...` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Result<SimProcess> {
        let bin = workspace_bin("recap-sim");
        let mut child = Command::new(&bin)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("recap-sim stdout")?;
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .context("reading recap-sim's first line")?;
        let port = match line
            .trim()
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|p| p.parse().ok())
        {
            Some(p) => p,
            None => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("unexpected first line from recap-sim: {line:?}");
            }
        };
        Ok(SimProcess { child, port })
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
