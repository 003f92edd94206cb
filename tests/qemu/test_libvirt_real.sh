#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The real libvirtd (Debian's) starts the test guest with rayos-libvirt-hook
# as its QEMU hook.  libvirtd runs in a mount namespace of its own where
# /etc/libvirt, /run/libvirt, /var/{lib,cache,log}/libvirt and
# /etc/passwd+group (with a libvirt-qemu user) are this test's, so nothing of
# the host is touched.  libvirt runs QEMU as libvirt-qemu without
# capabilities under its -sandbox, in the cgroup it makes for the domain;
# the hook registers it and the agent attaches the device program there,
# leaving QEMU in libvirt's cgroup.  Checked: the guest boots and its
# traffic meets its policy on libvirt's tap, a device its policy denies is
# refused in libvirt's cgroup, the escape attempts of tests/qemu/tool_escape
# from there fail, and `virsh destroy` unregisters the VM.
# Traffic: one bridge + libvirt's tap, no other port, 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "libvirtd"
need_cmds "libvirtd" libvirtd virsh unshare qemu-system-x86_64 ip jq python3 setpriv
need_guest "libvirtd"
HOOK=$BUILD/rayos-libvirt-hook TOOL=$BUILD/tests/qemu/tool_escape
agent_env
chmod 0711 "$T"
VM=1220 NAME=rayos-lv$$ TAP=rl$$t BR=rl$$b MAC=52:54:00:12:20:02
for ((i = 0; i < 50; i++)); do
	NET=198.18.$((RANDOM % 250 + 2))
	[[ -z $(ip -4 -o addr show to "$NET.0/24") && -z $(ip -4 route show to match "$NET.1" | grep -v '^default') ]] && break
done
ip link add "$BR" type bridge || exit 1
on_exit "ip link del '$BR'"
sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
mkdir -m 0755 "$T/pub" && mknod -m 0666 "$T/pub/dri" c 226 9 || exit 1

cat >"$T/policies/lv.json" <<EOF
{ "version": 1,
  "vms": [ { "id": $VM, "name": "$NAME", "bridge": "$BR", "mac": "$MAC", "ipv4": "$NET.2",
	     "capabilities": ["CAP_NETWORK"],
	     "host": { "rules": [ { "action": "allow", "protocol": "tcp", "ports": [9000, 9001] } ] },
	     "firewall": { "out": { "default": "deny", "rules": [
		{ "action": "allow", "protocol": "tcp", "ports": [9000], "cidrs": ["$NET.1"] } ] } } } ] }
EOF
check "agent starts with VM $VM" -- agent_start || { tap_done; exit 1; }

# ---- a libvirtd of this test's own --------------------------------------------
L=$T/libvirt
mkdir -p "$L"/{etc/hooks,run,lib,cache,log}
lvuid=64055
while getent passwd "$lvuid" >/dev/null || getent group "$lvuid" >/dev/null; do lvuid=$((lvuid + 1)); done
{ grep -v '^libvirt-qemu:' /etc/passwd; echo "libvirt-qemu:x:$lvuid:$lvuid:Libvirt Qemu:/var/lib/libvirt:/usr/sbin/nologin"; } >"$L/passwd"
{ grep -v '^libvirt-qemu:' /etc/group; echo "libvirt-qemu:x:$lvuid:"; } >"$L/group"
cat >"$L/etc/qemu.conf" <<EOF
user = "libvirt-qemu"
group = "libvirt-qemu"
security_driver = "none"
stdio_handler = "file"
EOF
cat >"$L/etc/libvirtd.conf" <<EOF
unix_sock_rw_perms = "0700"
auth_unix_rw = "none"
EOF
# libvirt runs hooks with a clean environment: the agent's run dir goes in here.
cat >"$L/etc/hooks/qemu" <<EOF
#!/bin/sh
RAYOS_RUN_DIR='$T/run' exec '$HOOK' "\$@"
EOF
chmod 0755 "$L/etc/hooks/qemu"
cat >"$L/start" <<EOF
#!/bin/sh
set -e
mount --bind '$L/etc' /etc/libvirt
mount --bind '$L/passwd' /etc/passwd
mount --bind '$L/group' /etc/group
mount --bind '$L/run' /run/libvirt
mount --bind '$L/lib' /var/lib/libvirt
mount --bind '$L/cache' /var/cache/libvirt
mount --bind '$L/log' /var/log/libvirt
exec libvirtd -p /run/libvirt/libvirtd.pid
EOF
chmod 0755 "$L/start"
# Mount points only (empty directories) on the host.
for d in /etc/libvirt /run/libvirt /var/lib/libvirt /var/cache/libvirt /var/log/libvirt; do
	[[ -d $d ]] || { mkdir -p "$d" && on_exit "rmdir '$d'"; }
done
spawn LVD unshare --mount --propagation private "$L/start" >"$L/libvirtd.log" 2>&1
V=(virsh -q -c "qemu:///system?socket=$L/run/libvirt-sock")
wait_for 20 bash -c '"$@" version >/dev/null 2>&1' sh "${V[@]}"
ok $? "libvirtd runs ($(libvirtd --version))" || { sed 's/^/#   /' "$L/libvirtd.log"; tap_done; exit 1; }
CG2=$(cgroup2_mount)
# libvirt removes a domain's cgroups, not the /machine partition it made.
on_exit "rmdir '$CG2/machine' /sys/fs/cgroup/*/machine 2>/dev/null"
on_exit "virsh -q -c 'qemu:///system?socket=$L/run/libvirt-sock' destroy '$NAME'"

# ---- the domain --------------------------------------------------------------
host_listen "$NET.1" 9000 9001
cat >"$L/dom.xml" <<EOF
<domain type='qemu'>
  <name>$NAME</name>
  <metadata><rayos:vm xmlns:rayos="https://rayos.example/xmlns/vm/1" id="$VM"/></metadata>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type>
    <kernel>$GUEST/vmlinuz</kernel><initrd>$GUEST/initrd.gz</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 rayos.ip=$NET.2/24 rayos.gw=$NET.1 rayos.probe=$NET.1:9000,$NET.1:9001 rayos.hold=120</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <source bridge='$BR'/>
      <target dev='$TAP'/>
      <mac address='$MAC'/>
      <model type='virtio'/>
    </interface>
    <serial type='file'><source path='$L/console.log'/></serial>
  </devices>
</domain>
EOF
t0=$EPOCHREALTIME
out=$("${V[@]}" create "$L/dom.xml" 2>&1)
ok $? "virsh create starts domain $NAME, the hook registering it ($out)" || {
	sed 's/^/#   /' "$L/libvirtd.log" "$L"/log/qemu/*.log 2>/dev/null; tap_done; exit 1; }
QPID=$(cat "$L/run/qemu/$NAME.pid")
cg=$(grep '^0::' "/proc/$QPID/cgroup" | cut -d: -f3)
diag "QEMU pid $QPID in $cg; $(grep -E '^(Uid|CapEff|Seccomp):' "/proc/$QPID/status" | tr '\t\n' '  ')"
ok "$([[ $(awk '$1 == "Uid:" { print $2 }' "/proc/$QPID/status") == "$lvuid" ]]; echo $?)" \
	"libvirt runs QEMU as libvirt-qemu (uid $lvuid)"
ok "$([[ $cg == /machine/* && $cg != /rayos/* ]]; echo $?)" "QEMU stays in libvirt's cgroup ($cg)"
dom_cg=$CG2${cg%/emulator}
info=$(agent vm info "$VM" | jq -c .confinement)
# libvirt seals the domain's cgroup with a device program of its own,
# attached without BPF_F_ALLOW_MULTI: nothing attaches at or below it, so
# RayOS's goes on the parent (rayos_dev_above); both must allow.
ok "$(jq -e --arg c "$dom_cg" '.points[] | select(.point == "device.cgroup") | .state == "active" and (.detail | contains($c))' <<<"$info" >/dev/null; echo $?)" \
	"the device program holds libvirt's domain cgroup ($(jq -r '.points[] | select(.point == "device.cgroup") | .detail' <<<"$info"))"
diag "device programs under $CG2/machine:" 
bpftool cgroup tree "$CG2/machine" 2>/dev/null | sed 's/^/#   /'
ok "$(bpftool cgroup show "$dom_cg" 2>/dev/null | grep -q cgroup_device; echo $?)" \
	"... next to the one libvirt attached to the domain's cgroup itself"
ok "$(jq -e '.state == "confined"' <<<"$info" >/dev/null; echo $?)" \
	"vm info: VM $VM confined ($(jq -c '[.points[] | "\(.point)=\(.state)"]' <<<"$info"))"
check "VM $VM is enforced on libvirt's tap $TAP" -- bash -c \
	"'$AGENT' vm list --json --run-dir '$T/run' | jq -e '.vms[] | select(.id == $VM) | .ifindex == $(cat "/sys/class/net/$TAP/ifindex")' >/dev/null"

# ---- from inside libvirt's cgroup, as its QEMU user ----------------------------
as_qemu() {	# as_qemu CMD...: CMD as libvirt-qemu in QEMU's own cgroup
	sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec setpriv --reuid "$0" --regid "$0" \
		--clear-groups --bounding-set=-all --no-new-privs "$@"' "$lvuid" "$CG2$cg" "$@"
}
r=$(as_qemu /usr/bin/python3 -c 'import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR)); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])' "$T/pub/dri")
ok "$([[ $r == EPERM ]]; echo $?)" "a device VM $VM may not use (226:9) is refused in libvirt's cgroup: $r"
# Another guest of libvirt's, not a RayOS VM, under the same parent: not ours.
mkdir "$CG2/machine/other-$$" && on_exit "rmdir '$CG2/machine/other-$$'"
r=$(sh -c 'echo $$ >"$1/cgroup.procs" && exec /usr/bin/python3 -c "import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR)); print(\"OK\")
except OSError as e:
    print(errno.errorcode[e.errno])" "$2"' sh "$CG2/machine/other-$$" "$T/pub/dri")
ok "$([[ $r != EPERM ]]; echo $?)" "a cgroup of no RayOS VM under the same parent is left alone: $r"
as_qemu "$TOOL" --dev-denied "$T/pub/dri" --cgroup-root "$CG2" --own-cgroup "$CG2$cg" \
	--other-cgroup "$CG2/machine" --control "$T/run/control.sock" --pin "$PIN/rayos_vms" \
	--agent-pid "$AGENT_PID" >"$T/escape.out" 2>&1
ok "$(grep -q '^DONE' "$T/escape.out"; echo $?)" "the stand-in ran ($(grep -c '^ESCAPE' "$T/escape.out") attempts)"
for a in dev-open-before cgroup-move-root cgroup-move-other cgroup-mkdir cgroup-clone-into \
	 bpf-prog-list bpf-obj-get control-socket dev-open-after; do
	l=$(grep "^ESCAPE $a " "$T/escape.out")
	ok "$([[ $l == "ESCAPE $a refused "* ]]; echo $?)" "under libvirt: ${l:-no line for $a}"
done
ok "$(! grep -q ' SUCCEEDED ' "$T/escape.out"; echo $?)" \
	"no attempt succeeded ($(grep ' SUCCEEDED ' "$T/escape.out" | cut -d' ' -f2 | tr '\n' ' '))"

# ---- the guest's traffic meets its policy ----------------------------------------
wait_for 150 grep -q RAYOS-PROBES-DONE "$L/console.log"
ok $? "the guest booted under libvirt and ran its probes ($(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s)" ||
	tail -20 "$L/console.log" | sed 's/^/#   /'
ok "$(grep -aq "RAYOS-PROBE $NET.1:9000 open RAYOS-HOST-9000" "$L/console.log"; echo $?)" \
	"guest -> host tcp/9000 connects (out rule)"
ok "$(grep -aq "RAYOS-PROBE $NET.1:9001 closed" "$L/console.log"; echo $?)" \
	"guest -> host tcp/9001 does not (default deny out)"

# ---- virsh destroy --------------------------------------------------------------
"${V[@]}" destroy "$NAME" >/dev/null 2>&1
wait_for 10 bash -c "[[ \$('$AGENT' vm unregister $VM --run-dir '$T/run' 2>&1) == *'not registered'* ]]"
ok $? "virsh destroy: the VM is unregistered"
ok "$([[ ! -e $dom_cg ]]; echo $?)" "libvirt removed its cgroup itself"

tap_done
