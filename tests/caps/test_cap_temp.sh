#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Temporary capabilities against the running agent: `cap grant-temp` and
# `cap list`; bad durations and times refused with nothing changed; a grant
# of CAP_NETWORK and CAP_GPU ends at its deadline with the agent SIGKILLed
# (packets through the VM's tap, a device open in the VM's cgroup: a mknod
# node of an absent driver, EPERM when denied); the restarted agent logs and
# audits the expiry; a grant survives agent restart and policy reload; a
# revoke ends it.  VM 1602 behind a veth pair, traffic addressed from
# 198.18.0.0/15.  Timing figures are in tests/caps/bench_cap_expiry.sh.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "temporary capabilities"
need_cmds "temporary capabilities" ip python3 jq bpftool timeout

agent_env
VM_ID=1602 VM_MAC=52:54:00:16:02:01
vm_veth rt "$VM_MAC" || exit 1
UDP=$PWD/tests/lib/udp.py

write_policy() {
	cat >"$T/policies/temp.json.tmp" <<EOF
{ "version": 1, "description": "${1:-temporary}",
  "vms": [ { "id": $VM_ID, "name": "vm-temp", "interface": "$HOST", "mac": "$VM_MAC",
	     "ipv4": "$NET.2", "capabilities": [${3:-}], ${2:+$2,}
	     "host": { "rules": [ { "action": "allow", "protocol": "udp" } ] },
	     "firewall": { "in": { "default": "allow" }, "out": { "default": "allow" } } } ] }
EOF
	mv "$T/policies/temp.json.tmp" "$T/policies/temp.json"
}
write_policy
check "agent starts with VM $VM_ID" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[0].ifindex > 0' >/dev/null"
ok $? "the VM's programs are attached" || { tap_done; exit 1; }
SLOT=$(agent status --json | jq -r '.vms[0].slot')

# The reason number as the ABI defines it (bpf/abi/net.h).
NO_CAP=$(awk '/RAYOS_RSN_NO_CAP_NETWORK =/ { print $3 + 0 }' bpf/abi/net.h)
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
# passed / refused: packets of the VM counted as passed (any pass reason) or
# as no_cap_network, both directions, summed over CPUs.
counters() {
	bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "$SLOT") |
		jq -r --argjson r "$NO_CAP" '[.formatted.values[].value.c] | transpose | map(transpose |
			map(map(.packets) | add)) | "\(.[0][0:5] + .[1][0:5] | add) \(.[0][$r] + .[1][$r])"'
}
until_ns() {	# the record's deadline of capability $1 (bit), on the boot clock
	bpftool -j map lookup pinned "$PIN/rayos_vms" key $(le32 "$VM_ID") |
		jq -r ".formatted.value.cap_until_ns[$1]"
}
boot_ns() { python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_BOOTTIME))'; }
caps_json() { agent cap list "$VM_ID" --json | jq -c '[.capabilities[] | "\(.cap):\(.kind)"]'; }

# ---- the VM's cgroup, with a "QEMU" in it, and a node of an absent driver ----
CG2=$(cgroup2_mount)
HAVE_CG=
if [[ -n $CG2 ]]; then
	mknod "$T/dri" c 226 0		# DRM: no driver on this host
	vm_stand_in "$VM_ID"
	ok $? "VM $VM_ID registered with a process" && HAVE_CG=1
fi
open_dri() { open_in_cgroup "$CG2/rayos/vm$VM_ID/cgroup.procs" "$T/dri"; }

out=$(agent cap list "$VM_ID")
ok "$([[ $out == *"holds no capabilities"* ]]; echo $?)" "cap list: the policy grants nothing ($out)"

# ---- bad input: a clear error, nothing changed ----------------------------
audit_lines() { cat "$T/state/audit.log" 2>/dev/null | wc -l; }
a0=$(audit_lines)
future=$(date -u -d '+2 min' +%Y-%m-%dT%H:%M:%SZ)
past=$(date -u -d '-1 min' +%Y-%m-%dT%H:%M:%SZ)
far=$(date -u -d '+367 days' +%Y-%m-%dT%H:%M:%SZ)
while IFS='|' read -r args want; do
	# shellcheck disable=SC2086
	out=$(agent cap grant-temp $args 2>&1)
	rc=$?
	ok "$([[ $rc != 0 && $out == *"$want"* ]]; echo $?)" "grant-temp $args: refused ($out)"
done <<EOF
$VM_ID CAP_NETWORK --expires 0s|minimum
$VM_ID CAP_NETWORK --expires -5m|negative
$VM_ID CAP_NETWORK --expires 367d|366d
$VM_ID CAP_NETWORK --expires 1.5h|malformed
$VM_ID CAP_NETWORK --expires 30|malformed
$VM_ID CAP_NETWORK --expires 2w|malformed
$VM_ID CAP_NETWORK --until $past|not in the future
$VM_ID CAP_NETWORK --until $far|366d
$VM_ID CAP_NETWORK --until tomorrow|malformed
$VM_ID CAP_NETWORK --until 2026-12-02T17:00:00|zone
1699 CAP_NETWORK --expires 30m|unknown VM 1699
$VM_ID CAP_FLY --expires 30m|unknown capability "CAP_FLY"
$VM_ID CAP_NETWORK --for 30m|unrecognized option
$VM_ID CAP_NETWORK --expires 1h --until $future|not both
EOF
ok "$([[ $(caps_json) == "[]" ]]; echo $?)" "after the refused requests the VM still holds nothing ($(caps_json))"
ok "$([[ $(audit_lines) == "$a0" ]]; echo $?)" "and nothing was audited as granted"

# ---- a grant and its deadline, with the agent SIGKILLed -------------------
out=$(agent cap grant-temp "$VM_ID" CAP_NETWORK --expires 6s)
ok $? "grant-temp $VM_ID CAP_NETWORK --expires 6s ($out)"
out=$(agent cap grant-temp "$VM_ID" CAP_GPU --expires 6s)
ok $? "grant-temp $VM_ID CAP_GPU --expires 6s ($out)"
list=$(agent cap list "$VM_ID")
ok "$([[ $list == *CAP_NETWORK*temporary*left* && $list == *CAP_GPU*temporary*left* ]]; echo $?)" \
	"cap list shows both as temporary with the time left ($(tr '\n' ';' <<<"$list"))"
D=$(until_ns 0)
ok "$(( D > $(boot_ns) ? 0 : 1 ))" "the deadline is in the VM's record, on the boot clock ($D)"
ok "$([[ $(grep -c '"cap_grant_temp"' "$T/state/audit.log") == 2 ]]; echo $?)" "both grants audited"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null

# A probe every 2 ms from the host to the VM until 1.5 s past the deadline.
left_ms=$(( (D - $(boot_ns)) / 1000000 ))
python3 "$UDP" send 7201 "$NET.2" 7202 "$HOST" $(( (left_ms + 1500) / 2 )) 0.002 &
PROBE=$!
on_exit "kill -9 $PROBE"
c0=$(counters)
passing() { local c; c=$(counters); (( ${c% *} >= ${c0% *} + 20 )); }
wait_for 3 passing
ok "$(( $? == 0 && $(boot_ns) < D ? 0 : 1 ))" "agent dead, before the deadline: packets pass (${c0% *} -> $(c=$(counters); echo "${c% *}"))"
[[ $HAVE_CG ]] && { r=$(open_dri); ok "$([[ $r == ENXIO || $r == ENODEV ]]; echo $?)" \
	"agent dead, before the deadline: the GPU node passes the cgroup ($r)"; }
# Past the deadline (bounded wait), then a window with the probe running.
wait_for 10 bash -c "(( \$(python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_BOOTTIME))') > $D + 100000000 ))"
c0=$(counters); sleep 0.3; c1=$(counters)
ok "$(( ${c1% *} == ${c0% *} && ${c1#* } > ${c0#* } ? 0 : 1 ))" \
	"agent dead, past the deadline: nothing passes, dropped as no_cap_network (pass ${c0% *} -> ${c1% *}, refused ${c0#* } -> ${c1#* })"
[[ $HAVE_CG ]] && { r=$(open_dri); ok "$([[ $r == EPERM ]]; echo $?)" \
	"agent dead, past the deadline: the GPU node is EPERM ($r)"; }
kill -9 "$PROBE" 2>/dev/null; wait "$PROBE" 2>/dev/null

# ---- the restarted agent logs, audits and tidies ------------------------------
check "the agent restarts" -- agent_start
wait_for 5 grep -q "temporary CAP_NETWORK expired" "$T/agent.log"
ok $? "it logs the expiry ($(grep -o 'temporary CAP_NETWORK expired[^(]*' "$T/agent.log" | head -1))"
ok "$([[ $(grep -c '"cap_expired"' "$T/state/audit.log") == 2 ]]; echo $?)" "and audits both expiries"
wait_for 3 bash -c "[[ \$(bpftool -j map lookup pinned '$PIN/rayos_vms' key $(le32 "$VM_ID") | jq '.formatted.value.cap_until_ns | add') == 0 ]]"
ok $? "and clears the deadlines from the record"
ok "$([[ $(caps_json) == "[]" ]]; echo $?)" "cap list: nothing held ($(caps_json))"

# ---- a grant survives restart and reload; revoke ends it ----------------------
out=$(agent cap grant-temp "$VM_ID" CAP_NETWORK --until "$future")
ok $? "grant-temp --until $future ($out)"
left=$(agent cap list "$VM_ID" --json | jq '.capabilities[0].seconds_left')
ok "$(( left > 100 && left <= 120 ? 0 : 1 ))" "--until 2 minutes ahead leaves ${left}s"
D=$(until_ns 0)
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "the agent restarts" -- agent_start
ok "$([[ $(until_ns 0) == "$D" && $(caps_json) == '["CAP_NETWORK:temporary"]' ]]; echo $?)" \
	"after a restart the grant and its deadline are unchanged ($(caps_json))"
v=$(agent status --json | jq .policy.version)
write_policy "reloaded"
wait_for 3 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
ok $? "the policy reloads"
ok "$([[ $(until_ns 0) == "$D" && $(caps_json) == '["CAP_NETWORK:temporary"]' ]]; echo $?)" \
	"after a reload the grant and its deadline are unchanged"
out=$(agent cap grant-temp "$VM_ID" CAP_NETWORK --expires 1h 2>&1)
ok "$?" "a second grant-temp replaces the deadline ($out)"
out=$(agent cap revoke "$VM_ID" CAP_NETWORK 2>&1)
ok $? "cap revoke ends the temporary grant ($out)"
ok "$([[ $(until_ns 0) == 0 && $(caps_json) == "[]" ]]; echo $?)" "record and list: nothing held"
c0=$(counters)
python3 "$UDP" send 7201 "$NET.2" 7202 "$HOST" 20 0.002
c1=$(counters)
ok "$(( ${c1% *} == ${c0% *} && ${c1#* } >= ${c0#* } + 20 ? 0 : 1 ))" "after the revoke the tap passes nothing"

# ---- the policy key: applied once, kept by reloads, ended by the kernel ------
reload() {	# reload DESCRIPTION [VM-JSON-KEYS]: write and wait until applied
	local v; v=$(agent status --json | jq .policy.version)
	write_policy "$@"
	wait_for 3 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
}
TEMP='"temporary_capabilities": [ { "cap": "CAP_NETWORK", "expires": "3s" } ]'
reload "policy grant" "$TEMP"
ok $? "a policy with temporary_capabilities [CAP_NETWORK for 3s] applies"
D=$(until_ns 0)
ok "$([[ $D != 0 && $(caps_json) == '["CAP_NETWORK:temporary"]' ]]; echo $?)" \
	"cap list: CAP_NETWORK temporary from the policy ($(caps_json))"
reload "policy grant, reloaded" "$TEMP"
ok "$([[ $(until_ns 0) == "$D" ]]; echo $?)" "a reload of the same entry keeps the deadline"
c0=$(counters)
python3 "$UDP" send 7201 "$NET.2" 7202 "$HOST" 20 0.002
c1=$(counters)
ok "$(( ${c1% *} >= ${c0% *} + 20 ? 0 : 1 ))" "before its deadline the tap passes traffic"
wait_for 10 bash -c "(( \$(python3 -c 'import time; print(time.clock_gettime_ns(time.CLOCK_BOOTTIME))') > $D ))"
c0=$(counters)
python3 "$UDP" send 7201 "$NET.2" 7202 "$HOST" 20 0.002
c1=$(counters)
ok "$(( ${c1% *} == ${c0% *} && ${c1#* } >= ${c0#* } + 20 ? 0 : 1 ))" "past its deadline the tap passes nothing"
reload "policy grant, after expiry" "$TEMP"
c0=$(counters)
python3 "$UDP" send 7201 "$NET.2" 7202 "$HOST" 10 0.002
c1=$(counters)
ok "$(( ${c1% *} == ${c0% *} ? 0 : 1 ))" "a reload does not grant the expired entry again"
reload "policy grant, changed" '"temporary_capabilities": [ { "cap": "CAP_NETWORK", "expires": "1h" } ]'
ok "$([[ $(caps_json) == '["CAP_NETWORK:temporary"]' ]]; echo $?)" "a changed entry grants again"
reload "policy grant removed"
ok "$([[ $(until_ns 0) == 0 && $(caps_json) == "[]" ]]; echo $?)" "removing the entry ends its grant"

# ---- bad policy entries: the file is refused, naming the field -------------
bad_policy() {	# bad_policy VM-JSON-KEYS [CAPS]: the error of `policy check`
	write_policy "bad" "$1" "${2:-}"
	mv "$T/policies/temp.json" "$T/bad.json"
	write_policy
	"$AGENT" policy check "$T/bad.json" 2>&1
}
while IFS='|' read -r keys caps want; do
	out=$(bad_policy "$keys" "$caps")
	ok "$([[ $out == *"$want"* ]]; echo $?)" "policy check refuses $keys ($out)"
done <<'EOF'
"temporary_capabilities": [ { "cap": "CAP_NETWORK", "expires": "0s" } ]||minimum of 1s
"temporary_capabilities": [ { "cap": "CAP_NETWORK", "expires": "400d" } ]||366d
"temporary_capabilities": [ { "cap": "CAP_NETWORK", "until": "tomorrow" } ]||malformed time
"temporary_capabilities": [ { "cap": "CAP_NETWORK", "expires": "1h", "until": "2030-01-01T00:00:00Z" } ]||not both
"temporary_capabilities": [ { "cap": "CAP_NOPE" } ]||unknown capability
"temporary_capabilities": [ { "expires": "1h" } ]||no "cap"
"temporary_capabilities": [ { "cap": "CAP_GPU" }, { "cap": "CAP_GPU" } ]||duplicate capability
"temporary_capabilities": [ { "cap": "CAP_GPU", "for": "1h" } ]||unknown key "for"
"temporary_capabilities": [ { "cap": "CAP_GPU" } ]|"CAP_GPU"|also a permanent capability
EOF

tap_done
