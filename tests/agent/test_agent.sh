#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The real agent on temporary directories and a private pin root: live policy
# edits reach the pinned maps within 1 s, a broken edit changes nothing and is
# logged with file and field, SIGKILL leaves pins and links in place, and a
# restarted agent adopts them without clearing anything.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "agent integration"
agent_env

VETH=rt$$a
ip link add "$VETH" type veth peer name "${VETH}p" || exit 1
on_exit "ip link del '$VETH'"

write_policy() {	# write_policy PORT: one VM (id 7) that allows TCP PORT in, and
			# UDP PORT..PORT+9 from 198.18.$((PORT % 256)).0/24 (an interval table)
	cat >"$T/policies/test.json.tmp" <<EOF
{
	"version": 1,
	"vms": [
		{ "id": 7, "name": "vm-seven", "interface": "$VETH",
		  "mac": "52:54:00:00:00:07", "ipv4": "198.18.0.7",
		  "capabilities": ["CAP_NETWORK", "CAP_CONSOLE"],
		  "firewall": { "in": { "default": "deny",
			"rules": [ { "action": "allow", "protocol": "tcp", "ports": [$1] },
				   { "action": "allow", "protocol": "udp", "ports": ["$1-$(($1 + 9))"],
				     "cidrs": ["198.18.$(($1 % 256)).0/24"] } ] } } }
	]
}
EOF
	mv "$T/policies/test.json.tmp" "$T/policies/test.json"	# atomic, as editors do
}

# Single TCP ports VM 7 allows in, read from every pinned rayos_fw_tab entry
# of VM 7 (its port table: an interval one port wide in TCP's ported block,
# 6 << 17 | 1 << 16 = 13 * 65536, with rule bits), sorted.
pinned_ports() {
	bpftool -j map dump pinned "$PIN/rayos_fw_tab" |
		jq -r '[.[] | select(.formatted.key.vm_id == 7) | .formatted.value as $v |
			range(0; 63) as $i |
			select($v.port_lo[$i + 1] - $v.port_lo[$i] == 1 and $v.port_bits[$i] != 0 and
			       ($v.port_lo[$i] / 65536 | floor) == 13) |
			$v.port_lo[$i] - 13 * 65536] | unique | map(tostring) | join(",")'
}
ports_are() { [[ $(pinned_ports) == "$1" ]]; }
ports_have() { [[ ,$(pinned_ports), == *,$1,* ]]; }
# rayos_fw_tab holds VM 7's "in" table under its live generation, nothing else.
tab_live() {
	local gen
	gen=$(bpftool -j map dump pinned "$PIN/rayos_vms" |
		jq '.[] | select(.formatted.key == 7) | .formatted.value.gen')
	bpftool -j map dump pinned "$PIN/rayos_fw_tab" | jq -e --argjson g "${gen:-9}" \
		'length == 1 and .[0].formatted.key.vm_id == 7 and .[0].formatted.key.gen == $g and
		 .[0].formatted.key.dir == 0' >/dev/null
}
pinned_version() {
	bpftool -j map dump pinned "$PIN/rayos_policy" | jq -r '.[0].formatted.value.version'
}
# The pinned link of VM 7 runs rayos_from_vm (bpftool 7.1 shows tcx links
# as "type 11" without their device; status reports the device).
link_attached() {
	local prog
	prog=$(bpftool -j link show pinned "$PIN/links/vm7_from" 2>/dev/null | jq -r .prog_id) &&
		bpftool -j prog show id "$prog" | jq -e '.name == "rayos_from_vm"' >/dev/null
}
map_snapshot() {
	local m
	for m in rayos_vms rayos_fw_port rayos_fw_tab rayos_ip_bind rayos_policy rayos_ifaces; do
		bpftool -j map dump pinned "$PIN/$m" | jq -S -c 'map(.formatted) | sort_by(.key|tostring)'
	done
}

write_policy 22
check "agent starts on a private pin root" -- agent_start
check "status reports policy version 1 and VM 7" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.policy.version == 1 and .vms[0].id == 7' >/dev/null"
check "status names every enforcement point with a state" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '[.enforcement[] | select(.state == \"active\" or .state == \"unavailable\")] | length >= 2' >/dev/null"
check "status says which capabilities the agent kept" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.capabilities | test(\"cap_bpf\")' >/dev/null"
ok "$([[ $(pinned_ports) == 22 ]]; echo $?)" "VM 7's pinned port table allows TCP port 22 alone"
check "pinned rayos_fw_tab holds VM 7's range and CIDR table, live generation only" -- tab_live

# bpftool shows the maps with BTF: names and readable keys/values.
names=$(bpftool -j map show | jq -r '.[].name' | grep -c '^rayos_')
ok "$((names >= 8 ? 0 : 1))" "bpftool map show lists rayos_* maps ($names)"
check "bpftool map dump prints VM 7's record with field names" -- \
	bash -c "bpftool map dump pinned '$PIN/rayos_vms' | grep -q '\"vm_id\": 7'"
check "the VM's static address is in rayos_ip_bind" -- \
	bash -c "bpftool -j map dump pinned '$PIN/rayos_ip_bind' | jq -e '.[0].key == 7 or .[0].formatted.key == 7' >/dev/null"

# Links: VM 7's tap is enforced through pinned tcx links.
check "links for VM 7 are pinned" -- test -e "$PIN/links/vm7_from" -a -e "$PIN/links/vm7_to"
check "the pinned link runs rayos_from_vm" -- link_attached
check "status shows VM 7 enforced on $VETH's ifindex" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[0].ifindex == $(cat /sys/class/net/$VETH/ifindex)' >/dev/null"

# A live edit reaches the pinned map within 1 s.
t0=$(date +%s%N)
write_policy 2222
wait_for 1 ports_have 2222
ok $? "edited port 2222 is in the pinned map within 1 s ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
wait_for 1 ports_are 2222
ok $? "port 22 is gone from every generation"
check "after the edit rayos_fw_tab holds only the new generation's table" -- tab_live
ok "$([[ $(pinned_version) == 2 ]]; echo $?)" "pinned rayos_policy says version 2"

# A broken edit changes nothing and is logged with file and place.
before=$(map_snapshot)
printf '{ "version": 1, "vms": [ { "id": 7, "name": "vm-seven", ' >"$T/policies/test.json"
sleep 0.5
ok "$([[ $(map_snapshot) == "$before" ]]; echo $?)" "a truncated policy file changes no map"
check "the error names the file and line" -- grep -q "policies/test.json:1" "$T/agent.log"
cat >"$T/policies/test.json" <<EOF
{ "version": 1, "vms": [ { "id": 7, "name": "vm-seven", "interface": "$VETH",
  "firewall": { "in": { "rules": [ { "action": "allow", "protocol": "tcp", "ports": [70000] } ] } } } ] }
EOF
sleep 0.5
ok "$([[ $(map_snapshot) == "$before" ]]; echo $?)" "a port out of range changes no map"
check "the error names the JSON path and the reason" -- \
	grep -q 'vms\[0\].firewall.in.rules\[0\].ports\[0\].*70000' "$T/agent.log"
check "status shows the rejection and still version 2" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.policy.version == 2 and (.policy.last_error | test(\"70000\"))' >/dev/null"

# A second agent is refused by the lock.
"$AGENT" start "${AGENT_ARGS[@]}" >"$T/second.log" 2>&1
ok "$([[ $? != 0 ]] && grep -q 'another rayos-agent' "$T/second.log"; echo $?)" \
	"a second agent is refused while one runs"

# SIGKILL: everything stays in the kernel.
link_before=$(bpftool -j link show pinned "$PIN/links/vm7_from" | jq -c '[.id, .prog_id]')
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
ok "$([[ $(map_snapshot) == "$before" ]]; echo $?)" "after SIGKILL the pinned maps are unchanged"
check "after SIGKILL the links are still pinned and running" -- link_attached

# Restart with the policy still broken: adopt, change nothing.
check "the agent restarts after SIGKILL" -- agent_start
ok "$([[ $(map_snapshot) == "$before" ]]; echo $?)" "a restart with a broken policy keeps the adopted maps as they were"
check "the restarted agent adopted the pins" -- grep -q "8 of 8 maps adopted\|adopted [0-9]* VM records" "$T/agent.log"
link_after=$(bpftool -j link show pinned "$PIN/links/vm7_from" | jq -c '[.id, .prog_id]')
ok "$([[ ${link_before%,*} == "${link_after%,*}" && $link_before != "$link_after" ]]; echo $?)" \
	"the restarted agent kept the link ($link_before) and swapped its program ($link_after)"
check "after restart the link is still on $VETH" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[0].ifindex == $(cat /sys/class/net/$VETH/ifindex)' >/dev/null"

# Fix the policy: version 3, the new port, the old one gone.
write_policy 8080
wait_for 1 bash -c "[[ \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) == 3 ]]"
ok $? "fixing the file applies version 3"
ok "$([[ $(pinned_ports) == 8080 ]]; echo $?)" "VM 7 now allows exactly port 8080"
check "after restart and edit rayos_fw_tab holds only the live table (adopted one deleted)" -- tab_live

# policy check gives the same verdict offline.
"$AGENT" policy check "$T/policies/test.json" >/dev/null
ok $? "policy check accepts the fixed file"
echo '{"version": 1, "vms": [{"id": 7, "name": "x", "capabilities": ["CAP_FLY"]}]}' >"$T/bad.json"
out=$("$AGENT" policy check "$T/bad.json"); rc=$?
ok "$([[ $rc == 1 && $out == *CAP_FLY* ]]; echo $?)" "policy check rejects an unknown capability (exit 1)"

# A VM with more CIDRs than its interval table holds still works (LPM trie)
# and the log says which VM pays the slower lookups.
{
	printf '{ "version": 1, "vms": [ { "id": 7, "name": "vm-seven", "interface": "%s",' "$VETH"
	printf ' "firewall": { "in": { "rules": [ { "action": "allow", "protocol": "tcp", "cidrs": ['
	for ((i = 0; i < 70; i++)); do ((i)) && printf ','; printf '"10.9.%d.0/24"' $((2 * i)); done
	printf '] } ] } } } ] }\n'
} >"$T/policies/test.json.tmp" && mv "$T/policies/test.json.tmp" "$T/policies/test.json"
wait_for 2 grep -q "1 VM direction(s), the first of VM 7, have more ports or CIDRs" "$T/agent.log"
ok $? "a VM whose 70 CIDRs do not fit its table is applied and named in the log"
check "its CIDRs are in the pinned LPM trie" -- \
	bash -c "[[ \$(bpftool -j map dump pinned '$PIN/rayos_fw_cidr4' | jq length) == 70 ]]"

# Removing the VM from the policy while its tap is there quarantines it
# (fail closed: links stay, its record turns deny-all); vm unregister ends
# that and detaches it; stop keeps pins, --purge removes them.
echo '{"version": 1}' >"$T/policies/test.json"
quarantined() {
	"$AGENT" status --json --run-dir "$T/run" | jq -e '.quarantined[0].id == 7 and
		(.vms[] | select(.id == 7) | .quarantined)' >/dev/null
}
wait_for 2 quarantined
ok $? "a VM removed from the policy while its tap is there is quarantined, not detached"
check "the quarantined VM's links stay attached" -- link_attached
check "its pinned record carries the quarantine flag" -- bash -c \
	"bpftool -j map dump pinned '$PIN/rayos_vms' | jq -e '.[] | select(.formatted.key == 7) | .formatted.value.flags == 2' >/dev/null"
agent vm unregister 7 >/dev/null
wait_for 1 test ! -e "$PIN/links/vm7_from"
ok $? "vm unregister ends the quarantine and detaches the VM"
agent stop >/dev/null
wait "$AGENT_PID"
ok "$([[ $? == 0 && -e $PIN/rayos_vms ]]; echo $?)" "stop ends the agent (exit 0) and keeps the pins"
agent_start >/dev/null
agent stop --purge >/dev/null
ok "$([[ ! -e $PIN ]]; echo $?)" "stop --purge removes every pin"

tap_done
