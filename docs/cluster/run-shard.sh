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
# Shard I publishes on RECAP_LIVE_PORT + I (distinct even where tasks share a node): shard 0's
# is the barrier, and `plot --live host0:9464,host1:9465,...` shows the whole run as one.
live="$host:$(( ${RECAP_LIVE_PORT:-9464} + index ))"
# shellcheck disable=SC2086 # RECAP_ARGS is a list of flags
exec "${RECAP_CAPTURE:-capture}" --url "$RECAP_URL" --out "$RECAP_OUT" --live "$live" \
  --barrier "http://$RECAP_BARRIER" --quiet $RECAP_ARGS
