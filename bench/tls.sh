# SPDX-License-Identifier: LGPL-2.1-or-later
# bench/run's TLS upstream section (sourced by bench/run, which provides the helpers: load, note, field,
# calc, fmt, median, rss_kib, cpu_ticks, stop, alive, wait_for, free_port, die, and the variables of its
# set-up). The real upstream is HTTPS, so this is what counts for upstream connections:
#
#   fake (plain HTTP, bench-fake-kiro) ← nghttpx "reuse" (TLS, ALPN h2 + http/1.1, a generated CA)
#                                      ← nghttpx "fresh" (the same, but one request per connection)
#
# Two kiro-proxyd instances point at them (Endpoints=https://127.0.0.1:PORT, CAFile=the system bundle
# with the bench CA appended, so that a new connection parses as many certificates as in production,
# where CAFile= is unset and the system bundle is used): through
# "reuse" every proxied request can ride a kept-alive upstream connection, through "fresh" every proxied
# request needs a new upstream TLS connection (nghttpx closes each after one request: GOAWAY on h2). The
# same terminators serve the direct baselines, so "added" is what kiro-proxyd adds over TLS.
#
# Measured (all printed as tls-* lines and summarised in a table of their own):
# - added latency p50 at concurrency 1, 8, 32, with reused and with fresh upstream connections;
# - kiro-proxyd CPU per request with reused and with fresh upstream connections; their difference is the
#   CPU per new upstream connection (TLS handshake included);
# - 200 streams started at once (hold mode: each gets its first text, then waits for /release): time to
#   first text, median, through kiro-proxyd and directly against the terminator; kiro-proxyd RSS before
#   (idle), at the peak, and 10 s after the streams ended; upstream TCP connections at the peak;
#   (peak − idle) over the upstream connections open at the peak is the RSS per upstream connection.

TLS_BURST=${TLS_BURST:-200}

tls_make_ca() {
        local d=$1
        mkdir -p "$d"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=kirod bench CA" \
                -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign \
                -keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1 || die "openssl: cannot make the CA"
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
                -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 || die "openssl: cannot make the key"
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' \
                >"$d/ext.cnf"
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
                -extfile "$d/ext.cnf" -out "$d/server.pem" >/dev/null 2>&1 || die "openssl: cannot sign"
        # What kiro-proxyd trusts: the system bundle (what it parses per connection in production, where
        # CAFile= is unset) with the bench CA appended, so the per-connection cost is the real one.
        cat /etc/ssl/certs/ca-certificates.crt "$d/ca.pem" >"$d/bundle.pem" 2>/dev/null ||
                cp "$d/ca.pem" "$d/bundle.pem"
}

# tls_terminator NAME PORT [nghttpx options...]
tls_terminator() {
        local name=$1 port=$2
        shift 2
        nghttpx --conf=/dev/null --frontend="127.0.0.1,$port" --backend="127.0.0.1,$FAKE_PORT" --workers=1 \
                --no-ocsp --errorlog-file="$tmp/$name.log" --backend-keep-alive-timeout=60s \
                --frontend-keep-alive-timeout=60s --backend-read-timeout=300s --frontend-read-timeout=300s \
                --stream-read-timeout=0 --stream-write-timeout=0 --backlog=4096 ${TLS_ACCESSLOG:+--accesslog-file="$tmp/$name-access.log" "--accesslog-format=\$alpn \$remote_port \$status"} "$@" \
                "$tmp/tls/server.key" "$tmp/tls/server.pem" >>"$tmp/$name.log" 2>&1 &
        pid_of[$name]=$!
        wait_for 10 "$name (nghttpx) on port $port" \
                curl -sf --cacert "$tmp/tls/ca.pem" "https://127.0.0.1:$port/stats"
}

# tls_proxyd NAME PORT UPSTREAM_PORT: a kiro-proxyd with its own config, pointed at the terminator.
tls_proxyd() {
        local name=$1 port=$2 up=$3
        cat >"$tmp/$name.conf" <<EOF
[Proxy]
MaxConnections=4096

[Kiro]
Endpoints=https://127.0.0.1:$up
CAFile=$tmp/tls/bundle.pem
${TLS_PROXYD_EXTRA:-}
EOF
        "$PROXYD" --user --config="$tmp/$name.conf" --listen="127.0.0.1:$port" >>"$tmp/$name.log" 2>&1 &
        pid_of[$name]=$!
        wait_for 10 "$name to answer /healthz" curl -sf "http://127.0.0.1:$port/healthz"
}

# upstream_conns PORT: established TCP connections to the terminator on PORT (only kiro-proxyd makes them
# while a burst runs).
upstream_conns() {
        ss -Htn state established "( dport = :$1 )" | wc -l
}

# tls_burst NAME PROXY_PORT UPSTREAM_PORT N: N hold-mode streams at once through the kiro-proxyd NAME;
# sets burst_line, burst_idle, burst_peak, burst_after, burst_conns.
tls_burst() {
        local name=$1 port=$2 up=$3 n=$4 deadline
        curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$tmp/openai-short-stream.json" \
                "http://127.0.0.1:$port/v1/chat/completions" || die "a warm-up request through $name failed"
        sleep 2
        burst_idle=$(rss_kib "$name")
        rm -f "$tmp/held"
        "$LOAD" --label "tls-burst-$name" --url "http://127.0.0.1:$port/v1/chat/completions" \
                --body-file "$tmp/openai-hold.json" -H 'Content-Type: application/json' \
                --concurrency "$n" --requests "$n" --min-bytes 100 --hold-file "$tmp/held" \
                --timeout 120 >"$tmp/burst.out" 2>>"$tmp/load.log" &
        pid_of[load]=$!
        # Not fatal: a stream that fails never holds, and the line below says how many failed.
        deadline=$((SECONDS + 60))
        while [ ! -e "$tmp/held" ] && [ $SECONDS -lt $deadline ] && kill -0 "${pid_of[load]}" 2>/dev/null; do
                sleep 0.05
        done
        [ -e "$tmp/held" ] || note "  ($n streams through $name did not all get their first text within 60 s)"
        sleep 0.5
        burst_peak=$(rss_kib "$name")
        burst_conns=$(upstream_conns "$up")
        curl -sf -X POST "$FAKE_URL/release" >/dev/null || die "cannot release the held streams"
        wait "${pid_of[load]}" || note "  (some streams of the burst through $name failed: $(tail -n 2 "$tmp/load.log" | tr '\n' ' '))"
        unset "pid_of[load]"
        burst_line=$(cat "$tmp/burst.out")
        note "$burst_line"
        sleep 10
        burst_after=$(rss_kib "$name")
        note "tls-burst-$name streams=$n idle_kib=$burst_idle peak_kib=$burst_peak after10s_kib=$burst_after upstream_conns=$burst_conns"
}

tls_bench() {
        local c api=openai
        command -v nghttpx >/dev/null || die "'nghttpx' is needed for the TLS upstream (Debian: apt-get install nghttp2-proxy)"
        command -v openssl >/dev/null || die "'openssl' is needed to make the bench CA"
        tls_make_ca "$tmp/tls"
        TLS_PORT=$(free_port) TLS_FRESH_PORT=$(free_port)
        tls_terminator tls-reuse "$TLS_PORT"
        tls_terminator tls-fresh "$TLS_FRESH_PORT" --frontend-max-requests=1
        local P_REUSE=$(free_port) P_FRESH=$(free_port)
        tls_proxyd kiro-proxyd-tls "$P_REUSE" "$TLS_PORT"
        tls_proxyd kiro-proxyd-fresh "$P_FRESH" "$TLS_FRESH_PORT"
        local direct_reuse=https://127.0.0.1:$TLS_PORT/generateAssistantResponse
        local direct_fresh=https://127.0.0.1:$TLS_FRESH_PORT/generateAssistantResponse
        declare -gA tls_p50=() tls_cpu=()
        BUDGET=$TLS_BUDGET
        echo "== TLS upstream: latency at concurrency 1, 8, 32 with reused and fresh upstream connections (N=$TLS_N)"
        for c in 1 8 32; do
                load "tls-direct-reuse-c$c" "$direct_reuse" "$tmp/direct-$api-short.json" "$c" "$TLS_N" \
                        $((TLS_N / 10)) 600 --ca-file "$tmp/tls/ca.pem"
                tls_p50[direct-reuse-$c]=$(field "$LAST" p50_us)
                ticks=$(cpu_ticks kiro-proxyd-tls)
                load "tls-proxy-reuse-c$c" "http://127.0.0.1:$P_REUSE/v1/chat/completions" "$tmp/$api-short.json" \
                        "$c" "$TLS_N" $((TLS_N / 10)) 100
                tls_p50[proxy-reuse-$c]=$(field "$LAST" p50_us)
                tls_cpu[reuse-$c]=$(calc "($(cpu_ticks kiro-proxyd-tls) - $ticks) * 1000000 / $(getconf CLK_TCK) / $(field "$LAST" ok)")
                load "tls-direct-fresh-c$c" "$direct_fresh" "$tmp/direct-$api-short.json" "$c" "$TLS_FRESH_N" \
                        $((TLS_FRESH_N / 10)) 600 --ca-file "$tmp/tls/ca.pem"
                tls_p50[direct-fresh-$c]=$(field "$LAST" p50_us)
                ticks=$(cpu_ticks kiro-proxyd-fresh)
                load "tls-proxy-fresh-c$c" "http://127.0.0.1:$P_FRESH/v1/chat/completions" "$tmp/$api-short.json" \
                        "$c" "$TLS_FRESH_N" $((TLS_FRESH_N / 10)) 100
                tls_p50[proxy-fresh-$c]=$(field "$LAST" p50_us)
                tls_cpu[fresh-$c]=$(calc "($(cpu_ticks kiro-proxyd-fresh) - $ticks) * 1000000 / $(getconf CLK_TCK) / $(field "$LAST" ok)")
        done
        sleep 2
        note "tls-fresh-rss kiro-proxyd-fresh_kib=$(rss_kib kiro-proxyd-fresh) kiro-proxyd-tls_kib=$(rss_kib kiro-proxyd-tls)"

        echo "== TLS upstream: $TLS_BURST streams started at once"
        # Directly against the terminator: the floor for the time to first text.
        printf '{"conversationState":{"currentMessage":{"userInputMessage":{"content":"Say hello. bench-mode:hold"}}}}' \
                >"$tmp/direct-hold.json"
        rm -f "$tmp/held"
        "$LOAD" --label tls-burst-direct --url "$direct_reuse" --ca-file "$tmp/tls/ca.pem" \
                --body-file "$tmp/direct-hold.json" -H 'Content-Type: application/json' \
                --concurrency "$TLS_BURST" --requests "$TLS_BURST" --min-bytes 100 --hold-file "$tmp/held" \
                --timeout 120 >"$tmp/burst.out" 2>>"$tmp/load.log" &
        pid_of[load]=$!
        wait_for 60 "$TLS_BURST direct streams to be open mid-answer" test -e "$tmp/held"
        curl -sf -X POST "$FAKE_URL/release" >/dev/null || die "cannot release the held streams"
        wait "${pid_of[load]}" || die "some direct streams failed: $(tail -n 5 "$tmp/load.log")"
        unset "pid_of[load]"
        burst_direct_line=$(cat "$tmp/burst.out")
        note "$burst_direct_line"

        # A fresh kiro-proxyd for the burst, so its idle figure is a real idle figure.
        stop kiro-proxyd-tls
        tls_proxyd kiro-proxyd-tls "$P_REUSE" "$TLS_PORT"
        tls_burst kiro-proxyd-tls "$P_REUSE" "$TLS_PORT" "$TLS_BURST"
        b_line=$burst_line b_idle=$burst_idle b_peak=$burst_peak b_after=$burst_after b_conns=$burst_conns
        alive kiro-proxyd-tls || die "kiro-proxyd-tls died"
        alive kiro-proxyd-fresh || die "kiro-proxyd-fresh died"
}

# tls_table FILE: the TLS rows (targets with PASS/FAIL through row(), context lines after).
tls_rows() {
        local c a
        for c in 1 8 32; do
                a=$(calc "(${tls_p50[proxy-reuse-$c]} - ${tls_p50[direct-reuse-$c]}) / 1000")
                printf '%-44s %s ms (%s - %s), CPU %s us/request\n' "TLS: added p50, c=$c, reused upstream conn" \
                        "$(fmt 3 "$a")" "$(fmt 3 "${tls_p50[proxy-reuse-$c]}/1000")" \
                        "$(fmt 3 "${tls_p50[direct-reuse-$c]}/1000")" "$(fmt 0 "${tls_cpu[reuse-$c]}")"
                a=$(calc "(${tls_p50[proxy-fresh-$c]} - ${tls_p50[direct-fresh-$c]}) / 1000")
                printf '%-44s %s ms (%s - %s), CPU %s us/request\n' "TLS: added p50, c=$c, fresh upstream conn" \
                        "$(fmt 3 "$a")" "$(fmt 3 "${tls_p50[proxy-fresh-$c]}/1000")" \
                        "$(fmt 3 "${tls_p50[direct-fresh-$c]}/1000")" "$(fmt 0 "${tls_cpu[fresh-$c]}")"
        done
        printf '%-44s %s us (fresh %s - reused %s, c=1)\n' "TLS: CPU per new upstream connection" \
                "$(fmt 0 "${tls_cpu[fresh-1]} - ${tls_cpu[reuse-1]}")" "$(fmt 0 "${tls_cpu[fresh-1]}")" \
                "$(fmt 0 "${tls_cpu[reuse-1]}")"
        printf '%-44s %s KiB (peak - idle over %s upstream conns, %s streams)\n' \
                "TLS: RSS per upstream conn, $TLS_BURST streams" "$(fmt 1 "($b_peak - $b_idle) / ($b_conns > 0 ? $b_conns : 1)")" \
                "$b_conns" "$TLS_BURST"
}

tls_targets() {
        local per ttfb_p ttfb_d
        per=$(calc "($b_peak - $b_idle) / $TLS_BURST")
        row "TLS: RSS per open stream, $TLS_BURST at once" "$(fmt 1 "$per") KiB ($b_conns upstream conns)" "<= 64 KiB" \
                "$(awk "BEGIN { exit !($per <= 64) }" && echo 1 || echo 0)"
        row "TLS: RSS 10 s after the $TLS_BURST streams" "$(fmt 2 "$b_after / 1024") MiB (idle $(fmt 2 "$b_idle / 1024"), peak $(fmt 2 "$b_peak / 1024"))" \
                "idle+2MiB" "$(lt "$b_after" "$((b_idle + 2048))")"
        ttfb_p=$(field "$b_line" ttfb_p50_us); ttfb_d=$(field "$burst_direct_line" ttfb_p50_us)
        row "TLS: first text, $TLS_BURST at once, median" "$(fmt 1 "$ttfb_p / 1000") ms (direct $(fmt 1 "$ttfb_d / 1000") ms)" \
                "direct+50ms" "$(lt "$ttfb_p" "$(calc "$ttfb_d + 50000")")"
}
