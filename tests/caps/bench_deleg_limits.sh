#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# What the limits a delegate takes from its giver cost, on 4096 VMs.  The
# agent's own figure for each publish (its log: compile, entries, maps;
# not the CLI's process start) for:
#   - baseline: `cap fine-grain` of a giver with no delegates (1 VM), and a
#     `policy reload` with no delegation links;
#   - `cap delegate` from a limited giver (the delegate published with the
#     giver's limits before the link);
#   - `cap fine-grain` of a giver with DELEGATES delegates (they all switch
#     with it, one publish);
#   - `policy reload` with DELEGATES links (every VM's limits computed
#     through the link index);
#   - `cap undelegate` (the delegate's limits lifted at once).
# p50/p99/max over ROUNDS (delegations: over DELEGATES).  Figures only.
#   tests/caps/bench_deleg_limits.sh [ROUNDS] [DELEGATES] [VMS]
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
ROUNDS=${1:-20} NDEL=${2:-100} NVMS=${3:-4096}
need_root "delegated limits benchmark"
need_cmds "delegated limits benchmark" jq python3

agent_env
G=20000
python3 - "$NVMS" "$G" >"$T/policies/many.json" <<'EOF'
import json, sys
n, g = int(sys.argv[1]), int(sys.argv[2])
vms = [{"id": g, "name": "giver", "capabilities": ["CAP_ADMIN", "CAP_NETWORK"]}]
vms += [{"id": g + i, "name": f"vm{i}", "capabilities": []} for i in range(1, n)]
print(json.dumps({"version": 1, "vms": vms}))
EOF
agent_start --no-tpm || exit 1
wait_for 30 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq '.vms | length') == $NVMS ))" ||
	{ diag "the agent did not publish $NVMS VMs"; tap_done; exit 1; }

# applied BY: the ms of the agent's publishes by BY since the last call.
LOGPOS=0
applied() {
	local by=$1
	tail -c +$((LOGPOS + 1)) "$T/agent.log" |
		sed -n "s/.*applied ($by[:,)].* \([0-9.]*\) ms$/\1/p"
	LOGPOS=$(stat -c %s "$T/agent.log")
}
reloads() {	# reloads N: apply_ms of N forced reloads
	local i
	for ((i = 0; i < $1; i++)); do
		agent policy reload >/dev/null
		agent status --json | jq .policy.apply_ms
	done
}
applied x >/dev/null

# The first reloads after a start cost 90-170 ms, later ones ~15 (also
# before delegation existed): warm up, so that both reload rows compare.
reloads 8 >/dev/null
mapfile -t RELOAD0 < <(reloads "$ROUNDS")
for ((i = 0; i < ROUNDS; i++)); do
	agent cap fine-grain "$G" CAP_NETWORK --allow-ports $(( i % 2 ? 443 : 80 )),8443 >/dev/null
done
mapfile -t FINE0 < <(applied "cap fine-grain")

for ((i = 1; i <= NDEL; i++)); do
	agent cap delegate "$G" $((G + i)) CAP_NETWORK >/dev/null || diag "delegate $((G + i)) failed"
done
mapfile -t DELEG < <(applied "cap delegate")
n=$(agent cap list $((G + NDEL)) --json | jq -r '.limits.CAP_NETWORK.from_delegation.from')
ok "$([[ $n == "$G" ]]; echo $?)" "VM $((G + NDEL)) holds CAP_NETWORK under $G's limits"

for ((i = 0; i < ROUNDS; i++)); do
	out=$(agent cap fine-grain "$G" CAP_NETWORK --allow-ports $(( i % 2 ? 22 : 23 )),8443 --json)
done
ok "$(jq -e --argjson n "$NDEL" '.delegates_changed == $n' <<<"$out" >/dev/null; echo $?)" \
	"a giver's new limit re-limits its $NDEL delegates ($(jq .delegates_changed <<<"$out"))"
mapfile -t FINEN < <(applied "cap fine-grain: $((NDEL + 1)) VMs")
mapfile -t RELOADN < <(reloads "$ROUNDS")
applied x >/dev/null
for ((i = 1; i <= NDEL; i++)); do
	agent cap undelegate "$G" $((G + i)) CAP_NETWORK >/dev/null
done
mapfile -t UNDEL < <(applied "delegation ended")

stats() {	# stats VALUES...: p50 p99 max
	python3 - "$@" <<'EOF'
import sys
v = sorted(float(x) for x in sys.argv[1:])
if not v: print("-", "-", "-"); sys.exit()
q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
print(f"{q(0.5):.2f} {q(0.99):.2f} {v[-1]:.2f}")
EOF
}
row() { printf '# %-60s %4s %8s %8s %8s\n' "$1" "$2" $(stats "${@:3}"); }
printf '# %-60s %4s %8s %8s %8s\n' "$NVMS VMs, in the agent, ms" n p50 p99 max
row "baseline: cap fine-grain, giver without delegates (1 VM)" "${#FINE0[@]}" "${FINE0[@]}"
row "baseline: policy reload, no links" "${#RELOAD0[@]}" "${RELOAD0[@]}"
row "cap delegate from a limited giver (1 VM published)" "${#DELEG[@]}" "${DELEG[@]}"
row "cap fine-grain, giver with $NDEL delegates ($((NDEL + 1)) VMs)" "${#FINEN[@]}" "${FINEN[@]}"
row "policy reload, $NDEL links" "${#RELOADN[@]}" "${RELOADN[@]}"
row "cap undelegate, limits lifted (1 VM published)" "${#UNDEL[@]}" "${UNDEL[@]}"
tap_done
