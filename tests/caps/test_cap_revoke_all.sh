#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# `cap revoke-all` against the running agent: three "VMs" (network
# namespaces behind veth pairs, ids 16400-16402; 16400 and 16401 in group
# web, 16402 in group db), each holding CAP_NETWORK and CAP_GPU, sending to
# the host all along.  Bad selections change nothing; --temporary takes only
# temporary grants; --group web stops both web VMs' open flows and their
# GPU opens in one step while db keeps going; the revoke holds across a
# reload and a SIGKILL + restart; a switch a killed agent left armed is kept
# by the next one; the audit log has one record of it.  Traffic only on
# the test's links, addressed from 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "cap revoke-all on the live packet and device paths"
need_cmds "cap revoke-all" ip python3 jq bpftool timeout

agent_env
UDP=$PWD/tests/lib/udp.py
IDS=(16400 16401 16402)
GROUPS_OF=(web web db)
declare -A HOSTIF VMNSOF NETOF MACOF VMIFOF
for i in 0 1 2; do
	MACOF[$i]=52:54:00:64:00:0$i
	vm_veth "ra$i" "${MACOF[$i]}" || exit 1
	HOSTIF[$i]=$HOST VMNSOF[$i]=$VMNS NETOF[$i]=$NET VMIFOF[$i]=$VMIF
done

write_policy() {
	local vms=() i
	for i in 0 1 2; do
		vms+=("{ \"id\": ${IDS[$i]}, \"name\": \"vm-ra$i\", \"group\": \"${GROUPS_OF[$i]}\",
		  \"interface\": \"${HOSTIF[$i]}\", \"mac\": \"${MACOF[$i]}\", \"ipv4\": \"${NETOF[$i]}.2\",
		  \"capabilities\": [\"CAP_NETWORK\", \"CAP_GPU\"],
		  \"host\": { \"rules\": [ { \"action\": \"allow\", \"protocol\": \"udp\" } ] },
		  \"firewall\": { \"in\": { \"default\": \"allow\" }, \"out\": { \"default\": \"allow\" } } }")
	done
	local IFS=,
	cat >"$T/policies/ra.json.tmp" <<EOF
{ "version": 1, "description": "${1:-revoke-all}",
  "groups": { "web": {}, "db": {} },
  "vms": [ ${vms[*]} ] }
EOF
	mv "$T/policies/ra.json.tmp" "$T/policies/ra.json"
}
write_policy
check "agent starts with VMs ${IDS[*]}" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '[.vms[] | select(.ifindex > 0)] | length == 3' >/dev/null"
ok $? "the three VMs' programs are attached" || { tap_done; exit 1; }
declare -A SLOT
for i in 0 1 2; do
	SLOT[$i]=$(agent status --json | jq -r ".vms[] | select(.id == ${IDS[$i]}) | .slot")
done

# passed / refused packets of VM i since a snapshot: rayos_vm_stats[slot],
# both directions, pass reasons vs no_cap_network (number from the ABI).
NO_CAP=$(awk '/RAYOS_RSN_NO_CAP_NETWORK =/ { print $3 + 0 }' bpf/abi/net.h)
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
counters() {	# counters I: "<passed> <no_cap_network>"
	bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "${SLOT[$1]}") |
		jq -r --argjson r "$NO_CAP" '[.formatted.values[].value.c] | transpose | map(transpose |
			map(map(.packets) | add)) | "\(.[0][0:5] + .[1][0:5] | add) \(.[0][$r] + .[1][$r])"'
}
snap() { local i; for i in 0 1 2; do counters "$i"; done | paste -sd' '; }
# passed_since SNAP I / refused_since SNAP I
passed_since() { local a=($1) b=($(counters "$2")); echo $((b[0] - a[2 * $2])); }
refused_since() { local a=($1) b=($(counters "$2")); echo $((b[1] - a[2 * $2 + 1])); }

# Each VM sends to the host all along (bounded: 40000 datagrams, 2 ms apart).
for i in 0 1 2; do
	ip netns exec "${VMNSOF[$i]}" python3 "$UDP" send 7201 "${NETOF[$i]}.1" 7202 "${VMIFOF[$i]}" \
		40000 0.002 >/dev/null 2>&1 &
	on_exit "kill -9 $! 2>/dev/null"
done
flowing() {	# flowing SNAP: every VM in "$@" passed >= 20 packets since SNAP
	local s=$1 i; shift
	for i in "$@"; do (( $(passed_since "$s" "$i") >= 20 )) || return 1; done
}
s=$(snap)
wait_for 10 flowing "$s" 0 1 2
ok $? "all three VMs' traffic passes before any revoke"

# ---- each VM's cgroup with a "QEMU", and a DRM node of an absent driver ---
CG2=$(cgroup2_mount)
HAVE_CG=
if [[ -n $CG2 ]]; then
	mknod "$T/dri" c 226 0
	HAVE_CG=1
	for i in 0 1 2; do
		on_exit "rmdir '$CG2/rayos/vm${IDS[$i]}' 2>/dev/null"
		spawn Q sleep 300
		agent vm register "${IDS[$i]}" --pid "$Q" >/dev/null || HAVE_CG=
	done
	ok "$([[ -n $HAVE_CG ]]; echo $?)" "the three VMs registered with a process each"
fi
open_dri() { open_in_cgroup "$CG2/rayos/vm${IDS[$1]}/cgroup.procs" "$T/dri"; }
if [[ -n $HAVE_CG ]]; then
	got="$(open_dri 0) $(open_dri 1) $(open_dri 2)"
	ok "$([[ $got != *EPERM* ]]; echo $?)" "CAP_GPU held: each VM's cgroup opens the DRM node past the cgroup check ($got)"
fi

caps_of() { agent cap list "${IDS[$1]}" --json | jq -c '[.capabilities[].cap] | sort'; }
audit_lines() { wc -l <"$T/state/audit.log" 2>/dev/null || echo 0; }

# ---- bad selections: a clear error, nothing changed --------------------------
a0=$(audit_lines)
while IFS='|' read -r args want; do
	# shellcheck disable=SC2086
	out=$(agent cap revoke-all $args 2>&1)
	ok "$([[ $? != 0 && $out == *"$want"* ]]; echo $?)" "revoke-all $args: refused ($out)"
done <<'EOF'
--vm 16499|unknown VM 16499
--vm 16400,16499|unknown VM 16499
--vm 16402-16400|low to high
--vm 16400,|comma
--vm abc|"abc"
--vm 0|1..4294967295
--group nosuch|"nosuch"
--vm 16400 --group web|not both
EOF
out=$(agent cap revoke-all --vm "" 2>&1)
ok "$([[ $? != 0 && $out == *empty* ]]; echo $?)" "revoke-all --vm '': refused as an empty selection ($out)"
ok "$([[ $(audit_lines) == "$a0" ]]; echo $?)" "the refused requests wrote no audit record"
s=$(snap); sleep 0.3
ok "$(flowing "$s" 0 1 2; echo $?)" "after the refused requests all three VMs still pass traffic"
ok "$([[ $(caps_of 0) == '["CAP_GPU","CAP_NETWORK"]' ]]; echo $?)" "and VM 16400 still holds its capabilities ($(caps_of 0))"

# ---- --temporary takes only temporary grants -------------------------------
out=$(agent cap grant-temp 16402 CAP_INPUT --expires 1h 2>&1)
ok $? "VM 16402 gets a temporary CAP_INPUT ($out)"
out=$(agent cap revoke-all --temporary --group db 2>&1)
ok "$([[ $? == 0 && $out == *16402*CAP_INPUT* && $out != *CAP_NETWORK* ]]; echo $?)" \
	"revoke-all --temporary --group db: takes CAP_INPUT from 16402 only ($out)"
ok "$([[ $(caps_of 2) == '["CAP_GPU","CAP_NETWORK"]' ]]; echo $?)" \
	"VM 16402 keeps its permanent capabilities ($(caps_of 2))"
s=$(snap); sleep 0.3
ok "$(flowing "$s" 2; echo $?)" "and its traffic"

# ---- --group web: both web VMs in one step; db untouched ---------------------
out=$(agent cap revoke-all --group web --json 2>&1)
ok "$([[ $(jq -r '[.vms[] | "\(.id):\(.revoked | join("+"))"] | join(" ")' <<<"$out") == \
	"16400:CAP_NETWORK+CAP_GPU 16401:CAP_NETWORK+CAP_GPU" ]]; echo $?)" \
	"revoke-all --group web: both web VMs lose CAP_NETWORK and CAP_GPU ($(jq -c '.vms' <<<"$out"))"
diag "enforced $(jq -r .enforced_ms <<<"$out") ms after the request arrived, $(jq -r .total_ms <<<"$out") ms in all"
s=$(snap); sleep 0.5
p0=$(passed_since "$s" 0) p1=$(passed_since "$s" 1) r0=$(refused_since "$s" 0) r1=$(refused_since "$s" 1)
ok "$((p0 + p1 == 0 && r0 >= 20 && r1 >= 20 ? 0 : 1))" \
	"after it returned no packet of either web VM passed (passed $p0/$p1, no_cap_network $r0/$r1)"
ok "$(flowing "$s" 2; echo $?)" "VM 16402 (db) keeps passing traffic"
if [[ -n $HAVE_CG ]]; then
	got="$(open_dri 0) $(open_dri 1) $(open_dri 2)"
	ok "$([[ $got == "EPERM EPERM "* && ${got##* } != EPERM ]]; echo $?)" \
		"GPU opens: EPERM in both web VMs' cgroups, not in db's ($got)"
fi
ok "$([[ $(caps_of 0) == '[]' && $(caps_of 1) == '[]' ]]; echo $?)" "cap list: the web VMs hold nothing"
rec=$(grep '"cap_revoke_all"' "$T/state/audit.log" | tail -1)
ok "$(jq -e '.selection == "group" and ([.revoked[].vms[]] | sort) == [16400, 16401]' <<<"$rec" >/dev/null; echo $?)" \
	"the audit log has the revoke-all record with both VMs ($rec)"
sw=$(bpftool -j map lookup pinned "$PIN/rayos_cap_switch" key 0 0 0 0 | jq -c .formatted.value)
ok "$(jq -e '.armed == 0 and .epoch >= 1' <<<"$sw" >/dev/null; echo $?)" "the switch is settled afterwards ($sw)"
st=$(agent status --json | jq -c .cap_switch)
ok "$(jq -e --argjson sw "$sw" '.armed == false and .epoch == $sw.epoch' <<<"$st" >/dev/null; echo $?)" \
	"status reports the switch ($st)"

# ---- holds across a reload and a SIGKILL + restart ------------------------
v=$(agent status --json | jq .policy.version)
write_policy "reloaded"
wait_for 3 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
ok $? "the policy reloads"
s=$(snap); sleep 0.3
ok "$(( $(passed_since "$s" 0) + $(passed_since "$s" 1) == 0 ? 0 : 1 ))" "after the reload the web VMs still pass nothing"
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "the agent restarts after a SIGKILL" -- agent_start
s=$(snap); sleep 0.3
ok "$(( $(passed_since "$s" 0) + $(passed_since "$s" 1) == 0 ? 0 : 1 ))" "after the restart the web VMs still pass nothing"
ok "$(flowing "$s" 2; echo $?)" "and db still passes"

# ---- a switch left armed by a killed agent is kept by the next one ----------
# As if the agent died right after the switch: VM 16402's slot gets an entry
# under the next epoch and the switch moves to it, by hand, agent dead.
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
sw=$(bpftool -j map lookup pinned "$PIN/rayos_cap_switch" key 0 0 0 0 | jq .formatted.value.epoch)
le64() { python3 -c 'import struct, sys; print(" ".join(str(b) for b in struct.pack("<Q", int(sys.argv[1]))))' "$1"; }
NET_BIT=$(awk '/RAYOS_CAP_NETWORK =/ { print $3 + 0 }' bpf/abi/policy.h)
bpftool map update pinned "$PIN/rayos_cap_revoke" key $(le32 "${SLOT[2]}") \
	value $(le64 $((sw + 1))) $(le64 $((1 << NET_BIT)))
bpftool map update pinned "$PIN/rayos_cap_switch" key 0 0 0 0 value $(le64 $((sw + 1))) $(le64 1)
s=$(snap); sleep 0.3
ok "$(( $(passed_since "$s" 2) == 0 && $(refused_since "$s" 2) > 0 ? 0 : 1 ))" \
	"agent dead, switch armed: VM 16402 loses CAP_NETWORK at the store"
check "the agent restarts" -- agent_start
s=$(snap); sleep 0.3
ok "$(( $(passed_since "$s" 2) == 0 ? 0 : 1 ))" "the restarted agent keeps it: VM 16402 passes nothing"
ok "$([[ $(caps_of 2) == '["CAP_GPU"]' ]]; echo $?)" "cap list: 16402 lost CAP_NETWORK only ($(caps_of 2))"
sw=$(bpftool -j map lookup pinned "$PIN/rayos_cap_switch" key 0 0 0 0 | jq -c .formatted.value)
ok "$(jq -e '.armed == 0' <<<"$sw" >/dev/null; echo $?)" "and folded the switch away ($sw)"
ok "$(grep -q "VM 16402: revoke-all .* kept" "$T/agent.log"; echo $?)" "its log says so"

# ---- grant brings one back ----------------------------------------------
agent cap grant 16400 CAP_NETWORK >/dev/null
s=$(snap)
wait_for 5 flowing "$s" 0
ok $? "cap grant 16400 CAP_NETWORK: its traffic passes again (no stale switch entry)"

tap_done
