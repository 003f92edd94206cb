#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Concurrent capability changes from several clients: grants, revokes,
# temporary grants and revoke-alls of the same VMs race from separate CLI
# processes.  Whatever order the agent takes them in, afterwards the kernel
# record (rayos_vms), `cap list`, the state a restart reads
# (registrations.json) and the last audit record of each capability agree,
# and every request got an answer.  No traffic: VMs 16410-16411 without
# interfaces.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "concurrent capability changes"
need_cmds "concurrent capability changes" jq bpftool python3

agent_env
cat >"$T/policies/cc.json" <<'EOF'
{ "version": 1,
  "vms": [ { "id": 16410, "name": "cc-a", "capabilities": ["CAP_GPU", "CAP_INPUT"] },
	   { "id": 16411, "name": "cc-b", "capabilities": ["CAP_GPU", "CAP_INPUT"] } ] }
EOF
check "agent starts" -- agent_start --no-tpm

le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
GPU=$(awk '/RAYOS_CAP_GPU =/ { print $3 + 0 }' bpf/abi/policy.h)
INPUT=$(awk '/RAYOS_CAP_INPUT =/ { print $3 + 0 }' bpf/abi/policy.h)
# held_kernel ID BIT: 1 if the record holds the capability (permanent bit
# or a deadline still ahead on the boot clock), else 0.
held_kernel() {
	local rec now
	rec=$(bpftool -j map lookup pinned "$PIN/rayos_vms" key $(le32 "$1") | jq -c .formatted.value)
	now=$(awk '{ printf "%d", $1 * 1e9 }' /proc/uptime)	# CLOCK_BOOTTIME, 10 ms
	jq -r --argjson b "$2" --argjson now "$now" \
		'if ((.caps / pow(2; $b) | floor) % 2 == 1) or (.cap_until_ns[$b] > $now) then 1 else 0 end' <<<"$rec"
}
held_list() {	# held_list ID CAP_NAME: 1 if `cap list` shows it
	agent cap list "$1" --json | jq -r --arg c "$2" '[.capabilities[].cap] | if index($c) then 1 else 0 end'
}

ROUNDS=16 fails=0 answered=0 total=0
for ((r = 0; r < ROUNDS; r++)); do
	pids=()
	agent cap grant 16410 CAP_GPU >"$T/o.1" 2>&1 & pids+=($!)
	agent cap revoke 16410 CAP_GPU >"$T/o.2" 2>&1 & pids+=($!)
	agent cap grant-temp 16410 CAP_INPUT --expires 10m >"$T/o.3" 2>&1 & pids+=($!)
	agent cap revoke 16411 CAP_INPUT >"$T/o.4" 2>&1 & pids+=($!)
	if ((r % 4 == 0)); then
		agent cap revoke-all --vm 16410,16411 >"$T/o.5" 2>&1 & pids+=($!)
	else
		agent cap grant 16411 CAP_INPUT >"$T/o.5" 2>&1 & pids+=($!)
	fi
	for p in "${pids[@]}"; do
		wait "$p"; rc=$?
		total=$((total + 1))
		# Every request is answered: done, or refused with a reason
		# (a temporary grant of a capability held permanently is).
		((rc == 0 || rc == 1)) && answered=$((answered + 1))
	done
	for id in 16410 16411; do
		for cap in CAP_GPU:$GPU CAP_INPUT:$INPUT; do
			k=$(held_kernel "$id" "${cap#*:}") l=$(held_list "$id" "${cap%%:*}")
			[[ $k == "$l" ]] || { fails=$((fails + 1)); diag "round $r VM $id ${cap%%:*}: kernel $k, cap list $l"; }
		done
	done
done
ok "$((answered == total ? 0 : 1))" "every one of $total concurrent requests got an answer ($answered)"
ok "$((fails == 0 ? 0 : 1))" "after each of $ROUNDS rounds the kernel record and cap list agree ($fails mismatches)"

# The last audit record of each (VM, capability) says what the kernel holds.
last_audit() {	# last_audit ID CAP: 1 held / 0 not, from the newest record naming it
	python3 - "$T/state/audit.log" "$1" "$2" <<'EOF'
import json, sys
path, vm, cap = sys.argv[1], int(sys.argv[2]), sys.argv[3]
state = None
for line in open(path):
    r = json.loads(line)
    ev = r.get("event")
    if ev in ("cap_grant", "cap_revoke") and r.get("vm") == vm and r.get("cap") == cap:
        state = 1 if cap in r.get("caps_after", []) else 0
    elif ev == "cap_grant_temp" and r.get("vm") == vm and r.get("cap") == cap:
        state = 1
    elif ev == "cap_revoke_all":
        for g in r.get("revoked", []):
            if vm in g["vms"] and cap in g["caps"]:
                state = 0
    elif ev == "cap_change_failed":
        pass
print(state)
EOF
}
for id in 16410 16411; do
	for cap in CAP_GPU:$GPU CAP_INPUT:$INPUT; do
		k=$(held_kernel "$id" "${cap#*:}") a=$(last_audit "$id" "${cap%%:*}")
		ok "$([[ $a == None || $a == "$k" ]]; echo $?)" "VM $id ${cap%%:*}: the last audit record ($a) matches the kernel ($k)"
	done
done

# A restart reads registrations.json: the same capabilities come back.
before=$(for id in 16410 16411; do agent cap list "$id" --json | jq -c '[.capabilities[].cap] | sort'; done)
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
check "the agent restarts" -- agent_start --no-tpm
after=$(for id in 16410 16411; do agent cap list "$id" --json | jq -c '[.capabilities[].cap] | sort'; done)
ok "$([[ $before == "$after" ]]; echo $?)" "after a restart both VMs hold what they held ($(echo $after))"
tap_done
