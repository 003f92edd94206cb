#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A real guest end to end: a Debian kernel + busybox initramfs (guest.sh)
# launched under TCG through rayos-qemu on a bridge made for this test.
# Checks that QEMU runs unprivileged (a uid of its own, no capabilities,
# no-new-privs, QEMU's seccomp sandbox, its own cgroup and network
# namespaces) with its read-only disk image handed over as a read-only fd,
# that it runs in its VM cgroup, that a device its policy denies
# gives EPERM there while allowed ones do not, that its network policy
# applies on its tap (the guest reaches an allowed host port and not a
# denied one; the host reaches an allowed guest port and not a denied one),
# that its counters show in `vm list` and /metrics, and that the agent
# unregisters the VM and removes its cgroup when QEMU exits.
# Traffic: one bridge + tap, no other port on the bridge, 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "QEMU end-to-end"
need_cmds "QEMU end-to-end" qemu-system-x86_64 ip jq python3 timeout cpio dpkg-deb apt-get
need_guest "QEMU end-to-end"

agent_env
VM=77 TAP=rq$$t BR=rq$$b MAC=52:54:00:77:00:02
for ((i = 0; i < 50; i++)); do
	NET=198.18.$((RANDOM % 250 + 2))
	[[ -z $(ip -4 -o addr show to "$NET.0/24") && -z $(ip -4 route show to match "$NET.1" | grep -v '^default') ]] && break
done

# The bridge: only the VM's tap will ever join it.
ip link add "$BR" type bridge || exit 1
on_exit "ip link del '$BR'"
sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up

cat >"$T/policies/e2e.json" <<EOF
{ "version": 1,
  "vms": [ { "id": $VM, "name": "e2e-$VM", "interface": "$TAP", "bridge": "$BR",
	     "mac": "$MAC", "ipv4": "$NET.2",
	     "capabilities": ["CAP_NETWORK", "CAP_CONSOLE", "CAP_DISK_READ"],
	     "disks": [ { "path": "$T/img/disk.raw", "mode": "ro" } ],
	     "host": { "rules": [ { "action": "allow", "protocol": "tcp", "ports": [9000, 9001] } ] },
	     "firewall": {
		"in":  { "default": "deny", "rules": [
			{ "action": "allow", "protocol": "tcp", "ports": [8080], "cidrs": ["$NET.1"] } ] },
		"out": { "default": "deny", "rules": [
			{ "action": "allow", "protocol": "tcp", "ports": [9000], "cidrs": ["$NET.1"] } ] } } } ] }
EOF
# The image: root-only, as QEMU's user must not reach it by itself.
mkdir -m 0755 "$T/img" && head -c 1048576 /dev/zero >"$T/img/disk.raw" && chmod 0600 "$T/img/disk.raw"
check "agent starts with VM $VM" -- agent_start || { tap_done; exit 1; }

# ctl JSON: one raw request on the control socket, the reply on stdout.
ctl() {
	python3 - "$T/run/control.sock" "$1" <<'EOF'
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(5); s.connect(sys.argv[1])
b = sys.argv[2].encode()
s.sendall(struct.pack(">I", len(b)) + b)
n = struct.unpack(">I", s.recv(4))[0]; d = b""
while len(d) < n: d += s.recv(n - len(d))
print(d.decode())
EOF
}
info=$(ctl "{\"cmd\":\"vm.info\",\"id\":$VM}")
if ! jq -e .ok <<<"$info" >/dev/null 2>&1; then
	skip "the agent has no vm.info yet ($(jq -r .error <<<"$info" 2>/dev/null))" "QEMU end-to-end"
	tap_done; exit 0
fi
ok "$(jq -e --arg m "$MAC" --arg b "$BR" '.mac == $m and .bridge == $b' <<<"$info" >/dev/null; echo $?)" \
	"vm.info gives the policy's MAC and bridge"

# Host side: answer "RAYOS-HOST-<port>" on 9000 (allowed out) and 9001
# (denied out, a listener is there), log who connected.
host_listen "$NET.1" 9000 9001

# ---- launch --------------------------------------------------------------
CG2=$(cgroup2_mount)
APPEND="console=ttyS0 quiet panic=-1 rayos.ip=$NET.2/24 rayos.gw=$NET.1 rayos.serve=8080,8081"
APPEND+=" rayos.probe=$NET.1:9000,$NET.1:9001 rayos.hold=120"
t0=$EPOCHREALTIME
guest_launch "$VM" "$APPEND" -drive "file=$T/img/disk.raw,format=raw,if=virtio"
# The guest powers itself off after rayos.hold; the cleanup kills QEMU by pid.
reg_ms=$(sed -n 's/.* in \([0-9.]*\) ms;.*/\1/p' "$T/qemu.err")
diag "registration -> enforcing: rayos-qemu start to the agent's vm.register reply (links attached, cgroup made, pid moved): ${reg_ms:-?} ms"

CG=$(sed -n 's/.*, cgroup \(\/[^,]*\), in .*/\1/p' "$T/qemu.err")
diag "VM cgroup: ${CG:-none reported}"
[[ -n $CG ]] || CG=$CG2/rayos/vm$VM
wait_for 5 bash -c "[[ \$(readlink /proc/$QPID/exe) == *qemu-system-x86_64* ]]"
ok $? "pid $QPID became QEMU (exec, same pid)"
# ---- QEMU unprivileged --------------------------------------------------
st() { awk -v k="$1:" '$1 == k { $1 = ""; print substr($0, 2) }' "/proc/$QPID/status"; }
read -r ruid euid suid fsuid <<<"$(st Uid)"
first=$(awk -F: '$1 == "rayos-qemu" { print $2; exit }' /etc/subuid)
ok "$([[ $ruid == "$euid" && $euid == "$suid" && $suid == "$fsuid" && $ruid != 0 ]]; echo $?)" \
	"QEMU runs as uid $ruid (real, effective, saved, fs), not root"
if [[ -n $first ]]; then
	ok "$((ruid >= first && ruid < first + 65536 ? 0 : 1))" "... a uid of its own from rayos-qemu's range (from $first)"
fi
ok "$([[ $(st Gid | cut -d' ' -f1) == "$(id -g rayos-qemu)" ]]; echo $?)" "... with group rayos-qemu"
caps=$(grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb):' "/proc/$QPID/status" | awk '{print $2}' | sort -u)
ok "$([[ $caps == 0000000000000000 ]]; echo $?)" "... no capabilities in any set, bounding set empty"
ok "$([[ $(st NoNewPrivs) == 1 ]]; echo $?)" "... no_new_privs"
ok "$([[ $(st Seccomp) == 2 ]]; echo $?)" "... under QEMU's seccomp sandbox (Seccomp: $(st Seccomp))"
ok "$(tr '\0' ' ' <"/proc/$QPID/cmdline" | grep -q -- '-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'; echo $?)" \
	"... which rayos-qemu appended to the command line"
ok "$([[ $(readlink "/proc/$QPID/ns/cgroup") != "$(readlink /proc/self/ns/cgroup)" ]]; echo $?)" \
	"... in a cgroup namespace of its own"
ok "$([[ $(readlink "/proc/$QPID/ns/net") != "$(readlink /proc/self/ns/net)" ]]; echo $?)" \
	"... in an empty network namespace (the tap fd is its only way out)"
img_fds=$(for f in /proc/$QPID/fd/*; do [[ $(readlink "$f") == "$T/img/disk.raw" ]] &&
	awk '$1 == "flags:" { print $2 }' "/proc/$QPID/fdinfo/${f##*/}"; done)
diag "disk image fds in QEMU (octal flags): $(echo $img_fds)"
ok "$([[ -n $img_fds ]] && ! grep -qvE '[04]$' <<<"$img_fds"; echo $?)" \
	"QEMU holds the read-only image only through read-only fds"
conf=$(agent vm info "$VM" | jq -c .confinement)
ok "$(jq -e '.state == "confined" and ([.points[] | select(.state == "missing")] | length == 0)' <<<"$conf" >/dev/null; echo $?)" \
	"vm info: VM $VM is confined, no enforcement point missing"
ok "$(jq -e '.points[] | select(.point == "disk.images") | .state == "active"' <<<"$conf" >/dev/null; echo $?)" \
	"vm info: the disk image is enforced ($(jq -r '.points[] | select(.point == "disk.images") | .detail' <<<"$conf"))"

cg_line=$(grep '^0::' "/proc/$QPID/cgroup")
ok "$([[ $cg_line == *"/rayos/vm$VM" ]]; echo $?)" "QEMU runs in its VM cgroup ($cg_line)"
ok "$(grep -qx "$QPID" "$CG/cgroup.procs"; echo $?)" "$CG/cgroup.procs lists QEMU"
ntask=$(ls "/proc/$QPID/task" | wc -l)
nin=$(wc -l <"$CG/cgroup.threads" 2>/dev/null)
ok "$([[ $nin -ge $ntask ]]; echo $?)" "all $ntask QEMU threads are in the cgroup ($nin there)"
check "the tap $TAP is on bridge $BR" -- \
	bash -c "[[ \$(basename \$(readlink /sys/class/net/$TAP/master)) == $BR ]]"
tap_ifindex=$(cat "/sys/class/net/$TAP/ifindex")
check "vm list shows VM $VM on $TAP (ifindex $tap_ifindex)" -- bash -c \
	"'$AGENT' vm list --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == $VM) | .ifindex == $tap_ifindex' >/dev/null"

# ---- devices: a process joined to the VM's cgroup opens mknod'ed nodes ----
mkdir -p "$T/dev"
mknod "$T/dev/dri" c 226 0		# CAP_GPU: not granted
mknod "$T/dev/input" c 13 64		# CAP_INPUT: not granted
mknod "$T/dev/tun" c 10 200		# CAP_NETWORK: granted
mknod "$T/dev/ptmx" c 5 2		# CAP_CONSOLE: granted
mknod "$T/dev/null" c 1 3		# always allowed
cat >"$T/devopen.py" <<'EOF'
import errno, os, sys
for p in sys.argv[1:]:
    try:
        os.close(os.open(p, os.O_RDWR)); r = "OK"
    except OSError as e:
        r = errno.errorcode.get(e.errno, str(e.errno))
    print(os.path.basename(p), r)
EOF
devs=$(sh -c 'echo $$ >"$1/cgroup.procs" && exec python3 "$2/devopen.py" "$2"/dev/dri "$2"/dev/input "$2"/dev/tun "$2"/dev/ptmx "$2"/dev/null' \
	sh "$CG" "$T")
while read -r l; do diag "in vm$VM's cgroup: open $l"; done <<<"$devs"
res() { awk -v d="$1" '$1 == d { print $2 }' <<<"$devs"; }
ok "$([[ $(res dri) == EPERM ]]; echo $?)" "226:0 (/dev/dri, no CAP_GPU) gives EPERM in the VM's cgroup ($(res dri))"
ok "$([[ $(res input) == EPERM ]]; echo $?)" "13:64 (/dev/input, no CAP_INPUT) gives EPERM ($(res input))"
ok "$([[ -n $(res tun) && $(res tun) != EPERM ]]; echo $?)" "10:200 (/dev/net/tun, CAP_NETWORK) is not refused ($(res tun))"
ok "$([[ -n $(res ptmx) && $(res ptmx) != EPERM ]]; echo $?)" "5:2 (/dev/ptmx, CAP_CONSOLE) is not refused ($(res ptmx))"
ok "$([[ $(res null) == OK ]]; echo $?)" "1:3 (/dev/null, always allowed) opens ($(res null))"
host_dri=$(python3 "$T/devopen.py" "$T/dev/dri" | awk '{print $2}')
ok "$([[ $host_dri != EPERM ]]; echo $?)" "outside the VM's cgroup 226:0 is not refused ($host_dri): the EPERM is the policy's"

# ---- network: the guest's probes, then the host's ------------------------
wait_for 150 grep -q RAYOS-PROBES-DONE "$T/console.log"
ok $? "the guest booted under TCG and ran its probes ($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)" || {
	diag "console:"; sed 's/^/#   /' "$T/console.log" | tail -30; }
grep -a RAYOS- "$T/console.log" | tr -d '\r' | sed 's/^/# guest: /'
ok "$(grep -aq "RAYOS-NET-UP $MAC" "$T/console.log"; echo $?)" "the guest's NIC has the policy's MAC $MAC"
ok "$(grep -aq "RAYOS-PROBE $NET.1:9000 open RAYOS-HOST-9000" "$T/console.log"; echo $?)" \
	"guest -> host tcp/9000 connects and gets the host's reply (out rule)"
ok "$(grep -aq "RAYOS-PROBE $NET.1:9001 closed" "$T/console.log"; echo $?)" \
	"guest -> host tcp/9001 does not connect (default deny out)"
ok "$(! grep -q '^9001 ' "$T/served.log"; echo $?)" "the host's 9001 listener saw no connection"
r8080=$(timeout 10 bash -c "exec 3<>/dev/tcp/$NET.2/8080 && head -1 <&3" 2>/dev/null | tr -d '\r')
ok "$([[ $r8080 == RAYOS-GUEST-8080 ]]; echo $?)" "host -> guest tcp/8080 connects (in rule; got '$r8080')"
r8081=$(timeout 6 bash -c "exec 3<>/dev/tcp/$NET.2/8081 && head -1 <&3" 2>/dev/null | tr -d '\r')
ok "$([[ -z $r8081 ]]; echo $?)" "host -> guest tcp/8081 does not connect (default deny in; a listener is there)"

# ---- counters ------------------------------------------------------------
vml=$(agent vm list --json | jq -c ".vms[] | select(.id == $VM)")
diag "vm list: $vml"
ok "$(jq -e '.in.passed_packets > 0 and .out.passed_packets > 0 and .out.dropped_packets > 0 and .in.dropped_packets > 0' <<<"$vml" >/dev/null; echo $?)" \
	"vm list shows VM $VM's passed and dropped packets both ways"
metrics=$(python3 - "$METRICS_PORT" <<'EOF'
import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())
EOF
)
m_pass=$(grep "^rayos_vm_packets_total{vm=\"$VM\",name=\"e2e-$VM\",dir=\"out\",reason=\"pass_rule\"}" <<<"$metrics" | awk '{print $2}')
m_drop=$(grep "^rayos_vm_packets_total{vm=\"$VM\",name=\"e2e-$VM\",dir=\"out\",reason=\"drop_default\"}" <<<"$metrics" | awk '{print $2}')
ok "$([[ ${m_pass:-0} -gt 0 && ${m_drop:-0} -gt 0 ]]; echo $?)" \
	"/metrics has VM $VM's counters (out pass_rule ${m_pass:-none}, out drop_default ${m_drop:-none})"

# ---- QEMU exits: the agent unregisters on its own -------------------------
kill -TERM "$QPID"
wait_for 20 bash -c "! kill -0 $QPID 2>/dev/null"
ok $? "QEMU stops on SIGTERM"
wait "$QPID" 2>/dev/null
ok "$(wait_for 5 bash -c "[[ ! -e '$CG' ]]"; echo $?)" "the agent removed the VM's cgroup $CG"
ok "$(wait_for 5 bash -c "! [[ -e /sys/class/net/$TAP ]]"; echo $?)" "the tap $TAP went away with QEMU"
out=$(agent vm unregister "$VM" 2>&1)
ok "$([[ $out == *"not registered"* ]]; echo $?)" "VM $VM is no longer registered ($out)"
ok "$(agent vm list --json | jq -e ".vms[] | select(.id == $VM) | .ifindex == 0" >/dev/null; echo $?)" \
	"vm list shows VM $VM on no interface"

# ---- refusals: nothing is left behind -------------------------------------
out=$("$BUILD/rayos-qemu" --vm 4242 --run-dir "$T/run" -- true 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"unknown VM 4242"* ]]; echo $?)" "an unknown VM is refused by name ($out)"
out=$("$BUILD/rayos-qemu" --vm "$VM" --run-dir "$T/nonexistent" -- true 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"no rayos-agent is running"* ]]; echo $?)" "no agent: a clear message ($out)"
ip link set "$BR" down; ip link set "$BR" name "${BR}x"
out=$("$BUILD/rayos-qemu" --vm "$VM" --run-dir "$T/run" -- true 2>&1); rc=$?
ip link set "${BR}x" name "$BR"
ok "$([[ $rc != 0 && $out == *"bridge $BR"*"does not exist"* ]]; echo $?)" "a missing bridge is named ($out)"
ok "$([[ ! -e /sys/class/net/$TAP ]]; echo $?)" "the refused launches left no tap"
out=$("$BUILD/rayos-qemu" --vm "$VM" --run-dir "$T/run" -- /nonexistent/qemu 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"cannot run /nonexistent/qemu"* ]]; echo $?)" "a QEMU that cannot run is named"
wait_for 5 bash -c "[[ \$('$AGENT' vm unregister $VM --run-dir '$T/run' 2>&1) == *'not registered'* ]]"
ok $? "... the agent unregistered the VM when rayos-qemu exited"
ok "$([[ ! -e /sys/class/net/$TAP && ! -e $CG ]]; echo $?)" "... and no tap or cgroup is left"

tap_done
