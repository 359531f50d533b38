"""`analyze` on runs in object storage (tests/object_store.sh).

Captures two runs (one of two shards) against recap-sim and scores them where they are, then
uploads them to two local object stores, moto's S3 server (s3://) and Azurite's blob service
(az://), both on 127.0.0.1, deletes the local folders, and scores and queries them again from
each store: every number of the summary must be the same, each bucket must be left as it was
(analyze writes its analysis to a local folder), and a missing run must be a clear error.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER = os.path.join(ROOT, "fixtures", "tokenizers", "gpt2", "tokenizer.json.gz")
BUCKET = "recap-runs"
NAMES = ["one", "sharded"]
# Azurite's well-known development account (public, in Azure's documentation).
AZ_ACCOUNT = "devstoreaccount1"
AZ_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


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


def wait_http(url, proc, what):
    for _ in range(1200):
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # answering, if only with an error: it is up
        except Exception:
            if proc.poll() is not None:
                raise AssertionError(f"{what} exited before answering")
            time.sleep(0.05)
    raise AssertionError(f"{what} did not answer")


def files(local, name):
    """(relative path, absolute path) of what capture wrote for run `name`."""
    base = os.path.join(local, name)
    for dirpath, _, fs in os.walk(base):
        for f in fs:
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, base)
            if rel.split(os.sep)[0] == "analysis":
                continue  # what analyze wrote here; the bucket holds the capture only
            yield rel, path


class Emulator:
    """A local object store's server on a free port of 127.0.0.1: started, waited for, stopped."""

    def serve(self, argv_for_port, what):
        port = free_port()
        self.proc = subprocess.Popen(argv_for_port(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        endpoint = f"http://127.0.0.1:{port}"
        wait_http(endpoint, self.proc, what)
        return endpoint

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)


class S3(Emulator):
    scheme = "s3"

    def __init__(self, out):
        import boto3

        moto = os.path.join(os.path.dirname(sys.executable), "moto_server")
        endpoint = self.serve(lambda port: [moto, "-H", "127.0.0.1", "-p", str(port)], "moto_server")
        self.env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_REGION="us-east-1",
            AWS_ENDPOINT_URL=endpoint,
            AWS_ALLOW_HTTP="true",
            RECAP_REMOTE_CACHE=os.path.join(out, "cache"),
        )
        self.client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                   aws_access_key_id="testing", aws_secret_access_key="testing")
        self.client.create_bucket(Bucket=BUCKET)

    def upload(self, key, path):
        self.client.upload_file(path, BUCKET, key)

    def keys(self):
        return sorted(o["Key"] for o in self.client.list_objects_v2(Bucket=BUCKET)["Contents"])


class Azure(Emulator):
    scheme = "az"

    def __init__(self, out, azurite):
        from azure.storage.blob import BlobServiceClient

        endpoint = self.serve(
            lambda port: [azurite, "--blobHost", "127.0.0.1", "--blobPort", str(port),
                          "--location", os.path.join(out, "azurite"), "--silent", "--skipApiVersionCheck", "--loose"],
            "azurite-blob",
        )
        self.env = dict(
            os.environ,
            AZURE_STORAGE_USE_EMULATOR="true",
            AZURITE_BLOB_STORAGE_URL=endpoint,
            RECAP_REMOTE_CACHE=os.path.join(out, "cache"),
        )
        conn = (f"DefaultEndpointsProtocol=http;AccountName={AZ_ACCOUNT};AccountKey={AZ_KEY};"
                f"BlobEndpoint={endpoint}/{AZ_ACCOUNT};")
        self.container = BlobServiceClient.from_connection_string(conn).create_container(BUCKET)

    def upload(self, key, path):
        with open(path, "rb") as f:
            self.container.upload_blob(key, f)

    def keys(self):
        return sorted(b.name for b in self.container.list_blobs())


def main():
    bin_dir, addr, out, azurite = sys.argv[1:5]
    capture = os.path.join(bin_dir, "capture")
    local = os.path.join(out, "local")
    url = f"http://{addr}"
    run([capture, "--url", url, "--concurrency", "4", "--requests", "80", "--out", os.path.join(local, "one"), "--quiet"], check=False)
    for i in range(2):
        run([capture, "--url", url, "--shard", f"{i}/2", "--concurrency", "4", "--requests", "40",
             "--out", os.path.join(local, "sharded"), "--quiet"], check=False)
    before = {n: report(bin_dir, os.path.join(local, n)) for n in NAMES}
    counts = {n: sql(bin_dir, os.path.join(local, n), "SELECT COUNT(*) AS n, SUM(t_ns) AS t FROM events") for n in NAMES}
    assert before["one"]["requests"]["errors"], "the sim's errors should show"
    assert before["sharded"]["shards"]["count"] == 2

    stores = []
    try:
        stores.append(S3(out))
        stores.append(Azure(out, azurite))
        uploaded = {}
        for st in stores:
            for n in NAMES:
                for rel, path in files(local, n):
                    st.upload(f"cluster/{n}/{rel}", path)
            uploaded[st.scheme] = st.keys()
        shutil.rmtree(local)  # no local copy from here on

        for st in stores:
            for n in NAMES:
                where = f"{st.scheme}://{BUCKET}/cluster/{n}"
                after = report(bin_dir, where, st.env)
                assert after["run"] == where, after["run"]
                assert comparable(after) == comparable(before[n]), (where, comparable(after), comparable(before[n]))
                got = sql(bin_dir, where, "SELECT COUNT(*) AS n, SUM(t_ns) AS t FROM events", st.env)
                assert got == counts[n], (where, got, counts[n])
                # The analysis went to the local cache, named after the URL, where sql finds it.
                cached = os.path.join(out, "cache", st.scheme, BUCKET, "cluster", n, "analysis")
                assert os.path.isdir(cached), cached
                m = sql(bin_dir, where, "SELECT COUNT(*) AS n FROM metrics", st.env)
                assert m[0]["n"] == after["requests"]["total"], (m, after["requests"])
            assert st.keys() == uploaded[st.scheme], f"analyze wrote into the {st.scheme} bucket"
            missing = run([os.path.join(bin_dir, "analyze"), "report", f"{st.scheme}://{BUCKET}/cluster/nothing",
                           "--tokenizer", TOKENIZER, "--quiet"], st.env, check=False)
            assert missing.returncode == 2 and "not a run folder" in missing.stderr, missing.stderr
            print(f"{st.scheme}://: {len(uploaded[st.scheme])} objects, {len(NAMES)} runs analyzed in place, summaries equal")
    finally:
        for st in stores:
            st.stop()


if __name__ == "__main__":
    main()
