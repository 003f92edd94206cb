#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Fail closed, with TCP probes into a "VM" namespace behind its tap:
#  - held: ten SIGKILLs of the agent under traffic and 200 alternating policy
#    renames under traffic: no denied probe connects, no allowed one fails;
#  - deleting every policy file quarantines the running VM (its denied and
#    allowed ports closed, warning, status, metrics), also with the agent
#    dead and after a restart, until it gets its policy back;
#  - the policy directory followed by path: replaced (`mv policies old;
#    mv new policies`: one publish, edits in old ignored), removed (reported
#    with its start time, enforcement kept), recreated (applied), and a
#    symlink switched with `ln -sfn new policies.tmp && mv -T policies.tmp
#    policies` (one publish);
#  - a publish removing most VMs is held back until --allow-mass-removal;
#    quarantined VMs are released by vm unregister and by their tap going;
#  - a VM whose registered QEMU still runs without a tap is quarantined too,
#    and its cgroup loses the devices its capabilities gave; QEMU's exit
#    ends that.
# VM ids 1300-1309.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "fail closed"
need_cmds "fail closed" ip jq bpftool python3
PROBE=$BUILD/tests/agent/tool_probe
[[ -x $PROBE ]] || { skip "build $PROBE first (make)" "fail closed"; tap_done; exit 0; }
agent_env

VM=1300
VMMAC=52:54:00:13:00:00
vm_veth fc "$VMMAC" || { diag "cannot make the VM namespace"; tap_done; exit 1; }
spawn SRV ip netns exec "$VMNS" "$PROBE" serve "$NET.2" 8080 8081 8082 9090 >"$T/serve.out" 2>&1
wait_for 5 grep -q ready "$T/serve.out" || diag "probe server did not come up"

# vm_json ID IFACE MAC IP PORTS...: one VM, TCP PORTS allowed in, everything
# else in denied, out open.
vm_json() {
	local ports
	ports=$(IFS=,; echo "${*:5}")
	cat <<EOF
{ "version": 1, "vms": [ { "id": $1, "name": "vm-$1", "interface": "$2", "mac": "$3",
  "ipv4": "$4", "capabilities": ["CAP_NETWORK"],
  "firewall": { "in": { "default": "deny", "rules": [
	{ "action": "allow", "protocol": "tcp", "ports": [$ports] } ] },
		"out": { "default": "allow" } } } ] }
EOF
}
put() {	# put DIR FILE JSON...: written aside and renamed in, as editors do
	printf '%s\n' "${@:3}" >"$1/.$2.tmp" && mv "$1/.$2.tmp" "$1/$2"
}
status() { "$AGENT" status --json --run-dir "$T/run"; }
version() { status | jq -r .policy.version; }
metrics() {
	python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())' \
		"$METRICS_PORT"
}
# probe_start ALLOW DENY: probes from here into the VM until probe_stop.
probe_start() {
	rm -f "$T/probe.stop"
	"$PROBE" probe "$NET.2" --allow "$1" --deny "$2" --timeout-ms 400 \
		--stop-file "$T/probe.stop" --max-seconds 240 >"$T/probe.json" 2>&1 &
	PROBE_PID=$!
	on_exit "kill -9 $PROBE_PID"
}
probe_stop() { touch "$T/probe.stop"; wait "$PROBE_PID"; diag "probes: $(cat "$T/probe.json")"; }
probe_clean() {	# no denied port connected, no allowed one failed, some rounds
	jq -e '.rounds > 0 and .denied_connected == 0 and .allowed_failed == 0' \
		"$T/probe.json" >/dev/null
}
# connects PORT: one connect from here to the VM within 1 s
connects() {
	"$PROBE" probe "$NET.2" --allow "$1" --timeout-ms 500 --rounds 1 >"$T/one.json" 2>&1
	jq -e '.allowed_ok == 1' "$T/one.json" >/dev/null
}
quarantined() { status | jq -e --argjson id "$1" 'any(.quarantined[]; .id == $id)' >/dev/null; }

P=$T/policies
put "$P" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8081)"
check "agent starts with VM $VM on $HOST" -- agent_start --no-tpm
check "8080 connects before anything happens" -- connects 8080
ok "$(! connects 9090; echo $?)" "9090 is denied before anything happens"

# ---- held: SIGKILL x10 under traffic ----
probe_start 8080,8081 9090
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
for i in $(seq 10); do
	agent_start --no-tpm >/dev/null || break
	kill -0 "$AGENT_PID" || break
	sleep 0.3
	kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
done
ok "$((i == 10 ? 0 : 1))" "ten agent starts each ended by SIGKILL"
probe_stop
check "ten SIGKILLs under traffic: 0 denied probes connected, 0 allowed probes failed" -- probe_clean
check "the agent comes back after the SIGKILLs" -- agent_start --no-tpm

# ---- held: 200 alternating renames under traffic ----
v0=$(version)
probe_start 8080 9090
for i in $(seq 200); do
	if ((i % 2)); then
		put "$P" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8082)"
	else
		put "$P" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8081)"
	fi
	sleep 0.01
done
sleep 0.5
probe_stop
check "200 alternating renames under traffic: no probe matched neither policy" -- probe_clean
v1=$(version)
ok "$((v1 > v0 ? 0 : 1))" "the renames were applied (version $v0 -> $v1)"
check "the last rename is what is enforced (8081 connects)" -- connects 8081

# ---- deleting every policy file: quarantine ----
probe_start 8080 9090
sleep 0.3
rm -f "$P"/*.json
wait_for 3 quarantined $VM
ok $? "deleting every policy file quarantines VM $VM (its tap is there)"
probe_stop
jq -e '.denied_connected == 0' "$T/probe.json" >/dev/null
ok $? "while the files went, the denied port never connected"
ok "$(! connects 9090; echo $?)" "the quarantined VM's denied port stays closed"
ok "$(! connects 8080; echo $?)" "the quarantined VM's allowed port is closed too (deny-all)"
check "the agent warned about the quarantine" -- grep -q "VM $VM (vm-$VM) left the policy while it runs.*quarantined" "$T/agent.log"
check "status lists it as quarantined with its start time and degraded state" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e '(.quarantined[] | select(.id == $VM) | .since > 0) and
	 any(.degraded[]; .state == \"vms_quarantined\" and .since > 0) and
	 (.vms[] | select(.id == $VM) | .quarantined)' >/dev/null"
m=$(metrics)
ok "$([[ $m == *'rayos_quarantined_vms 1'* && $m == *"rayos_vm_quarantined_since_seconds{vm=\"$VM\"}"* &&
	 $m == *'rayos_degraded{state="vms_quarantined"} 1'* ]]; echo $?)" \
	"/metrics: rayos_quarantined_vms, the VM's since and rayos_degraded"
ok "$([[ $m == *"rayos_vm_packets_total{vm=\"$VM\",name=\"vm-$VM\",dir=\"in\",reason=\"drop_quarantine\"}"* ]]; echo $?)" \
	"/metrics counts the quarantine's drops"
if command -v promtool >/dev/null; then
	promtool check metrics <<<"$m" >"$T/promtool.out" 2>&1
	ok $? "promtool accepts /metrics with a quarantined VM"
else
	skip "no promtool" "promtool accepts /metrics with a quarantined VM"
fi
since=$(status | jq ".quarantined[] | select(.id == $VM) | .since")
out=$(agent cap grant $VM CAP_GPU 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *quarantined* ]]; echo $?)" "cap grant on a quarantined VM is refused ($out)"

kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
ok "$(! connects 8080; echo $?)" "with the agent dead the quarantine holds (8080 closed)"
ok "$(! connects 9090; echo $?)" "with the agent dead 9090 stays closed"
check "the agent restarts with no policy file" -- agent_start --no-tpm
check "after the restart VM $VM is still quarantined, since unchanged" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e '.quarantined[] | select(.id == $VM) | .since == $since' >/dev/null"
ok "$(! connects 8080; echo $?)" "after the restart 8080 is still closed"
put "$P" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8081)"
wait_for 3 bash -c "! '$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.quarantined[]; .id == $VM)' >/dev/null"
ok $? "its policy back, the quarantine is lifted"
check "8080 connects again" -- connects 8080
ok "$(! connects 9090; echo $?)" "9090 is denied again"
check "status no longer reports vms_quarantined" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e 'all(.degraded[]; .state != \"vms_quarantined\")' >/dev/null"

# ---- the directory replaced: mv policies old; mv new policies ----
mkdir "$T/new"
put "$T/new" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8082)"
v0=$(version)
probe_start 8080 9090
mv "$P" "$T/old" && mv "$T/new" "$P"
wait_for 3 connects 8082
ok $? "a replaced directory is applied (8082 connects)"
sleep 0.3
probe_stop
check "during the swap no probe matched neither set" -- probe_clean
v1=$(version)
ok "$((v1 == v0 + 1 ? 0 : 1))" "the swap was one publish (version $v0 -> $v1)"
put "$T/old" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 9090)"
sleep 0.5
ok "$(! connects 9090; echo $?)" "an edit in the moved-away directory is ignored"
ok "$([[ $(version) == "$v1" ]]; echo $?)" "  ...and publishes nothing"
put "$P" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8081)"
wait_for 3 connects 8081
ok $? "an edit in the new directory is applied"

# ---- the directory removed, then recreated ----
v0=$(version)
rm -rf "$P"
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.degraded[]; .state == \"policy_dir_missing\" and .since > 0) and .policy.directory.present == false' >/dev/null"
ok $? "a removed directory is reported (policy_dir_missing, with its start time)"
check "the log says the set is kept" -- grep -q "policy directory $P is gone" "$T/agent.log"
check "enforcement is kept: 8080 connects" -- connects 8080
ok "$(! connects 9090; echo $?)" "enforcement is kept: 9090 denied"
ok "$(! quarantined $VM; echo $?)" "a missing directory quarantines nothing"
out=$(agent policy reload 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *missing* ]]; echo $?)" "policy reload says the directory is missing ($out)"
m=$(metrics)
ok "$([[ $m == *'rayos_degraded{state="policy_dir_missing"} 1'* ]]; echo $?)" "/metrics: policy_dir_missing"
mkdir "$T/rec"
put "$T/rec" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8082)"
mv "$T/rec" "$P"
wait_for 3 connects 8082
ok $? "a recreated directory is picked up and applied"
check "the missing state is cleared" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e 'all(.degraded[]; .state != \"policy_dir_missing\") and .policy.directory.present' >/dev/null"

# ---- a symlinked directory switched atomically ----
mkdir "$T/setA" "$T/setB"
put "$T/setA" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8081)"
put "$T/setB" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8082)"
rm -rf "$P" && ln -s "$T/setA" "$P"
wait_for 3 connects 8081
ok $? "the policy path became a symlink to set A: applied"
v0=$(version)
probe_start 8080 9090
ln -sfn "$T/setB" "$T/policies.tmp" && mv -T "$T/policies.tmp" "$P"
wait_for 3 connects 8082
ok $? "ln -sfn setB policies.tmp && mv -T policies.tmp policies: set B applied"
sleep 0.3
probe_stop
check "during the symlink switch no probe matched neither set" -- probe_clean
v1=$(version)
ok "$((v1 == v0 + 1 ? 0 : 1))" "the switch was one publish (version $v0 -> $v1)"
ok "$(! connects 8081; echo $?)" "set A's port is closed after the switch"
put "$T/setA" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 9090)"
sleep 0.5
ok "$(! connects 9090; echo $?)" "edits in the set no longer linked are ignored"
put "$T/setB" vm.json "$(vm_json $VM "$HOST" $VMMAC "$NET.2" 8080 8081)"
wait_for 3 connects 8081
ok $? "edits in the linked set are applied"

# ---- mass removal: held back, then allowed ----
for id in 1301 1302 1303; do
	ip link add "fc$id$$" type veth peer name "fc$id$$p" || true
	on_exit "ip link del 'fc$id$$'"
	put "$T/setB" "vm$id.json" "$(vm_json $id "fc$id$$" 52:54:00:13:0${id: -1}:00 198.18.1.${id: -1} 22)"
done
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '[.vms[].id] | length == 4' >/dev/null"
ok $? "four VMs enforced"
snap=$(bpftool -j map dump pinned "$PIN/rayos_vms" | jq -c 'map(.formatted) | sort_by(.key)')
v0=$(version)
rm -f "$T/setB/vm1301.json" "$T/setB/vm1302.json" "$T/setB/vm1303.json"
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.degraded[]; .state == \"mass_removal_held\")' >/dev/null"
ok $? "removing 3 of 4 VMs at once is held back (mass_removal_held)"
ok "$([[ $(bpftool -j map dump pinned "$PIN/rayos_vms" | jq -c 'map(.formatted) | sort_by(.key)') == "$snap" && $(version) == "$v0" ]]; echo $?)" \
	"held back: the maps are unchanged"
out=$(agent policy reload 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *--allow-mass-removal* ]]; echo $?)" "policy reload explains how to go ahead ($out)"
m=$(metrics)
ok "$([[ $m == *'rayos_degraded{state="mass_removal_held"} 1'* ]]; echo $?)" "/metrics: mass_removal_held"
agent policy reload --allow-mass-removal >/dev/null
ok $? "policy reload --allow-mass-removal applies it"
check "the three VMs, taps still there, are quarantined" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e '([.quarantined[].id] | sort) == [1301, 1302, 1303] and all(.degraded[]; .state != \"mass_removal_held\")' >/dev/null"
agent vm unregister 1301 >/dev/null
ok $? "vm unregister of a quarantined VM"
check "  ...removes its enforcement (links and record)" -- bash -c \
	"test ! -e '$PIN/links/vm1301_from' && ! bpftool -j map dump pinned '$PIN/rayos_vms' | jq -e 'any(.[]; .formatted.key == 1301)' >/dev/null"
ip link del "fc1302$$"
wait_for 3 bash -c "! '$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.quarantined[]; .id == 1302)' >/dev/null"
ok $? "a quarantined VM whose tap goes (it stopped) is released"
check "  ...and its record is gone" -- bash -c \
	"! bpftool -j map dump pinned '$PIN/rayos_vms' | jq -e 'any(.[]; .formatted.key == 1302)' >/dev/null"
check "VM 1303 stays quarantined" -- quarantined 1303
check "VM $VM kept its policy throughout (8081 connects)" -- connects 8081

# ---- a running QEMU without a tap: quarantined, devices cut, exit releases ----
CG2=$(cgroup2_mount)
if [[ -n $CG2 ]]; then
	on_exit "rmdir '$CG2/rayos/vm1304' 2>/dev/null"
	mknod "$T/tun" c 10 200
	put "$T/setB" vm1304.json '{ "version": 1, "vms": [ { "id": 1304, "name": "vm-1304", "capabilities": ["CAP_NETWORK"] } ] }'
	wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.vms[]; .id == 1304)' >/dev/null"
	spawn QEMU sleep 300
	agent vm register 1304 --pid "$QEMU" >/dev/null
	ok $? "VM 1304 registered with a process and no tap"
	open_tun() { open_in_cgroup "$CG2/rayos/vm1304/cgroup.procs" "$T/tun"; }
	r=$(open_tun)
	ok "$([[ $r != EPERM ]]; echo $?)" "with its policy, /dev/net/tun passes the cgroup ($r)"
	rm -f "$T/setB/vm1304.json"
	wait_for 3 quarantined 1304
	ok $? "its policy gone while QEMU runs: quarantined"
	r=$(open_tun)
	ok "$([[ $r == EPERM ]]; echo $?)" "quarantined: /dev/net/tun is EPERM ($r)"
	kill "$QEMU"
	wait_for 5 bash -c "! '$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.quarantined[]; .id == 1304) or any(.vms[]; .id == 1304)' >/dev/null"
	ok $? "QEMU's exit ends the quarantine and the enforcement"
else
	skip "no cgroup v2 mount" "a quarantined VM's QEMU loses its devices"
fi

tap_done
