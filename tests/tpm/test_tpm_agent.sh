#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The real agent with its embedded swtpm: a VM registered with a tap only
# (no --pid) is in the event log with its tap and policy version, the log
# verifies, and the whole verifier flow runs through the CLI: enroll,
# challenge, quote --challenge, verify-quote with the EK, the AK file and the
# AK name.  Also: the seed cannot be read without the state dir's secret,
# an agent restart (with the embedded swtpm: a TPM reset) starts a new log
# and keeps the old one, and a lost secret means a new AK and seed.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
quiet() { "$@" >/dev/null; }	# for check: the command's output, not the TAP line
need_root "TPM with the agent"
need_cmds "TPM with the agent" swtpm tpm2_makecredential jq
agent_env
unset RAYOS_TCTI

cat >"$T/policies/p.json" <<EOF
{ "version": 1,
  "vms": [ { "id": 1401, "name": "tap-only", "capabilities": ["CAP_NETWORK"] } ] }
EOF
check "agent starts (embedded swtpm)" -- agent_start
wait_for 20 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.tpm.state == \"ready\"' >/dev/null"
ok $? "TPM ready ($(agent status --json | jq -c '.tpm | {state, nv_index, last_error}'))"
LOG=$T/run/tpm-eventlog.jsonl

out=$(agent vm register 1401 --iface rtap1401 --json 2>&1 | jq -c .)
ok $? "vm register 1401 --iface rtap1401, no --pid ($out)"
wait_for 10 bash -c "jq -s -e 'any(.[]; .content_type == \"rayos/vm-launch\" and .content.id == 1401 and .content.interface == \"rtap1401\" and (.content.policy_version | type) == \"number\")' '$LOG' >/dev/null 2>&1"
ok $? "the launch of VM 1401 (tap only) is in the log with its tap and policy version"
check "tpm vm-snapshot 1401 finds it" -- \
	bash -c "'$AGENT' tpm vm-snapshot 1401 --run-dir '$T/run' | jq -e '.launch.interface == \"rtap1401\"' >/dev/null"
check "the agent-start record names the boot" -- quiet \
	jq -s -e '.[0].content_type == "rayos/agent-start" and (.[0].content.boot_id | length) == 36' \
	"$LOG"
ST="--state-dir $T/state"
wait_for 10 bash -c "'$AGENT' tpm verify --run-dir '$T/run' $ST >/dev/null 2>&1"
ok $? "tpm verify: $("$AGENT" tpm verify --run-dir "$T/run" $ST 2>&1)"
out=$("$AGENT" tpm verify --run-dir "$T/run" 2>&1)
ok "$([[ $? != 0 && $out == *auth* ]]; echo $?)" "tpm verify without the agent's state dir says so ($out)"

# The verifier's side, through the CLI.
N=$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')
check "tpm enroll" -- quiet "$AGENT" tpm enroll --run-dir "$T/run" $ST --out "$T/enroll"
check "tpm challenge (verifier)" -- "$AGENT" tpm challenge --ek "$T/enroll/ek.pub" \
	--ak "$T/enroll/ak.pub" --out "$T/chal"
check "tpm quote --challenge" -- "$AGENT" tpm quote --run-dir "$T/run" $ST --nonce "$N" \
	--out "$T/q" --challenge "$T/chal/credential.bin"
out=$("$AGENT" tpm verify-quote "$T/q" --nonce "$N" --ek "$T/enroll/ek.pub" --challenge "$T/chal" 2>&1)
ok $? "verify-quote --ek --challenge: $out"
check "verify-quote --ak" -- "$AGENT" tpm verify-quote "$T/q" --nonce "$N" --ak "$T/enroll/ak.pub"
check "verify-quote --ak-name" -- "$AGENT" tpm verify-quote "$T/q" --nonce "$N" \
	--ak-name "$(cat "$T/enroll/ak.name")"
out=$("$AGENT" tpm verify-quote "$T/q" --nonce "$N" 2>&1)
ok "$([[ $? != 0 && $out == *trust* ]]; echo $?)" "verify-quote without a trusted key fails ($out)"
check "the quote covers the tap-only launch" -- quiet \
	jq -s -e 'any(.[]; .content.id == 1401)' "$T/q/eventlog.jsonl"

TCTI=$(jq -r .tcti "$T/run/tpm.json")
out=$(tpm2_nvread -T "$TCTI" -C o -s 32 0x01500523 2>&1)
ok "$([[ $? != 0 ]]; echo $?)" "the seed does not read with owner auth"

# A clean stop ends the embedded swtpm; the next one starts with a TPM
# Reset (its reset count grows), which empties the index like a reboot:
# a new log begins and the old one is kept.  The copy is taken once the
# agent has stopped: its last act measures the audit trail's head.
agent stop >/dev/null; wait "$AGENT_PID" 2>/dev/null
cp "$LOG" "$T/log.before"
check "agent restarts" -- agent_start
wait_for 20 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.tpm.state == \"ready\"' >/dev/null"
ok $? "TPM ready after the restart ($(agent status --json | jq -r .tpm.state))"
check "the old log is kept as tpm-eventlog.jsonl.prev" -- cmp -s "$T/log.before" "$LOG.prev"
check "the new log starts with agent-start at record 0" -- quiet \
	jq -s -e '.[0].recnum == 0 and .[0].content_type == "rayos/agent-start"' "$LOG"
wait_for 10 bash -c "'$AGENT' tpm verify --run-dir '$T/run' $ST >/dev/null 2>&1"
ok $? "tpm verify after the restart"

# The state dir loses its secret: the agent makes a new one, a new AK and
# a new seed, and the old AK no longer vouches for anything.
agent stop >/dev/null; wait "$AGENT_PID" 2>/dev/null
rm -f "$T/state/tpm/auth"
check "agent restarts without its old secret" -- agent_start
wait_for 20 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.tpm.state == \"ready\" and .tpm.mac' >/dev/null"
ok $? "TPM ready with MACs again ($(agent status --json | jq -c '.tpm | {state, mac, last_error}'))"
! cmp -s "$T/state/tpm/ak.pub" "$T/enroll/ak.pub"
ok $? "a new AK was made"
wait_for 10 bash -c "'$AGENT' tpm verify --run-dir '$T/run' $ST >/dev/null 2>&1"
ok $? "tpm verify with the new secret"
"$AGENT" tpm quote --run-dir "$T/run" $ST --nonce "$N" --out "$T/q2" >/dev/null 2>&1
out=$("$AGENT" tpm verify-quote "$T/q2" --nonce "$N" --ak "$T/enroll/ak.pub" 2>&1)
ok "$([[ $? != 0 ]]; echo $?)" "a quote by the new AK fails against the old enrollment ($out)"
tap_done
