#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs the SDK client tests (node --test, official openai and @anthropic-ai/sdk packages) against a real
# kiro-proxyd and kiro-authd, with the fake Kiro chat service as upstream (and the fake Kimi services for
# kimi-* models). Everything runs as the current
# user (root is fine) on a private session bus in a temporary directory, and is torn down on exit.
#
#   KIROD_BUILD_DIR=build tests/clients/run.sh [extra node --test arguments, e.g. --test-name-pattern=tool]
#
# Wiring: a private dbus-daemon (session type, its own socket); the fake Kiro service
# (tests/integration/fakes/kiro_chat.py, with its control endpoint, accepting the bearer token ksk_test);
# kiro-authd --user with its state in the temp directory and every auth URL pointed at a closed loopback
# port; `kiroctl --user import --api-key-file` of "ksk_test" (an API key needs no refresh); kiro-proxyd
# --user on a free loopback port with Endpoints= the fake and one client API key. For Kimi, the fakes of
# Kimi's OAuth device login and chat API (kimi_fakes.py, with its own control endpoint): kiro-authd's
# KimiAuthURL= and KimiAPIBase= point at them, `kiroctl --user login kimi --no-wait` starts a device login
# that the fake then approves, and the run waits until kiro-proxyd lists kimi-for-coding. The node tests
# get KIROD_PROXY_URL, KIROD_FAKE_CONTROL_URL, KIROD_KIMI_CONTROL_URL and KIROD_PROXY_API_KEY.
#
# Exit status: node's; 77 (skip) when node/npm, dbus-daemon or the built daemons are missing; 1 when
# setup fails or a daemon did not exit cleanly on SIGTERM (a sanitizer report, say).
# KIROD_KEEP_SCRATCH=1 keeps the temp directory (logs, configs) for inspection.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=$(cd "${KIROD_BUILD_DIR:-$top/build}" 2>/dev/null && pwd) || build=${KIROD_BUILD_DIR:-$top/build}
PYTHON=/usr/bin/python3
AUTHD=$build/kiro-authd/kiro-authd
PROXYD=$build/kiro-proxyd/kiro-proxyd
KIROCTL=$build/kiroctl/kiroctl
API_KEY_CRED=ksk_test
CLIENT_KEY=kirod-client-tests-$$-$RANDOM

skip() {
        echo "SKIP: $*"
        exit 77
}

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        skip "node and npm are needed for the SDK client tests (Debian: apt-get install nodejs npm)"
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 20 ]; then
        skip "node $(node --version) is too old for the SDK client tests: 20 or later is needed"
fi
command -v dbus-daemon >/dev/null || skip "dbus-daemon is not installed"
[ -x "$PYTHON" ] || skip "$PYTHON is not installed"
for b in "$AUTHD" "$PROXYD" "$KIROCTL"; do
        [ -x "$b" ] || skip "$b is not built (set KIROD_BUILD_DIR to the meson build directory)"
done

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kirod-clients.XXXXXX")
pids=()         # name:pid of everything we started, in start order
status=1

log_tail() {
        for f in "$tmp"/*.log; do
                [ -s "$f" ] || continue
                echo "----- $(basename "$f") (last 60 lines) -----"
                tail -n 60 "$f"
        done
}

# Stops what we started, newest first, by pid; a daemon that does not exit 0 on SIGTERM fails the run.
stop_all() {
        local bad=0 i name pid rc
        for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
                name=${pids[i]%%:*}
                pid=${pids[i]#*:}
                kill -TERM "$pid" 2>/dev/null || continue
                rc=0
                for _ in $(seq 100); do
                        kill -0 "$pid" 2>/dev/null || break
                        sleep 0.1
                done
                if kill -0 "$pid" 2>/dev/null; then
                        echo "$name (pid $pid) did not exit within 10 s of SIGTERM; killing it" >&2
                        kill -KILL "$pid" 2>/dev/null || true
                        bad=1
                fi
                wait "$pid" 2>/dev/null || rc=$?
                case $name in
                kiro-authd|kiro-proxyd)
                        if [ "$rc" -ne 0 ]; then
                                echo "$name exited with status $rc on SIGTERM" >&2
                                bad=1
                        fi
                        ;;
                esac
        done
        pids=()
        return $bad
}

cleanup() {
        local rc=$status
        trap - EXIT INT TERM
        if ! stop_all; then
                [ "$rc" -eq 0 ] && rc=1
        fi
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
                log_tail
        fi
        if [ "$rc" -ne 0 ] || [ -n "${KIROD_KEEP_SCRATCH:-}" ]; then
                echo "kept $tmp"
        else
                rm -rf "$tmp"
        fi
        exit "$rc"
}
trap cleanup EXIT
trap 'status=130; exit' INT TERM

die() {
        echo "run.sh: $*" >&2
        status=1
        exit 1
}

# wait_for SECONDS WHAT COMMAND...: polls COMMAND until it succeeds.
wait_for() {
        local secs=$1 what=$2
        shift 2
        local deadline=$((SECONDS + secs))
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -lt $deadline ] || die "timed out after ${secs}s waiting for $what"
                sleep 0.1
        done
}

alive() {
        kill -0 "$1" 2>/dev/null
}

# Keep every program away from the real home, config and state of whoever runs this.
export HOME=$tmp/home XDG_CONFIG_HOME=$tmp/config XDG_STATE_HOME=$tmp/state XDG_RUNTIME_DIR=$tmp/run
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$XDG_STATE_HOME" "$XDG_RUNTIME_DIR"
chmod 0700 "$XDG_RUNTIME_DIR"
unset DBUS_SYSTEM_BUS_ADDRESS
export SYSTEMD_COLORS=0 NO_COLOR=1 LANG=C.UTF-8

# ---- private session bus ----
cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>unix:path=$tmp/bus.sock</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
EOF
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile --print-address=3 3>"$tmp/bus.address" \
        >"$tmp/dbus-daemon.log" 2>&1 &
pids+=("dbus-daemon:$!")
wait_for 10 "the private dbus-daemon" test -s "$tmp/bus.address"
DBUS_SESSION_BUS_ADDRESS=$(head -n1 "$tmp/bus.address")
export DBUS_SESSION_BUS_ADDRESS

# ---- fake Kiro chat service ----
"$PYTHON" "$top/tests/integration/fakes/kiro_chat.py" --token "$API_KEY_CRED" --ready-file "$tmp/fake.json" \
        >"$tmp/fake-kiro.log" 2>&1 &
fake_pid=$!
pids+=("fake-kiro:$fake_pid")
wait_for 15 "the fake Kiro service" test -s "$tmp/fake.json"
read -r FAKE_URL CONTROL_URL < <("$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["url"], d["control_url"])' "$tmp/fake.json")

# ---- fake Kimi OAuth and chat services ----
"$PYTHON" "$here/kimi_fakes.py" --ready-file "$tmp/kimi.json" >"$tmp/fake-kimi.log" 2>&1 &
pids+=("fake-kimi:$!")
wait_for 15 "the fake Kimi services" test -s "$tmp/kimi.json"
read -r KIMI_AUTH_URL KIMI_API_BASE KIMI_CONTROL_URL < <("$PYTHON" -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["auth_url"], d["api_base"], d["control_url"])' "$tmp/kimi.json")

# ---- kiro-authd ----
# The Kiro credential needs no refresh (an API key), so every Kiro and AWS auth URL points at a closed
# loopback port; Kimi's go to the loopback fakes: nothing can leave the machine.
cat >"$tmp/authd.conf" <<EOF
[Auth]
SelectionPolicy=sticky
LoginMinPollIntervalSec=0.2

[Endpoints]
KiroAuthURL=http://127.0.0.1:9
OIDCURL=http://127.0.0.1:9
KimiAuthURL=$KIMI_AUTH_URL
KimiAPIBase=$KIMI_API_BASE
UsageURL=http://127.0.0.1:9
EOF
mkdir -p "$tmp/authd-state"
"$AUTHD" --user --state-dir="$tmp/authd-state" --config="$tmp/authd.conf" --log-level=debug \
        >"$tmp/kiro-authd.log" 2>&1 &
authd_pid=$!
pids+=("kiro-authd:$authd_pid")

has_owner() {
        alive "$authd_pid" || return 0   # stop waiting; checked below
        if command -v busctl >/dev/null; then
                busctl --user --no-pager status org.kirod.Auth1
        else
                dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
                        org.freedesktop.DBus.NameHasOwner string:org.kirod.Auth1 | grep -q 'boolean true'
        fi
}
wait_for 20 "kiro-authd to own org.kirod.Auth1" has_owner
alive "$authd_pid" || die "kiro-authd exited during start-up"

printf '%s' "$API_KEY_CRED" >"$tmp/api-key"
chmod 0600 "$tmp/api-key"
"$KIROCTL" --user import --api-key-file "$tmp/api-key" >"$tmp/kiroctl-import.log" 2>&1 ||
        die "kiroctl import --api-key-file failed: $(cat "$tmp/kiroctl-import.log")"

# A Kimi credential through the device login, as a person makes one: kiroctl starts it, the user approves
# it at Kimi (here: the fake), kiro-authd's polling picks the tokens up.
kimi_login_id=$("$KIROCTL" --user login kimi --no-wait 2>"$tmp/kiroctl-login.log") ||
        die "kiroctl login kimi --no-wait failed: $(cat "$tmp/kiroctl-login.log")"
[ -n "$kimi_login_id" ] || die "kiroctl login kimi --no-wait printed no login id"
"$PYTHON" -c 'import sys, urllib.request; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + "/approve", data=b"", method="POST"), timeout=5).read()' \
        "$KIMI_CONTROL_URL" || die "the fake Kimi login did not take the approval"

# ---- kiro-proxyd ----
port=$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
printf '%s\n' "$CLIENT_KEY" >"$tmp/api-keys"
chmod 0600 "$tmp/api-keys"
cat >"$tmp/proxyd.conf" <<EOF
[Proxy]
APIKeysFile=$tmp/api-keys
FirstTokenTimeoutSec=30

[Kiro]
Endpoints=$FAKE_URL
EOF
"$PROXYD" --user --config="$tmp/proxyd.conf" --listen="127.0.0.1:$port" --log-level=debug \
        >"$tmp/kiro-proxyd.log" 2>&1 &
proxyd_pid=$!
pids+=("kiro-proxyd:$proxyd_pid")
PROXY_URL="http://127.0.0.1:$port"

# Up once it answers HTTP at all (with the client key, in case /healthz wants one).
healthy() {
        alive "$proxyd_pid" || return 0
        "$PYTHON" - "$PROXY_URL" "$CLIENT_KEY" <<'PY'
import sys, urllib.error, urllib.request
req = urllib.request.Request(sys.argv[1] + "/healthz", headers={"Authorization": "Bearer " + sys.argv[2]})
try:
        urllib.request.urlopen(req, timeout=2).read()
except urllib.error.HTTPError:
        pass
PY
}
wait_for 20 "kiro-proxyd to answer /healthz" healthy
alive "$proxyd_pid" || die "kiro-proxyd exited during start-up"

# The Kimi login finished once kiro-proxyd lists Kimi's models (it does only with a Kimi credential).
kimi_listed() {
        "$PYTHON" - "$PROXY_URL" "$CLIENT_KEY" <<'PY'
import json, sys, urllib.request
req = urllib.request.Request(sys.argv[1] + "/v1/models", headers={"Authorization": "Bearer " + sys.argv[2]})
ids = [m["id"] for m in json.load(urllib.request.urlopen(req, timeout=2))["data"]]
sys.exit(0 if "kimi-for-coding" in ids else 1)
PY
}
wait_for 30 "the Kimi login $kimi_login_id to finish (kimi-for-coding in /v1/models)" kimi_listed

# ---- node packages ----
cd "$here"
if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
        npm ci --no-audit --no-fund >"$tmp/npm-ci.log" 2>&1 || die "npm ci failed: $(tail -n 20 "$tmp/npm-ci.log")"
fi

# ---- the tests ----
# One file at a time: the rate-limit tests briefly cool down the only credential.
set +e
KIROD_PROXY_URL=$PROXY_URL KIROD_FAKE_CONTROL_URL=$CONTROL_URL KIROD_KIMI_CONTROL_URL=$KIMI_CONTROL_URL \
        KIROD_PROXY_API_KEY=$CLIENT_KEY node --test --test-concurrency=1 "$@" ./*.test.mjs
status=$?
set -e
alive "$proxyd_pid" || { echo "kiro-proxyd died during the tests" >&2; [ "$status" -ne 0 ] || status=1; }
alive "$authd_pid" || { echo "kiro-authd died during the tests" >&2; [ "$status" -ne 0 ] || status=1; }
exit "$status"
