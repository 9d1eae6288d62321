#!/bin/bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The real-systemd test (issue 5): builds a minimal Debian 12 image with debootstrap (cached), installs
# kirod into it as the Debian package (`apt install ./kirod_*.deb`), boots it with qemu-system-x86_64
# (software emulation, no network) and runs tests/system/vm/vm-check.sh inside, across a reboot, then
# purges the package.
# The VM reports on its serial console; this script prints the report and exits 0 on PASS.
#
#   tests/system/vm-test.sh [SOURCE_DIR]
#
# Environment:
#   KIROD_VM_CACHE    cache directory (default /var/cache/kirod-vm, else $XDG_CACHE_HOME/kirod-vm)
#   KIROD_VM_MIRROR   Debian mirror for debootstrap (default: the one apt uses here)
#   KIROD_VM_ACCEL    tcg (software emulation, the default) or kvm
#   KIROD_VM_TIMEOUT  seconds for the whole VM run (default 900)
#   KIROD_VM_KEEP=1   keep the work directory (image, serial log, build) even on success
#
# Exit status: 0 pass, 1 fail, 77 skipped (not root, not x86_64, qemu-system-x86_64, debootstrap or
# mke2fs missing, the packaging tools missing, or the Debian mirror unreachable while no image is
# cached), with the reason on standard output.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "${1:-$here/../..}" && pwd)
SUITE=bookworm
PACKAGES=systemd,systemd-sysv,dbus,dbus-user-session,libpam-systemd,udev,kmod,linux-image-amd64,initramfs-tools
PACKAGES+=,python3,curl,libcurl3-gnutls,libjson-c5,libsqlite3-0,libgnutls30,libmicrohttpd12,libinih1,zlib1g
# Bump to rebuild cached images after changing how they are made.
IMAGE_FORMAT=1

skip() {
        echo "SKIP: VM test skipped: $*"
        exit 77
}
log() {
        echo "vm-test: $*"
}

[ "$(uname -m)" = x86_64 ] || skip "the host is $(uname -m), the image is amd64"
[ "$(id -u)" -eq 0 ] || skip "needs root (debootstrap, and an image whose files belong to root and the system users)"
command -v qemu-system-x86_64 >/dev/null || skip "qemu-system-x86_64 is not installed (Debian: apt-get install qemu-system-x86)"
command -v debootstrap >/dev/null || skip "debootstrap is not installed (Debian: apt-get install debootstrap)"
command -v mke2fs >/dev/null || skip "mke2fs is not installed (Debian: apt-get install e2fsprogs)"
command -v meson >/dev/null && command -v ninja >/dev/null || skip "meson and ninja are needed to build the image's kirod"
command -v chroot >/dev/null || skip "chroot is needed to install the package into the image"

cache=${KIROD_VM_CACHE:-}
if [ -z "$cache" ]; then
        if mkdir -p /var/cache/kirod-vm 2>/dev/null && [ -w /var/cache/kirod-vm ]; then
                cache=/var/cache/kirod-vm
        else
                cache=${XDG_CACHE_HOME:-$HOME/.cache}/kirod-vm
        fi
fi
mkdir -p "$cache"
# One run at a time per cache (a second one waits).
exec 9>"$cache/lock"
flock 9

# The mirror apt uses here (deb822 or one-line sources), for the same reachability as apt.
default_mirror() {
        local u
        u=$(grep -h -E '^[[:space:]]*URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null |
                awk '{for (i = 2; i <= NF; i++) print $i}' | grep -E '/debian/?$' | head -n 1 || true)
        [ -n "$u" ] || u=$(grep -h -E '^[[:space:]]*deb[[:space:]]' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
                awk '{for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { print $i; break }}' |
                grep -E '/debian/?$' | head -n 1 || true)
        echo "${u:-http://deb.debian.org/debian}"
}
mirror=${KIROD_VM_MIRROR:-$(default_mirror)}
# An apt proxy, if one is configured, for debootstrap too.
if command -v apt-config >/dev/null; then
        eval "$(apt-config shell APT_HTTP_PROXY Acquire::http::Proxy)"
        [ -z "${APT_HTTP_PROXY:-}" ] || export http_proxy=${http_proxy:-$APT_HTTP_PROXY}
fi

key=$(printf '%s\n' "$IMAGE_FORMAT" "$SUITE" "$PACKAGES" | sha256sum | cut -c1-16)
base=$cache/base-$key
t0=$SECONDS

# ---- the base image: debootstrap, once per package list ----
if [ ! -f "$base/complete" ]; then
        if ! curl -sSfI -m 30 "$mirror/dists/$SUITE/Release" >/dev/null 2>&1; then
                skip "no cached image in $cache and the Debian mirror $mirror is unreachable (set KIROD_VM_MIRROR)"
        fi
        log "building the Debian 12 base image in $base (debootstrap from $mirror, once)"
        rm -rf "$base" "$base.tmp"
        mkdir -p "$base.tmp"
        if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$base.tmp/root" "$mirror" \
                >"$base.tmp/debootstrap.log" 2>&1; then
                tail -n 30 "$base.tmp/debootstrap.log"
                echo "vm-test: debootstrap failed (log: $base.tmp/debootstrap.log)"
                exit 1
        fi
        rm -f "$base.tmp"/root/var/cache/apt/archives/*.deb
        # Root on the virtio disk, no login prompt on the console the test reports on.
        echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$base.tmp/root/etc/fstab"
        echo kirod-vm >"$base.tmp/root/etc/hostname"
        ln -sf /dev/null "$base.tmp/root/etc/systemd/system/serial-getty@ttyS0.service"
        touch "$base.tmp/complete"
        mv "$base.tmp" "$base"
        log "base image ready in $((SECONDS - t0)) s"
else
        log "using the cached base image $base"
fi
# Old images of other package lists are not needed any more.
for d in "$cache"/base-*; do
        [ "$d" = "$base" ] || rm -rf "$d"
done

work=$(mktemp -d "${TMPDIR:-/var/tmp}/kirod-vm.XXXXXX")
status=1
cleanup() {
        [ -n "${qemu_pid:-}" ] && kill "$qemu_pid" 2>/dev/null && wait "$qemu_pid" 2>/dev/null
        [ -n "${tail_pid:-}" ] && kill "$tail_pid" 2>/dev/null
        if [ "$status" -eq 0 ] && [ -z "${KIROD_VM_KEEP:-}" ]; then
                rm -rf "$work"
        else
                echo "vm-test: kept $work"
        fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM
root=$work/root

# ---- kirod: the Debian package (tests/package/check-deb.sh builds and lints it), apt install'ed ----
t1=$SECONDS
cp -a "$base/root" "$root"
set +e
"$src/tests/package/check-deb.sh" "$src" "$work/deb" >"$work/deb.log" 2>&1
drc=$?
set -e
[ "$drc" -eq 77 ] && skip "$(grep '^SKIP' "$work/deb.log")"
[ "$drc" -eq 0 ] || { tail -n 40 "$work/deb.log"; echo "vm-test: building the Debian package failed"; exit 1; }
deb=$(cd "$work/deb" && ls kirod_*.deb)
cp "$work/deb/$deb" "$root/tmp/$deb"
# In the image, as an administrator would: apt resolves the dependencies from the image (there is no
# network, and the base image has them), the maintainer scripts create the users and enable the units
# (nothing is started: no systemd runs in the chroot).
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "./tmp/$deb" \
        >"$work/install.log" 2>&1 || { tail -n 30 "$work/install.log"; echo "vm-test: apt install ./$deb failed"; exit 1; }
rm -f "$root/tmp/$deb"
log "built $deb and installed it with apt in $((SECONDS - t1)) s"

# ---- the test's own files: checks, fakes, configuration pointing at the fakes ----
t=$root/usr/local/lib/kirod-test
install -D -m 0755 "$here/vm/vm-check.sh" "$t/vm-check.sh"
install -D -m 0755 "$here/vm/kirod-fakes.py" "$t/kirod-fakes.py"
install -D -m 0644 "$src/tests/integration/fakeauth.py" "$t/fakeauth.py"
install -d "$t/fakes"
install -m 0644 "$src"/tests/integration/fakes/*.py "$t/fakes/"
install -D -m 0644 "$here/vm/kirod-vm-test.service" "$root/etc/systemd/system/kirod-vm-test.service"
ln -sf /etc/systemd/system/kirod-vm-test.service "$root/etc/systemd/system/multi-user.target.wants/kirod-vm-test.service"
for u in kiro-authd kiro-proxyd; do
        install -D -m 0644 "$here/vm/50-vm-test-kill-on-blocked-syscall.conf" \
                "$root/etc/systemd/system/$u.service.d/50-vm-test-kill-on-blocked-syscall.conf"
        install -D -m 0644 "$here/vm/$u-vm-test.conf" "$root/etc/kirod/$u.conf.d/50-vm-test.conf"
done
python3 -c 'import uuid; print(uuid.uuid4().hex)' >"$root/etc/machine-id"

# The image's own kernel and initramfs, booted directly (no boot loader).
k=$(ls "$root"/boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
i=$(ls "$root"/boot/initrd.img-* 2>/dev/null | sort -V | tail -n 1)
[ -f "$k" ] && [ -f "$i" ] || { echo "vm-test: no kernel or initramfs in the image"; exit 1; }
kernel=$work/vmlinuz
initrd=$work/initrd.img
cp "$k" "$kernel"
cp "$i" "$initrd"
mke2fs -q -t ext4 -L kirodroot -d "$root" "$work/root.img" 3G >/dev/null
rm -rf "$root"

# ---- boot it ----
# Software emulation by default: it needs nothing from the host, and KVM inside a VM (nested) is not
# dependable (on the CI machines qemu aborts setting up the vCPU's MSRs). KIROD_VM_ACCEL=kvm to try it.
accel=${KIROD_VM_ACCEL:-tcg}
cpu=max
[ "$accel" = kvm ] && cpu=host
log "booting the VM (accel $accel; serial log $work/serial.log)"
t2=$SECONDS
: >"$work/serial.log"
set +e
# In the background, so that a TERM from meson reaches the trap, which stops qemu.
timeout --foreground "${KIROD_VM_TIMEOUT:-900}" qemu-system-x86_64 -machine q35 -accel "$accel" -cpu "$cpu" -m 1536 -smp 2 \
        -nodefaults -no-user-config -display none -monitor none -serial "file:$work/serial.log" \
        -kernel "$kernel" -initrd "$initrd" \
        -append "console=ttyS0 root=/dev/vda rw panic=0 loglevel=4" \
        -drive "file=$work/root.img,format=raw,if=virtio" 2>"$work/qemu.log" &
qemu_pid=$!
# The report lines as they come; tail ends with qemu.
tail -n +1 -F --pid="$qemu_pid" "$work/serial.log" 2>/dev/null | grep --line-buffered -a -E 'KIROD-VM|^    [^ ]' &
tail_pid=$!
wait "$qemu_pid"
qrc=$?
qemu_pid=
set -e
wait "$tail_pid" || true
tail_pid=
log "VM ran for $((SECONDS - t2)) s (qemu exit status $qrc); whole test $((SECONDS - t0)) s"

if grep -a -q 'KIROD-VM-RESULT: PASS (boot 2)' "$work/serial.log"; then
        status=0
        log "PASS"
        exit 0
fi
[ "$qrc" -eq 124 ] && echo "vm-test: the VM did not finish within ${KIROD_VM_TIMEOUT:-900} s"
[ -s "$work/qemu.log" ] && { echo "---- qemu ----"; cat "$work/qemu.log"; }
echo "---- last 150 lines of the serial console ----"
tail -n 150 "$work/serial.log" | tr -d '\r'
echo "vm-test: FAIL"
exit 1
