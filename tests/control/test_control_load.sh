#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Busy clients never lock out the control socket: with 500 idle clients
# connected (50 processes), with 2000 (more than the agent keeps: the
# quietest are closed to make room), with one process holding 500 (its own
# oldest go first), and with 500 processes that reconnect as soon as they
# are closed, every `status` call answers; non-root clients are refused
# before they count.  The latency figures are printed here (a generous
# bound only guards against a lock-out) and measured in
# tests/control/bench_control.sh.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "control socket under load"
need_cmds "control socket under load" jq
TOOL=$BUILD/tests/control/tool_ctl_clients
[[ -x $TOOL ]] || { skip "build $TOOL first (make)" "control socket under load"; tap_done; exit 0; }
agent_env
echo '{ "version": 1 }' >"$T/policies/p.json"
check "agent starts" -- agent_start
SOCK=$T/run/control.sock

# run NAME ARGS...: the tool's JSON line in $R
run() {
	R=$("$TOOL" "$SOCK" "$@" 2>&1)
	diag "$*: $R"
}
answered() {	# every call answered, the slowest under 2 s (a lock-out guard, not a figure)
	jq -e --argjson n "$1" '.ok == $n and .failed == 0 and .max_ms < 2000' <<<"$R" >/dev/null
}

run --idle 500 --procs 50 --calls 200
ok "$(answered 200; echo $?)" "500 idle clients (50 processes): 200 of 200 status calls answered"
ok "$(jq -e '.held == 500' <<<"$R" >/dev/null; echo $?)" "  ...while all 500 stay connected"
p99=$(jq .p99_ms <<<"$R")

run --idle 2000 --procs 100 --calls 100
ok "$(answered 100; echo $?)" "2000 idle clients: every status call answered"
ok "$(jq -e '.held <= 1024 and .held >= 900' <<<"$R" >/dev/null; echo $?)" \
	"  ...the agent keeps at most 1024 of them ($(jq .held <<<"$R") held)"
check "status counts the connections closed to make room" -- bash -c \
	"'$AGENT' status --json --run-dir '$T/run' | jq -e '.control.evicted_idle >= 900' >/dev/null"

run --idle 500 --procs 1 --calls 50
ok "$(answered 50; echo $?)" "one process holding 500: every status call answered"
ok "$(jq -e '.held == 64' <<<"$R" >/dev/null; echo $?)" "  ...it keeps 64 (the per-client limit)"

run --idle 500 --procs 500 --reconnect --calls 100
ok "$(answered 100; echo $?)" "500 processes reconnecting as soon as they are closed: every status call answered"

if id nobody >/dev/null 2>&1 && command -v setpriv >/dev/null; then
	# The socket is 0600 in a 0700 directory; open both up for a moment so
	# that the second guard, SO_PEERCRED at accept, is what answers.
	before=$("$AGENT" status --json --run-dir "$T/run" | jq .control.refused_not_root)
	chmod 0711 "$T" "$T/run"; chmod 0666 "$SOCK"
	for i in 1 2 3; do
		out=$(setpriv --reuid=nobody --regid=nogroup --clear-groups "$AGENT" status \
			--run-dir "$T/run" 2>&1) && break
	done
	chmod 0600 "$SOCK"; chmod 0700 "$T/run" "$T"
	after=$("$AGENT" status --json --run-dir "$T/run" | jq .control.refused_not_root)
	ok "$((after == before + 3 ? 0 : 1))" \
		"non-root clients reaching the socket are refused at accept and counted ($before -> $after: $out)"
else
	skip "no nobody user or setpriv" "non-root clients are refused at accept"
fi
n=$(grep -c "control: closed" "$T/agent.log")
ok "$((n <= 8 ? 0 : 1))" "evictions are summed up in the log, not one line each ($n lines)"
check "the agent still answers afterwards" -- bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e .ok >/dev/null"
diag "status p99 with 500 idle clients: $p99 ms (figures: tests/control/bench_control.sh)"
tap_done
