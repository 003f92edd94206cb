#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A capability taken by delegation comes with its giver's limits.  VM 16311
# (the giver: CAP_ADMIN, CAP_NETWORK, CAP_GPU) limits its CAP_NETWORK with
# `cap fine-grain` and delegates it to VM 16310, which has no CAP_NETWORK of
# its own and sits behind a veth pair (TCP from the host to its services,
# addressed from 198.18.0.0/15).  The delegate connects only on the ports
# both its firewall and the giver's limit allow, at the giver's rate (iperf3
# both ways); a new limit on the giver reaches it; through a middle VM
# (16312) the limits of every giver up the chain apply; a grant of its own
# does not widen it while the link stands; undelegating lifts the limits at
# once, a link the kernel ends (expiry) at the next health tick; the policy's
# "delegations" and "capability_limits" do the same at a reload; CAP_GPU
# --nodes reaches a delegate's cgroup (mknod 226:0 / 226:1: ENXIO/ENODEV =
# allowed, EPERM = denied); the audit chain verifies at the end.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "limits taken with a delegated capability"
need_cmds "limits taken with a delegated capability" ip python3 jq bpftool timeout nc iperf3

agent_env
V=16310 G=16311 M=16312 VM_MAC=52:54:00:63:10:01
vm_veth dl "$VM_MAC" || exit 1

# write_policy [G-KEYS] [V-CAPS]: the firewall lets the host reach V on tcp
# 22, 80, 443 and 5201 (iperf3), nothing else; 100 Mbit/s each way.
write_policy() {
	cat >"$T/policies/dl.json.tmp" <<EOF
{
	"version": 1,
	"vms": [
		{ "id": $G, "name": "vm-giver",
		  "capabilities": ["CAP_ADMIN", "CAP_NETWORK", "CAP_GPU"] ${1:+, $1} },
		{ "id": $M, "name": "vm-middle", "capabilities": ["CAP_ADMIN"] },
		{ "id": $V, "name": "vm-delegate", "interface": "$HOST", "mac": "$VM_MAC",
		  "ipv4": "$NET.2", "capabilities": [${2:-}],
		  "firewall": {
			"in": { "default": "deny", "rules": [
				{ "action": "allow", "protocol": "tcp", "ports": [22, 80, 443, 5201] } ] },
			"out": { "default": "allow" } },
		  "bandwidth": { "in": { "rate": "100mbit" }, "out": { "rate": "100mbit" } } }
	]
}
EOF
	mv "$T/policies/dl.json.tmp" "$T/policies/dl.json"
}
policy_version() { agent status --json | jq -r .policy.version; }
reload_policy() {	# reload_policy ARGS of write_policy: write it and wait for the apply
	local v; v=$(policy_version)
	write_policy "$@"
	wait_for 5 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
}

write_policy
check "agent starts with VMs $V, $G, $M" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == $V and .ifindex > 0)' >/dev/null"
ok $? "the delegate's programs are attached" || { tap_done; exit 1; }

: >"$T/served.log"
spawn SRV ip netns exec "$VMNS" python3 tests/qemu/host_serve.py "$NET.2" "$T/served.log" 22 80 443
wait_for 5 test -e "$T/served.log.ready" || diag "VM services did not come up"
probes() { tcp_probes "$NET.2" "$@"; }	# "PORT:open|closed ..." host -> VM
limits() { agent cap list "$V" --json | jq -c ".limits.CAP_NETWORK // {}"; }

got=$(probes 22 443)
ok "$([[ $got == "22:closed 443:closed" ]]; echo $?)" "without CAP_NETWORK the delegate connects nowhere ($got)"

# ---- the giver's limits come with the link ----------------------------------
out=$(agent cap fine-grain "$G" CAP_NETWORK --allow-ports 443,5201 --max-bandwidth 20Mbps 2>&1)
ok $? "cap fine-grain $G CAP_NETWORK --allow-ports 443,5201 --max-bandwidth 20Mbps ($out)"
out=$(agent cap delegate "$G" "$V" CAP_NETWORK --json 2>&1)
ok "$(jq -e '.ok and .limited == 1' <<<"$out" >/dev/null; echo $?)" \
	"cap delegate $G $V CAP_NETWORK: the delegate is limited ($out)"
got=$(probes 22 80 443)
ok "$([[ $got == "22:closed 80:closed 443:open" ]]; echo $?)" \
	"the delegate connects only where its firewall and the giver's limit both allow ($got)"
l=$(limits)
ok "$(jq -e --argjson g "$G" '.allow_ports == "443,5201" and .from_delegation.from == $g and .from_delegation.allow_ports == "443,5201" and .bandwidth.in.effective == "20Mbit/s"' <<<"$l" >/dev/null; echo $?)" \
	"cap list shows the limits and that they come from $G ($l)"

ip netns exec "$VMNS" iperf3 -s -D -B "$NET.2" -p 5201 -I "$T/iperf3.pid" --logfile "$T/iperf3.log"
wait_for 3 test -s "$T/iperf3.pid"
on_exit "kill -9 \$(cat '$T/iperf3.pid')"
rate() { iperf_mbps "$NET.2" "$@"; }	# Mbit/s host -> VM (-R: VM -> host)
r_in=$(rate) r_out=$(rate -R)
diag "delegate's TCP goodput: host->VM $r_in Mbit/s, VM->host $r_out Mbit/s (giver's limit 20, policy 100)"
within "${r_in:-0}" 14 21; ok $? "host -> delegate at the giver's 20 Mbit/s ($r_in), not its policy's 100"
within "${r_out:-0}" 14 21; ok $? "delegate -> host at 20 Mbit/s too ($r_out)"

out=$(agent cap fine-grain "$G" CAP_NETWORK --allow-ports 80,5201 --json 2>&1)
ok "$(jq -e '.ok and .delegates_changed == 1' <<<"$out" >/dev/null; echo $?)" \
	"a new limit on the giver re-limits its delegate ($(jq -c '{ok, delegates_changed}' <<<"$out" 2>/dev/null || echo "$out"))"
got=$(probes 80 443)
ok "$([[ $got == "80:open 443:closed" ]]; echo $?)" "the delegate follows the giver's new ports ($got)"

# ---- up a chain: every giver's limits ----------------------------------------
agent cap undelegate "$G" "$V" CAP_NETWORK >/dev/null
got=$(probes 80)
ok "$([[ $got == "80:closed" ]]; echo $?)" "undelegated: the delegate connects nowhere again ($got)"
out=$(agent cap delegate "$G" "$M" CAP_NETWORK 2>&1) &&
	out=$(agent cap fine-grain "$M" CAP_NETWORK --allow-ports 80,443 2>&1) &&
	out=$(agent cap delegate "$M" "$V" CAP_NETWORK 2>&1)
ok $? "chain $G -> $M -> $V, the middle limited to 80,443 ($out)"
got=$(probes 22 80 443)
ok "$([[ $got == "22:closed 80:open 443:closed" ]]; echo $?)" \
	"at depth 2 the delegate is under both givers' limits: 80,5201 ∩ 80,443 ($got)"
out=$(agent cap fine-grain "$G" CAP_NETWORK --allow-ports 443 --json 2>&1)
ok "$(jq -e '.delegates_changed == 2' <<<"$out" >/dev/null; echo $?)" \
	"a new limit at the root re-limits both VMs below it ($(jq -c .delegates_changed <<<"$out" 2>/dev/null || echo "$out"))"
got=$(probes 80 443)
ok "$([[ $got == "80:closed 443:open" ]]; echo $?)" "443,80 ∩ 443: only 443 connects ($got)"

# ---- a grant of its own does not widen it while the link stands --------------
agent cap grant "$V" CAP_NETWORK >/dev/null
got=$(probes 22 80 443)
ok "$([[ $got == "22:closed 80:closed 443:open" ]]; echo $?)" \
	"with CAP_NETWORK of its own too, the link's limits still apply ($got)"
out=$(agent cap undelegate "$M" "$V" CAP_NETWORK 2>&1)
ok $? "cap undelegate $M $V CAP_NETWORK ($out)"
got=$(probes 22 80 443)
ok "$([[ $got == "22:open 80:open 443:open" ]]; echo $?)" \
	"undelegated: its own grant, its firewall alone, at once ($got)"
ok "$(jq -e '.bandwidth.in.effective == "100Mbit/s" and (has("from_delegation") | not) and (has("allow_ports") | not)' <<<"$(limits)" >/dev/null; echo $?)" \
	"cap list: no limit from a delegation, the policy's 100 Mbit/s in force ($(limits))"

# ---- a link the kernel ends lifts its limits at the next health tick ---------
out=$(agent cap delegate "$M" "$V" CAP_NETWORK --expires 2s 2>&1)
ok $? "delegated again for 2 s ($out)"
got=$(probes 22 443)
ok "$([[ $got == "22:closed 443:open" ]]; echo $?)" "while the link lasts: the givers' limits ($got)"
sleep 2
port22_opens() { [[ $(probes 22) == 22:open ]]; }
wait_for 5 port22_opens
ok $? "the link expired: within a health tick port 22 connects again"
ok "$(grep -q '"cap_delegation_expired"' "$T/state/audit.log"; echo $?)" "the expiry is audited"

# ---- the policy's delegations and capability_limits ---------------------------
agent cap undelegate "$G" "$M" CAP_NETWORK >/dev/null
agent cap fine-grain "$G" CAP_NETWORK --clear >/dev/null
agent cap revoke "$V" CAP_NETWORK >/dev/null
reload_policy "\"capability_limits\": { \"CAP_NETWORK\": { \"allow_ports\": [80] } }, \"delegations\": [ { \"to\": $V, \"cap\": \"CAP_NETWORK\" } ]"
ok $? "a policy where $G, limited to port 80, delegates CAP_NETWORK to $V applies"
got=$(probes 22 80 443)
ok "$([[ $got == "22:closed 80:open 443:closed" ]]; echo $?)" \
	"the link the policy makes comes with the policy's limit, from the first publish ($got)"
reload_policy "\"capability_limits\": { \"CAP_NETWORK\": { \"allow_ports\": [443] } }, \"delegations\": [ { \"to\": $V, \"cap\": \"CAP_NETWORK\" } ]"
got=$(probes 80 443)
ok "$([[ $got == "80:closed 443:open" ]]; echo $?)" "a reload with a new limit on the giver reaches the delegate ($got)"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
got=$(probes 80 443)
ok "$([[ $got == "80:closed 443:open" ]]; echo $?)" "agent SIGKILLed: the kernel keeps the delegate's limits ($got)"
check "the agent restarts" -- agent_start
got=$(probes 80 443)
ok "$([[ $got == "80:closed 443:open" ]]; echo $?)" "after the restart they hold ($got)"
reload_policy
agent cap grant "$V" CAP_NETWORK >/dev/null
got=$(probes 22 80)
ok "$([[ $got == "22:open 80:open" ]]; echo $?)" \
	"the entry and the limit leave the policy; with a grant of its own the firewall alone decides ($got)"

# ---- CAP_GPU --nodes, through a link --------------------------------------------
CG2=$(cgroup2_mount)
if [[ -n $CG2 ]]; then
	mknod "$T/dri0" c 226 0; mknod "$T/dri1" c 226 1	# DRM: no driver here
	vm_stand_in "$V"
	ok $? "VM $V registered with a process in its cgroup"
	open_dri() { open_in_cgroup "$CG2/rayos/vm$V/cgroup.procs" "$T/dri$1"; }
	r0=$(open_dri 0)
	ok "$([[ $r0 == EPERM ]]; echo $?)" "without CAP_GPU the delegate's cgroup cannot open 226:0 ($r0)"
	out=$(agent cap fine-grain "$G" CAP_GPU --nodes 226:0 2>&1) &&
		out=$(agent cap delegate "$G" "$V" CAP_GPU 2>&1)
	ok $? "the giver limited to 226:0 delegates CAP_GPU ($out)"
	r0=$(open_dri 0) r1=$(open_dri 1)
	ok "$([[ $r0 == EN[XO]* && $r1 == EPERM ]]; echo $?)" \
		"the delegate opens 226:0 ($r0), not 226:1 ($r1)"
	out=$(agent cap undelegate "$G" "$V" CAP_GPU 2>&1)
	r0=$(open_dri 0)
	ok "$([[ $r0 == EPERM ]]; echo $?)" "undelegated: 226:0 is EPERM again ($r0)"
else
	skip "no cgroup v2 mount" "CAP_GPU --nodes through a link"
fi

out=$("$AGENT" audit verify --state-dir "$T/state" --run-dir "$T/run" 2>&1)
ok $? "the audit chain verifies after all of it ($out)"
tap_done
