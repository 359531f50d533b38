#!/bin/sh
# One shard of a sharded capture, as the Kubernetes Job (recap-shards-job.yaml) and the Slurm
# script (recap-shards.sbatch) launch it; tests/shards.sh runs it the same way on one machine.
# The shard comes from the job's environment: JOB_COMPLETION_INDEX with RECAP_SHARDS
# (Kubernetes), or SLURM_PROCID with SLURM_NTASKS (Slurm).
#   RECAP_URL      the endpoint (a router in front of the replicas)
#   RECAP_OUT      the run folder, on storage every shard writes to (shard I writes shards/I)
#   RECAP_BARRIER  shard 0's host:port; shard 0 serves it on its --live endpoint
#   RECAP_ARGS     the load flags, the same for every shard (--concurrency, --rate, ...)
set -eu
index="${JOB_COMPLETION_INDEX:-${SLURM_PROCID:-0}}"
host="${RECAP_LIVE_HOST:-0.0.0.0}"
# Only shard 0's endpoint needs a known port; the others take a free one (two tasks may share
# a node under Slurm).
if [ "$index" = 0 ]; then live="$host:${RECAP_LIVE_PORT:-9464}"; else live="$host:0"; fi
# shellcheck disable=SC2086 # RECAP_ARGS is a list of flags
exec "${RECAP_CAPTURE:-capture}" --url "$RECAP_URL" --out "$RECAP_OUT" --live "$live" \
  --barrier "http://$RECAP_BARRIER" --quiet $RECAP_ARGS
