#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Write-ahead audit: a capability grant or revoke is refused, with an error
# that names the audit log and what to do, and changes nothing in the maps
# when its record cannot be written and synced first: the state dir (a
# small tmpfs made for the test) full, then read-only.  status and /metrics
# report the audit log as not writable, with the time it began, and clear
# it once space is back.  vm register is refused the same way; a policy
# reload still applies, and the record it could not write is logged.  VM id 1310.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "write-ahead audit"
need_cmds "write-ahead audit" jq bpftool python3
agent_env

mount -t tmpfs -o size=4m,mode=0700 rayos-audit-test "$T/state" || {
	skip "cannot mount a tmpfs" "write-ahead audit"; tap_done; exit 0; }
on_exit "umount -l '$T/state'"
cat >"$T/policies/p.json" <<EOF
{ "version": 1, "vms": [ { "id": 1310, "name": "audited", "capabilities": ["CAP_NETWORK"] } ] }
EOF
check "agent starts with its state dir on a 4 MiB tmpfs" -- agent_start --no-tpm
AUDIT=$T/state/audit.log
vms() { bpftool -j map dump pinned "$PIN/rayos_vms" | jq -c 'map(.formatted) | sort_by(.key)'; }
caps() {
	bpftool -j map dump pinned "$PIN/rayos_vms" |
		jq '.[] | select(.formatted.key == 1310) | .formatted.value.caps'
}
lines() { if [[ -e $AUDIT ]]; then wc -l <"$AUDIT"; else echo 0; fi; }
degraded() {
	"$AGENT" status --json --run-dir "$T/run" |
		jq -e 'any(.degraded[]; .state == "audit_log_unwritable" and .since > 0)' >/dev/null
}
metric() {
	python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())' \
		"$METRICS_PORT" | grep -q "^rayos_degraded{state=\"audit_log_unwritable\"} $1\$"
}

agent cap grant 1310 CAP_GPU >/dev/null
ok $? "cap grant with room in the state dir"
ok "$([[ $(caps) == $(( (1 << 0) | (1 << 3) )) ]]; echo $?)" "  ...the record has CAP_GPU"
first_record() {
	jq -e -s 'map(select(.event | startswith("cap_"))) |
		  length == 1 and .[0].event == "cap_grant" and .[0].vm == 1310 and
		  .[0].cap == "CAP_GPU" and (.[0].caps_after | index("CAP_GPU"))' "$AUDIT" >/dev/null
}
check "  ...its audit record is there, whole" -- first_record

# ---- full ----
dd if=/dev/zero of="$T/state/fill" bs=64k 2>/dev/null
before=$(vms) n=$(lines)
out=$(agent cap grant 1310 CAP_INPUT 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *refused* && $out == *audit.log* && $out == *"No space left"* ]]; echo $?)" \
	"state dir full: cap grant refused, naming the audit log and the cause ($out)"
ok "$([[ $(vms) == "$before" ]]; echo $?)" "  ...the maps are unchanged"
ok "$([[ $(lines) == "$n" ]]; echo $?)" "  ...no audit record was added"
out=$(agent cap revoke 1310 CAP_GPU 2>&1); rc=$?
ok "$([[ $rc != 0 && $(vms) == "$before" ]]; echo $?)" "  ...a revoke is refused the same way"
check "  ...status: audit_log_unwritable with its start time" -- degraded
check "  ...and /metrics: rayos_degraded{state=\"audit_log_unwritable\"} 1" -- metric 1
out=$(agent vm register 1310 --iface rtap1310 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *refused*"registration"*"No space left"* ]]; echo $?)" \
	"  ...vm register is refused the same way ($(cut -c1-90 <<<"$out"))"
# A policy the admin put in the directory is not held back by the audit disk.
cat >"$T/policies/p2.json" <<EOF
{ "version": 1, "vms": [ { "id": 1311, "name": "added", "capabilities": ["CAP_NETWORK"] } ] }
EOF
agent policy reload >/dev/null
ok $? "  ...a policy reload (VM 1311 added) still applies"
check "  ...and the agent logs the record it could not write" -- \
	grep -q "applied without its audit record" "$T/agent.log"
rm -f "$T/state/fill"
agent cap grant 1310 CAP_INPUT >/dev/null
ok $? "space back: cap grant goes through"
ok "$([[ $(caps) == $(( 1 | 8 | 16 )) && $(lines) == $((n + 1)) ]]; echo $?)" \
	"  ...record and audit line both"
wait_for 3 bash -c "! '$AGENT' status --json --run-dir '$T/run' |
	jq -e 'any(.degraded[]; .state == \"audit_log_unwritable\")' >/dev/null"
ok $? "  ...and the degraded state is cleared"

# ---- read-only ----
mount -o remount,ro "$T/state"
before=$(vms) n=$(lines)
out=$(agent cap revoke 1310 CAP_INPUT 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *refused* && $out == *"Read-only"* ]]; echo $?)" \
	"state dir read-only: cap revoke refused ($out)"
ok "$([[ $(vms) == "$before" ]]; echo $?)" "  ...the maps are unchanged"
wait_for 3 degraded
ok $? "  ...status reports it (the health check notices too)"
mount -o remount,rw "$T/state"
agent cap revoke 1310 CAP_INPUT >/dev/null
ok $? "read-write again: cap revoke goes through"
ok "$([[ $(caps) == 9 && $(lines) == $((n + 1)) ]]; echo $?)" "  ...record and audit line both"
three_records() { jq -e -s 'map(select(.event | startswith("cap_"))) | length == 3' "$AUDIT" >/dev/null; }
check "every audit line is one JSON object, three capability changes in all" -- three_records
check "the audit log verifies (chain alone: the agent runs without a TPM)" -- \
	bash -c "'$AGENT' audit verify --no-tpm --state-dir '$T/state' --run-dir '$T/run' >/dev/null"
tap_done
