#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Fine-grained capabilities against the running agent: `cap fine-grain ID
# CAP_NETWORK --allow-ports` narrows what the firewall allows (TCP
# connections host -> "VM" through its tap: a port both allow connects, a
# port the firewall allows but the limit does not is dropped as cap_ports,
# a port the limit lists but the firewall refuses stays refused);
# --max-bandwidth below the policy's rate wins (iperf3 both ways); --clear
# restores; the limit holds with the agent SIGKILLed, after a restart and
# across a policy reload; the policy's own "capability_limits" intersect
# with it; CAP_GPU --nodes lets the VM's cgroup open a listed DRI node and
# not another (mknod 226:0 / 226:1: ENXIO/ENODEV = allowed, EPERM =
# denied); bad input is refused with nothing changed; each change is
# audited.  VM id 16300, a network namespace behind a veth, addresses from
# 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "fine-grained capabilities on the live path"
need_cmds "fine-grained capabilities on the live path" ip python3 jq bpftool timeout nc iperf3

agent_env
VM_ID=16300 VM_MAC=52:54:00:63:00:01
vm_veth rf "$VM_MAC" || exit 1

# write_policy [LIMITS-JSON]: the firewall lets the host reach the VM on
# tcp 22, 80, 443 and 5201 (iperf3), nothing else; 100 Mbit/s each way.
write_policy() {
	cat >"$T/policies/fine.json.tmp" <<EOF
{
	"version": 1,
	"vms": [
		{ "id": $VM_ID, "name": "vm-fine", "interface": "$HOST", "mac": "$VM_MAC",
		  "ipv4": "$NET.2", "capabilities": ["CAP_NETWORK", "CAP_GPU"],
		  "firewall": {
			"in": { "default": "deny", "rules": [
				{ "action": "allow", "protocol": "tcp", "ports": [22, 80, 443, 5201] } ] },
			"out": { "default": "allow" } },
		  "bandwidth": { "in": { "rate": "100mbit" }, "out": { "rate": "100mbit" } }
		  ${1:+, \"capability_limits\": $1} }
	]
}
EOF
	mv "$T/policies/fine.json.tmp" "$T/policies/fine.json"
}
policy_version() { agent status --json | jq -r .policy.version; }
reload_policy() {	# reload_policy [LIMITS-JSON]: write it and wait for the apply
	local v; v=$(policy_version)
	write_policy "$@"
	wait_for 5 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
}

write_policy
check "agent starts with VM $VM_ID" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == $VM_ID and .ifindex > 0)' >/dev/null"
ok $? "the VM's programs are attached" || { tap_done; exit 1; }
SLOT=$(agent status --json | jq -r ".vms[] | select(.id == $VM_ID) | .slot")

# ---- counters (rayos_vm_stats[slot], summed over CPUs) and reasons ----------
IN=0 OUT=1
CAP_PORTS=$(awk '/RAYOS_RSN_CAP_PORTS =/ { print $3 + 0 }' bpf/abi/net.h)
DROP_DEFAULT=$(awk '/RAYOS_RSN_DROP_DEFAULT =/ { print $3 + 0 }' bpf/abi/net.h)
ok "$([[ $CAP_PORTS =~ ^[0-9]+$ && $CAP_PORTS != 0 ]]; echo $?)" "bpf/abi/net.h names the cap_ports reason ($CAP_PORTS)"
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
stats() {
	bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "$SLOT") |
		jq -c '[.formatted.values[].value.c] | transpose | map(transpose | map(map(.packets) | add))'
}
ctr() { jq -r ".[$1][$2]" <<<"$3"; }	# ctr DIR REASON SNAPSHOT

# ---- services in the VM, probed from the host ---------------------------------
: >"$T/served.log"
spawn SRV ip netns exec "$VMNS" python3 tests/qemu/host_serve.py "$NET.2" "$T/served.log" 22 80 443 8080
wait_for 5 test -e "$T/served.log.ready" || diag "VM services did not come up"
probes() { tcp_probes "$NET.2" "$@"; }	# "PORT:open|closed ..." host -> VM

got=$(probes 22 80 443 8080)
ok "$([[ $got == "22:open 80:open 443:open 8080:closed" ]]; echo $?)" \
	"no limit: the firewall's ports connect, 8080 does not ($got)"

# ---- --allow-ports: firewall ∩ limit ----------------------------------------
audit_lines() { wc -l <"$T/state/audit.log" 2>/dev/null || echo 0; }
a0=$(audit_lines)
s0=$(stats)
t0=$EPOCHREALTIME
out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --allow-ports 443,80,5201,8080 2>&1)
rc=$?
ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
ok $rc "cap fine-grain $VM_ID CAP_NETWORK --allow-ports 443,80,5201,8080 ($out)"
diag "the command returned after $ms ms (CLI start, audit fsync, policy apply); the agent's log: $(grep -o 'applied (cap fine-grain.*' "$T/agent.log" | tail -1)"
ok "$(tail -n +$((a0 + 1)) "$T/state/audit.log" | jq -se --argjson v "$VM_ID" \
	'map(select(.event == "cap_fine_grain")) | length == 1 and .[0].vm == $v and .[0].cap == "CAP_NETWORK" and .[0].allow_ports == "80,443,5201,8080"' >/dev/null; echo $?)" \
	"one audit record names the VM, the capability and the ports"
ok "$(tail -n +$((a0 + 1)) "$T/state/audit.log" | jq -se 'any(.event == "policy_publish" and .by == "cap fine-grain")' >/dev/null; echo $?)" \
	"and the publish it made has its policy_publish record"
got=$(probes 443 80 22 8080)
s1=$(stats)
ok "$([[ $got == "443:open 80:open 22:closed 8080:closed" ]]; echo $?)" \
	"limited: 443 and 80 connect, 22 (firewall yes, limit no) and 8080 (limit yes, firewall no) do not ($got)"
n_cap=$(( $(ctr $IN "$CAP_PORTS" "$s1") - $(ctr $IN "$CAP_PORTS" "$s0") ))
n_def=$(( $(ctr $IN "$DROP_DEFAULT" "$s1") - $(ctr $IN "$DROP_DEFAULT" "$s0") ))
ok "$(( n_cap >= 1 && n_cap <= 3 ? 0 : 1 ))" "22's SYNs are counted as cap_ports ($n_cap: one try and its retransmit)"
ok "$(( n_def >= 1 ? 0 : 1 ))" "8080's as the firewall's default deny, not cap_ports ($n_def)"
m=$(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())' "$METRICS_PORT")
ok "$(grep -q "rayos_vm_packets_total{vm=\"$VM_ID\".*reason=\"drop_cap_ports\"} [1-9]" <<<"$m"; echo $?)" \
	"/metrics labels them reason=\"drop_cap_ports\""
cl=$(agent cap list "$VM_ID" --json)
ok "$(jq -e '.limits.CAP_NETWORK.allow_ports == "80,443,5201,8080"' <<<"$cl" >/dev/null; echo $?)" \
	"cap list shows the limit ($(jq -c .limits <<<"$cl"))"
cl=$(agent cap list "$VM_ID")
ok "$([[ $cl == *"CAP_NETWORK"*"limited to: ports 80,443,5201,8080"* && $cl == *"bandwidth in  100Mbit/s (from the policy"* ]]; echo $?)" \
	"cap list prints it ($(tr '\n' ';' <<<"$cl"))"

# ---- --max-bandwidth: the lower of the policy's and the limit's -----------------
ip netns exec "$VMNS" iperf3 -s -D -B "$NET.2" -p 5201 -I "$T/iperf3.pid" --logfile "$T/iperf3.log"
wait_for 3 test -s "$T/iperf3.pid"
on_exit "kill -9 \$(cat '$T/iperf3.pid')"
# rate ARGS...: iperf3 TCP goodput host <-> VM over 3 s, Mbit/s (-R: VM -> host)
rate() { iperf_mbps "$NET.2" "$@"; }
out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --max-bandwidth 20Mbps 2>&1)
ok $? "cap fine-grain $VM_ID CAP_NETWORK --max-bandwidth 20Mbps ($out)"
bw=$(agent vm info "$VM_ID" --json | jq -c '.capability_limits.CAP_NETWORK.bandwidth')
ok "$(jq -e '.in.effective == "20Mbit/s" and .out.effective == "20Mbit/s" and .in.from == "limit" and .in.policy == "100Mbit/s"' <<<"$bw" >/dev/null; echo $?)" \
	"vm info: effective 20 Mbit/s each way, from the limit, policy 100 ($bw)"
r_in=$(rate) r_out=$(rate -R)
diag "TCP goodput with the limit: host->VM $r_in Mbit/s, VM->host $r_out Mbit/s (limit 20, policy 100)"
within "${r_in:-0}" 14 21; ok $? "host -> VM limited to the limit's 20 Mbit/s ($r_in), not the policy's 100"
within "${r_out:-0}" 14 21; ok $? "VM -> host limited to 20 Mbit/s too ($r_out)"
ok "$(agent cap list "$VM_ID" --json | jq -e '.limits.CAP_NETWORK.allow_ports == "80,443,5201,8080"' >/dev/null; echo $?)" \
	"a rate alone keeps the port list"

# ---- --clear restores ----------------------------------------------------------
out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --clear 2>&1)
ok $? "cap fine-grain $VM_ID CAP_NETWORK --clear ($out)"
got=$(probes 22 80 443 8080)
ok "$([[ $got == "22:open 80:open 443:open 8080:closed" ]]; echo $?)" "cleared: the firewall alone decides again ($got)"
r_in=$(rate)
diag "TCP goodput host->VM after --clear: $r_in Mbit/s (policy 100)"
within "${r_in:-0}" 40 106; ok $? "cleared: the policy's 100 Mbit/s is the limit again ($r_in > 40)"
ok "$(grep -c '"cap_fine_grain_clear"' "$T/state/audit.log" | grep -qx 1; echo $?)" "the clear is audited"

# ---- persistence: SIGKILL, restart, policy reload --------------------------------
out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --allow-ports 443,80 --max-bandwidth 30Mbps 2>&1)
ok $? "limit again: ports 443,80, 30Mbps ($out)"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
got=$(probes 22 443)
ok "$([[ $got == "22:closed 443:open" ]]; echo $?)" "agent SIGKILLed: the kernel keeps the limit ($got)"
check "the agent restarts" -- agent_start
got=$(probes 22 443)
ok "$([[ $got == "22:closed 443:open" ]]; echo $?)" "after the restart the limit holds ($got)"
ok "$(agent cap list "$VM_ID" --json | jq -e '.limits.CAP_NETWORK.allow_ports == "80,443" and .limits.CAP_NETWORK.max_bandwidth == "30Mbit/s"' >/dev/null; echo $?)" \
	"cap list after the restart: the limit from registrations.json"
reload_policy
ok $? "the policy reloads"
got=$(probes 22 443 80)
ok "$([[ $got == "22:closed 443:open 80:open" ]]; echo $?)" "after the reload the limit holds ($got)"

# ---- the policy's capability_limits: both apply ---------------------------------
reload_policy '{ "CAP_NETWORK": { "allow_ports": [443, "8000-8100"], "max_bandwidth": "10Mbps" } }'
ok $? "a policy with capability_limits CAP_NETWORK 443,8000-8100, 10Mbps applies"
got=$(probes 443 80 22)
ok "$([[ $got == "443:open 80:closed 22:closed" ]]; echo $?)" \
	"policy 443,8000-8100 ∩ cap fine-grain 80,443: only 443 ($got)"
cl=$(agent cap list "$VM_ID" --json)
ok "$(jq -e '.limits.CAP_NETWORK.allow_ports == "443" and .limits.CAP_NETWORK.from_policy.allow_ports == "443,8000-8100" and .limits.CAP_NETWORK.from_cap_fine_grain.allow_ports == "80,443" and .limits.CAP_NETWORK.bandwidth.out.effective == "10Mbit/s"' <<<"$cl" >/dev/null; echo $?)" \
	"cap list: effective 443 and 10 Mbit/s, with both sources ($(jq -c .limits.CAP_NETWORK <<<"$cl"))"
out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --clear 2>&1)
got=$(probes 443 80)
ok "$([[ $got == "443:open 80:closed" ]]; echo $?)" "clearing the CLI's limit leaves the policy's ($got)"
reload_policy
got=$(probes 22 80)
ok "$([[ $got == "22:open 80:open" ]]; echo $?)" "the policy without limits: open again ($got)"

# ---- CAP_GPU --nodes: open in the VM's cgroup ----------------------------------------
CG2=$(cgroup2_mount)
if [[ -n $CG2 ]]; then
	mknod "$T/dri0" c 226 0; mknod "$T/dri1" c 226 1	# DRM: no driver here
	vm_stand_in "$VM_ID"
	ok $? "VM $VM_ID registered with a process in its cgroup"
	open_dri() { open_in_cgroup "$CG2/rayos/vm$VM_ID/cgroup.procs" "$T/dri$1"; }
	r0=$(open_dri 0) r1=$(open_dri 1)
	ok "$([[ $r0 == EN[XO]* && $r1 == EN[XO]* ]]; echo $?)" "CAP_GPU without a limit: 226:0 ($r0) and 226:1 ($r1) pass the cgroup"
	out=$(agent cap fine-grain "$VM_ID" CAP_GPU --nodes "$T/dri0" 2>&1)
	ok $? "cap fine-grain $VM_ID CAP_GPU --nodes $T/dri0 (a path: 226:0) ($out)"
	r0=$(open_dri 0) r1=$(open_dri 1)
	ok "$([[ $r0 == EN[XO]* ]]; echo $?)" "limited to 226:0: it passes the cgroup ($r0)"
	ok "$([[ $r1 == EPERM ]]; echo $?)" "limited to 226:0: 226:1 is denied ($r1)"
	ok "$(agent cap list "$VM_ID" --json | jq -e '.limits.CAP_GPU.nodes == ["226:0"]' >/dev/null; echo $?)" \
		"cap list shows the node"
	out=$(agent cap fine-grain "$VM_ID" CAP_GPU --clear 2>&1)
	r1=$(open_dri 1)
	ok "$([[ $r1 == EN[XO]* ]]; echo $?)" "CAP_GPU limit cleared: 226:1 passes again ($r1)"
	# A fine-grain publishes the VM's record from its policy: a run-time
	# revoke must survive it.
	agent cap revoke "$VM_ID" CAP_GPU >/dev/null
	out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --allow-ports 80,443 2>&1)
	r0=$(open_dri 0)
	ok "$([[ $r0 == EPERM && $(agent cap list "$VM_ID" --json | jq -c '[.capabilities[].cap]') == '["CAP_NETWORK"]' ]]; echo $?)" \
		"a run-time revoke of CAP_GPU survives a fine-grain publish ($r0)"
	agent cap grant "$VM_ID" CAP_GPU >/dev/null
	agent cap fine-grain "$VM_ID" CAP_NETWORK --clear >/dev/null
else
	skip "no cgroup v2 mount" "CAP_GPU --nodes in the VM's cgroup"
fi

# ---- bad input: a clear error, nothing changed ----------------------------------------
out=$(agent cap fine-grain "$VM_ID" CAP_NETWORK --allow-ports 443 2>&1)
ok $? "a limit to check against ($out)"
before=$(agent cap list "$VM_ID" --json | jq -c .limits) a0=$(audit_lines) v0=$(policy_version)
bad() {	# bad WORD ARGS...: refused, the message contains WORD, nothing changed
	local word=$1 out rc; shift
	out=$(agent cap fine-grain "$@" 2>&1); rc=$?
	ok "$([[ $rc != 0 && $out == *"$word"* ]]; echo $?)" "refused: cap fine-grain $* ($out)"
}
bad "out of range" "$VM_ID" CAP_NETWORK --allow-ports 0
bad "out of range" "$VM_ID" CAP_NETWORK --allow-ports 443,70000
bad "reversed" "$VM_ID" CAP_NETWORK --allow-ports 8100-8000
bad "not a port" "$VM_ID" CAP_NETWORK --allow-ports https
bad "empty port list" "$VM_ID" CAP_NETWORK --allow-ports ""
bad "empty item" "$VM_ID" CAP_NETWORK --allow-ports 80,,443
bad "zero" "$VM_ID" CAP_NETWORK --max-bandwidth 0
bad "negative" "$VM_ID" CAP_NETWORK --max-bandwidth -5Mbps
bad "unknown unit" "$VM_ID" CAP_NETWORK --max-bandwidth 5Mbq
bad "too large" "$VM_ID" CAP_NETWORK --max-bandwidth 99999999999999999999Mbps
bad "unknown VM 16399" 16399 CAP_NETWORK --allow-ports 443
bad "CAP_NETWRK" "$VM_ID" CAP_NETWRK --allow-ports 443
bad "not CAP_GPU" "$VM_ID" CAP_GPU --allow-ports 443
bad "not CAP_NETWORK" "$VM_ID" CAP_NETWORK --nodes 226:0
bad "CAP_INPUT has no fine-grained limits" "$VM_ID" CAP_INPUT --allow-ports 443
bad "not a DRI node" "$VM_ID" CAP_GPU --nodes 13:64
bad "give --allow-ports" "$VM_ID" CAP_NETWORK
bad "--clear takes no limits" "$VM_ID" CAP_NETWORK --clear --allow-ports 80
bad "no CAP_GPU limit" "$VM_ID" CAP_GPU --clear
after=$(agent cap list "$VM_ID" --json | jq -c .limits)
ok "$([[ $after == "$before" && $(audit_lines) == "$a0" && $(policy_version) == "$v0" ]]; echo $?)" \
	"after the refusals: same limits, no audit record, no publish"
got=$(probes 443 80)
ok "$([[ $got == "443:open 80:closed" ]]; echo $?)" "and the enforced limit is unchanged ($got)"

tap_done
