#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# CAP_DISK_READ / CAP_DISK_WRITE limited to listed disks, against the running
# agent, with a "QEMU" in the VM's cgroup opening block nodes of a driver
# this host lacks (b 60:0 and 60:1, the local/experimental major: ENXIO or
# ENODEV = the cgroup let it through, EPERM = denied).  VM 16320 holds both
# capabilities and lists two block disks and one image file, all "rw".
# `cap fine-grain ID CAP_DISK_WRITE --disks` leaves the unlisted disk
# readable but not writable; CAP_DISK_READ --disks narrows reading; `vm
# info` (what rayos-qemu opens images by) and the LSM's image table follow;
# the limits hold with the agent SIGKILLed and come back after a restart;
# the policy's "capability_limits" intersect with them; --clear restores;
# bad input is refused with nothing changed; the audit chain verifies.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "disk capability limits"
need_cmds "disk capability limits" jq python3 bpftool
CG2=$(cgroup2_mount)
[[ -n $CG2 ]] || { skip "no cgroup v2 mount" "disk capability limits"; tap_done; exit 0; }

agent_env
V=16320
D0=/dev/rayos-test-$V-d0 D1=/dev/rayos-test-$V-d1
IMG=$T/images/vm.img
mkdir -p "$T/images" && truncate -s 1M "$IMG"
mknod "$T/d0" b 60 0 && mknod "$T/d1" b 60 1

write_policy() {	# write_policy [LIMITS-JSON]
	cat >"$T/policies/disk.json.tmp" <<EOF
{ "version": 1, "vms": [
	{ "id": $V, "name": "vm-disk", "capabilities": ["CAP_DISK_READ", "CAP_DISK_WRITE"],
	  "disks": [ { "path": "$D0", "device": "60:0", "mode": "rw" },
		     { "path": "$D1", "device": "60:1", "mode": "rw" },
		     { "path": "$IMG", "mode": "rw" } ]
	  ${1:+, \"capability_limits\": $1} } ] }
EOF
	mv "$T/policies/disk.json.tmp" "$T/policies/disk.json"
}
policy_version() { agent status --json | jq -r .policy.version; }
reload_policy() {
	local v; v=$(policy_version)
	write_policy "$@"
	wait_for 5 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
}

write_policy
check "agent starts with VM $V" -- agent_start
vm_stand_in "$V"
ok $? "VM $V registered with a process in its cgroup" || { tap_done; exit 1; }

# opens: "d0:r=X d0:w=X d1:r=X d1:w=X" with X "ok" (passed the cgroup) or "EPERM"
opens() {
	local d m r out=()
	for d in d0 d1; do
		for m in r w; do
			r=$(open_in_cgroup "$CG2/rayos/vm$V/cgroup.procs" "$T/$d" $m)
			[[ $r == ENXIO || $r == ENODEV || $r == OK ]] && r=ok
			out+=("$d:$m=$r")
		done
	done
	echo "${out[*]}"
}
access() { agent vm info "$V" --json | jq -r '[.disks[] | .access] | join(" ")'; }
# the mode of the image in the LSM's table, as "r", "w", "rw" or "" (bits of
# bpf/abi/dev.h)
acc_bit() { sed -n "s/^#define RAYOS_DEV_ACC_$1[[:space:]]*(1U << \([0-9]*\)).*/\1/p" bpf/abi/dev.h; }
ACC_R=$(( 1 << $(acc_bit READ) )) ACC_W=$(( 1 << $(acc_bit WRITE) ))
img_mode() {
	local m
	m=$(bpftool -j map dump pinned "$PIN/rayos_dev_files" 2>/dev/null |
		jq -r --argjson v "$V" '[.[] | .formatted.value | select(.vm_id == $v) | .mode] | first // 0')
	echo "$( (( m & ACC_R )) && echo -n r)$( (( m & ACC_W )) && echo -n w)"
}
audit_lines() { wc -l <"$T/state/audit.log" 2>/dev/null || echo 0; }

got=$(opens)
ok "$([[ $got == "d0:r=ok d0:w=ok d1:r=ok d1:w=ok" ]]; echo $?)" "no limit: both disks read and written ($got)"
ok "$([[ $(access) == "rw rw rw" && $(img_mode) == rw ]]; echo $?)" \
	"vm info gives rayos-qemu rw on all three, the image table says rw ($(access); $(img_mode))"

# ---- CAP_DISK_WRITE --disks ---------------------------------------------------
a0=$(audit_lines)
out=$(agent cap fine-grain "$V" CAP_DISK_WRITE --disks "$D0,$IMG" 2>&1)
ok $? "cap fine-grain $V CAP_DISK_WRITE --disks $D0,$IMG ($out)"
got=$(opens)
ok "$([[ $got == "d0:r=ok d0:w=ok d1:r=ok d1:w=EPERM" ]]; echo $?)" \
	"the unlisted disk is read but not written, the listed one both ($got)"
ok "$([[ $(access) == "rw r rw" && $(img_mode) == rw ]]; echo $?)" \
	"vm info: $D1 read-only for rayos-qemu; the listed image stays rw ($(access); $(img_mode))"
l=$(agent cap list "$V" --json | jq -c '.limits.CAP_DISK_WRITE.disks')
ok "$([[ $l == "[\"$D0\",\"$IMG\"]" || $l == "[\"$IMG\",\"$D0\"]" ]]; echo $?)" "cap list names the listed disks by path ($l)"
ok "$(tail -n +$((a0 + 1)) "$T/state/audit.log" | jq -se --argjson v "$V" 'any(.event == "cap_fine_grain" and .vm == $v and .cap == "CAP_DISK_WRITE" and (.disks | length) == 2)' >/dev/null; echo $?)" \
	"the change is audited with its disks"

out=$(agent cap fine-grain "$V" CAP_DISK_WRITE --disks "$D0" 2>&1)
ok "$([[ $(img_mode) == r && $(access) == "rw r r" ]]; echo $?)" \
	"the image left out of the write list: read-only in the LSM's table and for rayos-qemu ($(img_mode); $(access))"

# ---- CAP_DISK_READ --disks ----------------------------------------------------
out=$(agent cap fine-grain "$V" CAP_DISK_READ --disks "$D1" 2>&1)
ok $? "cap fine-grain $V CAP_DISK_READ --disks $D1 ($out)"
got=$(opens)
ok "$([[ $got == "d0:r=EPERM d0:w=ok d1:r=ok d1:w=EPERM" ]]; echo $?)" \
	"each kind reaches only its own list: d0 written not read, d1 read not written ($got)"

# ---- the kernel keeps them; the agent brings them back ----------------------------
kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
got=$(opens)
ok "$([[ $got == "d0:r=EPERM d0:w=ok d1:r=ok d1:w=EPERM" ]]; echo $?)" "agent SIGKILLed: unchanged ($got)"
check "the agent restarts" -- agent_start
got=$(opens)
ok "$([[ $got == "d0:r=EPERM d0:w=ok d1:r=ok d1:w=EPERM" && $(agent cap list "$V" --json | jq -r '.limits.CAP_DISK_READ.disks[0]') == "$D1" ]]; echo $?)" \
	"after the restart the saved limits apply and print by path ($got)"

# ---- the policy's capability_limits intersect --------------------------------------
reload_policy "{ \"CAP_DISK_WRITE\": { \"disks\": [\"$D1\"] } }"
ok $? "a policy limiting CAP_DISK_WRITE to $D1 applies"
got=$(opens)
ok "$([[ $got == "d0:r=EPERM d0:w=EPERM d1:r=ok d1:w=EPERM" ]]; echo $?)" \
	"policy {d1} ∩ run time {d0}: no disk is written ($got)"
agent cap fine-grain "$V" CAP_DISK_WRITE --clear >/dev/null
got=$(opens)
ok "$([[ $got == "d0:r=EPERM d0:w=EPERM d1:r=ok d1:w=ok" ]]; echo $?)" "the run-time write limit cleared: the policy's {d1} alone ($got)"
reload_policy
agent cap fine-grain "$V" CAP_DISK_READ --clear >/dev/null
got=$(opens)
ok "$([[ $got == "d0:r=ok d0:w=ok d1:r=ok d1:w=ok" && $(access) == "rw rw rw" && $(img_mode) == rw ]]; echo $?)" \
	"no limits left: everything as the disks list says ($got; $(access); $(img_mode))"

# ---- bad input: a clear error, nothing changed ----------------------------------
agent cap fine-grain "$V" CAP_DISK_WRITE --disks "$D0" >/dev/null
before=$(agent cap list "$V" --json | jq -c .limits) a0=$(audit_lines) v0=$(policy_version)
bad() {	# bad WORD ARGS...
	local word=$1 out rc; shift
	out=$(agent cap fine-grain "$@" 2>&1); rc=$?
	ok "$([[ $rc != 0 && $out == *"$word"* ]]; echo $?)" "refused: cap fine-grain $* ($out)"
}
bad "not one of VM $V's disks" "$V" CAP_DISK_WRITE --disks /dev/rayos-nope
bad "not one of VM $V's disks" "$V" CAP_DISK_READ --disks "$D0,/var/lib/other.img"
bad "not CAP_DISK_WRITE" "$V" CAP_DISK_WRITE --nodes 226:0
bad "not CAP_GPU" "$V" CAP_GPU --disks "$D0"
bad "not CAP_NETWORK" "$V" CAP_NETWORK --disks "$D0"
bad "CAP_INPUT has no fine-grained limits" "$V" CAP_INPUT --disks "$D0"
bad "no CAP_DISK_READ limit" "$V" CAP_DISK_READ --clear
bad "unknown VM 16399" 16399 CAP_DISK_WRITE --disks "$D0"
after=$(agent cap list "$V" --json | jq -c .limits)
ok "$([[ $after == "$before" && $(audit_lines) == "$a0" && $(policy_version) == "$v0" ]]; echo $?)" \
	"after the refusals: same limits, no audit record, no publish"
got=$(opens)
ok "$([[ $got == "d0:r=ok d0:w=ok d1:r=ok d1:w=EPERM" ]]; echo $?)" "and the enforced limit is unchanged ($got)"

out=$("$AGENT" audit verify --state-dir "$T/state" --run-dir "$T/run" 2>&1)
ok $? "the audit chain verifies ($(tail -1 <<<"$out"))"
tap_done
