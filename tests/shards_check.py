"""The recipes of docs/cluster/ launched as they are written (tests/shards.sh).

Kubernetes: the Indexed Job's `completions` processes, each with the container's command and
env from the YAML plus JOB_COMPLETION_INDEX, as the Job controller would set it. Slurm: the
sbatch script run by bash with `srun` and `scontrol` stand-ins on PATH (srun starts
--ntasks copies, each with SLURM_PROCID). Only what points at this machine is replaced: the
endpoint, the run folder, the barrier's address and the load (the recipes' dataset is not here).
Each run folder must then read as one run of every shard, with clocks measured.
"""

import json
import os
import socket
import stat
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLUSTER = os.path.join(ROOT, "docs", "cluster")
REQUESTS = 240
LOAD = f"--concurrency 16 --requests {REQUESTS}"


def free_port(span=4):
    """A port P with P .. P + span - 1 free (shard I listens on P + I)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = s.getsockname()[1]
        socks = []
        try:
            for i in range(span):
                t = socket.socket()
                socks.append(t)
                t.bind(("127.0.0.1", base + i))
            return base
        except OSError:
            continue
        finally:
            for t in socks:
                t.close()


def local(env, bin_dir, url, out, port):
    """What points at this machine; everything else stays as the recipe has it."""
    env = dict(env)
    env.update(
        RECAP_CAPTURE=os.path.join(bin_dir, "capture"),
        RECAP_URL=url,
        RECAP_OUT=out,
        RECAP_BARRIER=f"127.0.0.1:{port}",
        RECAP_LIVE_HOST="127.0.0.1",
        RECAP_LIVE_PORT=str(port),
        RECAP_ARGS=LOAD,
    )
    return env


def kubernetes(bin_dir, url, out):
    docs = list(yaml.safe_load_all(open(os.path.join(CLUSTER, "recap-shards-job.yaml"))))
    job = next(d for d in docs if d["kind"] == "Job")
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed", spec
    container = spec["template"]["spec"]["containers"][0]
    # The image installs run-shard.sh at this path (Containerfile); here it is the repo's.
    command = [
        os.path.join(CLUSTER, "run-shard.sh") if c == "/usr/local/bin/run-shard.sh" else c
        for c in container["command"]
    ]
    recipe_env = {e["name"]: e["value"] for e in container["env"]}
    assert recipe_env["RECAP_SHARDS"] == str(spec["completions"]), recipe_env
    port = free_port()
    base = local({**os.environ, **recipe_env}, bin_dir, url, out, port)
    procs = []
    for i in range(spec["completions"]):
        env = dict(base, JOB_COMPLETION_INDEX=str(i))
        procs.append(subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True))
    for i, p in enumerate(procs):
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, f"pod {i} exited {p.returncode}: {err}"
    return spec["completions"]


SRUN = """#!/bin/bash
# Stands in for Slurm's srun: --ntasks=N copies of the command, task i with SLURM_PROCID=i.
n=1
while [ $# -gt 0 ]; do
  case "$1" in
    --ntasks=*) n="${1#--ntasks=}"; shift ;;
    -*) shift ;;
    *) break ;;
  esac
done
pids=()
for i in $(seq 0 $((n - 1))); do SLURM_PROCID=$i "$@" & pids+=($!); done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
exit $rc
"""

SCONTROL = """#!/bin/bash
# Stands in for `scontrol show hostnames`: every task is on this machine.
echo localhost
"""


def slurm(bin_dir, url, out):
    script = os.path.join(CLUSTER, "recap-shards.sbatch")
    text = open(script).read()
    ntasks = next(
        int(line.split("=", 1)[1]) for line in text.splitlines() if line.startswith("#SBATCH --ntasks=")
    )
    shims = tempfile.mkdtemp()
    for name, body in (("srun", SRUN), ("scontrol", SCONTROL)):
        path = os.path.join(shims, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, os.stat(path).st_mode | stat.S_IEXEC)
    port = free_port()
    env = local(os.environ, bin_dir, url, out, port)
    # What sbatch sets for the script; run-shard.sh from the repo on PATH, as on the nodes.
    env.update(
        SLURM_NTASKS=str(ntasks),
        SLURM_JOB_NODELIST="localhost",
        PATH=os.pathsep.join([shims, CLUSTER, env["PATH"]]),
    )
    done = subprocess.run(["bash", script], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the Slurm script exited {done.returncode}: {done.stderr}"
    return ntasks


def check(bin_dir, run, shards):
    tok = os.path.join(ROOT, "fixtures", "tokenizers", "gpt2", "tokenizer.json.gz")
    res = subprocess.run(
        [os.path.join(bin_dir, "analyze"), "report", run, "--tokenizer", tok, "--json", "--quiet"],
        capture_output=True,
        text=True,
        check=True,
    )
    s = json.loads(res.stdout)[0]
    assert s["requests"]["total"] == REQUESTS and s["requests"]["ok"] == REQUESTS, s["requests"]
    sh = s["shards"]
    assert sh["count"] == shards and len(sh["shards"]) == shards, sh
    assert sh["warnings"] == [], sh["warnings"]
    for one in sh["shards"]:
        assert one["clock_offset_ms"] is not None, one
        assert one["requests"] == REQUESTS // shards, one
    manifests = [json.load(open(os.path.join(run, "shards", str(i), "manifest.json"))) for i in range(shards)]
    assert {m["shard"]["start"] for m in manifests} == {"barrier"}, manifests
    # Every shard published on its own endpoint (RECAP_LIVE_PORT + I, what `plot --live` merges);
    # their final snapshots add up to the merged run.
    lives = [json.load(open(os.path.join(run, "shards", str(i), "live.json"))) for i in range(shards)]
    assert sum(l["counts"]["sent"] for l in lives) == REQUESTS, [l["counts"] for l in lives]
    # 16 in flight across the shards: TTFT near 2 + 15 ms, not the 5 ms of 4 alone.
    assert s["metrics"]["ttft_ms"]["p50"] > 10, s["metrics"]["ttft_ms"]
    print(f"{run}: {shards} shards, {s['requests']['total']} requests, ttft p50 {s['metrics']['ttft_ms']['p50']:.1f} ms")


def main():
    bin_dir, addr, out = sys.argv[1:4]
    url = f"http://{addr}"
    k8s = os.path.join(out, "k8s")
    check(bin_dir, k8s, kubernetes(bin_dir, url, k8s))
    sl = os.path.join(out, "slurm")
    check(bin_dir, sl, slurm(bin_dir, url, sl))
    print("cluster recipes: OK")


if __name__ == "__main__":
    main()
