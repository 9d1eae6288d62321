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
# wait_until SECONDS COMMAND...
wait_until() {
        local deadline=$((SECONDS + $1))
        shift
        until "$@" >/dev/null 2>&1; do
                [ $SECONDS -lt $deadline ] || return 1
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
        rm -f /run/kirod-fakes.json
        systemd-run --quiet --unit=kirod-fakes --property=Type=exec /usr/bin/python3 "$T/kirod-fakes.py" \
                --state "$S/fakes-state.json" --ready-file /run/kirod-fakes.json \
                --seed vm=rt-vm-0 --seed alice=rt-alice-0
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
