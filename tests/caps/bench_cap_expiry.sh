#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# How late after its deadline a temporary grant stops working, with the
# agent SIGKILLed: RUNS times (default 20), grant CAP_NETWORK and CAP_GPU for
# 2 s, kill -9 the agent, then probe every 1 ms from inside the VM's cgroup:
# a UDP datagram through the VM's tap (the VM side records the last one it
# got) and an open of a GPU node (EPERM once denied).  Prints, per path, the
# delay of the first refused probe after the deadline (p50, p99, max) next to
# the probing period measured in the same run (the baseline: a probe cannot
# see the end sooner than one period).  Figures only; never fails on timing.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "temporary-grant expiry benchmark"
need_cmds "temporary-grant expiry benchmark" ip python3 jq bpftool
RUNS=${RUNS:-20}

agent_env
AGENT_ARGS+=(--no-tpm)
VM_ID=1603 VM_MAC=52:54:00:16:03:01
vm_veth rb "$VM_MAC" || exit 1
CG2=$(cgroup2_mount)
[[ -n $CG2 ]] || { skip "no cgroup v2 mount" "temporary-grant expiry benchmark"; tap_done; exit 0; }
cat >"$T/policies/b.json" <<EOF
{ "version": 1, "vms": [ { "id": $VM_ID, "name": "vm-bench", "interface": "$HOST",
  "mac": "$VM_MAC", "ipv4": "$NET.2", "capabilities": [],
  "host": { "rules": [ { "action": "allow", "protocol": "udp" } ] },
  "firewall": { "in": { "default": "allow" }, "out": { "default": "allow" } } } ] }
EOF
mknod "$T/dri" c 226 0
spawn QEMU sleep 3600
on_exit "rmdir '$CG2/rayos/vm$VM_ID' 2>/dev/null"
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }

# The VM side: remembers the send time of the last probe it received.
cat >"$T/sink.py" <<'EOF'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", int(sys.argv[1])))
s.settimeout(float(sys.argv[2]))
last = 0
open(sys.argv[3], "w").close()
try:
    while True:
        last = max(last, int(s.recv(64).decode()))
except socket.timeout:
    pass
print(last)
EOF
# The prober, inside the VM's cgroup: every 1 ms a datagram carrying its
# boot-clock send time, and an open of the GPU node; until DEADLINE + 0.3 s.
cat >"$T/probe.py" <<'EOF'
import errno, os, socket, sys, time
procs, node, dst, port, deadline = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
with open(procs, "w") as f:
    f.write(str(os.getpid()))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
now = lambda: time.clock_gettime_ns(time.CLOCK_BOOTTIME)
first_eperm, sends, t0, times = 0, 0, now(), []
while now() < deadline + 300_000_000:
    t = now()
    try:
        s.sendto(str(t).encode(), (dst, port))
    except OSError:
        pass
    times.append(t)
    sends += 1
    if not first_eperm:
        try:
            os.close(os.open(node, os.O_RDWR))
        except OSError as e:
            if e.errno == errno.EPERM:
                first_eperm = t
    time.sleep(0.001)
with open(sys.argv[6], "w") as f:
    f.write("\n".join(map(str, times)) + "\n")
print(first_eperm, (now() - t0) // max(sends, 1))
EOF

net=() dev=() period=()
for ((run = 0; run < RUNS; run++)); do
	agent_start >/dev/null || break
	wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[0].ifindex > 0' >/dev/null"
	agent vm register "$VM_ID" --pid "$QEMU" >/dev/null
	agent cap grant-temp "$VM_ID" CAP_NETWORK --expires 2s >/dev/null &&
		agent cap grant-temp "$VM_ID" CAP_GPU --expires 2s >/dev/null || break
	D=$(bpftool -j map lookup pinned "$PIN/rayos_vms" key $(le32 "$VM_ID") |
		jq -r '.formatted.value.cap_until_ns[0]')
	G=$(bpftool -j map lookup pinned "$PIN/rayos_vms" key $(le32 "$VM_ID") |
		jq -r '.formatted.value.cap_until_ns[3]')
	kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
	rm -f "$T/ready"
	vmx python3 "$T/sink.py" 7301 1.5 "$T/ready" >"$T/sink.out" &
	SINK=$!
	wait_for 5 test -e "$T/ready"
	read -r eperm per < <(python3 "$T/probe.py" "$CG2/rayos/vm$VM_ID/cgroup.procs" "$T/dri" \
				"$NET.2" 7301 "$(( D > G ? D : G ))" "$T/sent")
	wait "$SINK"
	last=$(cat "$T/sink.out")
	# The first refused datagram: the first one sent after the last one
	# that arrived; the first EPERM is timed directly.  A run whose probing
	# began after the deadline measures nothing.
	refused=$(awk -v l="$last" '$1 > l { print $1; exit }' "$T/sent")
	diag "run $run: deadline $D, last delivered $last, first refused ${refused:-none}, first EPERM $eperm (GPU deadline $G)"
	(( last > 0 && refused > 0 )) && net+=( $(( (refused - D) / 1000 )) )
	(( eperm > 0 )) && dev+=( $(( (eperm - G) / 1000 )) )
	period+=( $((per / 1000)) )
done
agent_start >/dev/null
stats() {	# stats LABEL VALUES...: p50, p99, max of microsecond values
	local label=$1; shift
	printf '%s\n' "$@" | sort -n | awk -v l="$label" '{ v[NR] = $1 } END {
		if (!NR) { print "# " l ": no runs"; exit }
		p99 = int(NR * 0.99 + 0.999); if (p99 > NR) p99 = NR
		printf "%-44s runs %3d  p50 %7.2f ms  p99 %7.2f ms  max %7.2f ms\n", l, NR,
			v[int((NR + 1) / 2)] / 1000, v[p99] / 1000, v[NR] / 1000 }'
}
echo "# temporary grant of 2 s, agent SIGKILLed: first refused probe after the deadline"
stats "probe period (baseline)" "${period[@]}"
stats "network: first datagram not delivered" "${net[@]}"
stats "device: first open refused (EPERM)" "${dev[@]}"
