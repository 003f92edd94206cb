#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A VM's process registered with the agent: it lands in the VM's cgroup under
# the device program (EPERM for a device the policy denies, ENXIO/ENODEV for
# one it allows on a node whose driver is absent), cap grant/revoke change
# that at the next open and are audited, the launch is measured, and when the
# process exits the agent unregisters the VM and removes its cgroup, also
# after an agent restart in between.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "VM lifecycle"
need_cmds "VM lifecycle" python3 jq
agent_env

CG2=$(cgroup2_mount)
if [[ -z $CG2 ]]; then
	skip "no cgroup v2 mount" "VM lifecycle"
	tap_done; exit 0
fi
on_exit "rmdir '$CG2/rayos/vm9' 2>/dev/null"

cat >"$T/policies/p.json" <<EOF
{ "version": 1,
  "vms": [ { "id": 9, "name": "nine", "capabilities": ["CAP_NETWORK", "CAP_CONSOLE"] } ] }
EOF
# Nodes for drivers this machine lacks: the cgroup decides before the driver.
mknod "$T/dri" c 226 77 && mknod "$T/tun" c 10 200 || exit 1

# open_in_cgroup NODE: errno name of open(NODE) by a process in VM 9's cgroup
open_in_cgroup() {
	python3 - "$CG2/rayos/vm9/cgroup.procs" "$1" <<'EOF'
import errno, os, sys
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
try:
    os.close(os.open(sys.argv[2], os.O_RDWR))
    print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
}
allowed() { [[ $1 == ENXIO || $1 == ENODEV || $1 == OK ]]; }

check "agent starts" -- agent_start
spawn QEMU sleep 300
out=$(agent vm register 9 --pid "$QEMU" --json 2>&1)
ok $? "vm register 9 --pid $QEMU ($out)"
check "the process is in the VM's cgroup" -- grep -q "rayos/vm9$" "/proc/$QEMU/cgroup"
check "the device link is pinned" -- test -e "$PIN/links/vm9_dev"

r=$(open_in_cgroup "$T/dri")
ok "$([[ $r == EPERM ]]; echo $?)" "a GPU node (226:77) without CAP_GPU: $r (want EPERM)"
r=$(open_in_cgroup "$T/tun")
ok "$(allowed "$r"; echo $?)" "/dev/net/tun (10:200) with CAP_NETWORK: $r (allowed: the driver answers)"

agent cap grant 9 CAP_GPU >/dev/null
ok $? "cap grant 9 CAP_GPU"
r=$(open_in_cgroup "$T/dri")
ok "$(allowed "$r"; echo $?)" "after the grant the GPU node opens past the cgroup: $r"
agent cap revoke 9 CAP_GPU >/dev/null
r=$(open_in_cgroup "$T/dri")
ok "$([[ $r == EPERM ]]; echo $?)" "after the revoke it is EPERM again: $r"
check "grant and revoke are in the audit log" -- \
	bash -c "grep -c CAP_GPU '$T/state/audit.log' | grep -qx 2"
out=$(agent cap grant 9 CAP_FLY 2>&1)
ok "$([[ $? == 1 && $out == *CAP_FLY* ]]; echo $?)" "an unknown capability is refused by name"
out=$(agent vm register 9 --pid 999999999 2>&1)
ok "$([[ $? != 0 ]]; echo $?)" "registering a process that does not exist is refused ($out)"

check "vm info names the VM" -- \
	bash -c "'$AGENT' vm info 9 --run-dir '$T/run' | jq -e '.name == \"nine\"' >/dev/null"
check "device list shows VM 9" -- \
	bash -c "'$AGENT' device list 9 --run-dir '$T/run' | jq -e '.vms' >/dev/null"
check "status reports the device enforcement points" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '[.enforcement[] | select(.point == \"device.cgroup\" and .state == \"active\")] | length == 1' >/dev/null"
check "syscall statistics are off by default and status says how to turn them on" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.enforcement[] | select(.point == \"device.syscall_stats\") | .state == \"unavailable\" and (.detail | test(\"--device-stats\"))' >/dev/null"
check "status says why the LSM point is or is not active" -- \
	bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.enforcement[] | select(.point == \"device.lsm\") | .detail | length > 0' >/dev/null"

tpm_state=$(agent status --json | jq -r .tpm.state)
if [[ $tpm_state == ready ]]; then
	wait_for 10 bash -c "'$AGENT' tpm vm-snapshot 9 --run-dir '$T/run' >/dev/null 2>&1"
	ok $? "the launch of VM 9 is measured (tpm vm-snapshot 9)"
else
	skip "TPM state is $tpm_state" "the launch of VM 9 is measured"
fi

# The agent restarts while the VM runs: it watches the process again.
agent stop >/dev/null; wait "$AGENT_PID" 2>/dev/null
check "agent restarts with VM 9 registered" -- agent_start
kill "$QEMU"
wait_for 5 bash -c "! jq -e '.registrations[] | select(.id == 9)' '$T/state/registrations.json' >/dev/null 2>&1"
ok $? "when the process exits the VM is unregistered (after a restart)"
wait_for 5 test ! -e "$CG2/rayos/vm9"
ok $? "... and its cgroup is removed"
check "... and its device link is gone" -- test ! -e "$PIN/links/vm9_dev"

# Unregistering a VM whose process still runs takes the process out of RayOS.
spawn QEMU2 sleep 300
agent vm register 9 --pid "$QEMU2" >/dev/null
ok $? "VM 9 registered again with another process"
agent vm unregister 9 >/dev/null
ok $? "vm unregister 9 while its process runs"
check "... the process left the VM's cgroup" -- bash -c "! grep -q 'rayos/vm9$' /proc/$QEMU2/cgroup"
check "... and the cgroup is gone" -- test ! -e "$CG2/rayos/vm9"

tap_done
