#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The libvirt QEMU hook (qemu-hooks/rayos-libvirt-hook.c) against the real agent,
# fed domain XML the way libvirtd does: a domain that is a RayOS VM by name
# and one by <rayos:vm id=.../> metadata get registered with their "QEMU"
# pid and tap on started/reconnect and unregistered on stopped/release;
# other domains are left alone; reconnect, stopped and release never fail,
# even with no agent; prepare and started fail for a domain claiming a VM
# the agent does not know.  Each "QEMU" runs as libvirt runs it: another
# user (nobody) without capabilities, in the cgroup libvirt makes for the
# domain (machine.slice/machine-qemu\x2dN\x2dNAME.scope/libvirt/emulator):
# the agent attaches the device program to that cgroup and leaves QEMU in
# it; devices the policy denies are refused there and in the vcpu sibling,
# and the escape attempts of tests/qemu/tool_escape from there fail.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "libvirt hook"
need_cmds "libvirt hook" ip jq
HOOK=$BUILD/rayos-libvirt-hook
if [[ ! -x $HOOK ]]; then
	skip "$HOOK is not built (make)" "libvirt hook"
	tap_done; exit 0
fi
agent_env
CG2=$(cgroup2_mount)
chmod 0711 "$T"
mkdir -m 0755 "$T/pub"		# what the unprivileged "QEMU" may reach
mknod -m 0666 "$T/pub/dri" c 226 5 || exit 1	# CAP_GPU: no VM here has it

# libvirt_qemu NAME VAR CMD...: CMD as libvirt runs QEMU: user nobody
# (standing in for libvirt-qemu), no capabilities, no-new-privs, in the
# root-owned cgroup libvirt makes for the domain, .../libvirt/emulator
# (with a vcpu0 sibling); its pid in VAR, that libvirt cgroup in LVCG_VAR.
lv_n=0
libvirt_qemu() {
	local name=$1 var=$2 scope
	shift 2
	lv_n=$((lv_n + 1))
	scope="$CG2/machine.slice/machine-qemu\\x2d$$$lv_n\\x2d$name.scope"
	mkdir -p "$scope/libvirt/emulator" "$scope/libvirt/vcpu0" || return 1
	on_exit "rmdir '$scope/libvirt/emulator' '$scope/libvirt/vcpu0' '$scope/libvirt' '$scope' '$CG2/machine.slice'"
	on_exit "sleep 0.3"
	in_cgroup "$scope/libvirt/emulator" "$var" "$@"
	printf -v "LVCG_$var" '%s' "$scope/libvirt"
}
# in_cgroup CGROUP VAR CMD...: CMD as nobody without capabilities in CGROUP.
in_cgroup() {
	local cg=$1 var=$2
	shift 2
	spawn "$var" sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec setpriv --reuid nobody \
		--regid nogroup --clear-groups --inh-caps=-all --bounding-set=-all --no-new-privs "$@"' \
		sh "$cg" "$@"
}
# nobody_open CGROUP NODE: errno name of open(NODE) by nobody in CGROUP.
nobody_open() {
	sh -c 'echo $$ >"$1/cgroup.procs" && exec setpriv --reuid nobody --regid nogroup \
		--clear-groups --bounding-set=-all --no-new-privs /usr/bin/python3 -c "
import errno, os, sys
try:
    os.close(os.open(sys.argv[1], os.O_RDWR)); print(\"OK\")
except OSError as e:
    print(errno.errorcode[e.errno])" "$2"' sh "$1" "$2"
}
# The "QEMU" sleeps are killed first, then their VMs' cgroups go.
on_exit "rmdir '$CG2/rayos/vm61' '$CG2/rayos/vm62'"
on_exit "sleep 0.3"
LV=$T/libvirt			# stands in for /run/libvirt/qemu
mkdir -p "$LV"
TAPA=lh$$a TAPB=lh$$b
ip link add "$TAPA" type veth peer name "${TAPA}p" || exit 1
on_exit "ip link del '$TAPA'"
ip link add "$TAPB" type veth peer name "${TAPB}p" || exit 1
on_exit "ip link del '$TAPB'"
cat >"$T/policies/lv.json" <<EOF
{ "version": 1, "vms": [
	{ "id": 61, "name": "lv-web", "mac": "52:54:00:00:61:01", "capabilities": ["CAP_NETWORK"] },
	{ "id": 62, "name": "rayos-62", "mac": "52:54:00:00:62:01" } ] }
EOF
check "agent starts" -- agent_start || { tap_done; exit 1; }

# domain_xml NAME TAP MAC [METADATA]: what libvirtd writes on the hook's stdin.
domain_xml() {
	cat <<EOF
<domain type='kvm' id='3'>
  <name>$1</name>
  <uuid>6a1f0c52-1d2b-4c1e-9e55-0000000000$((RANDOM % 90 + 10))</uuid>
  <metadata>${4:-}</metadata>
  <memory unit='KiB'>262144</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='bridge'>
      <mac address='$3'/>
      <source bridge='br0'/>
      <target dev='$2'/>
      <model type='virtio'/>
      <alias name='net0'/>
    </interface>
    <serial type='pty'><target port='0'/></serial>
  </devices>
</domain>
EOF
}
# hook NAME OP [XML-ARGS...]: run the hook like libvirtd; status in $rc, stderr in $err.
hook() {
	local name=$1 op=$2; shift 2
	err=$(domain_xml "$name" "$@" | RAYOS_RUN_DIR=${HOOK_RUN_DIR:-$T/run} RAYOS_LIBVIRT_RUN_DIR=$LV \
		"$HOOK" "$name" "$op" begin - 2>&1 >/dev/null)
	rc=$?
}
registered_on() {	# registered_on ID IFACE
	agent vm list --json | jq -e ".vms[] | select(.id == $1) | .ifindex == $(cat "/sys/class/net/$2/ifindex")" >/dev/null
}
cgroup_of() { grep '^0::' "/proc/$1/cgroup" | cut -d: -f3; }

# ---- by name ---------------------------------------------------------------
libvirt_qemu lv-web QEMU_A sleep 300 || exit 1
echo "$QEMU_A" >"$LV/lv-web.pid"
hook lv-web prepare "$TAPA" 52:54:00:00:61:01
ok "$rc" "prepare of a RayOS domain (by name) succeeds ($err)"
t0=$EPOCHREALTIME
hook lv-web started "$TAPA" 52:54:00:00:61:01
ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", (b - a) * 1000 }')
ok "$rc" "started registers domain lv-web ($err)"
diag "hook 'started' (read XML, map the domain, vm.register with pid): $ms ms"
check "VM 61 is enforced on the domain's tap $TAPA" -- registered_on 61 "$TAPA"
cg=$(cgroup_of "$QEMU_A")
ok "$([[ $CG2$cg == "$LVCG_QEMU_A/emulator" ]]; echo $?)" \
	"the domain's QEMU stays in libvirt's cgroup ($cg)"
lvid=$(stat -c %i "$LVCG_QEMU_A")
ok "$(agent device list 61 | jq -e --argjson c "$lvid" '.vms.vms[0].cgroup_id == $c' >/dev/null; echo $?)" \
	"the device program is on libvirt's cgroup of the domain (.../libvirt, id $lvid)"
info=$(agent vm info 61)
ok "$(jq -e '.confinement.points[] | select(.point == "device.cgroup") | .state == "active" and (.detail | test("attached in place"))' <<<"$info" >/dev/null; echo $?)" \
	"vm info: device.cgroup active, attached in place ($(jq -c '.confinement.points[] | select(.point == "device.cgroup") | .detail' <<<"$info"))"
ok "$(jq -e '.confinement.state == "confined" and (.confinement.points[] | select(.point == "process.unprivileged") | .state == "active")' <<<"$info" >/dev/null; echo $?)" \
	"vm info: the process runs unprivileged, the VM is confined"
r=$(nobody_open "$LVCG_QEMU_A/emulator" "$T/pub/dri")
ok "$([[ $r == EPERM ]]; echo $?)" "a device VM 61 may not use (226:5) is refused in libvirt's emulator cgroup: $r"
r=$(nobody_open "$LVCG_QEMU_A/vcpu0" "$T/pub/dri")
ok "$([[ $r == EPERM ]]; echo $?)" "... and in its vcpu0 cgroup: $r"

# The domain's QEMU taken over: a stand-in in libvirt's emulator cgroup,
# as its user, tries its way out.
bpfid() { bpftool -j "$@" 2>/dev/null | jq -r '.id // empty'; }
in_cgroup "$LVCG_QEMU_A/emulator" ESC "$BUILD/tests/qemu/tool_escape" \
	--dev-denied "$T/pub/dri" --cgroup-root "$CG2" --own-cgroup "$LVCG_QEMU_A/emulator" \
	--other-cgroup "$CG2/machine.slice" --control "$T/run/control.sock" \
	--pin "$PIN/rayos_vms" --map-id "$(bpfid map show pinned "$PIN/rayos_vms")" \
	--link-id "$(bpfid link show pinned "$PIN/links/vm61_dev")" \
	--agent-pid "$AGENT_PID" >"$T/escape.out" 2>&1
wait_for 20 grep -q '^DONE' "$T/escape.out"
ok $? "the stand-in ran its attempts ($(grep -c '^ESCAPE' "$T/escape.out") of them)" ||
	sed 's/^/#   /' "$T/escape.out"
for a in dev-open-before cgroup-move-root cgroup-move-other cgroup-mkdir cgroup-clone-into \
	 bpf-prog-list bpf-map-update bpf-link-detach bpf-obj-get control-socket agent-ptrace \
	 dev-open-after; do
	l=$(grep "^ESCAPE $a " "$T/escape.out")
	ok "$([[ $l == "ESCAPE $a refused "* ]]; echo $?)" "libvirt-like QEMU: ${l:-no line for $a}"
done
ok "$(! grep -q ' SUCCEEDED ' "$T/escape.out"; echo $?)" \
	"no attempt succeeded ($(grep ' SUCCEEDED ' "$T/escape.out" | cut -d' ' -f2 | tr '\n' ' '))"
hook lv-web reconnect "$TAPA" 52:54:00:00:61:01
ok "$rc" "reconnect (libvirtd restarted) re-registers and succeeds ($err)"
check "VM 61 is still enforced on $TAPA after reconnect" -- registered_on 61 "$TAPA"
hook lv-web stopped "$TAPA" 52:54:00:00:61:01
ok "$rc" "stopped unregisters and succeeds ($err)"
out=$(agent vm unregister 61 2>&1)
ok "$([[ $out == *"not registered"* ]]; echo $?)" "VM 61 is no longer registered ($out)"
ok "$([[ -d $LVCG_QEMU_A && $CG2$(cgroup_of "$QEMU_A") == "$LVCG_QEMU_A/emulator" ]]; echo $?)" \
	"libvirt's cgroup is left as it was, QEMU still in it"
ok "$(agent device list 61 | jq -e '.vms.vms[0].cgroup_id == 0' >/dev/null; echo $?)" \
	"the device program is detached from it"
hook lv-web release "$TAPA" 52:54:00:00:61:01
ok "$([[ $rc == 0 && -z $err ]]; echo $?)" "release after stopped succeeds quietly ('$err')"

# ---- by metadata -------------------------------------------------------------
META="<rayos:vm xmlns:rayos='https://rayos.example/xmlns/vm/1' id='62'/>"
libvirt_qemu some-domain QEMU_B sleep 300 || exit 1
echo "$QEMU_B" >"$LV/some-domain.pid"
hook some-domain started "$TAPB" 52:54:00:00:62:01 "$META"
ok "$rc" "started registers a domain claimed by <rayos:vm id='62'/> ($err)"
check "VM 62 is enforced on $TAPB" -- registered_on 62 "$TAPB"
kill -9 "$QEMU_B"; wait "$QEMU_B" 2>/dev/null
wait_for 5 bash -c "[[ \$('$AGENT' vm unregister 62 --run-dir '$T/run' 2>&1) == *'not registered'* ]]"
ok $? "when the domain's QEMU dies the agent unregisters VM 62 by itself"
hook some-domain stopped "$TAPB" 52:54:00:00:62:01 "$META"
ok "$([[ $rc == 0 && -z $err ]]; echo $?)" "stopped after the agent already unregistered: success, no noise ('$err')"

# ---- not RayOS VMs, refusals ---------------------------------------------------
before=$(agent vm list --json | jq -c '[.vms[] | {id, ifindex}]')
for op in prepare start started reconnect stopped release migrate; do
	hook stranger "$op" "$TAPB" 52:54:00:00:99:01
	[[ $rc == 0 ]] || break
done
ok "$rc" "a domain that is not a RayOS VM passes every operation ($op: $err)"
ok "$([[ $(agent vm list --json | jq -c '[.vms[] | {id, ifindex}]') == "$before" ]]; echo $?)" \
	"... and registers nothing"
BAD="<rayos:vm xmlns:rayos='https://rayos.example/xmlns/vm/1' id='999'/>"
hook claimed prepare "$TAPB" 52:54:00:00:99:01 "$BAD"
ok "$([[ $rc != 0 && $err == *"unknown VM 999"* ]]; echo $?)" \
	"prepare refuses a domain claiming a VM the policy does not have ($err)"
hook claimed reconnect "$TAPB" 52:54:00:00:99:01 "$BAD"
ok "$rc" "reconnect of that domain still succeeds (libvirtd would kill it)"
hook claimed prepare "$TAPB" 52:54:00:00:99:01 "<rayos:vm id='x'/>"
ok "$([[ $rc != 0 && $err == *"not a VM id"* ]]; echo $?)" "a malformed <rayos:vm id> is refused ($err)"
rm -f "$LV/lv-web.pid"
hook lv-web started "$TAPA" 52:54:00:00:61:01
ok "$([[ $rc != 0 && $err == *"lv-web.pid"* ]]; echo $?)" "started without a pid file fails, naming it ($err)"
hook lv-web reconnect "$TAPA" 52:54:00:00:61:01
ok "$([[ $rc == 0 && $err == *"lv-web.pid"* ]]; echo $?)" "reconnect without a pid file logs it and succeeds"

# ---- no agent ----------------------------------------------------------------
HOOK_RUN_DIR=$T/nonexistent
echo "$QEMU_A" >"$LV/lv-web.pid"
for op in reconnect stopped release; do
	hook lv-web "$op" "$TAPA" 52:54:00:00:61:01
	[[ $rc == 0 ]] || break
done
ok "$rc" "with no agent, reconnect/stopped/release still succeed ($op: $err)"
hook some-domain started "$TAPB" 52:54:00:00:62:01 "$META"
ok "$([[ $rc != 0 && $err == *"no rayos-agent is running"* ]]; echo $?)" \
	"with no agent, a domain claimed by metadata does not start ($err)"
hook lv-web prepare "$TAPA" 52:54:00:00:61:01
ok "$([[ $rc == 0 && $err == *"cannot tell"* ]]; echo $?)" \
	"with no agent, a domain matched only by name starts with a warning ($err)"
unset HOOK_RUN_DIR

tap_done
