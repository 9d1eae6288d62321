#!/usr/bin/env bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# The Debian 12 packages kirod needs to build, run and test; installs the missing ones (root: apt-get,
# otherwise via sudo when available).
KIROD_BUILD_DEPS=(meson ninja-build pkg-config gcc libsystemd-dev libcurl4-gnutls-dev libjson-c-dev
                  libsqlite3-dev libgnutls28-dev libmicrohttpd-dev libinih-dev zlib1g-dev
                  libqrencode-dev)
KIROD_RUN_DEPS=(dbus sqlite3 util-linux curl)
KIROD_TEST_DEPS=(python3 python3-pytest python3-dbus systemd scdoc debootstrap qemu-system-x86 e2fsprogs
                 nghttp2-proxy openssl strace bash-completion zsh fish
                 prometheus  # promtool and the server for tests/integration/test_metrics.py
                 tinyproxy microsocks iproute2)  # real egress proxies for tests/integration/test_egress_proxy.py
# Building the Debian package (debian/) and linting it: tests/package/check-deb.sh.
KIROD_PACKAGE_DEPS=(dpkg-dev debhelper fakeroot lintian bash-completion scdoc systemd)
# The libFuzzer build of tests/fuzz (-Dfuzz=true): clang, its sanitizer and libFuzzer runtimes, and
# llvm-symbolizer for readable crash reports.
KIROD_FUZZ_DEPS=(clang libclang-rt-14-dev llvm)

kirod_install_deps() {
        local missing=() p
        for p in "$@"; do
                dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
        done
        [ ${#missing[@]} -eq 0 ] && return 0
        echo "Installing missing packages: ${missing[*]}" >&2
        local sudo=()
        [ "$(id -u)" -eq 0 ] || sudo=(sudo)
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}
