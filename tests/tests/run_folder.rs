//! The run folder is complete and honest: every request has its rows whatever stopped it,
//! back-pressure and oversized events are visible, `--force` never destroys a run before the
//! new one is known to be valid, connection reuse is what the run says, and no secret reaches
//! a file or a log, whatever the flag order.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use recap_schemas::{ErrorKind, EventKind};
use recap_tests::harness::{workspace_bin, SimProcess};
use recap_tests::runs::{read_run, Run};

fn capture(args: &[&str]) -> Output {
    Command::new(workspace_bin("capture"))
        .args(args)
        .env("RUST_LOG", "debug")
        .output()
        .expect("run capture")
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "capture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn kinds(run: &Run, kind: EventKind) -> usize {
    run.events.values().flatten().filter(|e| e.kind == kind).count()
}

/// Every request has one `requests` row and one terminal event.
fn assert_complete(run: &Run, n: usize) {
    assert_eq!(run.requests.len(), n, "requests rows");
    for id in run.requests.keys() {
        assert_eq!(run.terminals(*id).len(), 1, "request {id}: {:?}", run.events.get(id));
    }
    assert_eq!(run.events.len(), n, "every request with events has a requests row");
}

/// A TCP server that accepts connections and never answers: connect succeeds, a TLS
/// handshake or a response never comes. Counts accepted connections.
fn silent_server() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in listener.incoming() {
            let Ok(s) = s else { return };
            held.push(s);
            count.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, accepted)
}

#[test]
fn a_timeout_during_the_tls_handshake_leaves_request_rows_and_connect_events() {
    let (port, _) = silent_server();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let url = format!("https://127.0.0.1:{port}");
    let res = capture(&[
        "--url",
        &url,
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "3",
        "--concurrency",
        "3",
        "--timeout",
        "300ms",
        "--quiet",
    ]);
    // Every request timed out: recorded, and exit 1 (nothing was measured).
    assert_eq!(res.status.code(), Some(1), "{}", String::from_utf8_lossy(&res.stderr));
    let run = read_run(&out).expect("read run");
    assert_complete(&run, 3);
    for id in run.requests.keys() {
        let t = run.terminals(*id)[0];
        assert_eq!(t.error_kind, Some(ErrorKind::Timeout), "{t:?}");
        assert!(t
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("request not sent")));
        let ks: Vec<EventKind> = run.events[id].iter().map(|e| e.kind).collect();
        assert!(ks.contains(&EventKind::Connect) && ks.contains(&EventKind::Connected));
        assert!(!ks.contains(&EventKind::TlsDone) && !ks.contains(&EventKind::Sent));
        assert_eq!(run.requests[id].connection_id, None, "no connection answered");
    }
    let counts = run.manifest.counts.as_ref().expect("counts");
    assert_eq!((counts.requests, counts.connections), (3, 3));
}

#[test]
fn ctrl_c_during_connect_leaves_a_request_row_for_every_request() {
    let (port, accepted) = silent_server();
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let url = format!("https://127.0.0.1:{port}");
    let mut child = Command::new(workspace_bin("capture"))
        .args([
            "--url",
            &url,
            "--out",
            out.to_str().expect("utf8"),
            "--requests",
            "4",
            "--concurrency",
            "4",
            "--grace",
            "100ms",
            "--quiet",
        ])
        .spawn()
        .expect("spawn capture");
    // Ready when all four TLS handshakes are hanging on the server.
    let t0 = std::time::Instant::now();
    while accepted.load(Ordering::SeqCst) < 4 {
        assert!(t0.elapsed().as_secs() < 60, "capture never connected");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let pid = child.id().to_string();
    let kill = Command::new("kill").args(["-INT", &pid]).status().expect("kill");
    assert!(kill.success());
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(130));
    let run = read_run(&out).expect("read run");
    assert_complete(&run, 4);
    for id in run.requests.keys() {
        assert_eq!(run.terminals(*id)[0].kind, EventKind::Cancelled);
    }
}

#[test]
fn back_pressure_is_measured_and_reported() {
    let sim = SimProcess::start(&["--prerender"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    // A one-row buffer and a segment per row: the writer cannot keep up.
    let res = capture(&[
        "--url",
        &sim.url(),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "40",
        "--concurrency",
        "8",
        "--max-tokens",
        "20",
        "--record-buffer-rows",
        "1",
        "--segment-rows",
        "1",
    ]);
    ok(&res);
    let run = read_run(&out).expect("read run");
    assert_complete(&run, 40);
    let counts = run.manifest.counts.as_ref().expect("counts");
    assert!(counts.recorder_waits > 0 && counts.recorder_wait_ns > 0, "{counts:?}");
    // The human summary (stdout) has its own line; the warning is a log line (stderr).
    let stdout = String::from_utf8_lossy(&res.stdout);
    assert!(stdout.contains("backpressure"), "{stdout}");
    let stderr = String::from_utf8_lossy(&res.stderr);
    assert!(stderr.contains("recorder fell behind"), "{stderr}");
}

#[test]
fn an_oversized_event_is_a_protocol_row_and_the_stream_goes_on() {
    let sim = SimProcess::start(&["--huge-event-bytes", "100000"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    ok(&capture(&[
        "--url",
        &sim.url(),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "4",
        "--max-tokens",
        "5",
        "--max-event-bytes",
        "4096",
        "--quiet",
    ]));
    let run = read_run(&out).expect("read run");
    assert_complete(&run, 4);
    for id in run.requests.keys() {
        assert_eq!(run.terminals(*id)[0].kind, EventKind::Done);
        let big: Vec<_> = run
            .sse(*id)
            .into_iter()
            .filter(|e| e.error_kind == Some(ErrorKind::Protocol))
            .collect();
        assert_eq!(big.len(), 1, "request {id}");
        assert!(big[0].bytes.is_some_and(|b| b > 100_000), "{:?}", big[0]);
        assert!(big[0]
            .error_message
            .as_deref()
            .is_some_and(|m| m.contains("--max-event-bytes")));
        assert!(big[0].content.is_none());
        // The events after it are all there: five content tokens.
        let tokens = run
            .sse(*id)
            .iter()
            .filter(|e| e.content.as_deref().is_some_and(|c| !c.is_empty()))
            .count();
        assert_eq!(tokens, 5, "request {id}");
    }
}

#[test]
fn force_keeps_the_previous_run_when_the_new_one_is_invalid() {
    let sim = SimProcess::start(&[]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let out_s = out.to_str().expect("utf8");
    ok(&capture(&[
        "--url",
        &sim.url(),
        "--out",
        out_s,
        "--requests",
        "2",
        "--quiet",
    ]));
    let before = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
    let missing = dir.path().join("missing.jsonl");
    for bad in [
        vec!["--url", "ftp://127.0.0.1:1"],
        vec!["--url", "http://"],
        vec![
            "--url",
            "http://127.0.0.1:1",
            "--dataset",
            missing.to_str().expect("utf8"),
        ],
        vec!["--url", "http://127.0.0.1:1", "--body-extra", "[1]"],
    ] {
        let mut args = bad.clone();
        args.extend(["--out", out_s, "--force", "--quiet"]);
        let res = capture(&args);
        assert_eq!(
            res.status.code(),
            Some(2),
            "{bad:?}: {}",
            String::from_utf8_lossy(&res.stderr)
        );
        let after = std::fs::read_to_string(out.join("manifest.json")).expect("previous manifest kept");
        assert_eq!(before, after, "{bad:?} replaced the previous run");
        assert_eq!(read_run(&out).expect("previous run readable").requests.len(), 2);
    }
}

#[test]
fn an_http_error_answered_in_full_keeps_the_connection() {
    let sim = SimProcess::start(&["--error-rate", "0.5", "--error-status", "429"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    ok(&capture(&[
        "--url",
        &sim.url(),
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "30",
        "--quiet",
    ]));
    let run = read_run(&out).expect("read run");
    assert_complete(&run, 30);
    let errors = run
        .requests
        .keys()
        .filter(|id| run.terminals(**id)[0].error_kind == Some(ErrorKind::HttpStatus))
        .count();
    assert!(
        errors > 0 && errors < 30,
        "the sim answered some requests with 429: {errors}"
    );
    assert_eq!(kinds(&run, EventKind::Connect), 1, "one connection for the whole run");
    assert!(run.requests.values().all(|r| r.connection_id == Some(0)));
}

#[test]
fn open_loop_hands_tickets_to_the_most_recently_idle_worker() {
    let sim = SimProcess::start(&["--prerender"]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    // 20 req/s, replies in about a millisecond, 64 workers: one warm connection suffices.
    ok(&capture(&[
        "--url",
        &sim.url(),
        "--out",
        out.to_str().expect("utf8"),
        "--rate",
        "20",
        "--arrival",
        "constant",
        "--max-in-flight",
        "64",
        "--requests",
        "30",
        "--max-tokens",
        "4",
        "--quiet",
    ]));
    let run = read_run(&out).expect("read run");
    assert_complete(&run, 30);
    let distinct: std::collections::BTreeSet<_> = run.requests.values().map(|r| r.connection_id).collect();
    assert!(
        distinct.len() <= 2,
        "a FIFO hand-out would cycle through ~30 cold connections; used {distinct:?}"
    );
}

/// Reads one HTTP request head from `s`.
fn read_head(s: &mut std::net::TcpStream) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if s.read(&mut b).unwrap_or(0) == 0 {
            break;
        }
        head.push(b[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn url_credentials_become_basic_auth_and_never_reach_host_or_files() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let head = read_head(&mut s);
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 48\r\n\r\n{\"choices\":[{\"message\":{\"content\":\"hi there\"}}]}",
        );
        head
    });
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("run");
    let url = format!("http://alice:sk-URLSECRET-9@127.0.0.1:{port}");
    let res = capture(&[
        "--url",
        &url,
        "--out",
        out.to_str().expect("utf8"),
        "--requests",
        "1",
        "--no-stream",
        "-vv",
    ]);
    ok(&res);
    let head = server.join().expect("server");
    let host = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("host:"))
        .expect("host header");
    assert_eq!(host.trim(), format!("host: 127.0.0.1:{port}"), "{head}");
    // base64("alice:sk-URLSECRET-9")
    assert!(
        head.contains("authorization: Basic YWxpY2U6c2stVVJMU0VDUkVULTk="),
        "{head}"
    );
    assert_no_secret(&out, &res, "sk-URLSECRET-9");
}

/// Fails if `secret` (or its base64 form) appears in any byte of the run folder or in
/// capture's stdout/stderr.
fn assert_no_secret(out: &Path, res: &Output, secret: &str) {
    let mut files = vec![out.to_path_buf()];
    let mut i = 0;
    while i < files.len() {
        let p = files[i].clone();
        i += 1;
        if p.is_dir() {
            for e in std::fs::read_dir(&p).expect("read dir").flatten() {
                files.push(e.path());
            }
            continue;
        }
        let bytes = std::fs::read(&p).expect("read file");
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} written to {}",
            p.display()
        );
    }
    for (name, stream) in [("stdout", &res.stdout), ("stderr", &res.stderr)] {
        assert!(
            !String::from_utf8_lossy(stream).contains(secret),
            "{secret} in {name}: {}",
            String::from_utf8_lossy(stream)
        );
    }
}

#[test]
fn secrets_never_leak_whatever_the_flag_order() {
    let sim = SimProcess::start(&[]).expect("sim");
    let dir = tempfile::tempdir().expect("tmp");
    let secret = "sk-FLAGSECRET-42";
    let auth = format!("Authorization: Bearer {secret}");
    let key = format!("X-Api-Key: {secret}");
    // Every boolean flag capture has, placed right before the secret-carrying value.
    let booleans = [
        "--insecure",
        "--force",
        "--no-stream",
        "--stream",
        "--skip-invalid",
        "--json",
        "-v",
    ];
    let mut n = 0;
    for b in booleans {
        for header in [&auth, &key] {
            let eq = format!("--header={header}");
            let short = format!("-H{header}");
            let forms: [Vec<&str>; 4] = [
                vec![b, "--header", header],
                vec![b, eq.as_str()],
                vec![b, "-H", header],
                vec![b, short.as_str()],
            ];
            for form in forms {
                n += 1;
                let out = dir.path().join(format!("run{n}"));
                let mut args = vec!["--url", "SIM", "--out", out.to_str().expect("utf8"), "--requests", "1"];
                let url = sim.url();
                args[1] = url.as_str();
                args.extend(form.iter().copied());
                let res = capture(&args);
                ok(&res);
                assert_no_secret(&out, &res, secret);
                let manifest = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
                assert!(
                    manifest.contains("<redacted>"),
                    "the header is recorded, redacted: {manifest}"
                );
            }
        }
    }
    assert_eq!(n, booleans.len() * 2 * 4);
}
