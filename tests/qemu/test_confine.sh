#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A compromised QEMU: tests/qemu/tool_escape, launched through rayos-qemu
# exactly as QEMU would be (same wrapper, same appended arguments, same
# fds), tries every way out a guest that took over its QEMU would try, and
# each is refused: moving itself to another cgroup (the root, another VM's,
# by clone3 into a cgroup, from a user namespace of its own), opening
# /dev/net/tun that its policy denies (before and after those attempts, and
# with user-namespace capabilities), bpf() (listing, fds by id, pinned
# objects, detaching its device program, updating a map, creating one),
# the agent's control socket, an image it was not given (another VM's),
# writing its read-only image (by fd, mmap, /proc/self/fd, its path, a
# symlink, a hard link, truncate), another VM's QEMU (signal, ptrace, its
# memory, its disk fd), the agent, the host's network, mknod, setuid(0).
# Controls show it can still do what it must: read its read-only image,
# write its read-write one, open a device its policy allows.  The images'
# contents are unchanged afterwards and `vm info` reports the VM confined.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "QEMU confinement"
need_cmds "QEMU confinement" jq bpftool ip sha256sum
TOOL=$BUILD/tests/qemu/tool_escape RQ=$BUILD/rayos-qemu
if [[ ! -x $TOOL || ! -x $RQ ]]; then
	skip "$TOOL or $RQ is not built (make)" "QEMU confinement"
	tap_done; exit 0
fi
if ! getent passwd rayos-qemu >/dev/null; then
	skip "no user rayos-qemu (sudo tests/deps makes it)" "QEMU confinement"
	tap_done; exit 0
fi
agent_env
CG2=$(cgroup2_mount)
VM=1201 OTHER=1202 TAP=rc$$t
on_exit "rmdir '$CG2/rayos/vm$VM' '$CG2/rayos/vm$OTHER' '$CG2/rayos/vm1203' '$CG2/rayos/vm1204'"
on_exit "sleep 0.3"
chmod 0711 "$T"
# Images root-only (QEMU's user must not reach them by path), in a
# directory it can search but not write; device nodes it may try.
mkdir -m 0755 "$T/img" "$T/pub" "$T/up" "$T/up/img"
head -c 65536 /dev/zero >"$T/up/img/d.raw" && chmod 0600 "$T/up/img/d.raw"
for i in a b c e f; do head -c 1048576 /dev/urandom >"$T/img/$i.raw"; done
chmod 0600 "$T"/img/*.raw
sha_before=$(cd "$T/img" && sha256sum a.raw c.raw)
mknod -m 0666 "$T/pub/pty" c 136 77 || exit 1	# CAP_CONSOLE: allowed, no such pty
cat >"$T/policies/p.json" <<EOF
{ "version": 1, "vms": [
  { "id": $VM, "name": "attacker", "interface": "$TAP",
    "capabilities": ["CAP_CONSOLE", "CAP_DISK_READ", "CAP_DISK_WRITE"],
    "disks": [ { "path": "$T/img/a.raw", "mode": "ro" }, { "path": "$T/img/b.raw", "mode": "rw" } ] },
  { "id": 1203, "name": "persistent-tap", "interface": "rcp$$" },
  { "id": 1204, "name": "deep-image", "capabilities": ["CAP_DISK_READ"],
    "disks": [ { "path": "$T/up/img/d.raw", "mode": "ro" } ] },
  { "id": 1205, "name": "write-limited", "capabilities": ["CAP_DISK_READ", "CAP_DISK_WRITE"],
    "disks": [ { "path": "$T/img/e.raw", "mode": "rw" }, { "path": "$T/img/f.raw", "mode": "rw" } ],
    "capability_limits": { "CAP_DISK_WRITE": { "disks": ["$T/img/f.raw"] } } },
  { "id": $OTHER, "name": "victim",
    "capabilities": ["CAP_DISK_READ", "CAP_DISK_WRITE"],
    "disks": [ { "path": "$T/img/c.raw", "mode": "rw" } ] } ] }
EOF
check "agent starts" -- agent_start || { tap_done; exit 1; }

# The other VM: a stand-in that only holds its disk.
spawn VICTIM "$RQ" --vm "$OTHER" --run-dir "$T/run" --no-net -- "$TOOL" --hold 120 \
	-drive "file=$T/img/c.raw,format=raw,if=virtio" >"$T/victim.out" 2>&1
wait_for 15 grep -q '^DONE' "$T/victim.out"
ok $? "VM $OTHER runs (a stand-in holding its disk)" || sed 's/^/#   /' "$T/victim.out"
victim_fd=$(tr '\0' '\n' <"/proc/$VICTIM/cmdline" | sed -n 's/^fd=\([0-9]*\),set=.*opaque=rw$/\1/p' | head -1)
bpfid() { bpftool -j "$@" 2>/dev/null | jq -r '.id // empty'; }
map_id=$(bpfid map show pinned "$PIN/rayos_vms")
link_id=$(bpfid link show pinned "$PIN/links/vm${OTHER}_dev")
prog_id=$(bpftool -j link show pinned "$PIN/links/vm${OTHER}_dev" 2>/dev/null | jq -r '.prog_id // empty')
diag "targets: rayos_vms map $map_id, VM $OTHER's device link $link_id (prog $prog_id), its disk fd $victim_fd"

# The attacker.  Paths it is told about are spelled with ./ so that
# rayos-qemu, which rewrites the policy's image paths, leaves them alone.
spawn ATT "$RQ" --vm "$VM" --run-dir "$T/run" -- "$TOOL" --hold 60 \
	--dev-denied /dev/net/tun --dev-allowed "$T/pub/pty" \
	--cgroup-root "$CG2" --own-cgroup "$CG2/rayos/vm$VM" --other-cgroup "$CG2/rayos/vm$OTHER" \
	--control "$T/run/control.sock" --pin "$PIN/rayos_vms" \
	--map-id "$map_id" --prog-id "$prog_id" --link-id "$link_id" \
	--image "$T/img/./a.raw" --ungranted "$T/img/./c.raw" \
	--other-pid "$VICTIM" --other-fd "$victim_fd" --agent-pid "$AGENT_PID" \
	--host-port "$METRICS_PORT" --tmp /tmp \
	-drive "file=$T/img/a.raw,format=raw,if=virtio" \
	-drive "file=$T/img/b.raw,format=raw,if=virtio" >"$T/att.out" 2>"$T/att.err"
wait_for 30 grep -q '^DONE' "$T/att.out"
ok $? "the stand-in ran as VM $VM's QEMU ($(head -1 "$T/att.err"))" || {
	sed 's/^/#   /' "$T/att.err" "$T/att.out"; tap_done; exit 1; }
grep -E '^(INFO|SKIP)' "$T/att.out" | sed 's/^/# /' | sort -u

# What rayos-qemu gave it: an unprivileged uid, nothing else.
ok "$(grep -q '^INFO Uid: \([1-9][0-9]*\) \1 \1 \1$' "$T/att.out"; echo $?)" \
	"it runs as a non-root uid ($(grep -m1 '^INFO Uid' "$T/att.out"))"
ok "$(! grep '^INFO Cap' "$T/att.out" | grep -qv ' 0000000000000000$'; echo $?)" \
	"with no capabilities in any set"
ok "$(grep -q '^INFO NoNewPrivs: 1' "$T/att.out"; echo $?)" "with no_new_privs"
ok "$(grep -q '^INFO Seccomp: 2' "$T/att.out"; echo $?)" "under RayOS's seccomp filter (no bpf(), no tap reconfiguration)"
ok "$(grep -q '^INFO cgroup /$' "$T/att.out"; echo $?)" \
	"in a cgroup namespace: its own cgroup is its root"
ok "$(grep -Eq '^Max core file size +0 +0 ' "/proc/$ATT/limits" &&
      grep -Eq '^Max processes +4096 +4096 ' "/proc/$ATT/limits"; echo $?)" \
	"no core dumps (guest memory), at most 4096 tasks for its uid"
ok "$(tr '\0' ' ' <"/proc/$ATT/cmdline" | grep -q -- "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"; echo $?)" \
	"QEMU's -sandbox was appended (a real QEMU would be under it; this stand-in is not)"
ok "$(tr '\0' ' ' <"/proc/$ATT/cmdline" | grep -q "file=/dev/fdset/[0-9]*,format=raw,if=virtio,readonly=on"; echo $?)" \
	"its read-only image is on its command line as an fd set, readonly=on"

# Every escape, refused.  The errno says who refused: EPERM from the device
# cgroup or a missing capability, EACCES from file permissions.
expect() {	# expect NAME ERRNO...: the attempt was refused with one of them
	local name=$1 l; shift
	l=$(grep "^ESCAPE $name " "$T/att.out")
	for e in "$@"; do
		[[ $l == "ESCAPE $name refused $e "* ]] && { ok 0 "${l#ESCAPE }"; return; }
	done
	ok 1 "$name: refused with ${*// /|} (got: ${l:-no line})"
}
expect dev-open-before EPERM
expect dev-open-ro-before EPERM
expect cgroup-move-root EACCES
expect cgroup-move-root-thread EACCES
expect cgroup-move-other EACCES
expect cgroup-mkdir EACCES
expect cgroup-clone-into EACCES
if grep -q '^ESCAPE userns-unshare refused' "$T/att.out"; then
	expect userns-unshare EPERM ENOSPC EINVAL
else
	expect userns-cgroup-move EACCES EPERM
	expect userns-cgroup-move-root EACCES EPERM ENOENT
	expect userns-dev-open EPERM
	expect userns-bpf-prog-list EPERM
fi
expect bpf-prog-list EPERM
expect bpf-map-list EPERM
expect bpf-link-list EPERM
expect bpf-obj-get EACCES EPERM
expect bpf-prog-by-id EPERM
expect bpf-link-detach EPERM
expect bpf-map-update EPERM
expect bpf-cgroup-detach EPERM EINVAL
expect bpf-cgroup-query EPERM
if [[ $(cat /proc/sys/kernel/unprivileged_bpf_disabled 2>/dev/null) != 0 ]]; then
	expect bpf-map-create EPERM
else
	skip "kernel.unprivileged_bpf_disabled=0: any user may create maps here" "bpf-map-create"
fi
expect control-socket EACCES
expect image-ungranted-read EACCES
expect image-ungranted-write EACCES
expect image-ro-write EBADF
expect image-ro-ftruncate EINVAL EBADF
expect image-ro-fallocate EBADF
expect image-ro-mmap EACCES
expect image-ro-setfl EBADF
expect image-ro-proc-reopen EACCES
expect image-ro-fchmod EPERM
expect image-ro-fchown EPERM
expect image-ro-linkat-fd ENOENT EPERM
expect image-ro-path-write EACCES
expect image-ro-path-read EACCES
expect image-ro-truncate EACCES
expect image-ro-symlink EACCES
expect image-ro-hardlink EPERM EACCES
expect setuid-root EPERM
expect other-vm-kill EPERM
expect other-vm-ptrace EPERM
expect other-vm-mem EACCES EPERM
expect other-vm-fd-reopen EACCES EPERM
expect other-vm-pidfd-getfd EPERM ESRCH
expect agent-kill EPERM
expect agent-ptrace EPERM
expect host-net-connect ENETUNREACH ECONNREFUSED EACCES
expect tap-persist EPERM
expect tap-owner EPERM
expect tap-set-mac EPERM
expect tap-setiff EINVAL EBADFD EBUSY EPERM EEXIST
expect mknod EPERM
expect bpffs-write EACCES
expect dev-open-after EPERM
expect dev-open-ro-after EPERM
ok "$(! grep -q ' SUCCEEDED ' "$T/att.out"; echo $?)" \
	"no attempt succeeded ($(grep ' SUCCEEDED ' "$T/att.out" | cut -d' ' -f2 | tr '\n' ' '))"
for c in dev-allowed-before image-ro-read image-rw-write dev-allowed-after; do
	l=$(grep "^CONTROL $c " "$T/att.out")
	ok "$([[ $l == "CONTROL $c ok "* ]]; echo $?)" "control: ${l:-no line for $c}"
done

# Afterwards: still in its cgroup, images intact, and the agent says so.
ok "$([[ $(grep '^0::' "/proc/$ATT/cgroup") == "0::/rayos/vm$VM" ]]; echo $?)" \
	"the stand-in is still in VM $VM's cgroup ($(grep '^0::' "/proc/$ATT/cgroup"))"
ok "$([[ $(cd "$T/img" && sha256sum a.raw c.raw) == "$sha_before" ]]; echo $?)" \
	"its read-only image and the other VM's image are unchanged"
conf=$(agent vm info "$VM" | jq -c .confinement)
diag "vm info $VM: $(jq -c '[.points[] | "\(.point)=\(.state)"]' <<<"$conf")"
ok "$(jq -e '.state == "confined"' <<<"$conf" >/dev/null; echo $?)" "vm info: VM $VM is confined"
for p in net.tap device.cgroup cgroup.sealed process.unprivileged disk.images; do
	ok "$(jq -e --arg p "$p" '.points[] | select(.point == $p) | .state == "active"' <<<"$conf" >/dev/null; echo $?)" \
		"vm info: $p active ($(jq -r --arg p "$p" '.points[] | select(.point == $p) | .detail' <<<"$conf"))"
done
ok "$(jq -e '.process.uid_of_its_own and .process.empty_network_namespace and .process.cgroup_namespace and .process.disk_fds == 2' <<<"$conf" >/dev/null; echo $?)" \
	"vm info: a uid of its own, empty network and own cgroup namespaces, 2 disks as fds"
uid_att=$(awk '$1 == "Uid:" { print $2 }' "/proc/$ATT/status")
uid_vic=$(awk '$1 == "Uid:" { print $2 }' "/proc/$VICTIM/status")
ok "$([[ $uid_att != "$uid_vic" ]]; echo $?)" "the two VMs' QEMUs run as different uids ($uid_att, $uid_vic)"
st=$(agent status --json | jq -c --argjson v "$VM" '.vms[] | select(.id == $v) | .confinement.state')
ok "$([[ $st == '"confined"' ]]; echo $?)" "status shows VM $VM confined too ($st)"
ok "$(agent device list "$VM" | jq -e '.vms.vms[0].confinement.state == "confined"' >/dev/null; echo $?)" \
	"device list shows it too"

# The wrapper refuses images QEMU's user could reach by itself.
chmod 0644 "$T/img/a.raw"
out=$("$RQ" --vm "$VM" --run-dir "$T/run" -- "$TOOL" 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"$T/img/a.raw can be opened for reading by uid"* ]]; echo $?)" \
	"a world-readable image is refused by name ($(head -1 <<<"$out"))"
chmod 0600 "$T/img/a.raw"
chmod 0777 "$T/img"
out=$("$RQ" --vm "$VM" --run-dir "$T/run" -- "$TOOL" 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"directory on the way to disk $T/img/a.raw is writable"* ]]; echo $?)" \
	"an image in a directory QEMU's user may write is refused ($(head -1 <<<"$out"))"
chmod 0755 "$T/img"
ok "$([[ $(grep '^0::' "/proc/$ATT/cgroup") == "0::/rayos/vm$VM" ]] &&
      agent vm info "$VM" | jq -e '.confinement.state == "confined"' >/dev/null; echo $?)" \
	"... and the refused launches left the running VM $VM as it was"

# Higher up the path counts too; a sticky directory (/tmp) does not, as
# QEMU's user can neither rename nor remove what it does not own there.
chmod 0777 "$T/up"
out=$("$RQ" --vm 1204 --run-dir "$T/run" --no-net -- "$TOOL" 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"directory on the way to disk $T/up/img/d.raw is writable"* ]]; echo $?)" \
	"an image below a directory QEMU's user may write, higher up, is refused ($(head -1 <<<"$out"))"
chmod 0755 "$T/up"
out=$("$RQ" --vm 1204 --run-dir "$T/run" --no-net -- true 2>&1); rc=$?
ok "$([[ $rc == 0 ]]; echo $?)" "with every directory root-only but /tmp (sticky), it runs ($(head -1 <<<"$out"))"

# CAP_DISK_WRITE limited to f.raw: rayos-qemu hands QEMU e.raw read-only,
# f.raw read-write, though both are "rw" disks of the policy.
spawn LIM "$RQ" --vm 1205 --run-dir "$T/run" --no-net -- "$TOOL" --hold 20 \
	-drive "file=$T/img/e.raw,format=raw,if=virtio" \
	-drive "file=$T/img/f.raw,format=raw,if=virtio" >"$T/lim.out" 2>&1
wait_for 15 grep -q '^DONE' "$T/lim.out"
drives=$(tr '\0' '\n' <"/proc/$LIM/cmdline" 2>/dev/null | grep '^file=/dev/fdset/' | sed 's/file=[^,]*,//' | paste -sd ' ')
ok "$([[ $drives == "format=raw,if=virtio,readonly=on format=raw,if=virtio" ]]; echo $?)" \
	"CAP_DISK_WRITE limited to f.raw: e.raw handed over read-only, f.raw read-write ($drives)"
kill "$LIM" 2>/dev/null; wait "$LIM" 2>/dev/null

# A second launch of a VM that runs is refused: its exit would end the first.
out=$("$RQ" --vm "$VM" --run-dir "$T/run" --no-net -- true 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"already runs"* ]]; echo $?)" "a second launch of VM $VM is refused ($out)"
ok "$(kill -0 "$ATT" && [[ $(grep '^0::' "/proc/$ATT/cgroup") == "0::/rayos/vm$VM" ]]; echo $?)" \
	"... and the first runs on in its cgroup"

# A tap that outlives its QEMU (made persistent before, or by a QEMU
# without RayOS's filter) would stay on its bridge with no program on it,
# for anyone allowed to attach: the agent removes it when the VM stops.
ip tuntap add dev "rcp$$" mode tap || exit 1
on_exit "ip link del 'rcp$$'"
"$RQ" --vm 1203 --run-dir "$T/run" -- true >"$T/ptap.out" 2>&1
ok $? "a VM launched on a persistent tap runs ($(head -1 "$T/ptap.out"))"
wait_for 5 test ! -e "/sys/class/net/rcp$$"
ok $? "when its QEMU is gone the agent removes the tap it left behind"
wait_for 5 grep -q "tap rcp$$ outlived its QEMU" "$T/agent.log"	# logged after the removal
ok $? "... and says so in its log"

tap_done
