#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Control socket under busy clients: latency of `status` (the CLI's own
# client code, connect to reply) with no other client as the baseline, then
# with 500 idle clients from 50 processes (all kept), 2000 idle clients
# (the agent keeps 1024 and closes the quietest), and 500 or 1500 clients
# in 500 processes that reconnect as soon as they are closed (1500: the
# agent closes one for every connect).  p50/p99/max of N calls each, same
# run, same agent.  Figures only: nothing passes or fails on a timing.
#   tests/control/bench_control.sh [CALLS]
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
CALLS=${1:-1000}
need_root "control benchmark"
need_cmds "control benchmark" jq
TOOL=$BUILD/tests/control/tool_ctl_clients
[[ -x $TOOL ]] || { skip "build $TOOL first (make)" "control benchmark"; tap_done; exit 0; }
agent_env
echo '{ "version": 1 }' >"$T/policies/p.json"
agent_start --no-tpm || exit 1

printf '# %-44s %9s %9s %9s %7s\n' "status calls ($CALLS each)" p50_ms p99_ms max_ms failed
for args in "--idle 0" "--idle 500 --procs 50" "--idle 2000 --procs 100" \
	    "--idle 500 --procs 500 --reconnect" "--idle 1500 --procs 500 --reconnect"; do
	# shellcheck disable=SC2086
	r=$("$TOOL" "$T/run/control.sock" $args --calls "$CALLS")
	printf '# %-44s %9s %9s %9s %7s\n' "$args (held $(jq .held <<<"$r"))" \
		"$(jq .p50_ms <<<"$r")" "$(jq .p99_ms <<<"$r")" "$(jq .max_ms <<<"$r")" \
		"$(jq .failed <<<"$r")"
done
tap_done
