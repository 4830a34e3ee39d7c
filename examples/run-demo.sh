#!/usr/bin/env bash
# Starts the demo backends and portier with examples/demo.yaml; Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-bin}
pids=()
cleanup() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$BIN/portier" -check -config examples/demo.yaml
"$BIN/demobackend" &
pids+=($!)
"$BIN/portier" -config examples/demo.yaml &
pids+=($!)
sleep 1

cat <<'TXT'

portier is running with examples/demo.yaml (HTTP on 127.0.0.1:8080, TLS on 127.0.0.1:8443, QUIC on 127.0.0.1:8443/udp).

  Status page: http://127.0.0.1:9090/
  (from another machine: ssh -L 9090:127.0.0.1:9090 <this host>, then open http://127.0.0.1:9090/)

Try:

  # HTTP routed by Host; app1.test is weighted round robin over :9001 (weight 1) and :9002 (weight 2)
  curl -H 'Host: app1.test' http://127.0.0.1:8080/
  # wildcard route *.apps.test -> :9003
  curl -H 'Host: shop.apps.test' http://127.0.0.1:8080/
  # unknown name -> 404 from portier
  curl -i -H 'Host: nope.test' http://127.0.0.1:8080/
  # TLS passed through by SNI: the certificate you see is the backend's (portier holds no key)
  curl -vk --resolve app1.test:8443:127.0.0.1 https://app1.test:8443/
  # unknown SNI -> fatal TLS alert unrecognized_name (112)
  openssl s_client -connect 127.0.0.1:8443 -servername nope.test </dev/null
  # HTTP/3: QUIC passed through by the SNI of its Initial packets (this curl lacks --http3; the Go client does it)
  bin/h3get -k -connect 127.0.0.1:8443 https://app1.test/
  # unknown name over QUIC -> CONNECTION_CLOSE with CRYPTO_ERROR 0x170 (alert 112 unrecognized_name) at once
  bin/h3get -k -connect 127.0.0.1:8443 https://nope.test/
  # the admin server: Prometheus metrics, routes with backend health, liveness
  curl -s http://127.0.0.1:9090/metrics | grep '^portier_'
  curl -s http://127.0.0.1:9090/routes
  # reload routes after editing examples/demo.yaml (open connections are untouched)
  kill -HUP $(pgrep -f 'portier -config examples/demo.yaml')

Press Ctrl-C to stop.
TXT
wait -n "${pids[@]}"
