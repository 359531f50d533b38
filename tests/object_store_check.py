"""`analyze` on runs in object storage (tests/object_store.sh).

Captures two runs (one of two shards) against recap-sim, scores them where they are, uploads
them with boto3 to moto's S3 server on 127.0.0.1, deletes the local folders, and scores and
queries them again from s3://: every number of the summary must be the same, the bucket must
be left as it was (analyze writes its analysis to a local folder), and a missing run must be
a clear error.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import boto3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(ROOT, "fixtures", "tokenizers", "gpt2", "tokenizer.json.gz")
BUCKET = "recap-runs"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, env=None, check=True):
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{cmd} exited {p.returncode}: {p.stderr}")
    return p


def report(bin_dir, where, env=None):
    p = run([os.path.join(bin_dir, "analyze"), "report", where, "--tokenizer", TOKENIZER, "--json", "--quiet"], env)
    return json.loads(p.stdout)[0]


def sql(bin_dir, where, query, env=None):
    p = run([os.path.join(bin_dir, "analyze"), "sql", where, query, "--format", "json", "--quiet"], env)
    return json.loads(p.stdout)


def comparable(summary):
    """The summary without where it was read from."""
    s = dict(summary)
    s.pop("run")
    return s


def main():
    bin_dir, addr, out = sys.argv[1:4]
    capture = os.path.join(bin_dir, "capture")
    local = os.path.join(out, "local")
    url = f"http://{addr}"
    run([capture, "--url", url, "--concurrency", "4", "--requests", "80", "--out", os.path.join(local, "one"), "--quiet"], check=False)
    for i in range(2):
        run([capture, "--url", url, "--shard", f"{i}/2", "--concurrency", "4", "--requests", "40",
             "--out", os.path.join(local, "sharded"), "--quiet"], check=False)
    names = ["one", "sharded"]
    before = {n: report(bin_dir, os.path.join(local, n)) for n in names}
    counts = {n: sql(bin_dir, os.path.join(local, n), "SELECT COUNT(*) AS n, SUM(t_ns) AS t FROM events") for n in names}
    assert before["one"]["requests"]["errors"], "the sim's errors should show"
    assert before["sharded"]["shards"]["count"] == 2

    port = free_port()
    server = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                urllib.request.urlopen(endpoint, timeout=1)
                break
            except Exception:
                if server.poll() is not None:
                    raise AssertionError("moto_server exited")
                time.sleep(0.05)
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
            AWS_DEFAULT_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
            AWS_ALLOW_HTTP="true",
            RECAP_REMOTE_CACHE=os.path.join(out, "cache"),
        )
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)
        for n in names:
            base = os.path.join(local, n)
            for dirpath, _, files in os.walk(base):
                for f in files:
                    path = os.path.join(dirpath, f)
                    rel = os.path.relpath(path, base)
                    if rel.startswith("analysis") or "/analysis/" in rel:
                        continue  # what analyze wrote here; the bucket holds the capture only
                    s3.upload_file(path, BUCKET, f"cluster/{n}/{rel}")
        uploaded = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
        shutil.rmtree(local)  # no local copy from here on

        for n in names:
            where = f"s3://{BUCKET}/cluster/{n}"
            after = report(bin_dir, where, env)
            assert after["run"] == where, after["run"]
            assert comparable(after) == comparable(before[n]), (n, comparable(after), comparable(before[n]))
            got = sql(bin_dir, where, "SELECT COUNT(*) AS n, SUM(t_ns) AS t FROM events", env)
            assert got == counts[n], (n, got, counts[n])
            # The analysis went to the local cache, named after the URL.
            cached = os.path.join(out, "cache", "s3", BUCKET, "cluster", n, "analysis")
            assert os.path.isdir(cached), cached
            # ... and `analyze sql` finds it there.
            m = sql(bin_dir, where, "SELECT COUNT(*) AS n FROM metrics", env)
            assert m[0]["n"] == after["requests"]["total"], (m, after["requests"])
        left = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"])
        assert left == uploaded, "analyze wrote into the bucket"
        missing = run([os.path.join(bin_dir, "analyze"), "report", f"s3://{BUCKET}/cluster/nothing", "--tokenizer",
                       TOKENIZER, "--quiet"], env, check=False)
        assert missing.returncode == 2 and "not a run folder" in missing.stderr, missing.stderr
        print(f"object storage: {len(uploaded)} objects, {len(names)} runs analyzed in place, summaries equal")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
