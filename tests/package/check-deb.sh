#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# Builds the Debian package from a copy of the source tree (dpkg-buildpackage -us -uc -b, without the
# build-time tests: nocheck), checks what it installs and how (conffiles, maintainer scripts), and runs
# lintian on it: no error and no warning (overrides in debian/ say why).
#
#   tests/package/check-deb.sh SOURCE_DIR [OUT_DIR]
#
# OUT_DIR, if given, receives the built .deb (tests/system/vm-test.sh installs it).
# Exit status: 0 pass, 1 fail, 77 skipped (the packaging tools are missing and cannot be installed),
# with the reason on standard output.
set -euo pipefail

src=$(cd "$1" && pwd)
out=${2:-}

skip() {
        echo "SKIP: package test skipped: $*"
        exit 77
}
fail() {
        echo "FAIL: $*"
        exit 1
}

# The packaging tools and the build dependencies of debian/control, installed when missing (root).
. "$src/tools/deps.sh"
if ! command -v dpkg-buildpackage >/dev/null || ! command -v dh >/dev/null || ! command -v lintian >/dev/null ||
   ! (cd "$src" && dpkg-checkbuilddeps >/dev/null 2>&1); then
        [ "$(id -u)" -eq 0 ] || command -v sudo >/dev/null ||
                skip "dpkg-buildpackage, debhelper, lintian or a build dependency is missing, and installing needs root"
        kirod_install_deps "${KIROD_PACKAGE_DEPS[@]}" "${KIROD_BUILD_DEPS[@]}" >/dev/null 2>&1 ||
                skip "could not install the packaging tools (${KIROD_PACKAGE_DEPS[*]})"
        (cd "$src" && dpkg-checkbuilddeps) || fail "build dependencies still missing after installing"
fi

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kirod-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT

# A clean copy of the sources (no build directories), so that the build writes nothing next to them.
mkdir "$work/kirod"
tar -C "$src" --exclude='./build*' --exclude=./.git --exclude='./obj-*' --exclude='*/node_modules' \
    --exclude=./debian/kirod --exclude=./debian/.debhelper --exclude=./debian/tmp -cf - . |
        tar -C "$work/kirod" -xf -

t0=$SECONDS
if ! (cd "$work/kirod" && DEB_BUILD_OPTIONS="nocheck parallel=2" \
        dpkg-buildpackage -us -uc -b) >"$work/build.log" 2>&1; then
        tail -n 60 "$work/build.log"
        fail "dpkg-buildpackage failed"
fi
echo "dpkg-buildpackage: $((SECONDS - t0)) s"
deb=$(ls "$work"/kirod_*.deb)
changes=$(ls "$work"/kirod_*.changes)
[ -f "$deb" ] || fail "no kirod_*.deb built"

fails=0
bad() {
        echo "FAIL: $*"
        fails=$((fails + 1))
}

# ---- what the package installs ----
dpkg-deb -c "$deb" | awk '{ p = $6; sub(/^\./, "", p); print p }' >"$work/files"
for f in /usr/libexec/kiro-authd /usr/libexec/kiro-proxyd /usr/bin/kiroctl \
         /lib/systemd/system/kiro-authd.service /lib/systemd/system/kiro-proxyd.service \
         /lib/systemd/system/kiro-proxyd.socket /lib/systemd/system/kiro-proxyd-unix.socket \
         /usr/lib/systemd/user/kiro-authd.service /usr/lib/systemd/user/kiro-proxyd.socket \
         /usr/lib/sysusers.d/kirod.conf \
         /usr/share/dbus-1/system.d/org.kirod.Auth1.conf /usr/share/dbus-1/system-services/org.kirod.Auth1.service \
         /etc/kirod/kiro-authd.conf /etc/kirod/kiro-proxyd.conf \
         /usr/share/man/man1/kiroctl.1.gz /usr/share/man/man8/kiro-authd.8.gz /usr/share/man/man8/kiro-proxyd.8.gz \
         /usr/share/man/man5/kiro-authd.conf.5.gz /usr/share/man/man5/kiro-proxyd.conf.5.gz \
         /usr/share/bash-completion/completions/kiroctl /usr/share/zsh/vendor-completions/_kiroctl \
         /usr/share/fish/vendor_completions.d/kiroctl.fish; do
        grep -qxF "$f" "$work/files" && echo "ok: installs $f" || bad "does not install $f"
done
# Nothing under /usr/local, and nothing from the test or benchmark programs.
grep -E '^/usr/local|bench|test' "$work/files" && bad "installs files it should not (above)"

# ---- conffiles and maintainer scripts (all of them debhelper's) ----
dpkg-deb -e "$deb" "$work/control"
for f in /etc/kirod/kiro-authd.conf /etc/kirod/kiro-proxyd.conf; do
        grep -qxF "$f" "$work/control/conffiles" && echo "ok: conffile $f" || bad "$f is not a conffile"
done
grep -q 'systemd-sysusers.*kirod\.conf' "$work/control/postinst" &&
        echo "ok: postinst creates the users (systemd-sysusers kirod.conf)" ||
        bad "postinst does not run systemd-sysusers kirod.conf"
for u in kiro-authd.service kiro-proxyd.socket kiro-proxyd-unix.socket; do
        grep -qF "deb-systemd-helper enable '$u'" "$work/control/postinst" &&
                echo "ok: postinst enables $u" || bad "postinst does not enable $u"
done
# The per-user units are enabled again on upgrade only where an administrator had enabled them.
awk '/deb-systemd-helper --user enable/ && prev !~ /--user was-enabled/ { bad = 1 }
     NF && $1 !~ /^#/ { prev = $0 } END { exit bad }' "$work/control/postinst" &&
        echo "ok: postinst does not enable the per-user units for every user" ||
        bad "postinst enables the per-user units for every user"
grep -q 'deb-systemd-helper purge' "$work/control/postrm" &&
        echo "ok: postrm purges the units' enablement state" || bad "postrm does not purge the units' state"
dpkg-deb -f "$deb" Depends | grep -qw dbus && echo "ok: depends on dbus" || bad "does not depend on dbus"

# ---- lintian: no error, no warning ----
if lintian --fail-on error,warning --display-info "$changes" >"$work/lintian.log" 2>&1; then
        echo "ok: lintian (no errors or warnings)"
        sed 's/^/    /' "$work/lintian.log"
else
        sed 's/^/    /' "$work/lintian.log"
        bad "lintian reports errors or warnings (above)"
fi

if [ -n "$out" ]; then
        mkdir -p "$out"
        cp "$deb" "$out/"
        echo "copied $(basename "$deb") to $out"
fi
[ "$fails" -eq 0 ] || fail "$fails checks failed"
echo "PASS"
