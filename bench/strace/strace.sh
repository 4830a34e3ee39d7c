#!/bin/bash
# Syscalls of one proxied keep-alive request and of one new connection, for
# portier and HAProxy side by side (strace -c on the proxy's threads only).
# Usage: bench/strace/strace.sh [portier-binary]   (loopback only; ~20 s)
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH=$PATH:/usr/local/go/bin
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
PORTIER=${1:-}
if [ -z "$PORTIER" ]; then go build -o "$work/portier" ./cmd/portier; PORTIER=$work/portier; fi
go build -o "$work/benchbackend" ./bench/cmd/benchbackend
# Free loopback ports of our own (others may run benchmarks on the usual ones).
read BE BE2 PT HA < <(python3 -c '
import socket
ss=[socket.socket() for _ in range(4)]
[s.bind(("127.0.0.1",0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])')
"$work/benchbackend" -http 127.0.0.1:$BE -tls 127.0.0.1:$BE2 >/dev/null 2>&1 &
cat >"$work/portier.yaml" <<Y
listeners:
  - {name: web, address: 127.0.0.1:$PT, protocol: http}
routes:
  bench.test: [http://127.0.0.1:$BE]
health: {check: none}
loops: 1
Y
cat >"$work/haproxy.cfg" <<Y
global
    nbthread 1
defaults
    timeout connect 3s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s
frontend web
    mode http
    bind 127.0.0.1:$HA
    use_backend be if { hdr(host) -i bench.test }
backend be
    mode http
    http-reuse never
    server s1 127.0.0.1:$BE
Y
"$PORTIER" -config "$work/portier.yaml" -log-level error >/dev/null 2>&1 &
haproxy -f "$work/haproxy.cfg" >/dev/null 2>&1 &
sleep 1

# client.py PORT N: one connection, N keep-alive GETs, then close.
cat >"$work/client.py" <<'P'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
if n == 0:
    sys.exit(0)  # idle: what the proxy does on its own in the same window
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
req = b"GET /bytes/64 HTTP/1.1\r\nHost: bench.test\r\n\r\n"
for i in range(n):
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(65536)
    head, _, body = buf.partition(b"\r\n\r\n")
    cl = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")][0]
    while len(body) < cl:
        body += s.recv(65536)
s.close()
P

# trace NAME PID PORT N: every syscall of PID's threads while a client makes N
# requests on one connection; only the proxy's event-loop thread is counted
# (the thread that reads the client's requests), not Go's runtime threads.
trace() {
  local out="$work/$1-$4.txt"
  strace -qq -f -o "$out" -p "$2" &
  local st=$!
  sleep 0.5
  python3 "$work/client.py" "$3" "$4"
  sleep 0.5
  kill -INT $st; wait $st 2>/dev/null || true
  python3 - "$out" "$1" "$4" <<'P'
import collections, re, sys
calls = collections.defaultdict(collections.Counter)
for line in open(sys.argv[1]):
    m = re.match(r"(\d+)\s+(\w+)\(", line)
    if m and "resumed>" not in line:
        calls[m.group(1)][m.group(2)] += 1
loop = max(calls, key=lambda t: calls[t]["read"] + calls[t]["recvfrom"] + calls[t]["accept4"] + calls[t]["epoll_pwait"] + calls[t]["epoll_wait"])
c = calls[loop]
eagain = sum(1 for l in open(sys.argv[1]) if l.startswith(loop) and "EAGAIN" in l)
print(f"{sys.argv[2]} n={sys.argv[3]} total={sum(c.values())} eagain={eagain} " + " ".join(f"{k}={v}" for k, v in sorted(c.items())))
P
}
PP=$(pgrep -n -f "$work/portier") ; HP=$(pgrep -n -f "haproxy -f $work")
python3 "$work/client.py" $PT 1; python3 "$work/client.py" $HA 1   # warm up
for n in 0 1 101; do trace portier "$PP" $PT $n; trace haproxy "$HP" $HA $n; done
