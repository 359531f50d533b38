//! Test helpers: locate the workspace's binaries (refusing stale ones), run `recap-sim` as a
//! child process, and wait for observable readiness instead of sleeping.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How long a test waits for something it expects to become observable (a segment, a log
/// line) before it fails saying what it waited for.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace crate folders whose sources build binary `name`: its own crate and, read
/// from the manifests, the workspace crates it depends on (`[dependencies]` and
/// `[build-dependencies]`, transitively; dev-dependencies do not go into a binary).
fn crate_dirs_of(ws: &Path, name: &str) -> Vec<String> {
    let own = match name {
        "capture" | "analyze" | "plot" => name,
        _ => "tests",
    };
    // `recap-x = { path = "x" }` in the workspace manifest.
    let root = std::fs::read_to_string(ws.join("Cargo.toml")).unwrap_or_default();
    let paths: Vec<(String, String)> = root
        .lines()
        .filter_map(|l| {
            let (dep, rest) = l.split_once('=')?;
            let dir = rest.split_once("path")?.1.split('"').nth(1)?;
            Some((dep.trim().to_string(), dir.to_string()))
        })
        .collect();
    let mut dirs = vec![own.to_string()];
    let mut i = 0;
    while i < dirs.len() {
        let manifest = std::fs::read_to_string(ws.join(&dirs[i]).join("Cargo.toml")).unwrap_or_default();
        let mut linked = false;
        for line in manifest.lines().map(str::trim) {
            if line.starts_with('[') {
                linked = line == "[dependencies]" || line == "[build-dependencies]";
                continue;
            }
            let dep = line.split(['=', '.', ' ']).next().unwrap_or("");
            if let Some((_, dir)) = paths.iter().find(|(n, _)| linked && n == dep) {
                if !dirs.contains(dir) {
                    dirs.push(dir.clone());
                }
            }
        }
        i += 1;
    }
    dirs
}

/// Path of a binary built by this workspace (`capture`, `recap-sim`, ...), found next to the
/// running test executable (`target/<profile>/deps/..`).
///
/// Panics, naming the command that fixes it, when the binary is missing or older than a source
/// it is built from: a test must never pass or fail against an old build. A plain `cargo test
/// --workspace` builds every workspace binary before it runs a test, but `cargo test
/// --workspace --test capture` and `cargo test -p recap-tests` build only `recap-sim`, so
/// `capture`, `analyze` and `plot` can be left over from an older build. (Building them from here is not an option: cargo holds the target
/// folder's lock while the tests run.) Checked once per binary per test process.
pub fn workspace_bin(name: &str) -> PathBuf {
    static CHECKED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("invariant: the test knows its own path");
    let mut dir = exe
        .parent()
        .expect("invariant: an executable lives in a folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let mut checked = CHECKED.lock().unwrap_or_else(|p| p.into_inner());
    if !checked.iter().any(|n| n == name) {
        if let Err(why) = check_fresh(name, &bin, &dir.join(format!("{name}.d"))) {
            panic!(
                "{why}: run `cargo build --workspace` first (a plain `cargo test --workspace` \
                 builds every workspace binary before testing; `cargo test --workspace --test \
                 NAME` and `cargo test -p recap-tests` build only `recap-sim`)"
            );
        }
        checked.push(name.to_string());
    }
    bin
}

/// `Err(why)` when `bin` is missing or older than one of its sources. The sources are those
/// cargo recorded for the binary in its dep-info file `target/<profile>/NAME.d` (written by
/// `cargo build`: exactly the files cargo's own freshness check uses, other workspace crates
/// and `include_bytes!` files included); without that file, every file under `src/` of the
/// binary's crate and of the workspace crates it depends on, and their `Cargo.toml`.
fn check_fresh(name: &str, bin: &Path, dep_info: &Path) -> std::result::Result<(), String> {
    let built = std::fs::metadata(bin)
        .and_then(|m| m.modified())
        .map_err(|e| format!("{} is not built ({e})", bin.display()))?;
    let sources = match std::fs::read_to_string(dep_info) {
        Ok(text) => dep_info_sources(&text),
        Err(_) => {
            let ws = Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("invariant: the tests crate lives in the workspace");
            let mut files = Vec::new();
            for krate in crate_dirs_of(ws, name) {
                files.push(ws.join(&krate).join("Cargo.toml"));
                collect_files(&ws.join(krate).join("src"), &mut files);
            }
            files
        }
    };
    for src in sources {
        // A file that is gone is skipped: removing a module edits the file that declared it.
        let Ok(changed) = std::fs::metadata(&src).and_then(|m| m.modified()) else {
            continue;
        };
        if changed > built {
            return Err(format!(
                "{} is stale: {} changed after it was built",
                bin.display(),
                src.display()
            ));
        }
    }
    Ok(())
}

/// The prerequisites listed in a Makefile-style dep-info file (`target: a.rs b\ c.rs`).
fn dep_info_sources(text: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        // Paths may hold `: ` only escaped; the first unescaped `: ` ends the target.
        let Some(pos) = line.find(": ") else { continue };
        let mut cur = String::new();
        let mut chars = line[pos + 2..].chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ' ' => {
                    if !cur.is_empty() {
                        out.push(PathBuf::from(std::mem::take(&mut cur)));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            out.push(PathBuf::from(cur));
        }
    }
    out
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

/// Polls `probe` every 10 ms until it returns `Some`, and returns that; panics after `timeout`
/// saying what it waited for. Polling is waiting for readiness: nothing here assumes that
/// some amount of time is enough for something to happen.
pub fn wait_until<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            started.elapsed() < timeout,
            "gave up after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// [`wait_until`] for a condition produced by `child`, failing at once (with its exit status)
/// if the child exits before the condition holds.
pub fn wait_for_child<T>(child: &mut Child, what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    wait_until(what, READY_TIMEOUT, || {
        if let Some(v) = probe() {
            return Some(v);
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the process exited ({status}) before {what}");
        }
        None
    })
}

/// Closed (`*.parquet`, not `.partial`) segment files of `table` (`"events"`, `"requests"`) in a
/// run folder, sorted; empty while the folder does not exist yet.
pub fn closed_segments(run_dir: &Path, table: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(run_dir.join(table))
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    recap_schemas::sort_segments(&mut v);
    v
}

/// Complete lines (ending in `\n`) in a file, 0 while it does not exist: `recap-sim --log`
/// appends one line per response it finished (or faulted).
pub fn complete_lines(path: &Path) -> usize {
    std::fs::read(path).map_or(0, |b| b.iter().filter(|c| **c == b'\n').count())
}

/// Whether process `pid` has a handler installed for signal `signo` (Linux: the `SigCgt` mask
/// in `/proc/PID/status`). The exact readiness signal for "sending this signal now exercises
/// the program's handling of it, not the default action".
pub fn catches_signal(pid: u32, signo: u32) -> bool {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_some_and(|mask| signo >= 1 && mask & (1 << (signo - 1)) != 0)
}

/// Whether `text` mentions `flag` as a whole word (`--force`, `--force=..`, `(--force)`,
/// `` `--force` ``), not as the start of a longer flag (`--force-x`).
pub fn mentions_flag(text: &str, flag: &str) -> bool {
    text.split(|c: char| c.is_whitespace() || c == ',')
        .map(|t| t.trim_matches(|c: char| "'\"`()[].;:".contains(c)))
        .any(|t| t.split(['=', '<', '[']).next() == Some(flag))
}

/// The flags `--help` defines: on each line that starts with `-` (clap's `  -q, --quiet` and
/// `      --rate <RATE>`), the leading `-x`/`--name` tokens, cut at `=`, `<` or `[`. Whole
/// flags only: `--rate` is not found in `--rate-limit`, nor in a description that mentions it.
pub fn defined_flags(help: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for line in help.lines().map(str::trim_start).filter(|l| l.starts_with('-')) {
        for token in line.split_whitespace().map(|t| t.trim_end_matches(',')) {
            if !token.starts_with('-') {
                break;
            }
            let flag = token.split(['=', '<', '[']).next().unwrap_or("");
            // `-x` or `--name`; not the `- value:` bullets of "Possible values".
            if flag
                .trim_start_matches('-')
                .starts_with(|c: char| c.is_ascii_alphanumeric())
            {
                out.insert(flag.to_string());
            }
        }
    }
    out
}
/// Runs a workspace binary to its end and returns what it printed and its exit status.
pub fn run_bin<S: AsRef<std::ffi::OsStr>>(name: &str, args: &[S]) -> std::process::Output {
    Command::new(workspace_bin(name))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {name}: {e}"))
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

/// Which points are on the Pareto front when both coordinates are better higher (negate a
/// coordinate that is better lower): a test's own skyline sweep, written apart from
/// `recap_stats::pareto` (which compares every pair). Sorted by x descending, a point is on
/// the front when its y is the highest among the points of its x and higher than every y seen
/// at a larger x; equal points are all on it. Non-finite points never are.
pub fn pareto_skyline(points: &[(f64, f64)]) -> Vec<bool> {
    let mut order: Vec<usize> = (0..points.len())
        .filter(|&i| points[i].0.is_finite() && points[i].1.is_finite())
        .collect();
    order.sort_by(|&a, &b| points[b].0.total_cmp(&points[a].0));
    let mut on = vec![false; points.len()];
    let mut best = f64::NEG_INFINITY;
    let mut k = 0;
    while k < order.len() {
        let x = points[order[k]].0;
        let same: Vec<usize> = order[k..].iter().copied().take_while(|&i| points[i].0 == x).collect();
        let top = same.iter().map(|&i| points[i].1).fold(f64::NEG_INFINITY, f64::max);
        if top > best {
            for &i in &same {
                on[i] = points[i].1 == top;
            }
            best = top;
        }
        k += same.len();
    }
    on
}

/// The lines of a file, sorted: what two logs written in arrival order are compared by.
pub fn sorted_lines(path: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn dep_info_lists_every_prerequisite_with_escaped_spaces() {
        let text =
            "/t/debug/capture: /w/capture/src/main.rs /w/my\\ dir/a.rs\n\n/w/capture/src/main.rs:\n# env-dep:X=1\n";
        assert_eq!(
            dep_info_sources(text),
            [PathBuf::from("/w/capture/src/main.rs"), PathBuf::from("/w/my dir/a.rs")]
        );
    }

    #[test]
    fn a_binary_older_than_a_source_or_missing_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let (bin, src, dep) = (
            dir.path().join("bin"),
            dir.path().join("a.rs"),
            dir.path().join("bin.d"),
        );
        std::fs::write(&src, "").expect("src");
        std::fs::write(&dep, format!("{}: {}\n", bin.display(), src.display())).expect("dep-info");
        assert!(check_fresh("capture", &bin, &dep).is_err_and(|e| e.contains("not built")));
        std::fs::write(&bin, "").expect("bin");
        let t = SystemTime::now();
        let set = |p: &Path, t: SystemTime| {
            std::fs::File::options()
                .write(true)
                .open(p)
                .and_then(|f| f.set_modified(t))
                .expect("set mtime")
        };
        set(&src, t - Duration::from_secs(10));
        set(&bin, t - Duration::from_secs(5));
        assert_eq!(check_fresh("capture", &bin, &dep), Ok(()));
        set(&src, t);
        let err = check_fresh("capture", &bin, &dep).expect_err("stale");
        assert!(err.contains("stale") && err.contains("a.rs"), "{err}");
    }

    #[test]
    fn a_flag_is_mentioned_only_as_a_whole_word() {
        assert!(mentions_flag("run exists; use `--force` to replace it", "--force"));
        assert!(mentions_flag("(--force=yes)", "--force"));
        assert!(!mentions_flag("use --force-all", "--force"));
        assert!(!mentions_flag("no-force", "--force"));
    }

    #[test]
    fn the_fallback_walks_each_binarys_crate_and_its_workspace_dependencies() {
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace");
        let sim = crate_dirs_of(ws, "recap-sim");
        assert_eq!(sim.first().map(String::as_str), Some("tests"));
        assert!(sim.iter().any(|d| d == "schemas"), "{sim:?}");
        for bin in ["capture", "analyze", "plot"] {
            let dirs = crate_dirs_of(ws, bin);
            assert_eq!(dirs.first().map(String::as_str), Some(bin));
            assert!(dirs.iter().any(|d| d == "schemas"), "{bin}: {dirs:?}");
            assert!(dirs.iter().all(|d| ws.join(d).join("Cargo.toml").is_file()), "{dirs:?}");
        }
    }

    #[test]
    fn the_skyline_marks_hand_derived_fronts() {
        let p = [
            (1.0, 10.0),
            (5.0, 5.0),
            (3.0, 3.0),
            (10.0, 1.0),
            (5.0, 4.0),
            (10.0, 1.0),
            (f64::NAN, 99.0),
        ];
        assert_eq!(pareto_skyline(&p), [true, true, false, true, false, true, false]);
        assert_eq!(pareto_skyline(&[(2.0, 2.0), (1.0, 2.0)]), [true, false]);
        assert!(pareto_skyline(&[]).is_empty());
    }
}
