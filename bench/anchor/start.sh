#!/usr/bin/env bash
# Start the Celery anchor (Unity's pixyz-scheduler) on 127.0.0.1: Redis, one Celery
# worker, its API. Sets it up first if needed (checkout, venv, redis-server); see
# bench/anchor/README.md.
#
#   bench/anchor/start.sh [CHECKOUT_DIR]      # default /var/tmp/anchor
#
# Prints shell assignments (ANCHOR_URL, ANCHOR_KEY, ANCHOR_PIDS_FILE, ...) on stdout, the
# last lines it writes; progress goes to stderr. The three processes run in the
# background, each in a session of its own, and outlive this script; their PIDs are in
# $ANCHOR_RUN_DIR/pids ("name pid" per line) for a benchmark to measure their trees.
# Running it again while they run only prints the same assignments.
# bench/anchor/stop.sh [CHECKOUT_DIR] stops them.
#
# Environment (all optional):
#   ANCHOR_RUN_DIR      state: config, logs, pids, Redis dir, share (default CHECKOUT-run)
#   ANCHOR_GIT          a bare git dir of the anchor to check out from (instead of cloning)
#   ANCHOR_API_PORT     API port (default: a free one)
#   ANCHOR_REDIS_PORT   Redis port (default: a free one)
#   ANCHOR_KEY          the x-api-key (default "secret", the example config's password)
#   ANCHOR_ACCESS_LOG   1 (default, as `python api.py` runs uvicorn) or 0 (--no-access-log)
#   ANCHOR_PYTHON       interpreter for its venv (default python3; it needs 3.10+)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CHECKOUT="$(realpath -m "${1:-/var/tmp/anchor}")"
RUN="$(realpath -m "${ANCHOR_RUN_DIR:-${CHECKOUT%/}-run}")"
KEY="${ANCHOR_KEY:-secret}"
UPSTREAM=https://github.com/Unity-Technologies/pixyz-scheduler
say() { echo "anchor: $*" >&2; }

# --- already running? -------------------------------------------------------------
alive() {  # every PID in $RUN/pids alive (and not a zombie)
    [[ -s "$RUN/pids" ]] || return 1
    local name pid state
    while read -r name pid; do
        state="$(ps -o stat= -p "$pid" 2>/dev/null || true)"
        [[ -n "$state" && "$state" != Z* ]] || return 1
    done <"$RUN/pids"
}
if alive && [[ -s "$RUN/env" ]]; then
    say "already running (bench/anchor/stop.sh to stop it)"
    cat "$RUN/env"
    exit 0
fi
[[ -s "$RUN/pids" || -s "$RUN/pids.new" ]] && "$HERE/stop.sh" "$CHECKOUT" >&2

# --- the checkout -----------------------------------------------------------------
if [[ ! -f "$CHECKOUT/pixyz_worker/tasks.py" ]]; then
    mkdir -p "$CHECKOUT"
    if [[ -n "${ANCHOR_GIT:-}" ]]; then
        say "checking out $ANCHOR_GIT into $CHECKOUT"
        # Snapshots may lack large binary files (docs/img/*.gif, *.mp4): only the code matters.
        git --git-dir="$ANCHOR_GIT" --work-tree="$CHECKOUT" checkout HEAD -- . 2>&1 |
            grep -v "unable to read sha1 file of docs/" >&2 || true
    else
        say "cloning $UPSTREAM into $CHECKOUT"
        git clone --depth 1 "$UPSTREAM" "$CHECKOUT" >&2 ||
            { say "no checkout: clone $UPSTREAM into $CHECKOUT (or set ANCHOR_GIT)"; exit 1; }
    fi
    [[ -f "$CHECKOUT/pixyz_worker/tasks.py" ]] || { say "$CHECKOUT is not the anchor"; exit 1; }
fi

# --- its venv (its own requirements; versions pinned by constraints.txt) ----------------
PY="$CHECKOUT/.venv/bin/python"
STAMP="$CHECKOUT/.venv/.bench-anchor-installed"
WANT="$(cat "$CHECKOUT/pixyz_api/requirements.txt" "$CHECKOUT/pixyz_worker/requirements.txt" \
    "$HERE/constraints.txt" | sha256sum | cut -c1-16)"
if [[ ! -x "$PY" || "$(cat "$STAMP" 2>/dev/null)" != "$WANT" ]]; then
    say "creating $CHECKOUT/.venv (its requirements, a minute or two)"
    "${ANCHOR_PYTHON:-python3}" -m venv "$CHECKOUT/.venv"
    "$PY" -m pip install -q --disable-pip-version-check \
        -r "$CHECKOUT/pixyz_api/requirements.txt" -r "$CHECKOUT/pixyz_worker/requirements.txt" \
        -c "$HERE/constraints.txt" >&2
    echo "$WANT" >"$STAMP"
fi

# --- redis-server -----------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
    say "installing redis-server (apt)"
    SUDO=""; [[ "$(id -u)" == 0 ]] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >&2 ||
        { $SUDO apt-get update -q >&2 && $SUDO env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q redis-server >&2; }
fi

# --- configuration ----------------------------------------------------------------
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API_PORT="${ANCHOR_API_PORT:-$(free_port)}"
REDIS_PORT="${ANCHOR_REDIS_PORT:-$(free_port)}"
mkdir -p "$RUN"
rm -rf "$RUN/share" "$RUN/tmp" "$RUN/redis"
mkdir -p "$RUN/share" "$RUN/tmp" "$RUN/redis"
HASH="$(printf %s "$KEY" | sha256sum | cut -d' ' -f1)"
# The worker and the API read ./pixyz-scheduler.conf from their working directory ($RUN);
# values as pixyz-scheduler.conf.example, except what a machine without the SDK needs.
cat >"$RUN/pixyz-scheduler.conf" <<EOF
# written by bench/anchor/start.sh
REDIS_MASTER_SERVICE_HOST="127.0.0.1"
REDIS_MASTER_SERVICE_PORT="$REDIS_PORT"
REDIS_PASSWORD=""
REDIS_DATABASE="0"
# no SDK: node-locked mode, so no licence server is contacted (the stub pxz answers)
LICENSE_FLEXLM=false
LICENSE_ACQUIRE_AT_START=false
PIXYZ_PYTHON_PATH="$HERE/stub"
GOD_PASSWORD_SHA256="$HASH"
API_PORT=$API_PORT
DEBUG="false"
LOG_LEVEL=INFO
MAX_MEMORY_USAGE=0
MAX_MEMORY_USAGE_GPUHIGH=0
POOL_TYPE=solo
QUEUE_NAME=cpu,gpu,zip,clean,control,gpuhigh
MAX_TASKS_BEFORE_SHUTDOWN=0
PIXYZ_TIME_LIMIT=2400
PIXYZ_RETRY_TIME_LIMIT=3600
CLEANUP_ENABLED="false"
CLEANUP_DELAY=3600
SHARE_PATH="$RUN/share"
EOF

# --- start ------------------------------------------------------------------------
# Each in a session of its own (a Ctrl-C in the caller's terminal does not reach it);
# `setsid` execs in place here (no job control: we are not a group leader), so $! is the
# process itself.
export PYTHONPATH="$HERE/stub:$CHECKOUT" TMPDIR="$RUN/tmp" PYTHONUNBUFFERED=1
: >"$RUN/pids.new"
launch() {  # name log command...
    local name="$1" log="$2"; shift 2
    (cd "$RUN" && exec setsid "$@" >"$log" 2>&1 </dev/null) &
    echo "$name $!" >>"$RUN/pids.new"
}
launch redis "$RUN/redis.log" redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
    --save "" --appendonly no --dir "$RUN/redis" --protected-mode yes --daemonize no
for _ in $(seq 100); do
    redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
    sleep 0.1
done
redis-cli -p "$REDIS_PORT" ping | grep -q PONG || { say "Redis did not start: $RUN/redis.log"; exit 1; }

# `python worker.py` as its README: one worker, solo pool, concurrency 1 (pixyz_worker.main)
launch worker "$RUN/worker.log" "$PY" "$CHECKOUT/worker.py"
# `python api.py` runs uvicorn on 0.0.0.0; the same app and settings here, on 127.0.0.1
ACCESS=(); [[ "${ANCHOR_ACCESS_LOG:-1}" == 0 ]] && ACCESS=(--no-access-log)
launch api "$RUN/api.log" "$PY" -m uvicorn pixyz_api:api_app --host 127.0.0.1 \
    --port "$API_PORT" --log-level info "${ACCESS[@]}"
mv "$RUN/pids.new" "$RUN/pids"

URL="http://127.0.0.1:$API_PORT"
for _ in $(seq 300); do
    if grep -q "ready\." "$RUN/worker.log" 2>/dev/null &&
        curl -fsS -o /dev/null "$URL/" 2>/dev/null; then
        break
    fi
    alive || break
    sleep 0.1
done
if ! grep -q "ready\." "$RUN/worker.log" || ! curl -fsS -o /dev/null "$URL/"; then
    say "did not start; logs in $RUN (worker.log, api.log, redis.log)"
    tail -n 20 "$RUN/worker.log" "$RUN/api.log" >&2 || true
    "$HERE/stop.sh" "$CHECKOUT" >&2
    exit 1
fi
cat >"$RUN/env" <<EOF
ANCHOR_URL=$URL
ANCHOR_KEY=$KEY
ANCHOR_PIDS_FILE=$RUN/pids
ANCHOR_RUN_DIR=$RUN
ANCHOR_REDIS_PORT=$REDIS_PORT
EOF
say "running: API $URL (x-api-key: $KEY), Redis 127.0.0.1:$REDIS_PORT, logs in $RUN"
cat "$RUN/env"
