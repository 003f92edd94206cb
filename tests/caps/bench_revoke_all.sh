#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# `cap revoke-all` over 4096 VMs, each holding all its capabilities: how
# long from the request's arrival to the switch's store that puts the
# revoke in force for every VM (the agent's "enforced_ms"), the whole
# request (audit record, registry, records, settle: "total_ms") and the
# CLI's round trip; the baseline, same run and agent, is revoke-all of one
# VM and a plain `cap revoke` of one capability.  Each round starts from a
# fresh agent (pins purged) so every VM holds its capabilities again.
# p50/p99/max of ROUNDS rounds.  Figures only: nothing fails on a timing.
#   tests/caps/bench_revoke_all.sh [ROUNDS] [VMS]
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
ROUNDS=${1:-12} NVMS=${2:-4096}
need_root "revoke-all benchmark"
need_cmds "revoke-all benchmark" jq python3 bpftool

agent_env
python3 - "$NVMS" >"$T/policies/many.json" <<'EOF'
import json, sys
n = int(sys.argv[1])
caps = ["CAP_NETWORK", "CAP_DISK_READ", "CAP_DISK_WRITE", "CAP_GPU", "CAP_INPUT",
        "CAP_CONSOLE", "CAP_ADMIN"]
print(json.dumps({"version": 1, "groups": {"all": {"capabilities": caps}},
                  "vms": [{"id": 20000 + i, "name": f"vm{i}", "group": "all"}
                          for i in range(n)]}))
EOF

ms_now() { date +%s%N; }
declare -a STATUS ONE_REV ONE_ALL ALL_ENF ALL_TOT ALL_RT
for ((r = 0; r < ROUNDS; r++)); do
	agent_start --no-tpm ${BENCH_VERBOSE:+--verbose} || exit 1
	wait_for 20 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq '.vms | length') == $NVMS ))" ||
		{ diag "the agent did not publish $NVMS VMs"; break; }
	t0=$(ms_now); agent status >/dev/null; t1=$(ms_now)
	STATUS+=("$(( (t1 - t0) / 1000 ))")
	t0=$(ms_now); agent cap revoke 20000 CAP_GPU >/dev/null; t1=$(ms_now)
	ONE_REV+=("$(( (t1 - t0) / 1000 ))")
	one=$(agent cap revoke-all --vm 20001 --json)
	ONE_ALL+=("$(jq .enforced_ms <<<"$one")")
	t0=$(ms_now); all=$(agent cap revoke-all --json); t1=$(ms_now)
	ALL_ENF+=("$(jq .enforced_ms <<<"$all")")
	ALL_TOT+=("$(jq .total_ms <<<"$all")")
	ALL_RT+=("$(( (t1 - t0) / 1000 ))")
	(( r == 0 )) && {
		n=$(jq .revoked_vms <<<"$all")
		ok "$((n >= NVMS - 2 ? 0 : 1))" "round 1: revoke-all took capabilities from $n of $NVMS VMs"
		caps=$(bpftool -j map lookup pinned "$PIN/rayos_vms" key $(printf '%d %d %d %d' $((20999 & 255)) $((20999 >> 8 & 255)) 0 0) | jq .formatted.value.caps)
		ok "$((caps == 0 ? 0 : 1))" "round 1: VM 20999's record holds nothing afterwards (caps $caps)"
	}
	[[ -n ${BENCH_VERBOSE:-} ]] && grep "revoke-all" "$T/agent.log" | sed "s/^/# /" | tail -4
	"$AGENT" stop --purge --run-dir "$T/run" --pin-root "$PIN" >/dev/null 2>&1
	wait "$AGENT_PID" 2>/dev/null
	rm -f "$T/state/registrations.json" "$T/state/audit.log"
done

stats() {	# stats SCALE VALUES...: p50 p99 max (values / SCALE)
	python3 - "$@" <<'EOF'
import sys
s = float(sys.argv[1]); v = sorted(float(x) / s for x in sys.argv[2:])
if not v: print("-", "-", "-"); sys.exit()
q = lambda p: v[min(len(v) - 1, int(round(p * (len(v) - 1))))]
print(f"{q(0.5):.3f} {q(0.99):.3f} {v[-1]:.3f}")
EOF
}
printf '# %-52s %8s %8s %8s\n' "$ROUNDS rounds, ms" p50 p99 max
printf '# %-52s %8s %8s %8s\n' "baseline: status, CLI round trip" $(stats 1000 "${STATUS[@]}")
printf '# %-52s %8s %8s %8s\n' "baseline: cap revoke (1 VM, 1 cap), CLI round trip" $(stats 1000 "${ONE_REV[@]}")
printf '# %-52s %8s %8s %8s\n' "baseline: revoke-all --vm (1 VM), enforced" $(stats 1 "${ONE_ALL[@]}")
printf '# %-52s %8s %8s %8s\n' "revoke-all ($NVMS VMs), enforced" $(stats 1 "${ALL_ENF[@]}")
printf '# %-52s %8s %8s %8s\n' "revoke-all ($NVMS VMs), whole request in the agent" $(stats 1 "${ALL_TOT[@]}")
printf '# %-52s %8s %8s %8s\n' "revoke-all ($NVMS VMs), CLI round trip" $(stats 1000 "${ALL_RT[@]}")
tap_done
