#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# tools/run-gateway as a user would run it, in a scratch home: it serves TCP and the unix socket with a
# generated client API key (printed once, kept 0600), passes kiroctl's import error through, prints
# --env lines that work when pasted (kiroctl on PATH, no alias), and a second run refuses to start,
# says where the first one is and leaves its bus socket alone.
#
#   tests/gateway/test-run-gateway.sh SOURCE_DIR BUILD_DIR
#
# Exit status: 0 pass, 1 fail, 77 skipped (dbus-daemon, curl or flock missing).
set -uo pipefail

src=$(cd "$1" && pwd)
build=$(cd "$2" && pwd)
for p in dbus-daemon curl flock sqlite3; do
        command -v $p >/dev/null || { echo "SKIP: $p is not installed"; exit 77; }
done
for b in kiro-authd/kiro-authd kiro-proxyd/kiro-proxyd kiroctl/kiroctl; do
        [ -x "$build/$b" ] || { echo "SKIP: $build/$b is not built"; exit 77; }
done

work=$(mktemp -d)
chmod 0755 "$work"
first=
cleanup() {
        [ -n "$first" ] && kill "$first" 2>/dev/null && wait "$first" 2>/dev/null
        rm -rf "$work"
}
trap cleanup EXIT

export HOME=$work/home XDG_STATE_HOME=$work/state XDG_RUNTIME_DIR=$work/run XDG_DATA_HOME=$work/data
export XDG_CONFIG_HOME=$work/config KIROD_BUILD_DIR=$build
unset DBUS_SESSION_BUS_ADDRESS
mkdir -p "$HOME" "$XDG_RUNTIME_DIR" "$XDG_DATA_HOME/kiro-cli"
chmod 0700 "$XDG_RUNTIME_DIR"
# A free loopback port.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export KIROD_PORT=$port
rundir=$XDG_RUNTIME_DIR/kirod-gateway-$(id -u)
gw=$src/tools/run-gateway

# A kiro-cli database that exists but is no database: kiroctl's error must come through.
echo "this is not sqlite" >"$XDG_DATA_HOME/kiro-cli/data.sqlite3"

fails=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$gw" --help >"$work/help" 2>&1 && grep -q -- '--env' "$work/help" && grep -q "127.0.0.1:$port" "$work/help" &&
        ok "--help" || bad "--help: $(cat "$work/help")"

# --env without a gateway: nothing to eval, and says so.
if "$gw" --env >"$work/env0" 2>"$work/env0.err"; then
        bad "--env succeeded while no gateway runs"
else
        [ ! -s "$work/env0" ] && grep -q "not running" "$work/env0.err" &&
                ok "--env without a gateway: $(cat "$work/env0.err")" || bad "--env without a gateway: $(cat "$work/env0" "$work/env0.err")"
fi

setsid "$gw" >"$work/first.out" 2>"$work/first.err" </dev/null &
first=$!
for _ in $(seq 600); do
        grep -q "Press Ctrl-C" "$work/first.out" && break
        kill -0 "$first" 2>/dev/null || break
        sleep 0.1
done
if ! grep -q "Press Ctrl-C" "$work/first.out"; then
        cat "$work/first.out" "$work/first.err"
        bad "the gateway did not come up"
        exit 1
fi
ok "the gateway is up (port $port)"
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done

# kiroctl's own error about the database, not "no login found".
grep -q "not an SQLite database" "$work/first.err" && ! grep -q "No kiro-cli or Kiro IDE login found" "$work/first.err" &&
        ok "the broken kiro-cli database is reported with kiroctl's error: $(grep 'SQLite' "$work/first.err")" ||
        bad "import error not passed through: $(cat "$work/first.err")"

# The key: printed once, kept 0600, required by the proxy on both listeners.
keyfile=$XDG_STATE_HOME/kirod/api-key
key=$(cat "$keyfile" 2>/dev/null)
[ -n "$key" ] && [ "$(stat -c %a "$keyfile")" = 600 ] && ok "API key kept in $keyfile, mode 0600" ||
        bad "API key file $keyfile missing or not 0600"
[ "$(grep -c -F -- "$key" "$work/first.out")" = 1 ] && ok "the new key is printed once" ||
        bad "the key is not printed exactly once: $(cat "$work/first.out")"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/v1/models")
[ "$code" = 401 ] && ok "no key: 401" || bad "no key: HTTP $code, expected 401"
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $key" "http://127.0.0.1:$port/v1/models")
[ "$code" = 200 ] && ok "with the key over TCP: 200" || bad "with the key over TCP: HTTP $code"
code=$(curl -s -o /dev/null -w '%{http_code}' --unix-socket "$rundir/http.sock" -H "x-api-key: $key" \
       http://localhost/v1/models)
[ "$code" = 200 ] && ok "with the key over the unix socket $rundir/http.sock: 200" ||
        bad "with the key over the unix socket: HTTP $code"

# --env, pasted on one line with its use, in a fresh non-interactive shell and in an interactive one.
out=$(env -i HOME="$HOME" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" PATH=/usr/bin:/bin \
      bash -c "eval \"\$('$gw' --env)\"; kiroctl list --json" 2>&1)
[ "$out" = "[]" ] && ok "eval \"\$(run-gateway --env)\"; kiroctl list --json → $out" ||
        bad "--env then kiroctl in one line: $out"
out=$(env -i HOME="$HOME" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" PATH=/usr/bin:/bin TERM=dumb \
      bash --norc -i -c "eval \"\$('$gw' --env)\"; kiroctl --no-legend list; echo rc=\$?" 2>/dev/null)
[ "$out" = "rc=0" ] && ok "the same in an interactive bash" || bad "interactive bash: $out"
if command -v zsh >/dev/null; then
        out=$(env -i HOME="$HOME" XDG_RUNTIME_DIR="$XDG_RUNTIME_DIR" PATH=/usr/bin:/bin \
              zsh -f -c "eval \"\$('$gw' --env)\"; kiroctl list --json" 2>&1)
        [ "$out" = "[]" ] && ok "the same in zsh" || bad "zsh: $out"
fi
grep -q alias <("$gw" --env) && bad "--env prints an alias"

# A second run: refused, says where the first is, and the first keeps its bus socket and serves on.
"$gw" >"$work/second.out" 2>&1
rc=$?
[ "$rc" -ne 0 ] && grep -q "already running" "$work/second.out" && grep -q "pid $first" "$work/second.out" &&
        grep -q "127.0.0.1:$port" "$work/second.out" &&
        ok "a second run is refused (exit $rc): $(tr '\n' ' ' <"$work/second.out")" ||
        bad "second run (exit $rc): $(cat "$work/second.out")"
[ -S "$rundir/bus" ] && ok "the first gateway's bus socket is still there" || bad "the bus socket was deleted"
out=$(DBUS_SESSION_BUS_ADDRESS=unix:path=$rundir/bus "$build/kiroctl/kiroctl" --user list --json 2>&1)
[ "$out" = "[]" ] && ok "kiro-authd of the first gateway still answers" || bad "after the second run: $out"
kill -0 "$first" 2>/dev/null && ok "the first gateway still runs" || bad "the first gateway is gone"

# Ctrl-C (SIGINT to the process group): everything stops and the run directory is cleaned up.
kill -INT -- -"$first"
for _ in $(seq 100); do kill -0 "$first" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$first" 2>/dev/null; then
        bad "the gateway did not stop on SIGINT"
else
        first=
        [ ! -e "$rundir/bus" ] && [ ! -e "$rundir/http.sock" ] && ok "stopped; bus and unix sockets removed" ||
                bad "left behind: $(ls "$rundir")"
fi

[ "$fails" -eq 0 ] || { echo "$fails checks failed"; exit 1; }
echo "PASS"
