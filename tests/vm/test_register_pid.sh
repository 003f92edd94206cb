#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# `vm register --pid` moves the process with every descendant it has (the
# children it forked before it was registered, wherever they were), a
# thread id stands for its process, and what cannot be registered is
# refused with nothing moved: pid 1, the agent's own ancestors (it would
# land in the VM's cgroup), a VM cgroup someone else owns.  A root process
# gets a warning at registration, and `status` shows that it can leave its
# cgroup; when it does, `vm info` says the device program no longer holds
# it.  An unprivileged process is confined without a warning.  When the
# registered process exits, what it left in the VM's cgroup is killed,
# never let out.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "vm register --pid"
need_cmds "vm register --pid" jq setpriv
agent_env
CG2=$(cgroup2_mount)
if [[ -z $CG2 ]]; then
	skip "no cgroup v2 mount" "vm register --pid"
	tap_done; exit 0
fi
on_exit "rmdir '$CG2/rayos/vm1210' '$CG2/rayos/vm1211' '$CG2/rayos/vm1212' '$CG2/rayos/vm1213' '$CG2/rayos/vm1214' 2>/dev/null"
on_exit "sleep 0.3"
cat >"$T/policies/p.json" <<EOF
{ "version": 1, "vms": [
  { "id": 1210, "name": "root-tree" }, { "id": 1211, "name": "nobody-tree" },
  { "id": 1212, "name": "threads" }, { "id": 1213, "name": "refusals" },
  { "id": 1214, "name": "leftovers" } ] }
EOF
check "agent starts" -- agent_start || { tap_done; exit 1; }
cg_of() { grep '^0::' "/proc/$1/cgroup" | cut -d: -f3; }
kids() { cat /proc/"$1"/task/*/children 2>/dev/null | xargs; }
# Every process started here writes nowhere (tests/run reads our output to
# its end) and is killed at exit, children included.
later_kill() { on_exit "kill -9 $*"; }

# ---- a root process and the children it forked before registration ----------
mkdir "$CG2/rayos-t$$" && on_exit "rmdir '$CG2/rayos-t$$'"
spawn P sh -c 'sleep 300 & sleep 300 & exec sleep 300' >/dev/null 2>&1
wait_for 5 bash -c "[[ \$(cat /proc/$P/task/*/children | wc -w) == 2 ]]"
read -r c1 c2 <<<"$(kids "$P")"
later_kill "$c1" "$c2"
echo "$c2" >"$CG2/rayos-t$$/cgroup.procs"	# one child somewhere else entirely
out=$(agent vm register 1210 --pid "$P" --json 2>"$T/err"); rc=$?
ok "$rc" "vm register 1210 --pid $P (a root sh with two children)"
ok "$(jq -e '.processes_moved == 3' <<<"$out" >/dev/null; echo $?)" \
	"three processes moved ($(jq -c '.processes_moved' <<<"$out"))"
for p in "$P" "$c1" "$c2"; do
	ok "$([[ $(cg_of "$p") == /rayos/vm1210 ]]; echo $?)" "pid $p is in VM 1210's cgroup ($(cg_of "$p"))"
done
ok "$(grep -q 'warning: VM 1210: process .* runs as root.*can leave its cgroup' "$T/err"; echo $?)" \
	"the CLI warns that a root process can leave its cgroup ($(head -c 160 "$T/err"))"
ok "$(jq -e '.warnings | length == 1' <<<"$out" >/dev/null; echo $?)" "... and the reply carries the warning"
st=$(agent status --json | jq -c '.vms[] | select(.id == 1210) | .confinement')
ok "$(jq -e '.state == "degraded" and (.points[] | select(.point == "process.unprivileged") | .state == "missing")' <<<"$st" >/dev/null; echo $?)" \
	"status: VM 1210 degraded, process.unprivileged missing"
ok "$(agent status | grep -A3 '^  1210 ' | grep -q 'warning: process.unprivileged: process .* runs as root'; echo $?)" \
	"status (text) prints the warning under VM 1210"
# What the warning is about: root writes itself out of the cgroup.
echo "$c1" >"$CG2/cgroup.procs"
info=$(agent vm info 1210 | jq -c .confinement)
ok "$(jq -e '.points[] | select(.point == "device.cgroup") | .state == "active"' <<<"$info" >/dev/null; echo $?)" \
	"a child leaving says nothing of the registered process itself"
echo "$P" >"$CG2/cgroup.procs"
info=$(agent vm info 1210 | jq -c .confinement)
ok "$(jq -e '.points[] | select(.point == "device.cgroup") | .state == "missing" and (.detail | test("left its cgroup"))' <<<"$info" >/dev/null; echo $?)" \
	"when the root process has left, vm info says so ($(jq -r '.points[] | select(.point == "device.cgroup") | .detail' <<<"$info"))"
agent vm unregister 1210 >/dev/null

# ---- an unprivileged process: confined, no warning ---------------------------
spawn Q setpriv --reuid nobody --regid nogroup --clear-groups --bounding-set=-all \
	--no-new-privs sh -c 'sleep 300 & exec sleep 300' >/dev/null 2>&1
wait_for 5 bash -c "[[ -n \$(cat /proc/$Q/task/*/children) ]]"
qc=$(kids "$Q")
later_kill "$qc"
out=$(agent vm register 1211 --pid "$Q" --json 2>"$T/err"); rc=$?
ok "$([[ $rc == 0 && ! -s $T/err ]] && jq -e '.warnings == [] and .processes_moved == 2' <<<"$out" >/dev/null; echo $?)" \
	"an unprivileged process and its child: registered, 2 moved, no warning"
ok "$([[ $(cg_of "$Q") == /rayos/vm1211 && $(cg_of "$qc") == /rayos/vm1211 ]]; echo $?)" \
	"both are in VM 1211's cgroup"
info=$(agent vm info 1211 | jq -c .confinement)
ok "$(jq -e '.state == "confined" and (.points[] | select(.point == "cgroup.sealed") | .state == "active")' <<<"$info" >/dev/null; echo $?)" \
	"vm info: confined, its cgroup sealed"
ok "$(! setpriv --reuid nobody --regid nogroup --clear-groups sh -c "echo $Q >'$CG2/cgroup.procs'" 2>/dev/null; echo $?)" \
	"nobody cannot write it out of the cgroup"

# ---- a thread id stands for its process --------------------------------------
spawn R python3 -c 'import threading, time; threading.Thread(target=time.sleep, args=(300,)).start(); time.sleep(300)' >/dev/null 2>&1
wait_for 5 bash -c "[[ \$(ls /proc/$R/task | wc -l) -ge 2 ]]"
tid=$(ls "/proc/$R/task" | grep -vx "$R" | head -1)
out=$(agent vm register 1212 --pid "$tid" --json 2>/dev/null)
ok "$([[ $(cg_of "$R") == /rayos/vm1212 ]] && jq -e '.ok' <<<"$out" >/dev/null; echo $?)" \
	"registering thread $tid moves its process $R"

# ---- refusals change nothing -----------------------------------------------
before=$(cg_of $$)
out=$(agent vm register 1213 --pid $$ 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"the agent"*"descendant"* || $out == *"is the agent"*"ancestors"* ]]; echo $?)" \
	"the agent's own ancestor (this test, pid $$) is refused ($out)"
ok "$([[ $(cg_of $$) == "$before" && $(cg_of "$AGENT_PID") == "$before" ]]; echo $?)" \
	"... and neither it nor the agent moved"
out=$(agent vm register 1213 --pid 1 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"process 1 is init"* ]]; echo $?)" "pid 1 is refused ($out)"
out=$(agent vm register 1213 --pid 999999999 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"does not exist"* ]]; echo $?)" "a pid that does not exist is refused"
out=$(agent vm register 1213 --pid "$Q" --keep-cgroup 2>&1); rc=$?
ok "$([[ $rc == 0 ]]; echo $?)" "--keep-cgroup attaches to the cgroup the process is in"
agent vm unregister 1213 >/dev/null
spawn S sleep 300 >/dev/null 2>&1
out=$(agent vm register 1213 --pid "$S" --keep-cgroup 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"root cgroup"* ]]; echo $?)" \
	"--keep-cgroup for a process in the root cgroup is refused ($out)"
mkdir "$CG2/rayos/vm1213" 2>/dev/null
chown nobody "$CG2/rayos/vm1213/cgroup.procs"
out=$(agent vm register 1213 --pid "$S" 2>&1); rc=$?
ok "$([[ $rc != 0 && $out == *"not owned by root"* ]]; echo $?)" \
	"a VM cgroup whose cgroup.procs someone else owns is refused ($out)"
ok "$([[ $(cg_of "$S") == / || $(cg_of "$S") == "$before" ]]; echo $?)" "... and the process was not moved"
chown root "$CG2/rayos/vm1213/cgroup.procs"

# ---- the registered process exits: what it left is killed --------------------
spawn L sh -c 'setsid sleep 300 & exec sleep 300' >/dev/null 2>&1
wait_for 5 bash -c "[[ -n \$(cat /proc/$L/task/*/children) ]]"
left=$(kids "$L")
later_kill "$left"
agent vm register 1214 --pid "$L" >/dev/null 2>&1
ok "$([[ $(cg_of "$left") == /rayos/vm1214 ]]; echo $?)" "the child $left was moved with its parent"
kill "$L"
wait_for 5 bash -c "! kill -0 $left 2>/dev/null"
ok $? "when the VM's process exits, the child it left in the cgroup is killed"
wait_for 5 test ! -e "$CG2/rayos/vm1214"
ok $? "... and the VM's cgroup is gone"
ok "$(! grep -q "$left" "$CG2/cgroup.procs"; echo $?)" "... the child was never let out into the root cgroup"

tap_done
