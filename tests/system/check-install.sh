#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Lint checks on what `meson install` produces, each run on a fresh DESTDIR install of BUILD_DIR:
#
#   check-install.sh files BUILD_DIR PATH...      every PATH (absolute, as installed) exists under DESTDIR
#   check-install.sh verify BUILD_DIR UNIT_PATH... systemd-analyze verify of the installed units, with
#                                                 the DESTDIR as --root (their ExecStart= must exist there)
#   check-install.sh security BUILD_DIR MAX UNIT_PATH...
#                                                 systemd-analyze security --offline=true: overall
#                                                 exposure of each service at most MAX (e.g. 1.5)
#   check-install.sh sysusers BUILD_DIR SYSUSERS_PATH USER|GROUP:NAME...
#                                                 systemd-sysusers --root=DESTDIR creates them
#
# Exit status 0 pass, 1 fail, 77 when the tool it needs is missing.
set -euo pipefail

mode=$1
build=$2
shift 2

skip() {
        echo "SKIP: $*"
        exit 77
}

dest=$(mktemp -d "${TMPDIR:-/tmp}/kirod-install.XXXXXX")
trap 'rm -rf "$dest"' EXIT
if ! out=$(meson install -C "$build" --no-rebuild --destdir "$dest" 2>&1); then
        printf '%s\n' "$out" | tail -n 30
        echo "meson install --destdir failed"
        exit 1
fi

# systemd-analyze --root= finds units by name in the root's search path only, whatever directory they
# were installed to: copy the units to check into the root's /etc/systemd/system (which wins over
# everything else), and give it the host's own units (sysinit.target, sockets.target, dbus.socket,
# ...) in /usr/lib/systemd/system, without replacing any installed file. Sets unit_names.
prepare_root() {
        local d p
        unit_names=()
        mkdir -p "$dest/etc/systemd/system" "$dest/usr/lib/systemd/system"
        for p in "$@"; do
                [ -e "$dest$p" ] || { echo "not installed: $p"; exit 1; }
                cp "$dest$p" "$dest/etc/systemd/system/"
                unit_names+=("$(basename "$p")")
        done
        for d in /usr/lib/systemd/system /lib/systemd/system; do
                [ -d "$d" ] || continue
                cp -an "$(readlink -f "$d")/." "$dest/usr/lib/systemd/system/"
                break
        done
        # ExecReload= runs /bin/sh: the host's, not ours.
        if [ ! -e "$dest/bin/sh" ]; then
                mkdir -p "$dest/bin"
                cp "$(readlink -f /bin/sh)" "$dest/bin/sh"
        fi
}

case $mode in
files)
        missing=0
        for p in "$@"; do
                if [ -e "$dest$p" ]; then
                        echo "ok: $p"
                else
                        echo "MISSING: $p"
                        missing=1
                fi
        done
        echo "installed files:"
        (cd "$dest" && find . -type f -o -type l | sort | sed 's|^\.|  |')
        exit $missing
        ;;
verify)
        command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (Debian: systemd)"
        prepare_root "$@"
        # Per-user units too: systemd 252 cannot combine --user with --root, and their ExecStart= paths
        # live in the DESTDIR, so they are verified in system scope here (for syntax, references and
        # executables); the VM test verifies them with --user on a real user manager.
        if ! out=$(systemd-analyze verify --man=no --root="$dest" "${unit_names[@]}" 2>&1); then
                printf '%s\n' "$out"
                echo "systemd-analyze verify failed"
                exit 1
        fi
        [ -z "$out" ] || { printf '%s\n' "$out"; echo "systemd-analyze verify printed warnings"; exit 1; }
        printf 'verified: %s\n' "$@"
        ;;
security)
        command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (Debian: systemd)"
        max=$1
        shift
        # --threshold= is in tenths of the printed exposure level.
        threshold=$(awk -v m="$max" 'BEGIN { printf "%d", m * 10 + 0.5 }')
        prepare_root "$@"
        rc=0
        for u in "${unit_names[@]}"; do
                level=$(systemd-analyze security --offline=true --root="$dest" --no-pager "$u" 2>&1 | tail -n 1)
                echo "$u: $level"
                if ! systemd-analyze security --offline=true --root="$dest" --threshold="$threshold" "$u" >/dev/null 2>&1; then
                        echo "$u: exposure above $max:"
                        systemd-analyze security --offline=true --root="$dest" --no-pager "$u" 2>&1 | grep '✗' || true
                        rc=1
                fi
        done
        exit $rc
        ;;
sysusers)
        command -v systemd-sysusers >/dev/null || skip "systemd-sysusers is not installed (Debian: systemd)"
        conf=$1
        shift
        [ -e "$dest$conf" ] || { echo "not installed: $conf"; exit 1; }
        mkdir -p "$dest/etc"
        systemd-sysusers --root="$dest" "$dest$conf"
        rc=0
        for e in "$@"; do
                kind=${e%%:*}
                name=${e#*:}
                file=$dest/etc/passwd
                [ "$kind" = group ] && file=$dest/etc/group
                if grep -q "^$name:" "$file"; then
                        echo "ok: $kind $name: $(grep "^$name:" "$file")"
                else
                        echo "MISSING: $kind $name"
                        rc=1
                fi
        done
        exit $rc
        ;;
*)
        echo "unknown mode '$mode'"
        exit 2
        ;;
esac
