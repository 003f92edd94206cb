#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# rayos-qemu --vtpm: the guest gets its own swtpm, its state kept per VM uuid
# (directory 0700, files 0600), QEMU is wired to it, the launch record names
# it, and it ends with QEMU; with --measure-disks the VM's disk image is
# measured too.  QEMU runs paused (-S): no guest is needed.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "vTPM"
need_cmds "vTPM" qemu-system-x86_64 swtpm jq
RQ=$BUILD/rayos-qemu
[[ -x $RQ ]] || { skip "$RQ not built" "vTPM"; tap_done; exit 0; }
agent_env

UUID=6f1c0de4-7a1e-4c6b-9d2a-$(printf '%012d' $$)
head -c 3000000 /dev/urandom >"$T/disk.img"
cat >"$T/policies/p.json" <<EOF
{ "version": 1, "vms": [ { "id": 79, "name": "vtpm-guest", "capabilities": ["CAP_CONSOLE"],
  "disks": [ { "path": "$T/disk.img", "mode": "rw" } ] } ] }
EOF
check "agent starts (measuring disk images)" -- agent_start --measure-disks
on_exit "rmdir '$(cgroup2_mount)/rayos/vm79' 2>/dev/null"

out=$("$RQ" --vm 79 --run-dir "$T/run" --state-dir "$T/state" --vtpm --no-net -- \
	qemu-system-x86_64 -machine q35,accel=tcg -m 64 -display none -S 2>&1)
ok "$([[ $? == 1 && $out == *-uuid* ]]; echo $?)" "--vtpm without -uuid is refused ($out)"

spawn QEMU "$RQ" --vm 79 --run-dir "$T/run" --state-dir "$T/state" --vtpm --no-net -- \
	qemu-system-x86_64 -machine q35,accel=tcg -m 64 -display none -S -uuid "$UUID"
D=$T/state/vtpm/$UUID
wait_for 10 test -S "$D/sock"
ok $? "swtpm listens in the VM's state directory"
SWTPM=$(cat "$D/swtpm.pid" 2>/dev/null)
on_exit "kill -9 ${SWTPM:-0}"
check "swtpm runs (pid ${SWTPM:-?})" -- test -n "$SWTPM" -a -d "/proc/$SWTPM"
ok "$([[ $(stat -c %a "$D") == 700 ]]; echo $?)" "the state directory is mode 0700"
bad=$(find "$D" -type f ! -perm 600 | wc -l)
ok "$((bad == 0 ? 0 : 1))" "every file in it is mode 0600 ($(find "$D" -type f | wc -l) files)"
wait_for 10 grep -q "tpmdev" "/proc/$QEMU/cmdline"
ok $? "QEMU (pid $QEMU, after exec) was given the vTPM"
# -s: jq 1.6's -e judges only the last input line of a JSON Lines file.
wait_for 10 bash -c "jq -s -e --arg d '$D' 'any(.[]; .content_type == \"rayos/vm-launch\" and .content.vtpm == \$d)' '$T/run/tpm-eventlog.jsonl' >/dev/null 2>&1"
ok $? "the launch record of VM 79 names its vTPM"

qemu=$(readlink -f "$(command -v qemu-system-x86_64)")
qsum=$(sha256sum "$qemu" | cut -d' ' -f1)
wait_for 15 bash -c "jq -s -e --arg e '$qemu' --arg h '$qsum' 'any(.[]; .content_type == \"rayos/vm-launch\" and .content.exe == \$e and .content.exe_sha256 == \$h)' '$T/run/tpm-eventlog.jsonl' >/dev/null 2>&1"
ok $? "the launch record has the QEMU binary rayos-qemu execs ($qemu) and its digest"
want=$(sha256sum "$T/disk.img" | cut -d' ' -f1)
wait_for 10 bash -c "jq -s -e --arg h '$want' 'any(.[]; .content_type == \"rayos/vm-disk\" and .content.id == 79 and .content.sha256 == \$h)' '$T/run/tpm-eventlog.jsonl' >/dev/null 2>&1"
ok $? "the disk image's digest is measured after the launch record"

kill "$QEMU"
wait_for 10 bash -c "! kill -0 $SWTPM 2>/dev/null"
ok $? "swtpm ends with QEMU"
check "the vTPM state stays for the next launch of this uuid" -- test -d "$D"

tap_done
