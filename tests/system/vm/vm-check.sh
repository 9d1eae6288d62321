#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Runs inside the VM of tests/system/vm-test.sh, from kirod-vm-test.service after every boot, and
# reports on the serial console: one "KIROD-VM: ok: ..." or "KIROD-VM: FAIL: ..." line per check,
# then "KIROD-VM-RESULT: ..." for the boot. Boot 1 sets kirod up as an administrator would and
# reboots; boot 2 checks that everything came back, then powers off. Any failure powers off at once.
set -u
export LANG=C.UTF-8 SYSTEMD_COLORS=0 SYSTEMD_PAGER= NO_COLOR=1

T=/usr/local/lib/kirod-test
S=/var/lib/kirod-test
mkdir -p "$S"
boot=$(cat "$S/boot" 2>/dev/null || echo 1)
fails=0
units=(kiro-authd.service kiro-proxyd.service kiro-proxyd.socket kiro-proxyd-unix.socket)

say() { echo "KIROD-VM: $*"; }
ok() { say "ok: $*"; }
bad() { say "FAIL: $*"; fails=$((fails + 1)); }
# check WHAT COMMAND...: runs COMMAND, ok if it succeeds; its output goes to the console on failure.
check() {
        local what=$1 out
        shift
        if out=$("$@" 2>&1); then
                ok "$what"
        else
                bad "$what"
                printf '%s\n' "$out" | tail -n 20 | sed 's/^/    /'
        fi
}
# refused WHAT COMMAND...: ok if COMMAND fails.
refused() {
        local what=$1 out
        shift
        if out=$("$@" 2>&1); then
                bad "$what (it succeeded)"
        else
                ok "$what: $(printf '%s' "$out" | tail -n 1)"
        fi
}
# Centiseconds since boot, from /proc/uptime (CLOCK_BOOTTIME): unmoved by the wall-clock jumps of the
# clock step, unlike bash's $SECONDS and `date`, which follow the wall clock.
uptime_cs() {
        local u
        read -r u _ </proc/uptime
        echo $((10#${u/./}))
}
# wait_until SECONDS COMMAND...
wait_until() {
        local deadline=$(($(uptime_cs) + $1 * 100))
        shift
        until "$@" >/dev/null 2>&1; do
                [ "$(uptime_cs)" -lt $deadline ] || return 1
                sleep 0.5
        done
}
as() {
        local u=$1
        shift
        runuser -u "$u" -- "$@"
}
user_env() {
        local uid
        uid=$(id -u "$1")
        echo "XDG_RUNTIME_DIR=/run/user/$uid DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$uid/bus"
}
as_session() {
        local u=$1
        shift
        # shellcheck disable=SC2046
        runuser -u "$u" -- env $(user_env "$u") "$@"
}

finish() {
        if [ "$fails" -eq 0 ] && [ "${1:-}" = next ]; then
                echo 2 >"$S/boot"
                say "boot $boot passed, rebooting"
                sync
                systemctl reboot
                exit 0
        fi
        if [ "$fails" -ne 0 ]; then
                say "---- journal of the kirod units ----"
                journalctl -b --no-pager -o short-monotonic -u 'kiro-*' -u kirod-fakes.service -u dbus.service |
                        tail -n 150
                say "---- failed units ----"
                systemctl --failed --no-legend --no-pager
                echo "KIROD-VM-RESULT: FAIL ($fails failed checks, boot $boot)"
        else
                echo "KIROD-VM-RESULT: PASS (boot $boot)"
        fi
        sync
        systemctl poweroff
        exit 0
}

start_fakes() {
        rm -f /run/kirod-fakes.json /run/kirod-fakes-status.json
        systemd-run --quiet --unit=kirod-fakes --property=Type=exec /usr/bin/python3 "$T/kirod-fakes.py" \
                --state "$S/fakes-state.json" --ready-file /run/kirod-fakes.json \
                --status-file /run/kirod-fakes-status.json --script-file /run/kirod-fakes-script.json \
                --seed vm=rt-vm-0 --seed alice=rt-alice-0 --seed alicecli=rt-alicecli-0
        if wait_until 60 test -s /run/kirod-fakes.json; then
                ok "fake Kiro auth and chat services started"
        else
                bad "fake services did not start"
                finish
        fi
}

# chat WHAT EXPECT CURL-ARGS...: an OpenAI chat request; ok if the answer echoes EXPECT.
chat_openai() {
        local what=$1 prompt=$2
        shift 2
        check "$what" bash -c 'out=$("$@" -sS -m 90 -H "Content-Type: application/json" \
                -d "{\"model\":\"claude-sonnet-4\",\"messages\":[{\"role\":\"user\",\"content\":\"$0\"}]}") || exit 1
                printf "%s\n" "$out" | grep -q "You said: $0" || { printf "%s\n" "$out"; exit 1; }' "$prompt" "$@"
}
chat_anthropic() {
        local what=$1 prompt=$2
        shift 2
        check "$what" bash -c 'out=$("$@" -sS -m 90 -H "Content-Type: application/json" -H "anthropic-version: 2023-06-01" \
                -d "{\"model\":\"claude-sonnet-4\",\"max_tokens\":200,\"messages\":[{\"role\":\"user\",\"content\":\"$0\"}]}") || exit 1
                printf "%s\n" "$out" | grep -q "You said: $0" || { printf "%s\n" "$out"; exit 1; }' "$prompt" "$@"
}

cred_active() {
        local who=$1 id=$2
        shift 2
        as "$who" "$@" kiroctl status --json "$id" 2>/dev/null | grep -q '"state":"active"'
}

journal_clean() {
        # A blocked system call kills the daemon here (SystemCallErrorNumber=kill drop-ins), so the
        # sandbox is proven by its absence: no SIGSYS, no seccomp audit record, no EPERM in our logs.
        local bad_lines
        bad_lines=$(journalctl -b --no-pager -o cat -u 'kiro-*' --user-unit 'kiro-*' |
                grep -E 'SIGSYS|status=31|Bad system call|Operation not permitted|EPERM|Permission denied' || true)
        bad_lines+=$'\n'$(journalctl -b -k --no-pager -o cat | grep -E 'type=1326|seccomp' || true)
        bad_lines=$(printf '%s\n' "$bad_lines" | sed '/^$/d')
        [ -z "$bad_lines" ] || { printf '%s\n' "$bad_lines"; return 1; }
}

# ---- the wall clock jumping forward and back (issue 11) ----
# Root in the VM moves the real clock (clock_settime(CLOCK_REALTIME)), which the kernel's realtime
# timers see, the way an NTP step or an administrator's `date -s` does; the host's clock is not touched.
# Each jump is relative to the clock it finds; the last one puts the clock back to the real time.

# clock_jump_by SECONDS (may be negative)
clock_jump_by() {
        python3 -c 'import sys, time
time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + float(sys.argv[1]))' "$1"
}
# clock_jump_to UNIX-SECONDS
clock_jump_to() {
        python3 -c 'import sys, time; time.clock_settime(time.CLOCK_REALTIME, float(sys.argv[1]))' "$1"
}
# fakes_status PYTHON-EXPRESSION: its value, with s the fakes' status file (kirod-fakes.py docstring).
fakes_status() {
        python3 -c 'import json, sys
s = json.load(open("/run/kirod-fakes-status.json"))
print(eval(sys.argv[1]))' "$1"
}
rotations() {
        fakes_status "s['rotations']['$1']"
}
rotations_are() {
        [ "$(rotations "$1")" = "$2" ]
}
# cred_json USER ID FIELD: a field of `kiroctl status --json ID`, as USER (the system bus, or alice's own
# kiro-authd on her session bus).
cred_json() {
        if [ "$1" = alice ]; then
                as_session alice kiroctl --user status --json "$2"
        else
                runuser -u "$1" -- kiroctl status --json "$2"
        fi | python3 -c 'import json, sys
j = json.load(sys.stdin)
j = j[0] if isinstance(j, list) else j
print(j[sys.argv[1]])' "$3"
}
# one_upstream_chat TAG: exactly one upstream request carried TAG, answered 200 with vm's newest token,
# unexpired by the fake's clock.
one_upstream_chat() {
        python3 - "$1" <<'EOF'
import json, sys
s = json.load(open("/run/kirod-fakes-status.json"))
l = [c for c in s["chats"] if c["tag"] == sys.argv[1]]
if not (len(l) == 1 and l[0]["lineage"] == "vm" and l[0]["latest"] and not l[0]["expired"] and l[0]["status"] == 200):
        sys.exit(f"upstream requests tagged {sys.argv[1]}: {l}")
EOF
}
# rotations_still VM ALICE: the fakes counted exactly these refreshes of vm and alice.
rotations_still() {
        local v a
        v=$(rotations vm)
        a=$(rotations alice)
        [ "$v" = "$1" ] && [ "$a" = "$2" ] || { echo "refreshes: vm $v (want $1), alice $a (want $2)"; return 1; }
}
# stream_start TAG FILE: a streamed OpenAI chat that the fake answers slowly (the first frame after 4 s,
# then 8 frames 1 s apart), in the background, its SSE body to FILE.
stream_start() {
        curl -sS -N -m 180 http://127.0.0.1:8399/v1/chat/completions -H "Content-Type: application/json" \
                -d "{\"model\":\"claude-sonnet-4\",\"stream\":true,\"messages\":[{\"role\":\"user\",\"content\":\"clockjump-slow $1\"}]}" \
                >"$2" 2>&1 &
        stream_pid=$!
        stream_t0=$(uptime_cs)
}
# stream_intact FILE SECONDS: the SSE body holds the whole answer in order, a normal stop and [DONE], and
# it took SECONDS (monotonic) that are no less than the fake's delays (11 s to the last text frame) and
# not much more.
stream_intact() {
        [ "$2" -ge 11 ] && [ "$2" -le 90 ] || { echo "took $2 s"; return 1; }
        python3 - "$1" <<'EOF'
import json, sys
text, finish, done = "", None, False
for line in open(sys.argv[1]):
        line = line.strip()
        if line == "data: [DONE]":
                done = True
        elif line.startswith("data: "):
                j = json.loads(line[6:])
                if "error" in j:
                        sys.exit(f"error event: {line}")
                for c in j.get("choices", []):
                        text += (c.get("delta") or {}).get("content") or ""
                        finish = c.get("finish_reason") or finish
want = "".join(f"clock-{i:02d} " for i in range(1, 9))
if text != want or finish != "stop" or not done:
        sys.exit(f"text {text!r} (want {want!r}), finish_reason {finish!r}, [DONE] {done}")
EOF
}
# header_deadline_check MODE: a raw client of kiro-proxyd on 127.0.0.1:8399 whose request headers take
# long, with the clock jumping meanwhile (the header deadline, HeaderTimeoutSec=20, is monotonic).
#   early: request line, 3 s, the clock jumps 2 h forward, 3 s, the rest: answered 200 (not cut early)
#   late:  an incomplete request, then the clock jumps 2 h back: the connection is still closed at
#          the deadline (15-60 s on the monotonic clock), not 2 h later
header_deadline_check() {
        python3 - "$1" "$S/header-$1.txt" <<'EOF'
import socket, sys, time
def jump(d):
        time.clock_settime(time.CLOCK_REALTIME, time.clock_gettime(time.CLOCK_REALTIME) + d)
s = socket.create_connection(("127.0.0.1", 8399), timeout=120)
t0 = time.monotonic()
if sys.argv[1] == "early":
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
        time.sleep(3)
        jump(7200)
        time.sleep(3)
        s.sendall(b"Host: 127.0.0.1:8399\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := s.recv(4096):
                answer += chunk
        if not answer.startswith(b"HTTP/1.1 200"):
                sys.exit(f"answer {answer[:200]!r}")
        print(f"answered 200 after {time.monotonic() - t0:.1f} s")
        open(sys.argv[2], "w").write(f"answered 200 after {time.monotonic() - t0:.1f} s\n")
else:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:8399\r\n")
        time.sleep(1)
        jump(-7200)
        try:
                while s.recv(4096):
                        pass
        except (ConnectionResetError, socket.timeout) as e:
                if isinstance(e, socket.timeout):
                        sys.exit("not closed within 120 s")
        took = time.monotonic() - t0
        print(f"closed after {took:.1f} s")
        open(sys.argv[2], "w").write(f"closed after {took:.1f} s\n")
        if not 15 <= took <= 60:
                sys.exit(f"closed after {took:.1f} s, want 15-60 s (HeaderTimeoutSec=20)")
EOF
}

clock_step() {
        local real0 up0 timers r_vm r_alice exp0 next0 exp1 next1 target took
        real0=$(date +%s.%N)
        up0=$(uptime_cs)
        say "clock step: the wall clock jumps forward and back (real time $(date -u +%FT%TZ))"
        say "clock: timedatectl: $(timedatectl show -p NTP -p NTPSynchronized -p CanNTP 2>&1 | tr '\n' ' ')"
        check "clock: no NTP client can move the clock meanwhile (none installed, none running)" \
                bash -c '! systemctl list-unit-files --no-legend systemd-timesyncd.service chrony.service ntp.service \
                                 ntpsec.service openntpd.service | grep . &&
                         ! pgrep -l -x "systemd-timesyn|chronyd|ntpd|ntpsec|openntpd|sntp"'
        # Calendar timers (apt-daily, logrotate, ...) would run when the clock jumps past their time.
        timers=$(systemctl list-units --type=timer --state=active --no-legend --plain | awk '{print $1}')
        [ -z "$timers" ] || systemctl stop $timers

        # -- forward, past (expiry - RefreshMarginSec) --
        check "clock: kiroctl refresh vm (a fresh token; the fake says expiresIn 3600)" as admin kiroctl refresh vm
        wait_until 10 fakes_status "s['has_access_token']['vm']"
        r_vm=$(rotations vm)
        r_alice=$(rotations alice)
        exp0=$(cred_json root vm expires_at_usec)
        next0=$(cred_json root vm next_refresh_at_usec)
        check "clock: vm's token expires in ~1 h, its refresh is due RefreshMarginSec=600 (+ RefreshJitterSec=5) before" \
                python3 -c 'import sys, time
exp, nxt = int(sys.argv[1]) / 1e6, int(sys.argv[2]) / 1e6
assert 3500 < exp - time.time() <= 3600 and 600 <= exp - nxt <= 605, (exp - time.time(), exp - nxt)' "$exp0" "$next0"
        # kiro-proxyd holds vm's token in its cache across the jump: a stream in flight keeps it running
        # (ExitOnIdleSec=5s) from before the jump to the chat after it.
        stream_start cj-stream-pre "$S/stream-pre.out"
        local pre_pid=$stream_pid pre_t0=$stream_t0 proxy_pid
        check "clock: a stream through kiro-proxyd is in flight (kiro-proxyd caches vm's current token)" \
                wait_until 30 grep -q '"tag": "cj-stream-pre"' /run/kirod-fakes-status.json
        proxy_pid=$(systemctl show -P MainPID kiro-proxyd.service)
        target=$((exp0 / 1000000 - 90))
        clock_jump_to "$target"
        check "clock: jumped $((target - ${real0%.*})) s forward, to 90 s before vm's expiry: kiro-authd refreshes vm" \
                wait_until 30 rotations_are vm $((r_vm + 1))
        chat_openai "clock: a chat right after the forward jump" "cj-fwd-chat" curl http://127.0.0.1:8399/v1/chat/completions
        check "clock: ... reached Kiro once, with vm's new token, unexpired by the fake's (jumped) clock" \
                one_upstream_chat cj-fwd-chat
        check "clock: ... served by the kiro-proxyd that had cached the old token (90 s left by the new clock, under its 120 s renewal)" \
                bash -c '[ "$1" != 0 ] && [ "$1" = "$2" ]' _ "$proxy_pid" "$(systemctl show -P MainPID kiro-proxyd.service)"
        check "clock: ... within 10 s of the jump, by the fake's clock (the realtime refresh timer fired on the jump)" \
                python3 -c 'import json, sys
s = json.load(open("/run/kirod-fakes-status.json"))
d = s["rotated_at"]["vm"] - float(sys.argv[1])
assert 0 <= d <= 10, d' "$target"
        say "clock: vm was refreshed $(fakes_status "round(s['rotated_at']['vm'] - $target, 2)") s after the jump"
        wait "$pre_pid"
        check "clock: the stream in flight across that jump completed intact in $(( ($(uptime_cs) - pre_t0) / 100 )) s" \
                stream_intact "$S/stream-pre.out" $(( ($(uptime_cs) - pre_t0) / 100 ))
        check "clock: ... from one upstream request" one_upstream_chat cj-stream-pre
        check "clock: alice's kiro-authd (user bus) refreshes alice too" wait_until 30 rotations_are alice $((r_alice + 1))
        sleep 8
        check "clock: 8 s later still one refresh each, not a second" rotations_still $((r_vm + 1)) $((r_alice + 1))
        exp1=$(cred_json root vm expires_at_usec)
        next1=$(cred_json root vm next_refresh_at_usec)
        check "clock: kiroctl status vm: ExpiresAt moved to ~1 h past the new clock, NextRefreshAt 600 s before, active" \
                python3 -c 'import sys, time
exp1, nxt1, st = int(sys.argv[1]) / 1e6, int(sys.argv[2]) / 1e6, sys.argv[3]
assert 3450 < exp1 - time.time() <= 3600 and 600 <= exp1 - nxt1 <= 605 and st == "active", \
        (exp1 - time.time(), exp1 - nxt1, st)' "$exp1" "$next1" "$(cred_json root vm state)"

        # -- back by 2 h --
        clock_jump_by -7200
        sleep 10
        check "clock: jumped 2 h back: no refresh in the 10 s after it" rotations_still $((r_vm + 1)) $((r_alice + 1))
        check "clock: ... NextRefreshAt is the same absolute time, state active" \
                bash -c '[ "$1" = "$2" ] && [ "$3" = active ]' _ "$next1" "$(cred_json root vm next_refresh_at_usec)" \
                "$(cred_json root vm state)"
        chat_openai "clock: a chat after the backward jump" "cj-back-chat" curl http://127.0.0.1:8399/v1/chat/completions
        check "clock: ... reached Kiro once, with vm's current token" one_upstream_chat cj-back-chat

        # -- streams in flight across jumps (FirstTokenTimeoutSec=30, StallTimeoutSec=300,
        #    IdleTimeoutSec=120, RequestTimeoutSec=120; all monotonic) --
        stream_start cj-stream-fwd "$S/stream-fwd.out"
        check "clock: stream 1 reached the fake, which holds its first frame 4 s" \
                wait_until 30 grep -q '"tag": "cj-stream-fwd"' /run/kirod-fakes-status.json
        clock_jump_by 7200
        check "clock: jumped 2 h forward while stream 1 waited for its first token" \
                bash -c '! grep -q clock-01 "$1"' _ "$S/stream-fwd.out"
        wait_until 30 grep -q clock-03 "$S/stream-fwd.out"
        clock_jump_by 1000
        check "clock: jumped 1000 s forward (more than the stall and idle timeouts) after its 3rd frame" \
                bash -c '! grep -q clock-08 "$1"' _ "$S/stream-fwd.out"
        wait "$stream_pid"
        took=$(( ($(uptime_cs) - stream_t0) / 100 ))
        check "clock: stream 1 completed intact in $took s (11 s of the fake's delays; no deadline fired early)" \
                stream_intact "$S/stream-fwd.out" "$took"
        check "clock: ... from one upstream request (the first-token timeout did not retry it)" \
                one_upstream_chat cj-stream-fwd
        stream_start cj-stream-back "$S/stream-back.out"
        wait_until 30 grep -q '"tag": "cj-stream-back"' /run/kirod-fakes-status.json
        clock_jump_by -7200
        check "clock: jumped 2 h back while stream 2 waited for its first token" \
                bash -c '! grep -q clock-01 "$1"' _ "$S/stream-back.out"
        wait_until 30 grep -q clock-03 "$S/stream-back.out"
        clock_jump_by -7200
        check "clock: jumped 2 h back again after its 3rd frame" bash -c '! grep -q clock-08 "$1"' _ "$S/stream-back.out"
        wait "$stream_pid"
        took=$(( ($(uptime_cs) - stream_t0) / 100 ))
        check "clock: stream 2 completed intact in $took s" stream_intact "$S/stream-back.out" "$took"
        check "clock: ... from one upstream request" one_upstream_chat cj-stream-back
        check "clock: header deadline not early: headers sent over 6 s with a 2 h forward jump in between are answered" \
                header_deadline_check early
        say "clock: ... $(cat "$S/header-early.txt" 2>/dev/null)"
        check "clock: header deadline not late: unfinished headers, a 2 h backward jump, closed at HeaderTimeoutSec=20" \
                header_deadline_check late
        say "clock: ... $(cat "$S/header-late.txt" 2>/dev/null)"
        check "clock: no refresh across the streams' jumps (the token stayed valid by every clock)" \
                rotations_still $((r_vm + 1)) $((r_alice + 1))

        # -- a failed refresh's retry (RetryInitialSec=15, +-20 %) with the clock jumping 2 h back meanwhile:
        #    a backoff is a duration, it must not wait the jump out --
        printf '[{"status": 500}]' >/run/kirod-fakes-script.json
        check "clock: the fake fails vm's next refresh (HTTP 500)" wait_until 10 test ! -e /run/kirod-fakes-script.json
        as admin kiroctl refresh vm >/dev/null 2>&1
        check "clock: ... kiroctl refresh vm failed transiently: one failure, the retry due in 12-18 s" \
                python3 -c 'import sys, time
f, nxt = int(sys.argv[1]), int(sys.argv[2]) / 1e6
assert f == 1 and 5 <= nxt - time.time() <= 18, (f, nxt - time.time())' \
                "$(cred_json root vm consecutive_failures)" "$(cred_json root vm next_refresh_at_usec)"
        took=$(uptime_cs)
        clock_jump_by -7200
        check "clock: jumped 2 h back during the backoff: the retry still comes (within 45 s) and succeeds" \
                wait_until 45 rotations_are vm $((r_vm + 2))
        rotations_are vm $((r_vm + 2)) && say "clock: ... the retry succeeded $(( ($(uptime_cs) - took) / 100 )) s after the jump (polled)"
        check "clock: ... vm active again, no failure left" \
                bash -c '[ "$1" = active ] && [ "$2" = 0 ]' _ "$(cred_json root vm state)" "$(cred_json root vm consecutive_failures)"

        # -- back to the real time: its value at the start plus the time elapsed since on CLOCK_BOOTTIME.
        #    The jumps added up to 4 h 45 min back, so the token of that retry expired by the real time
        #    (the fake's clock too): the refresh timer fires on the jump. --
        clock_jump_to "$(python3 -c 'import sys; print(f"{float(sys.argv[1]) + (int(sys.argv[3]) - int(sys.argv[2])) / 100:.3f}")' \
                "$real0" "$up0" "$(uptime_cs)")"
        [ -z "$timers" ] || systemctl start $timers
        check "clock: restored to the real time ($(date -u +%FT%TZ)), past vm's expiry: kiro-authd refreshes vm" \
                wait_until 30 rotations_are vm $((r_vm + 3))
        check "clock: ... vm active, its next refresh ahead" \
                bash -c '[ "$1" = active ] && [ "$2" -gt "$(date +%s%6N)" ]' _ "$(cred_json root vm state)" \
                "$(cred_json root vm next_refresh_at_usec)"
        chat_openai "clock: a chat at the real time again" "cj-restored-chat" curl http://127.0.0.1:8399/v1/chat/completions
        check "clock: ... with vm's current token" one_upstream_chat cj-restored-chat
        sleep 5
        check "clock: no other refresh: vm 3 since the first jump (jump, retry, restore), alice 1" \
                rotations_still $((r_vm + 3)) $((r_alice + 1))
        say "clock step: took $(( ($(uptime_cs) - up0) / 100 )) s"
}

# ---- a linked kiro-cli database across restarts of alice's kiro-authd (systemd's fd store) ----
ALICE_DB=/home/alice/.local/share/kiro-cli/data.sqlite3
# link_field FIELD: a field of `kiroctl --user status --json alicecli` (alice's kiro-authd).
link_field() {
        as_session alice kiroctl --user status --json alicecli 2>/dev/null | python3 -c '
import json, sys
d = json.load(sys.stdin)
d = d[0] if isinstance(d, list) else d
print(d.get(sys.argv[1]) or "")' "$1"
}
link_is() { [ "$(link_field link)" = "$1" ]; }
# db_token FIELD: a field of the login kiro-cli's database holds.
db_token() {
        as alice python3 -c '
import json, sqlite3, sys
c = sqlite3.connect("file:" + sys.argv[1] + "?mode=ro", uri=True)
v = json.loads(c.execute("SELECT value FROM auth_kv WHERE key = ?", ("kirocli:social:token",)).fetchone()[0])
print(v.get(sys.argv[2], ""))' "$ALICE_DB" "$1"
}
db_token_is_not() { [ "$(db_token refresh_token)" != "$1" ]; }
db_kept_unknown_field() { [ "$(db_token vm_unknown_field)" = kept ]; }
link_detached() { link_is detached && link_field link_message | grep -q -- "--link --replace"; }

link_step() {
        local rt1
        as alice mkdir -p "$(dirname "$ALICE_DB")"
        # kiro-cli's schema with an expired login, an unknown field in its JSON and another table's row.
        as alice python3 - "$ALICE_DB" <<'PY'
import json, sqlite3, sys, time
c = sqlite3.connect(sys.argv[1])
c.execute("CREATE TABLE auth_kv (key TEXT PRIMARY KEY, value TEXT)")
c.execute("CREATE TABLE state (key TEXT PRIMARY KEY, value BLOB)")
exp = time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime(time.time() - 60))
c.execute("INSERT INTO auth_kv VALUES (?, ?)", ("kirocli:social:token", json.dumps(
        {"access_token": "at-alicecli-old", "refresh_token": "rt-alicecli-0", "expires_at": exp,
         "region": "us-east-1", "vm_unknown_field": "kept"})))
c.execute("INSERT INTO state VALUES ('telemetryClientId', 'vm-link-step')")
c.commit()
PY
        check "link: kiroctl --user import --from-kiro-cli --link (alice)" \
                as_session alice kiroctl --user import --from-kiro-cli --db "$ALICE_DB" --link --id alicecli
        check "link: the linked credential follows its database" wait_until 30 link_is following
        check "link: the refresh of the expired login was written back into kiro-cli's database" \
                wait_until 30 db_token_is_not rt-alicecli-0
        check "link: the database kept the unknown field of the login" \
                db_kept_unknown_field
        rt1=$(db_token refresh_token)
        check "systemctl --user restart kiro-authd.service (alice)" \
                as_session alice systemctl --user restart kiro-authd.service
        check "link: after the restart the credential still follows (the fd came back from systemd's fd store)" \
                wait_until 30 link_is following
        check "link: a refresh after the restart is written back through the restored fd" \
                as_session alice kiroctl --user refresh alicecli
        check "link: the database holds the refresh token rotated after the restart" \
                wait_until 30 db_token_is_not "$rt1"
        check "link: stop and start of kiro-authd (systemd 252 drops the fd store): state detached" \
                bash -c "runuser -u alice -- env $(user_env alice) systemctl --user stop kiro-authd.service &&
                         runuser -u alice -- env $(user_env alice) systemctl --user start kiro-authd.service"
        check "link: detached, with the command that links it again" \
                wait_until 30 link_detached
        check "link: kiroctl --user remove alicecli" as_session alice kiroctl --user remove alicecli
}

no_failed_units() {
        local f
        f=$(systemctl --failed --no-legend --no-pager)
        [ -z "$f" ] || { printf '%s\n' "$f"; return 1; }
}

say "boot $boot: $(systemctl --version | head -n 1), kernel $(uname -r), virtualization $(systemd-detect-virt)"

if [ "$boot" = 1 ]; then
        # ---- kirod came from the Debian package (vm-test.sh: apt install ./kirod_*.deb) ----
        check "the kirod package is installed" \
                bash -c '[ "$(dpkg-query -W -f="\${Status}" kirod)" = "install ok installed" ]'
        check "/etc/kirod/kiro-authd.conf and kiro-proxyd.conf are conffiles of kirod" \
                bash -c 'dpkg-query -W -f="\${Conffiles}\n" kirod | grep -q "/etc/kirod/kiro-authd.conf " &&
                         dpkg-query -W -f="\${Conffiles}\n" kirod | grep -q "/etc/kirod/kiro-proxyd.conf "'
        # ---- what systemd-sysusers made from sysusers.d/kirod.conf at boot ----
        check "sysusers: users kiro-auth, kiro-proxy and groups kiro-admin, kiro-users exist" \
                getent passwd kiro-auth kiro-proxy
        check "sysusers: groups" getent group kiro-admin kiro-users kiro-auth kiro-proxy
        useradd -m -G kiro-admin,kiro-users admin
        useradd -m bob
        useradd -m alice

        check "systemd-analyze verify of the installed system units" \
                systemd-analyze verify --man=no "${units[@]}"
        start_fakes

        # ---- the system services ----
        # The package enabled them (dh_installsystemd): they came up at the first boot by themselves.
        for u in kiro-authd.service kiro-proxyd.socket kiro-proxyd-unix.socket; do
                check "$u was enabled by the package and is active at the first boot" \
                        bash -c "systemctl is-enabled -q $u && systemctl is-active -q $u"
        done
        # A static API key in the credential store (LoadCredential=kiro-api-key); kiro-refresh-token
        # stays missing, which must not keep the unit from starting. kiro-authd imports them when it
        # starts, hence the restart (docs/install.md).
        install -d -m 0700 /etc/credstore
        printf 'ksk_vm_static' >/etc/credstore/kiro-api-key
        chmod 0600 /etc/credstore/kiro-api-key
        check "systemctl enable --now kiro-authd.service kiro-proxyd.socket" \
                systemctl enable --now kiro-authd.service kiro-proxyd.socket
        check "systemctl restart kiro-authd.service (loads the new systemd credential)" \
                systemctl restart kiro-authd.service
        for s in kiro-authd.service kiro-proxyd.service; do
                check "$s: the test's drop-in (kill on a blocked system call) is loaded" \
                        bash -c "systemctl show -P DropInPaths $s | grep -q 50-vm-test-kill-on-blocked-syscall.conf"
        done
        for u in kiro-authd.service kiro-proxyd.socket kiro-proxyd-unix.socket; do
                check "$u is active" systemctl is-active "$u"
                check "$u is enabled" systemctl is-enabled "$u"
        done
        check "systemctl service-log-level kiro-authd (LogControl1 through BusName=)" \
                bash -c 'systemctl service-log-level kiro-authd debug &&
                         [ "$(systemctl service-log-level kiro-authd)" = debug ] &&
                         systemctl service-log-level kiro-authd info'
        check "/run/kiro-proxyd/http.sock is a socket, root:kiro-users 0660" \
                bash -c '[ "$(stat -c "%F %U:%G %a" /run/kiro-proxyd/http.sock)" = "socket root:kiro-users 660" ]'
        for s in kiro-authd.service kiro-proxyd.service; do
                check "systemd-analyze security $s: exposure at most 1.5" \
                        bash -c "systemd-analyze security --no-pager $s | tail -n 1; systemd-analyze security --threshold=15 $s >/dev/null"
        done

        # ---- credentials: an admin imports, others may not ----
        printf 'rt-vm-0' >/home/admin/refresh-token
        chown admin: /home/admin/refresh-token
        chmod 0600 /home/admin/refresh-token
        check "kiroctl import as a member of kiro-admin" \
                as admin kiroctl import --refresh-token-file /home/admin/refresh-token --id vm
        check "the imported credential refreshes against the fake auth service (state active)" \
                wait_until 60 cred_active admin vm
        check "state: /var/lib/kiro-authd 0700 and vm.json 0600, owned by kiro-auth" \
                bash -c '[ "$(stat -c "%U %a" /var/lib/kiro-authd)" = "kiro-auth 700" ] &&
                         [ "$(stat -c "%U %a" /var/lib/kiro-authd/credentials/vm.json)" = "kiro-auth 600" ]'
        check "LoadCredential=kiro-api-key: imported at start as credential systemd-api-key" \
                bash -c 'kiroctl status --json systemd-api-key | grep -q "\"auth_method\":\"api-key\""'
        check "kiroctl disable systemd-api-key (admin), so that chats use the refreshed credential" \
                as admin kiroctl disable systemd-api-key
        cp /home/admin/refresh-token /home/bob/refresh-token
        chown bob: /home/bob/refresh-token
        refused "kiroctl import refused for an ordinary user" \
                as bob kiroctl import --refresh-token-file /home/bob/refresh-token --id bob
        check "kiroctl list for an ordinary user" bash -c 'runuser -u bob -- kiroctl list | grep -q "^vm"'
        systemctl stop kiro-authd.service
        check "D-Bus activation: an ordinary user's kiroctl list starts the stopped kiro-authd" \
                bash -c 'runuser -u bob -- kiroctl list | grep -q "^vm" && systemctl is-active kiro-authd.service'

        # ---- GetToken: the proxy user only ----
        gettoken=(busctl call --system org.kirod.Auth1 /org/kirod/Auth1 org.kirod.Auth1.Manager GetToken sst kiro "" 0)
        refused "GetToken refused for an ordinary user" as bob "${gettoken[@]}"
        refused "GetToken refused for a member of kiro-admin" as admin "${gettoken[@]}"
        check "GetToken allowed for kiro-proxy" bash -c 'runuser -u kiro-proxy -- "$@" >/dev/null' _ "${gettoken[@]}"

        # ---- chat over both sockets ----
        chat_openai "OpenAI chat over TCP 127.0.0.1:8399" "ping over tcp" \
                curl http://127.0.0.1:8399/v1/chat/completions
        check "kiro-proxyd.service is active" systemctl is-active kiro-proxyd.service
        chat_anthropic "Anthropic messages over /run/kiro-proxyd/http.sock (kiro-users member)" "ping over unix" \
                runuser -u admin -- curl --unix-socket /run/kiro-proxyd/http.sock http://localhost/v1/messages
        refused "the local socket refuses a user outside kiro-users" \
                as bob curl -sS -m 10 --unix-socket /run/kiro-proxyd/http.sock http://localhost/healthz
        check "kiro-proxyd got both sockets by name" \
                bash -c 'journalctl -b -u kiro-proxyd -o cat | grep -q "Listening on 127.0.0.1:8399 (socket activation)" &&
                         journalctl -b -u kiro-proxyd -o cat | grep -q "Listening on unix:/run/kiro-proxyd/http.sock (socket activation)"'

        # ---- ExitOnIdleSec=5s (drop-in): exits when idle, the sockets bring it back ----
        check "kiro-proxyd exits after ExitOnIdleSec= without requests" \
                wait_until 40 bash -c '! systemctl is-active -q kiro-proxyd.service'
        check "kiro-proxyd.service ended cleanly (not failed)" \
                bash -c '[ "$(systemctl show -P Result kiro-proxyd.service)" = success ]'
        check "its sockets stay listening" systemctl is-active kiro-proxyd.socket kiro-proxyd-unix.socket
        chat_openai "the next request starts it again and is answered" "ping after idle exit" \
                curl http://127.0.0.1:8399/v1/chat/completions

        # ---- per-user services (systemctl --user) ----
        loginctl enable-linger alice
        check "alice's user manager runs (linger)" wait_until 60 systemctl is-active "user@$(id -u alice).service"
        check "alice's session bus" wait_until 30 test -S "/run/user/$(id -u alice)/bus"
        as alice mkdir -p /home/alice/.config/kirod /home/alice/.config/systemd/user/kiro-proxyd.socket.d
        as alice cp /etc/kirod/kiro-authd.conf.d/50-vm-test.conf /home/alice/.config/kirod/kiro-authd.conf
        as alice bash -c 'sed -e "/^ExitOnIdleSec=/d" /etc/kirod/kiro-proxyd.conf.d/50-vm-test.conf >/home/alice/.config/kirod/kiro-proxyd.conf'
        as alice bash -c 'printf "[Socket]\nListenStream=\nListenStream=127.0.0.1:8499\n" \
                >/home/alice/.config/systemd/user/kiro-proxyd.socket.d/50-port.conf'
        check "systemd-analyze --user verify of the installed user units" \
                as_session alice systemd-analyze --user verify --man=no "${units[@]}"
        check "systemctl --user enable --now kiro-authd.service kiro-proxyd.socket (alice)" \
                as_session alice systemctl --user enable --now kiro-authd.service kiro-proxyd.socket
        for u in kiro-authd.service kiro-proxyd.socket kiro-proxyd-unix.socket; do
                check "user unit $u is active" as_session alice systemctl --user is-active "$u"
        done
        printf 'rt-alice-0' >/home/alice/refresh-token
        chown alice: /home/alice/refresh-token
        chmod 0600 /home/alice/refresh-token
        check "kiroctl --user import (alice)" \
                as_session alice kiroctl --user import --refresh-token-file /home/alice/refresh-token --id alice
        check "alice's credential refreshes (state active)" \
                wait_until 60 bash -c "runuser -u alice -- env $(user_env alice) kiroctl --user status --json alice | grep -q '\"state\":\"active\"'"
        check "alice's credential is in ~/.local/state/kirod, 0600" \
                bash -c '[ "$(stat -c "%U %a" /home/alice/.local/state/kirod/credentials/alice.json)" = "alice 600" ]'
        chat_openai "per-user OpenAI chat over TCP 127.0.0.1:8499" "ping alice tcp" \
                curl http://127.0.0.1:8499/v1/chat/completions
        chat_openai "per-user chat over \$XDG_RUNTIME_DIR/kiro-proxyd/http.sock" "ping alice unix" \
                runuser -u alice -- curl --unix-socket "/run/user/$(id -u alice)/kiro-proxyd/http.sock" \
                http://localhost/v1/chat/completions
        check "no failed user units (alice)" \
                bash -c "[ -z \"\$(runuser -u alice -- env $(user_env alice) systemctl --user --failed --no-legend)\" ]"

        link_step
        clock_step

        check "no SIGSYS, seccomp kill or EPERM in the journal" journal_clean
        check "no failed units" no_failed_units
        finish next
fi

# ---- boot 2: everything comes back after a reboot ----
for u in kiro-authd.service kiro-proxyd.socket kiro-proxyd-unix.socket; do
        check "after reboot: $u is active" systemctl is-active "$u"
done
check "after reboot: kiro-proxyd is not running before the first connection" \
        bash -c '! systemctl is-active -q kiro-proxyd.service'
start_fakes
check "after reboot: the credential was kept (kiroctl status vm: active)" cred_active bob vm
check "after reboot: systemd-api-key is kept as it was (disabled), not imported again" \
        bash -c 'kiroctl status --json systemd-api-key | grep -q "\"enabled\":false"'
chat_openai "after reboot: OpenAI chat over TCP" "ping after reboot" curl http://127.0.0.1:8399/v1/chat/completions
chat_anthropic "after reboot: Anthropic messages over the local socket" "ping unix after reboot" \
        runuser -u admin -- curl --unix-socket /run/kiro-proxyd/http.sock http://localhost/v1/messages
check "after reboot: kiroctl refresh (the rotated refresh token was kept)" as admin kiroctl refresh vm
chat_openai "after reboot: chat with the new access token" "ping after refresh" \
        curl http://127.0.0.1:8399/v1/chat/completions
check "after reboot: alice's kiro-authd came back (linger)" \
        wait_until 60 runuser -u alice -- env $(user_env alice) systemctl --user is-active kiro-authd.service
chat_openai "after reboot: per-user chat over TCP 127.0.0.1:8499" "ping alice after reboot" \
        curl http://127.0.0.1:8499/v1/chat/completions
check "no SIGSYS, seccomp kill or EPERM in the journal" journal_clean
check "no failed units" no_failed_units

# ---- apt purge kirod: stops the services and leaves nothing of the package behind ----
# alice's own services first (her units go with the package), and the test's drop-ins (not the
# package's files: dpkg would keep the directories they are in).
runuser -u alice -- env $(user_env alice) systemctl --user disable --now kiro-authd.service kiro-proxyd.socket \
        >/dev/null 2>&1
rm -rf /etc/kirod/*.conf.d /etc/systemd/system/kiro-authd.service.d /etc/systemd/system/kiro-proxyd.service.d
check "apt-get purge kirod" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q kirod
check "after purge: the package is gone" \
        bash -c '[ "$(dpkg-query -W -f="\${Status}" kirod 2>/dev/null)" != "install ok installed" ] &&
                 ! dpkg-query -W -f="\${Conffiles}" kirod 2>/dev/null | grep -q .'
check "after purge: no kiro-authd or kiro-proxyd process" \
        bash -c '! pgrep -u kiro-auth,kiro-proxy >/dev/null'
# postrm reloads systemd on remove, before purge removes the enablement symlinks: reload once more.
check "after purge: no kiro unit known to systemd (after a daemon-reload)" \
        bash -c 'systemctl daemon-reload && [ -z "$(systemctl list-unit-files --no-legend "kiro-*")" ] &&
                 [ -z "$(systemctl list-units --all --no-legend "kiro-*")" ]'
check "after purge: nothing listens on 127.0.0.1:8399" bash -c '! curl -s -m 5 http://127.0.0.1:8399/healthz'
check "after purge: no file of the package, no enablement symlink, no /etc/kirod" \
        bash -c 'left=$(ls -d /etc/kirod /usr/bin/kiroctl /usr/libexec/kiro-authd /usr/libexec/kiro-proxyd \
                              /lib/systemd/system/kiro-* /usr/lib/systemd/user/kiro-* /usr/lib/sysusers.d/kirod.conf \
                              /usr/share/dbus-1/system.d/org.kirod.Auth1.conf \
                              /usr/share/dbus-1/system-services/org.kirod.Auth1.service \
                              /etc/systemd/system/*.wants/kiro-* /etc/systemd/user/*.wants/kiro-* 2>/dev/null)
                 [ -z "$left" ] || { echo "left behind: $left"; exit 1; }'
check "after purge: the bus no longer knows org.kirod.Auth1 (dbus reloaded by its trigger)" \
        wait_until 30 bash -c '! busctl --system list --activatable --no-legend | grep -q org.kirod.Auth1'
finish
