#!/usr/bin/env bash
# Stop what bench/anchor/start.sh started: SIGTERM to each PID in its pids file (API,
# worker, Redis, in that order), SIGKILL to any still there after 15 s; then the
# processes of their sessions that are left (the worker's per-job children).
#
#   bench/anchor/stop.sh [CHECKOUT_DIR]      # default /var/tmp/anchor (ANCHOR_RUN_DIR as start.sh)
set -uo pipefail

CHECKOUT="$(realpath -m "${1:-/var/tmp/anchor}")"
RUN="$(realpath -m "${ANCHOR_RUN_DIR:-${CHECKOUT%/}-run}")"
PIDS="$RUN/pids"
[[ -f "$RUN/pids.new" && ! -f "$PIDS" ]] && PIDS="$RUN/pids.new"  # a start that failed midway
if [[ ! -s "$PIDS" ]]; then
    echo "anchor: not running (no $RUN/pids)" >&2
    exit 0
fi

ours() {  # is PID $1 still the process we started (not a reused PID)? session id == pid
    local sid stat
    read -r sid stat < <(ps -o sid=,stat= -p "$1" 2>/dev/null) || return 1
    [[ "$sid" == "$1" && "$stat" != Z* ]]
}
mapfile -t ORDER < <(tac "$PIDS")  # API first, Redis last: the worker can still ack
for line in "${ORDER[@]}"; do
    read -r name pid <<<"$line"
    if ours "$pid"; then
        kill -TERM "$pid" 2>/dev/null
        for _ in $(seq 150); do ours "$pid" || break; sleep 0.1; done
        if ours "$pid"; then
            echo "anchor: $name ($pid) still there after 15 s, SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null
        fi
    fi
    # what is left of its session (each started in a session of its own)
    for child in $(ps -e -o pid=,sid= | awk -v s="$pid" '$2 == s && $1 != s {print $1}'); do
        kill -KILL "$child" 2>/dev/null
    done
    echo "anchor: stopped $name ($pid)" >&2
done
rm -f "$RUN/pids" "$RUN/pids.new" "$RUN/env"
