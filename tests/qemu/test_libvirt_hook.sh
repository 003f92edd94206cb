#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The libvirt QEMU hook (qemu-hooks/rayos-libvirt-hook.c) against the real agent,
# fed domain XML the way libvirtd does (no libvirt needed): a domain that is
# a RayOS VM by name and one by <rayos:vm id=.../> metadata get registered
# with their "QEMU" pid (a sleep) and tap on started/reconnect and
# unregistered on stopped/release; other domains are left alone; reconnect,
# stopped and release never fail, even with no agent; prepare and started
# fail for a domain claiming a VM the agent does not know.
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
spawn QEMU_A sleep 300
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
ok "$([[ $cg == */rayos/vm61 ]]; echo $?)" "the domain's QEMU pid is in VM 61's cgroup ($cg)"
hook lv-web reconnect "$TAPA" 52:54:00:00:61:01
ok "$rc" "reconnect (libvirtd restarted) re-registers and succeeds ($err)"
check "VM 61 is still enforced on $TAPA after reconnect" -- registered_on 61 "$TAPA"
hook lv-web stopped "$TAPA" 52:54:00:00:61:01
ok "$rc" "stopped unregisters and succeeds ($err)"
out=$(agent vm unregister 61 2>&1)
ok "$([[ $out == *"not registered"* ]]; echo $?)" "VM 61 is no longer registered ($out)"
hook lv-web release "$TAPA" 52:54:00:00:61:01
ok "$([[ $rc == 0 && -z $err ]]; echo $?)" "release after stopped succeeds quietly ('$err')"

# ---- by metadata -------------------------------------------------------------
META="<rayos:vm xmlns:rayos='https://rayos.example/xmlns/vm/1' id='62'/>"
spawn QEMU_B sleep 300
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
