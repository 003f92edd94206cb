#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Degraded states in status and /metrics: a healthy agent exports every
# state as 0 (so alerts need no absent()); a TPM that cannot be reached is
# reported with the time it began while enforcement goes on; a policy
# directory replaced by one whose policy is rejected is reported, the
# previous set enforced, until the new one is fixed.  (Quarantine, mass
# removal and a missing directory: test_failclosed.sh; the audit log:
# test_audit.sh.)  VM id 1320.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "degraded states"
need_cmds "degraded states" jq python3
agent_env
metrics() {
	python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())' \
		"$METRICS_PORT"
}
status() { "$AGENT" status --json --run-dir "$T/run"; }
has_degraded() { status | jq -e --arg s "$1" 'any(.degraded[]; .state == $s and .since > 0)' >/dev/null; }

echo '{ "version": 1, "vms": [ { "id": 1320, "name": "d" } ] }' >"$T/policies/p.json"
check "agent starts" -- agent_start --no-tpm
m=$(metrics)
n=0
for s in policy_dir_missing policy_dir_replaced policy_rejected mass_removal_held \
	 vms_quarantined audit_log_unwritable tpm_unreachable; do
	[[ $m == *"rayos_degraded{state=\"$s\"} 0"* && $m == *"rayos_degraded_since_seconds{state=\"$s\"} 0"* ]] &&
		n=$((n + 1))
done
ok "$((n == 7 ? 0 : 1))" "a healthy agent exports all 7 degraded states as 0 ($n)"
if command -v promtool >/dev/null; then
	promtool check metrics <<<"$m" >"$T/promtool.out" 2>&1
	ok $? "promtool accepts /metrics with the degraded and control series" || sed "s/^/# /" "$T/promtool.out"
else
	skip "no promtool" "promtool accepts /metrics"
fi
ok "$([[ $m == *'rayos_control_connections '* && $m == *'rayos_control_closed_total{reason="quiet_evicted"}'* ]]; echo $?)" \
	"/metrics has the control socket's connections and closes"
check "status lists none" -- bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.degraded == []' >/dev/null"
check "--no-tpm is a choice, not a degraded state" -- bash -c "! '$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.degraded[]; .state == \"tpm_unreachable\")' >/dev/null"

# A directory replaced by one whose policy is rejected.
mkdir "$T/new"
echo '{ "version": 1, "vms": [ { "id": 1320, "name": "d", "capabilities": ["CAP_FLY"] } ] }' >"$T/new/p.json"
v=$(status | jq .policy.version)
mv "$T/policies" "$T/old" && mv "$T/new" "$T/policies"
wait_for 3 has_degraded policy_dir_replaced
ok $? "a directory replaced by a rejected one is reported (policy_dir_replaced)"
ok "$([[ $(status | jq .policy.version) == "$v" ]] && has_degraded policy_rejected; echo $?)" \
	"  ...the previous set stays (version $v) and the rejection is reported too"
ok "$([[ $(metrics) == *'rayos_degraded{state="policy_dir_replaced"} 1'* ]]; echo $?)" "  ...in /metrics"
echo '{ "version": 1, "vms": [ { "id": 1320, "name": "d" } ] }' >"$T/policies/p.json"
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.degraded == []' >/dev/null"
ok $? "fixing the new directory clears both"

# The TPM cannot be reached: enforcement goes on, status says since when.
agent stop >/dev/null; wait "$AGENT_PID" 2>/dev/null
check "agent restarts with a TPM that does not answer" -- \
	agent_start --tcti "swtpm:host=127.0.0.1,port=9"
wait_for 10 has_degraded tpm_unreachable
ok $? "status reports tpm_unreachable with its start time"
m=$(metrics)
ok "$([[ $m == *'rayos_degraded{state="tpm_unreachable"} 1'* &&
	 ! $m == *'rayos_degraded_since_seconds{state="tpm_unreachable"} 0'* ]]; echo $?)" \
	"  ...and /metrics with a start time"
check "  ...while the policy is enforced" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[0].id == 1320' >/dev/null"
tap_done
