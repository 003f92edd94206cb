#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Delegation against the running agent: `cap delegate`, `cap undelegate`,
# `cap tree [--json]` and the policy's "delegations".  VM 16201 (the root,
# temporary CAP_NETWORK and CAP_GPU, CAP_ADMIN) gives both down
# 16201 -> 16202 -> 16203 -> 16204; 16204 is behind a veth pair (traffic
# addressed from 198.18.0.0/15) and has a "QEMU" in its cgroup, which opens a
# mknod node of an absent GPU driver (EPERM = denied, ENXIO/ENODEV = allowed).
# Bad requests each get their error with nothing changed; the leaf's
# traffic and GPU open work at depth 3; undelegating the middle link ends
# the leaf at once; the root's grant expiring with the agent SIGKILLed ends
# the whole chain (no_cap_network, EPERM); delegations survive restart and
# reload; the restarted agent audits the cascade; revoke-all takes delegated
# capabilities (with --temporary only links with a deadline) and ends the
# links below, also after the switch settles.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "capability delegation"
need_cmds "capability delegation" ip python3 jq bpftool timeout

agent_env
A=16201 B=16202 C=16203 D=16204 E=16205 VM_MAC=52:54:00:16:22:04
vm_veth dg "$VM_MAC" || exit 1
UDP=$PWD/tests/lib/udp.py

ROOT_TEMP='"temporary_capabilities": [ { "cap": "CAP_NETWORK", "expires": "1h" }, { "cap": "CAP_GPU", "expires": "1h" } ]'
ROOT_CAPS='"CAP_ADMIN"'
write_policy() {	# write_policy DESCRIPTION [A-KEYS] [B-KEYS] [C-KEYS]
	cat >"$T/policies/deleg.json.tmp" <<EOF
{ "version": 1, "description": "${1:-delegation}",
  "vms": [
    { "id": $A, "name": "vm-a", "capabilities": [$ROOT_CAPS], $ROOT_TEMP ${2:+,$2} },
    { "id": $B, "name": "vm-b", "capabilities": ["CAP_ADMIN"] ${3:+,$3} },
    { "id": $C, "name": "vm-c", "capabilities": ["CAP_ADMIN"] ${4:+,$4} },
    { "id": $E, "name": "vm-e", "capabilities": [] },
    { "id": $D, "name": "vm-d", "interface": "$HOST", "mac": "$VM_MAC",
      "ipv4": "$NET.2", "capabilities": ["CAP_ADMIN"],
      "host": { "rules": [ { "action": "allow", "protocol": "udp" } ] },
      "firewall": { "in": { "default": "allow" }, "out": { "default": "allow" } } } ] }
EOF
	mv "$T/policies/deleg.json.tmp" "$T/policies/deleg.json"
}
reload() {	# reload ARGS of write_policy: write and wait until applied
	local v; v=$(agent status --json | jq .policy.version)
	write_policy "$@"
	wait_for 3 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
}
write_policy
check "agent starts with VMs $A..$E" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == $D) | .ifindex > 0' >/dev/null"
ok $? "the leaf's programs are attached" || { tap_done; exit 1; }
SLOT=$(agent status --json | jq -r ".vms[] | select(.id == $D) | .slot")

NO_CAP=$(awk '/RAYOS_RSN_NO_CAP_NETWORK =/ { print $3 + 0 }' bpf/abi/net.h)
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
counters() {	# "passed refused(no_cap_network)" packets of the leaf, both ways
	bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "$SLOT") |
		jq -r --argjson r "$NO_CAP" '[.formatted.values[].value.c] | transpose | map(transpose |
			map(map(.packets) | add)) | "\(.[0][0:5] + .[1][0:5] | add) \(.[0][$r] + .[1][$r])"'
}
send() { python3 "$UDP" send 7201 "$NET.2" 7202 "$HOST" "${1:-20}" 0.002; }
passes() {	# the leaf's tap passes 20 probes
	local c0 c1; c0=$(counters); send 20; c1=$(counters)
	(( ${c1% *} >= ${c0% *} + 20 ))
}
refused() {	# nothing passes, every probe counted as no_cap_network
	local c0 c1; c0=$(counters); send 20; c1=$(counters)
	(( ${c1% *} == ${c0% *} && ${c1#* } >= ${c0#* } + 20 ))
}
boot_ns() { python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_BOOTTIME))'; }
tree_json() { agent cap tree --json | jq -c '[.trees[] | {cap, vm, kids: [.. | objects | select(has("from")) | "\(.from)>\(.vm)"]}] | sort_by(.cap)'; }
audit_lines() { cat "$T/state/audit.log" 2>/dev/null | wc -l; }

CG2=$(cgroup2_mount)
HAVE_CG=
if [[ -n $CG2 ]]; then
	mknod "$T/dri" c 226 0		# DRM: no driver on this host
	vm_stand_in "$D"
	ok $? "VM $D registered with a process" && HAVE_CG=1
fi
open_dri() { open_in_cgroup "$CG2/rayos/vm$D/cgroup.procs" "$T/dri"; }
gpu_ok() { [[ ! $HAVE_CG ]] && return 0; local r; r=$(open_dri); [[ $r == ENXIO || $r == ENODEV ]]; }
gpu_denied() { [[ ! $HAVE_CG ]] && return 0; [[ $(open_dri) == EPERM ]]; }

ok "$(refused; echo $?)" "before any delegation the leaf's tap passes nothing (no_cap_network)"
ok "$(gpu_denied; echo $?)" "and its GPU open is EPERM"

# ---- bad input: a clear error, nothing changed ----------------------------
a0=$(audit_lines)
past=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)
while IFS='|' read -r args want; do
	# shellcheck disable=SC2086
	out=$(agent cap delegate $args 2>&1)
	rc=$?
	ok "$([[ $rc != 0 && $out == *"$want"* ]]; echo $?)" "delegate $args: refused ($out)"
done <<EOF
$B $C CAP_NETWORK|VM $B does not hold CAP_NETWORK now
$E $D CAP_NETWORK|VM $E does not hold CAP_ADMIN
$A $A CAP_NETWORK|cannot delegate to itself
$A 16299 CAP_NETWORK|unknown VM 16299
16298 $B CAP_NETWORK|unknown VM 16298
$A $B CAP_FLY|unknown capability "CAP_FLY"
$A $B CAP_AUDIT|CAP_AUDIT was removed
$A $B CAP_NETWORK --expires 0s|minimum
$A $B CAP_NETWORK --expires 1.5h|malformed
$A $B CAP_NETWORK --expires 400d|366d
$A $B CAP_NETWORK --until $past|not in the future
$A $B CAP_NETWORK --expires 1h --until $past|not both
EOF
out=$(agent cap undelegate "$A" "$B" CAP_NETWORK 2>&1)
ok "$([[ $? != 0 && $out == *"does not hold CAP_NETWORK by delegation from VM $A"* ]]; echo $?)" \
	"undelegate of a link that does not exist: refused ($out)"
ok "$([[ $(tree_json) == "[]" ]]; echo $?)" "after the refused requests there are no delegations ($(tree_json))"
ok "$([[ $(audit_lines) == "$a0" ]]; echo $?)" "and nothing was audited"

# ---- a depth-3 chain of CAP_NETWORK and CAP_GPU -------------------------------
for cap in CAP_NETWORK CAP_GPU; do
	for pair in "$A $B" "$B $C" "$C $D"; do
		# shellcheck disable=SC2086
		out=$(agent cap delegate $pair $cap)
		ok $? "delegate $pair $cap ($out)"
	done
done
ok "$(passes; echo $?)" "depth 3: the leaf's tap passes traffic"
ok "$(gpu_ok; echo $?)" "depth 3: the leaf's GPU open passes the cgroup"
ok "$([[ $(grep -c '"cap_delegate"' "$T/state/audit.log") == 6 ]]; echo $?)" "six delegations audited"
cl=$(agent cap list "$D" --json | jq -c '[.capabilities[] | select(.kind == "delegated") | {cap, from, chain, s: (.seconds_left > 3500)}] | sort_by(.cap)')
want="[{\"cap\":\"CAP_GPU\",\"from\":$C,\"chain\":\"$A -> $B -> $C -> $D\",\"s\":true},{\"cap\":\"CAP_NETWORK\",\"from\":$C,\"chain\":\"$A -> $B -> $C -> $D\",\"s\":true}]"
ok "$([[ $cl == "$want" ]]; echo $?)" \
	"cap list of the leaf: both delegated, with the chain, ending with the root's 1 h grant ($cl)"
out=$(agent cap list "$D")
ok "$([[ $out == *"CAP_NETWORK    delegated "*"left (until "*"): $A -> $B -> $C -> $D"* ]]; echo $?)" \
	"cap list prints it ($(tr '\n' ';' <<<"$out"))"

# the fourth hop and a cycle, each naming the chain
out=$(agent cap delegate "$D" "$E" CAP_NETWORK 2>&1)
ok "$([[ $? != 0 && $out == *"$A -> $B -> $C -> $D already has depth 3"* ]]; echo $?)" "a fourth hop is refused ($out)"
out=$(agent cap delegate "$C" "$A" CAP_NETWORK 2>&1)
ok "$([[ $? != 0 && $out == *"cycle: $A -> $B -> $C -> $A"* ]]; echo $?)" "a cycle is refused ($out)"
out=$(agent cap delegate "$A" "$C" CAP_NETWORK 2>&1)
ok "$([[ $? != 0 && $out == *"already holds it by delegation from VM $B"* ]]; echo $?)" \
	"a second link into the same VM is refused ($out)"

# ---- cap tree -----------------------------------------------------------
out=$(agent cap tree)
ok "$([[ $out == *"VM $A  CAP_NETWORK (holds it)"* && $out == *"  └─ VM $B"* && $out == *"      └─ VM $D  no deadline"* ]]; echo $?)" \
	"cap tree draws the chain indented ($(tr '\n' ';' <<<"$out"))"
want="[{\"cap\":\"CAP_GPU\",\"vm\":$A,\"kids\":[\"$A>$B\",\"$B>$C\",\"$C>$D\"]},{\"cap\":\"CAP_NETWORK\",\"vm\":$A,\"kids\":[\"$A>$B\",\"$B>$C\",\"$C>$D\"]}]"
ok "$([[ $(tree_json) == "$want" ]]; echo $?)" "cap tree --json: both chains ($(tree_json))"
ok "$([[ $(agent cap tree "$E" --json | jq '.trees | length') == 0 && $(agent cap tree "$C" --json | jq '.trees | length') == 2 ]]; echo $?)" \
	"cap tree ID: only the trees that hold the VM"

# ---- revoke at the middle link ends the leaf at once --------------------------
out=$(agent cap undelegate "$B" "$C" CAP_NETWORK)
ok $? "undelegate $B $C CAP_NETWORK ($out)"
ok "$([[ $out == *"1 link below"* ]]; echo $?)" "it reports the link below that ended with it"
ok "$(refused; echo $?)" "the leaf's next packets are dropped as no_cap_network"
ok "$(gpu_ok; echo $?)" "its CAP_GPU chain is untouched: the GPU open still passes"
ok "$([[ $(grep -c '"cap_undelegate"' "$T/state/audit.log") == 1 && $(grep -c '"cap_delegation_cascade"' "$T/state/audit.log") == 1 ]]; echo $?)" \
	"the undelegation and the cascade below it are audited"
for pair in "$B $C" "$C $D"; do
	# shellcheck disable=SC2086
	agent cap delegate $pair CAP_NETWORK >/dev/null
done
ok "$(passes; echo $?)" "delegated again: traffic passes"

# ---- restart and reload keep the delegations ------------------------------
t0=$(tree_json)
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "the agent restarts" -- agent_start
ok "$([[ $(tree_json) == "$t0" ]]; echo $?)" "after a restart the delegations are unchanged"
ok "$(passes; echo $?)" "and the leaf's traffic passes"
reload "reloaded"
ok $? "the policy reloads"
ok "$([[ $(tree_json) == "$t0" ]] && passes && gpu_ok; echo $?)" "after a reload: unchanged, traffic and GPU pass"

# ---- revoke-all ends the delegations it takes, and what hangs below --------
out=$(agent cap revoke-all --temporary --vm "$D")
ok "$([[ $out == *"VM $D"*"(held nothing to revoke)"* ]] && passes && gpu_ok; echo $?)" \
	"revoke-all --temporary leaves a delegation without a deadline of its own ($out)"
agent cap undelegate "$C" "$D" CAP_NETWORK >/dev/null &&
	agent cap delegate "$C" "$D" CAP_NETWORK --expires 1h >/dev/null
ok $? "the leaf's CAP_NETWORK link now has a deadline"
out=$(agent cap revoke-all --temporary --vm "$D")
ok "$([[ $out == *"VM $D"*"CAP_NETWORK (and 1 delegation link"* ]]; echo $?)" \
	"revoke-all --temporary takes a delegation with a deadline ($out)"
ok "$(refused && gpu_ok; echo $?)" "the leaf's traffic is refused, its permanent CAP_GPU link stays"
agent cap delegate "$C" "$D" CAP_NETWORK >/dev/null
ok "$(passes; echo $?)" "delegated again: traffic passes"
n0=$(grep -c '"cap_delegation_revoked"' "$T/state/audit.log")
out=$(agent cap revoke-all --vm "$C")
ok "$([[ $out == *"VM $C"*"CAP_NETWORK"*"CAP_GPU"*"CAP_ADMIN"*"(and 4 delegation link"* ]]; echo $?)" \
	"revoke-all --vm $C takes its own and its delegated capabilities ($out)"
ok "$(refused && gpu_denied; echo $?)" "the leaf below it loses both at once"
ok "$([[ $(agent status --json | jq .cap_switch.armed) == false ]]; echo $?)" "the switch has settled"
ok "$(refused && gpu_denied; echo $?)" "and after the settle the delegated capabilities stay gone"
want="[{\"cap\":\"CAP_GPU\",\"vm\":$A,\"kids\":[\"$A>$B\"]},{\"cap\":\"CAP_NETWORK\",\"vm\":$A,\"kids\":[\"$A>$B\"]}]"
ok "$([[ $(tree_json) == "$want" ]]; echo $?)" "cap tree: the links to $C and below are gone ($(tree_json))"
ok "$(( $(grep -c '"cap_delegation_revoked"' "$T/state/audit.log") == n0 + 2 ? 0 : 1 ))" \
	"each link revoke-all took is audited"
agent cap grant "$C" CAP_ADMIN >/dev/null
for cap in CAP_NETWORK CAP_GPU; do
	agent cap delegate "$B" "$C" $cap >/dev/null && agent cap delegate "$C" "$D" $cap >/dev/null
done
ok "$(passes && gpu_ok; echo $?)" "granted and delegated again: the leaf passes traffic and opens the GPU"

# ---- the cascade: the root's grant expires with the agent dead -------------------
agent cap grant-temp "$A" CAP_NETWORK --expires 4s >/dev/null &&
	agent cap grant-temp "$A" CAP_GPU --expires 4s >/dev/null
ok $? "the root's grants now end in 4 s"
DL=$(bpftool -j map lookup pinned "$PIN/rayos_vms" key $(le32 "$A") | jq -r '.formatted.value.cap_until_ns[0]')
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
ok "$( (( $(boot_ns) < DL )) && passes && gpu_ok; echo $?)" "agent dead, before the root's deadline: the leaf passes traffic and opens the GPU"
wait_for 10 bash -c "(( \$(python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_BOOTTIME))') > $DL + 50000000 ))"
ok "$(refused; echo $?)" "agent dead, past the root's deadline: the leaf at depth 3 passes nothing (no_cap_network)"
ok "$(gpu_denied; echo $?)" "agent dead, past the root's deadline: the leaf's GPU open is EPERM"
check "the agent restarts" -- agent_start
wait_for 5 bash -c "[[ \$('$AGENT' cap tree --json --run-dir '$T/run' | jq '.trees | length') == 0 ]]"
ok $? "the restarted agent removes the dead chains ($(tree_json))"
ok "$(( $(grep -c '"cap_delegation_cascade"' "$T/state/audit.log") >= 7 ? 0 : 1 ))" \
	"and audits each link's end as a cascade ($(grep -c '"cap_delegation_cascade"' "$T/state/audit.log"))"
grep -q "delegation $C -> $D CAP_NETWORK ended" "$T/agent.log"
ok $? "and logs it"

# ---- the policy form ---------------------------------------------------------
# The root's temporary grants were spent above (a reload does not renew an
# entry already applied): from here it holds CAP_NETWORK permanently.
ROOT_CAPS='"CAP_ADMIN", "CAP_NETWORK"'
ROOT_TEMP='"temporary_capabilities": [ { "cap": "CAP_GPU", "expires": "1h" } ]'
reload "policy delegations" '"delegations": [ { "to": '$B', "cap": "CAP_NETWORK" } ]' \
	'"delegations": [ { "to": '$C', "cap": "CAP_NETWORK" } ]' \
	'"delegations": [ { "to": '$D', "cap": "CAP_NETWORK", "expires": "30m" } ]'
ok $? "a policy with a depth-3 chain of delegations applies"
ok "$(passes; echo $?)" "the leaf's traffic passes through the policy's chain"
out=$(agent cap tree)
ok "$([[ $out == *"VM $D  "*"s left (policy)"* ]]; echo $?)" "cap tree shows the policy's links with the time left ($(tr '\n' ';' <<<"$out"))"
v=$(agent status --json | jq .policy.version)
write_policy "depth 4" '"delegations": [ { "to": '$B', "cap": "CAP_NETWORK" } ]' \
	'"delegations": [ { "to": '$C', "cap": "CAP_NETWORK" } ]' \
	'"delegations": [ { "to": '$D', "cap": "CAP_NETWORK" } ]'
sed -i 's/"capabilities": \["CAP_ADMIN"\],$/"capabilities": ["CAP_ADMIN"], "delegations": [ { "to": '$E', "cap": "CAP_NETWORK" } ],/' "$T/policies/deleg.json"
out=$("$AGENT" policy check "$T/policies/deleg.json" 2>&1)
ok "$([[ $out == *"$A -> $B -> $C -> $D already has depth 3"* ]]; echo $?)" "policy check refuses a fourth hop ($out)"
sleep 1.5
ok "$([[ $(agent status --json | jq .policy.version) == "$v" ]] && passes; echo $?)" \
	"the agent keeps the applied policy: nothing changed, traffic passes"
reload "no delegations"
ok $? "a policy without the entries applies"
ok "$(refused; echo $?)" "removing the entries ends the chain"
ok "$([[ $(tree_json) == "[]" ]]; echo $?)" "and cap tree is empty"

tap_done
