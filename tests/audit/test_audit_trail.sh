#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The hash-chained audit trail against a running agent measuring into a
# swtpm started here: grants, revokes, a temporary grant, vm register and
# unregister, two policy publishes each leave their record; the chain head
# is measured into the TPM; `audit verify` passes with the agent running and
# stopped, and fails, naming the first bad line, on copies of the log with
# a line edited, edited and re-hashed, deleted (start, middle, end), two
# lines swapped, the end cut off mid-record, and the whole log emptied; a
# TPM event log rewritten to match a truncated log is caught by the TPM.
# While the agent runs, a log changed behind its back stops audited changes
# until it is put back, and `audit verify` asks it for its last record (a
# record removed or forged at the end is named before the TPM head could
# show it); a VM whose process exits gets its record; a revoke-all record
# (other helpers' code, through the same audit_append) is found by --vm; an
# agent started onto a log whose last line does not verify refuses audited
# changes from the start.
# `audit --vm --since --json` filters.  VM ids
# 16101-16103.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
quiet() { "$@" >/dev/null 2>&1; }
need_root "audit trail"
need_cmds "audit trail" swtpm tpm2_getcap jq python3
agent_env
unset RAYOS_TCTI TPM2TOOLS_TCTI
export TSS2_LOG=all+none

# A swtpm of the test's own, so that the TPM outlives the agent.
mkdir -p "$T/tpm"
start_swtpm "$T/tpm"
TCTI=swtpm:host=127.0.0.1,port=$PORT
check "swtpm runs on $TCTI" -- quiet tpm2_getcap properties-fixed -T "$TCTI"

policy() {	# policy VM-ID...: one policy file with these VMs
	local id sep=""
	{
		echo '{ "version": 1, "vms": ['
		for id in "$@"; do
			echo "$sep{ \"id\": $id, \"name\": \"a$id\", \"capabilities\": [\"CAP_NETWORK\"] }"
			sep=","
		done
		echo '] }'
	} >"$T/policies/p.json"
}
policy 16101 16102
check "agent starts, measuring into that swtpm" -- agent_start --tcti "$TCTI"
wait_for 20 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.tpm.state == \"ready\"' >/dev/null"
ok $? "TPM ready"
AUDIT=$T/state/audit.log
ST=(--state-dir "$T/state" --run-dir "$T/run")
verify() { "$AGENT" audit verify "${ST[@]}" "$@"; }

# ---- every change leaves its record -----------------------------------------
check "cap grant 16101 CAP_GPU" -- quiet agent cap grant 16101 CAP_GPU
check "cap revoke 16101 CAP_GPU" -- quiet agent cap revoke 16101 CAP_GPU
check "cap grant-temp 16102 CAP_INPUT --expires 1h" -- \
	quiet agent cap grant-temp 16102 CAP_INPUT --expires 1h
check "vm register 16102 --iface rtap16102" -- quiet agent vm register 16102 --iface rtap16102
policy 16101 16102 16103
check "policy reload with VM 16103 added" -- quiet agent policy reload
check "vm unregister 16102" -- quiet agent vm unregister 16102
events=$(jq -r -s 'map(.event) | join(",")' "$AUDIT")
ok "$([[ $events == policy_publish,cap_grant,cap_revoke,cap_grant_temp,vm_register,policy_publish,vm_unregister ]]; echo $?)" \
	"one record per change, in order ($events)"
check "  ...the first publish added 16101 and 16102" -- quiet jq -e -s \
	'.[0].vms_added == [16101, 16102] and (.[0].version | type) == "number" and (.[0].sha256 | length) == 64' "$AUDIT"
check "  ...the reload's publish added 16103 and names its version and digest" -- quiet jq -e -s \
	'.[5].vms_added == [16103] and .[5].vms_changed == [] and .[5].version > .[0].version and .[5].by != ""' "$AUDIT"
check "  ...register and unregister name the VM and the tap" -- quiet jq -e -s \
	'.[4].vm == 16102 and .[4].interface == "rtap16102" and .[6].vm == 16102' "$AUDIT"
check "  ...seq 1..7, each prev the SHA-256 of the line before" -- python3 -c '
import hashlib, json, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
prev = "0" * 64
for i, l in enumerate(lines, 1):
    r = json.loads(l)
    assert r["seq"] == i and r["prev"] == prev, (i, r["seq"])
    prev = hashlib.sha256(l).hexdigest()
assert len(lines) == 7' "$AUDIT"

# ---- the head in the TPM ----------------------------------------------------
measured() { verify --json 2>/dev/null | jq -e '.ok and .not_yet_measured == 0 and .heads_checked >= 1' >/dev/null; }
wait_for 10 measured
ok $? "audit verify with the agent running: OK, every record measured"
out=$(verify 2>&1)
ok "$([[ $? == 0 && $out == OK:*"7 records"* ]]; echo $?)" "  ...$(head -n 1 <<<"$out" | cut -c1-150)"
audit_status() {
	agent status --json | jq -e '.audit.records == 7 and (.audit.head | length) == 64 and
				     .audit.measured == 7' >/dev/null
}
check "  ...status: 7 records, the head, measured through 7" -- audit_status
check "  ...the TPM event log holds the head (rayos/audit-head seq 7)" -- quiet jq -e -s \
	'any(.[]; .content_type == "rayos/audit-head" and .content.seq == 7)' "$T/run/tpm-eventlog.jsonl"

# ---- listing ------------------------------------------------------------------
out=$("$AGENT" audit "${ST[@]}" --vm 16101 --json)
ok "$(jq -e 'length == 3 and (map(.event) == ["policy_publish", "cap_grant", "cap_revoke"])' <<<"$out" >/dev/null; echo $?)" \
	"audit --vm 16101 --json: its publish, grant and revoke ($(jq -c 'map(.event)' <<<"$out"))"
out=$("$AGENT" audit "${ST[@]}" --vm 16102 --since 1h --json)
ok "$(jq -e 'map(.event) == ["policy_publish", "cap_grant_temp", "vm_register", "vm_unregister"]' <<<"$out" >/dev/null; echo $?)" \
	"audit --vm 16102 --since 1h: its publish, temporary grant, register, unregister ($(jq -c 'map(.event)' <<<"$out"))"
future=$(date -u -d '+1 hour' +%Y-%m-%dT%H:%M:%SZ)
out=$("$AGENT" audit "${ST[@]}" --since "$future" --json)
ok "$(jq -e 'length == 0' <<<"$out" >/dev/null; echo $?)" "audit --since $future (RFC 3339, later): none"
out=$("$AGENT" audit "${ST[@]}" --since 2000-01-01T00:00:00Z --json)
ok "$(jq -e 'length == 7' <<<"$out" >/dev/null; echo $?)" "audit --since 2000-01-01T00:00:00Z: all 7"
out=$("$AGENT" audit "${ST[@]}")
ok "$([[ $(wc -l <<<"$out") == 7 && $out == *cap_grant_temp*"vm=16102"*"cap=CAP_INPUT"* ]]; echo $?)" \
	"audit (text): one line each ($(sed -n 4p <<<"$out" | cut -c1-100))"
out=$("$AGENT" audit "${ST[@]}" --since yesterday 2>&1)
ok "$([[ $? == 2 && $out == *--since\ yesterday*duration*RFC\ 3339* ]]; echo $?)" "--since yesterday: refused ($out)"
out=$("$AGENT" audit "${ST[@]}" --vm 0 2>&1)
ok "$([[ $? == 2 && $out == *"--vm 0"* ]]; echo $?)" "--vm 0: refused ($out)"

# ---- a log changed behind the running agent --------------------------------
cp "$AUDIT" "$T/audit.saved"
head -n 6 "$T/audit.saved" >"$AUDIT"	# same file, last record gone
out=$(agent cap grant 16101 CAP_GPU 2>&1)
ok "$([[ $? != 0 && $out == *refused*"changed behind the agent"* ]]; echo $?)" \
	"last record removed while the agent runs: cap grant refused ($(cut -c1-160 <<<"$out"))"
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.degraded[]; .state == \"audit_log_unwritable\")' >/dev/null"
ok $? "  ...status: audit_log_unwritable"
out=$(verify 2>&1)
ok "$([[ $? == 1 && $out == *"line 7: missing: the running agent wrote record 7"* ]]; echo $?)" \
	"  ...audit verify (agent running) names line 7 ($(head -n 1 <<<"$out" | sed 's/^FAILED: [^:]*: //' | cut -c1-110))"
cat "$T/audit.saved" >"$AUDIT"
# A record forged onto the end, chained and hashed as the agent would.
python3 - "$AUDIT" <<'PY'
import hashlib, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
body = b'{"seq":%d,"prev":"%s","time":1,"event":"cap_grant","vm":16101,"cap":"CAP_ADMIN"' % (
    len(lines) + 1, hashlib.sha256(lines[-1]).hexdigest().encode())
line = body + b',"hash":"' + hashlib.sha256(body + b"}").hexdigest().encode() + b'"}'
open(sys.argv[1], "ab").write(line + b"\n")
PY
out=$(verify 2>&1)
ok "$([[ $? == 1 && $out == *"line 8: records 8 to 8 were not written by the running agent"* ]]; echo $?)" \
	"a record forged onto the end while the agent runs: verify names line 8 ($(head -n 1 <<<"$out" | sed 's/^FAILED: [^:]*: //' | cut -c1-80))"
out=$(agent cap grant 16101 CAP_GPU 2>&1)
ok "$([[ $? != 0 && $out == *"changed behind the agent"* ]]; echo $?)" "  ...and cap grant is refused"
cat "$T/audit.saved" >"$AUDIT"
check "put back: cap grant 16101 CAP_GPU goes through" -- quiet agent cap grant 16101 CAP_GPU
check "  ...and the chain goes on (8 records)" -- quiet jq -e -s 'length == 8 and .[7].seq == 8' "$AUDIT"
wait_for 10 measured
ok $? "  ...measured"

# ---- the agent stopped: files + TPM ------------------------------------------
check "agent stops" -- quiet agent stop
wait_for 10 bash -c "! kill -0 $AGENT_PID 2>/dev/null"
out=$(verify 2>&1)
ok "$([[ $? == 0 && $out == OK:*"8 records"* && $out != *"not yet measured"* ]]; echo $?)" \
	"audit verify with the agent stopped: OK, 8 records, all measured"

# bad NAME LINE WORDS: audit verify --log $T/NAME fails naming LINE and WORDS
bad() {
	local name=$1 line=$2 words=$3 out rc j
	out=$(verify --log "$T/$name" 2>&1); rc=$?
	j=$(verify --log "$T/$name" --json 2>/dev/null)
	[[ $rc == 1 && $out == FAILED:*"$words"* ]] && jq -e ".ok == false and .bad_line == $line" <<<"$j" >/dev/null
	ok $? "$name: verify fails at line $line: $(sed 's/^FAILED: [^:]*: //' <<<"$out" | head -n 1 | cut -c1-150)"
}
cp "$AUDIT" "$T/good"
sed '3s/"cap":"CAP_GPU"/"cap":"CAP_DISK_WRITE"/' "$T/good" >"$T/edited"
bad edited 3 "line 3 does not match its own hash"
python3 - "$T/good" "$T/rehashed" <<'EOF'
import hashlib, sys
lines = open(sys.argv[1], "rb").read().split(b"\n")[:-1]
l = lines[7].replace(b'"cap":"CAP_GPU"', b'"cap":"CAP_ADMIN"')
body = l[: -(len(b',"hash":"') + 64 + 2)]
lines[7] = body + b',"hash":"' + hashlib.sha256(body + b"}").hexdigest().encode() + b'"}'
open(sys.argv[2], "wb").write(b"\n".join(lines) + b"\n")
EOF
bad rehashed 8 "line 8 is not the record 8 the TPM measured"
sed '3d' "$T/good" >"$T/deleted-middle"
bad deleted-middle 3 "record 3 is missing"
sed '1d' "$T/good" >"$T/deleted-first"
bad deleted-first 1 "record 1 is missing"
sed '$d' "$T/good" >"$T/deleted-last"
bad deleted-last 8 "records 8 to 8 were removed from its end"
awk 'NR == 2 { two = $0; next } { print } NR == 3 { print two }' "$T/good" >"$T/reordered"
bad reordered 2 "out of order"
head -c -40 "$T/good" >"$T/cut"
bad cut 8 "incomplete"
: >"$T/emptied"
bad emptied 1 "records 1 to 8 were removed from its end"
sed '5s/^/garbage /' "$T/good" >"$T/garbage"
bad garbage 5 "not a JSON object"

# The attacker also rewrites the TPM event log to match a truncated log: the
# NV index (extend-only) gives it away.
mkdir -p "$T/run2"
cp "$T/run/tpm.json" "$T/run2/"
jq -c 'if .content_type == "rayos/audit-head" and .content.seq == 8 then .content.seq = 7 else . end' \
	"$T/run/tpm-eventlog.jsonl" >"$T/run2/tpm-eventlog.jsonl"
out=$("$AGENT" audit verify --state-dir "$T/state" --run-dir "$T/run2" --log "$T/deleted-last" 2>&1)
ok "$([[ $? == 1 && $out == *"cannot check the head against the TPM"* ]]; echo $?)" \
	"TPM event log rewritten to match: caught ($(cut -c1-170 <<<"$out" | head -n 1))"
out=$("$AGENT" audit verify --no-tpm --state-dir "$T/state" --log "$T/deleted-last" 2>&1)
ok "$([[ $? == 0 && $out == *"not checked (--no-tpm)"* ]]; echo $?)" \
	"--no-tpm: the chain alone cannot see the end removed, and says so"

# ---- restart onto a truncated log: the TPM keeps the evidence ---------------
sed -i '$d' "$AUDIT"
check "agent restarts onto the log with its last record removed" -- agent_start --tcti "$TCTI"
check "  ...a new grant chains on (seq 8 again)" -- quiet agent cap grant 16103 CAP_GPU
out=$(verify 2>&1)
ok "$([[ $? == 1 && $out == *"line 8 is not the record 8 the TPM measured"* ]]; echo $?)" \
	"  ...audit verify still names line 8 ($(head -n 1 <<<"$out" | sed 's/^FAILED: [^:]*: //' | cut -c1-120))"

# ---- a VM's process exits: recorded as it happens ----------------------------
spawn QEMU sleep 300
check "vm register 16103 --pid (a stand-in QEMU)" -- quiet agent vm register 16103 --pid "$QEMU"
check "  ...recorded with its pid" -- quiet jq -e -s \
	"any(.[]; .event == \"vm_register\" and .vm == 16103 and .pid == $QEMU)" "$AUDIT"
kill "$QEMU"
exited() { jq -e -s "any(.[]; .event == \"vm_exited\" and .vm == 16103 and .pid == $QEMU)" "$AUDIT" >/dev/null; }
wait_for 10 exited
ok $? "its process killed: a vm_exited record"
check "cap revoke-all --vm 16103" -- quiet agent cap revoke-all --vm 16103
out=$("$AGENT" audit "${ST[@]}" --vm 16103 --json)
ok "$(jq -e 'map(.event) | index("cap_revoke_all") != null' <<<"$out" >/dev/null; echo $?)" \
	"audit --vm 16103 finds the revoke-all record, whose ids are nested ($(jq -c 'map(.event)' <<<"$out"))"

# ---- an agent started onto a log whose last line does not verify -----------
check "agent stops" -- quiet agent stop
wait_for 10 bash -c "! kill -0 $AGENT_PID 2>/dev/null"
n=$(wc -l <"$AUDIT")
echo '{"seq":99,"event":"cap_grant"}' >>"$AUDIT"
check "agent starts onto a log with a garbage last line" -- agent_start --tcti "$TCTI"
out=$(agent cap grant 16101 CAP_GPU 2>&1)
ok "$([[ $? != 0 && $out == *refused*"its last line has no \"prev\""* ]]; echo $?)" \
	"  ...cap grant refused, naming the last line ($(grep -o 'its last line[^;]*' <<<"$out"))"
check "  ...status: audit_log_unwritable from the start" -- quiet bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e 'any(.degraded[]; .state == \"audit_log_unwritable\")'"
out=$(verify 2>&1)
ok "$([[ $? == 1 && $out == *"line $((n + 1)) has no \"prev\""* ]]; echo $?)" \
	"  ...audit verify names line $((n + 1))"
tap_done
