#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The control socket and the CLI on top of it: VM registration (persisted
# across restarts), unknown VMs and bad names refused without changing
# anything, malformed frames answered with an error while the agent keeps
# serving, root-only access, and /metrics on loopback.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "control socket"
agent_env

VETH=rc$$a
ip link add "$VETH" type veth peer name "${VETH}p" || exit 1
on_exit "ip link del '$VETH'"
cat >"$T/policies/p.json" <<EOF
{ "version": 1,
  "vms": [ { "id": 7, "name": "seven", "mac": "52:54:00:00:00:07",
	     "firewall": { "in": { "default": "deny", "rules": [
		{ "action": "allow", "protocol": "tcp", "ports": [22] } ] } } },
	   { "id": 8, "name": "eight" } ] }
EOF
check "agent starts" -- agent_start
ifindex=$(cat /sys/class/net/$VETH/ifindex)

out=$(agent vm register 7 --iface "$VETH" 2>&1)
ok $? "vm register 7 --iface $VETH succeeds"
check "the registration attached VM 7's links" -- test -e "$PIN/links/vm7_from" -a -e "$PIN/links/vm7_to"
check "vm list shows VM 7 on $VETH" -- \
	bash -c "'$AGENT' vm list --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == 7) | .ifindex == $ifindex' >/dev/null"

snap=$(bpftool -j map dump pinned "$PIN/rayos_ifaces" | jq -c 'map(.formatted)')
out=$(agent vm register 99 --iface "$VETH" 2>&1); rc=$?
ok "$([[ $rc == 1 && $out == *"unknown VM 99"* ]]; echo $?)" "registering an unknown VM is refused by name ($out)"
out=$(agent vm register 8 --iface "bad/name" 2>&1); rc=$?
ok "$([[ $rc == 1 && $out == *interface* ]]; echo $?)" "a bad interface name is refused ($out)"
out=$(agent vm register 0 --iface x 2>&1); rc=$?
ok "$([[ $rc == 2 && $out == *"not a VM id"* ]]; echo $?)" "VM id 0 is refused by the CLI"
ok "$([[ $(bpftool -j map dump pinned "$PIN/rayos_ifaces" | jq -c 'map(.formatted)') == "$snap" ]]; echo $?)" \
	"refused registrations changed nothing"

check "vm stats 7 reports both directions" -- \
	bash -c "'$AGENT' vm stats 7 --json --run-dir '$T/run' | jq -e '.vms[0].in and .vms[0].out and (.vms[0].in.rules | length == 1)' >/dev/null"
out=$(agent vm stats 42 2>&1); rc=$?
ok "$([[ $rc == 1 && $out == *"unknown VM 42"* ]]; echo $?)" "vm stats of an unknown VM names it"
check "perf answers" -- bash -c "'$AGENT' perf --json --run-dir '$T/run' | jq -e '.totals.in' >/dev/null"

# /metrics on loopback.
metrics=$(python3 - "$METRICS_PORT" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())
EOF
)
ok "$([[ $metrics == *"rayos_policy_version 1"* ]]; echo $?)" "/metrics has the policy version"
ok "$([[ $metrics == *'rayos_vm_packets_total{vm="7",name="seven",dir="in",reason="drop_default"}'* ]]; echo $?)" \
	"/metrics has VM 7's counters by direction and reason"
ok "$([[ $(ss -ltnH "sport = :$METRICS_PORT" | awk '{print $4}') == 127.0.0.1:* ]]; echo $?)" \
	"/metrics listens on loopback only"

# The registration outlives the agent.
agent stop >/dev/null; wait "$AGENT_PID" 2>/dev/null
check "registrations are saved in the state dir" -- \
	bash -c "jq -e '.registrations[0].id == 7' '$T/state/registrations.json' >/dev/null"
check "agent restarts" -- agent_start
check "after restart VM 7 is still on $VETH" -- \
	bash -c "'$AGENT' vm list --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == 7) | .ifindex == $ifindex' >/dev/null"
agent vm unregister 7 >/dev/null
ok "$([[ ! -e $PIN/links/vm7_from ]]; echo $?)" "vm unregister detaches VM 7 (the policy names no tap)"
out=$(agent vm unregister 7 2>&1); rc=$?
ok "$([[ $rc == 1 && $out == *"not registered"* ]]; echo $?)" "unregistering twice says it is not registered"

# Malformed control messages: an error reply, and the agent keeps serving.
sock=$T/run/control.sock
ok "$([[ $(stat -c %a "$sock") == 600 ]]; echo $?)" "the control socket is mode 0600"
frames=$(python3 - "$sock" <<'EOF'
import socket, struct, sys, json
def ask(payload, raw=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(sys.argv[1])
    s.sendall(payload if raw else struct.pack(">I", len(payload)) + payload)
    try:
        hdr = s.recv(4)
        if len(hdr) < 4:
            return "closed"
        n = struct.unpack(">I", hdr)[0]
        body = b""
        while len(body) < n:
            body += s.recv(n - len(body))
        return json.loads(body).get("error", "ok")
    except socket.timeout:
        return "timeout"
for name, p, raw in [("zero", struct.pack(">I", 0), True),
                     ("huge", struct.pack(">I", 1 << 20) + b"{}", True),
                     ("notjson", b"hello", False),
                     ("trailing", b'{"cmd":"status"} x', False),
                     ("nocmd", b'{"x":1}', False),
                     ("array", b'[1,2]', False),
                     ("unknown", b'{"cmd":"fly"}', False),
                     ("badid", b'{"cmd":"vm.stats","id":"7"}', False)]:
    print(f"{name}={ask(p, raw)}")
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.connect(sys.argv[1]); s.sendall(struct.pack(">I", 100) + b'{"cmd"'); s.close()
EOF
)
while read -r line; do diag "$line"; done <<<"$frames"
for f in "zero=bad frame" "huge=bad frame" "notjson=not one JSON" "trailing=not one JSON" \
	 "nocmd=string \"cmd\"" "array=string \"cmd\"" "unknown=unknown command \"fly\"" \
	 "badid=\"id\" must be"; do
	reply=$(grep "^${f%%=*}=" <<<"$frames")
	ok "$([[ $reply == *"${f#*=}"* ]]; echo $?)" "control frame ${f%%=*} gets an error naming the problem"
done
check "the agent still answers after bad frames and a half-sent request" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e .ok >/dev/null"
if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$AGENT" status --run-dir "$T/run" 2>&1)
	ok "$([[ $? != 0 ]]; echo $?)" "a non-root user cannot use the control socket ($out)"
else
	skip "no nobody user or setpriv" "non-root users are refused"
fi

tap_done
