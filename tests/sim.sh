# Sourced by the test scripts: `start_sim BIN LOG [recap-sim flags]` starts recap-sim on a free
# port of 127.0.0.1, waits for its `listening on` line (printed once a --tokenizer is loaded: a
# few seconds in a debug build), stopping early if it exits, and sets `sim_pid` and `addr`
# (host:port). The caller stops it by its PID: `stop_sim` (also on EXIT, set here).
start_sim() {
  local bin="$1" log="$2"
  shift 2
  "$bin" --port 0 "$@" >"$log" 2>&1 &
  sim_pid=$!
  trap stop_sim EXIT
  for _ in $(seq 1 1200); do
    grep -q '^listening on ' "$log" 2>/dev/null && break
    kill -0 "$sim_pid" 2>/dev/null || break
    sleep 0.05
  done
  addr="$(sed -n 's/^listening on //p' "$log" | head -n 1)"
  [ -n "$addr" ] || { echo "recap-sim did not start:" >&2; cat "$log" >&2; exit 1; }
}

stop_sim() {
  if [ -n "${sim_pid:-}" ]; then
    kill "$sim_pid" 2>/dev/null || true
    wait "$sim_pid" 2>/dev/null || true
    sim_pid=
  fi
}
