#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# VM registration -> enforcing latency, against the control socket's own
# round trip measured in the same run:
#   status        a bare request/reply (baseline)
#   register      vm.register with a tap and a pid: tc links attached, cgroup
#                 made, pid moved, device program attached, launch measured;
#                 the reply means the VM is enforced
#   unregister    vm.unregister
#   rayos-qemu    the wrapper's path to registration (vm.info, uid, tap on
#                 the bridge, vm.register) as it reports it, and its whole
#                 run to the exit of what it execs (`true`)
#   cli           `rayos-agent vm register`/`unregister` as processes
# Prints p50/p99 in ms; never fails on a timing.  No packets are sent.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
if [[ $(id -u) != 0 ]]; then echo "# bench_qemu: needs root, skipped"; exit 0; fi
for c in ip python3 jq; do
	command -v "$c" >/dev/null || { echo "# bench_qemu: $c missing (sudo tests/deps), skipped"; exit 0; }
done
N=${BENCH_N:-20}
agent_env
VM=88 TAP=rbq$$t BR=rbq$$b
ip link add "$BR" type bridge || exit 1
on_exit "ip link del '$BR'"
ip link add "$TAP" type veth peer name "${TAP}p" || exit 1
on_exit "ip link del '$TAP'"
cat >"$T/policies/b.json" <<EOF
{ "version": 1, "vms": [
	{ "id": $VM, "name": "bench-$VM", "bridge": "$BR", "mac": "52:54:00:88:00:02",
	  "capabilities": ["CAP_NETWORK"],
	  "firewall": { "in": { "default": "deny", "rules": [
		{ "action": "allow", "protocol": "tcp", "ports": [22] } ] } } },
	{ "id": $((VM + 1)), "name": "bench-$((VM + 1))", "bridge": "$BR", "mac": "52:54:00:88:00:03",
	  "interface": "rbq$$q", "capabilities": ["CAP_NETWORK"] } ] }
EOF
# RAYOS_BENCH_AGENT_ARGS: e.g. --no-tpm, to compare launches without measurement.
agent_start ${RAYOS_BENCH_AGENT_ARGS:-} || { echo "# bench_qemu: the agent did not start"; exit 1; }
CG2=$(cgroup2_mount)
on_exit "rmdir '$CG2/rayos/vm$VM'"
on_exit "sleep 0.3"
spawn SLEEPER sleep 600

# Raw control-socket timings: no process start-up in the figures.
python3 - "$T/run/control.sock" "$N" "$VM" "$TAP" "$SLEEPER" <<'EOF'
import json, socket, struct, sys, time
sock, n, vm, tap, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
def call(req):
    s = socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sock)
    b = json.dumps(req).encode(); s.sendall(struct.pack(">I", len(b)) + b)
    hdr = b""
    while len(hdr) < 4: hdr += s.recv(4 - len(hdr))
    k = struct.unpack(">I", hdr)[0]; d = b""
    while len(d) < k: d += s.recv(k - len(d))
    r = json.loads(d)
    if not r.get("ok"): raise SystemExit(f"# bench_qemu: {req['cmd']}: {r.get('error')}")
    return r
def timed(req):
    t = time.perf_counter(); call(req); return (time.perf_counter() - t) * 1e3
def pct(xs, p):
    xs = sorted(xs); return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]
def show(name, xs):
    print(f"# {name:<34} p50 {pct(xs, 50):7.2f} ms   p99 {pct(xs, 99):7.2f} ms   (n={len(xs)})")
status = [timed({"cmd": "status"}) for _ in range(n)]
reg, unreg = [], []
for _ in range(n):
    reg.append(timed({"cmd": "vm.register", "id": vm, "interface": tap, "pid": pid}))
    unreg.append(timed({"cmd": "vm.unregister", "id": vm}))
tap_only = []
for _ in range(n):
    tap_only.append(timed({"cmd": "vm.register", "id": vm, "interface": tap}))
    call({"cmd": "vm.unregister", "id": vm})
show("baseline: status round trip", status)
show("vm.register tap+pid (enforcing)", reg)
show("vm.register tap only", tap_only)
show("vm.unregister", unreg)
EOF

show() {	# show NAME MS...
	local name=$1; shift
	printf '%s\n' "$@" | sort -n | awk -v name="$name" '{ a[NR] = $1 } END {
		printf "# %-34s p50 %7.2f ms   p99 %7.2f ms   (n=%d)\n", name,
			a[int((NR - 1) * 0.5 + 1.5)], a[int((NR - 1) * 0.99 + 1.5)], NR }'
}

# The wrapper's own figure: start to the agent's reply, tap creation included;
# and its whole run to the exit of what it execs (`true`): the uid pick, disk
# checks, namespaces and the drop to QEMU's user included.
ms=() whole=()
if [[ -x $BUILD/rayos-qemu ]]; then
	for ((i = 0; i < N; i++)); do
		t0=$EPOCHREALTIME
		out=$("$BUILD/rayos-qemu" --vm $((VM + 1)) --run-dir "$T/run" -- true 2>&1) || {
			echo "# bench_qemu: rayos-qemu: $out"; break; }
		whole+=("$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f", (b - a) * 1000 }')")
		ms+=("$(sed -n 's/.* in \([0-9.]*\) ms;.*/\1/p' <<<"$out")")
		# The agent unregisters when `true` exits; wait for it before the next run.
		wait_for 5 bash -c "[[ \$('$AGENT' vm unregister $((VM + 1)) --run-dir '$T/run' 2>&1) == *'not registered'* ]]"
	done
	((${#ms[@]})) && show "rayos-qemu start -> registered" "${ms[@]}"
	((${#whole[@]})) && show "rayos-qemu start -> exec'd true exits" "${whole[@]}"
else
	echo "# bench_qemu: $BUILD/rayos-qemu not built, wrapper figure skipped"
fi

# The CLI, process start-up included.
cli_ms() {	# cli_ms CMD...: wall time of one run in ms
	local t0=$EPOCHREALTIME
	"$@" >/dev/null 2>&1
	awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.3f\n", (b - a) * 1000 }'
}
st=() rg=()
for ((i = 0; i < N; i++)); do
	st+=("$(cli_ms agent status)")
	rg+=("$(cli_ms agent vm register "$VM" --iface "$TAP" --pid "$SLEEPER")")
	agent vm unregister "$VM" >/dev/null 2>&1
done
show "cli: rayos-agent status" "${st[@]}"
show "cli: rayos-agent vm register --pid" "${rg[@]}"
