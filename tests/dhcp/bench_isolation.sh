#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# DHCP under a neighbour's flood: the real agent serves a bridge with two
# guests (network namespaces behind veths, their host ends the taps the
# agent enforces).  Guest B, whose policy lifts its own DHCP rate so the
# server's speed shows, does one DORA after another (tests/net/tool_hostile
# dora, durable leases, ARP probe off as in bench_dhcp.sh); guest A sends
# DHCP client messages at 10,000 per second, once with its own MAC (they
# pass its tap up to its control_rates.dhcp and are then dropped as
# dhcp_rate) and once with invented chaddrs (dropped as dhcp_chaddr).  Runs
# without and with each flood alternate, so drifts of this noisy machine
# hit all three alike; prints p50/p99 over the runs of B's DORA/s and of
# its DORA latency.  Figures only: nothing passes or fails on a timing.
#   tests/dhcp/bench_isolation.sh [SECONDS_PER_RUN] [RUNS]
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "dhcp isolation benchmark"
need_cmds "dhcp isolation benchmark" ip jq
TOOL=$BUILD/tests/net/tool_hostile
[[ -x $TOOL && -x $AGENT ]] || { skip "build $TOOL and $AGENT first (make)" "dhcp isolation benchmark"; tap_done; exit 0; }
SECS=${1:-2} RUNS=${2:-9} PPS=10000

agent_env
A=1190 B=1191 MAC_A=52:54:00:11:90:01 MAC_B=52:54:00:11:90:02
BR=rb$$b TAP_A=rb$$a TAP_B=rb$$c
free_net NET
ip link add "$BR" type bridge || exit 1
on_exit "ip link del '$BR'"
sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
bridge_guest NS_A "$TAP_A" "$MAC_A" "$BR" && bridge_guest NS_B "$TAP_B" "$MAC_B" "$BR" ||
	{ ok 1 "guests set up"; tap_done; exit 1; }
cat >"$T/policies/bench.json" <<EOF
{ "version": 1,
  "dhcp": { "bridges": { "$BR": {
	"server_ip": "$NET.1", "subnet": "$NET.0/24", "pools": ["$NET.100-$NET.200"],
	"lease_time": 3600, "conflict_check": "off" } } },
  "vms": [
	{ "id": $A, "name": "flooder", "interface": "$TAP_A", "bridge": "$BR", "mac": "$MAC_A" },
	{ "id": $B, "name": "client", "interface": "$TAP_B", "bridge": "$BR", "mac": "$MAC_B",
	  "control_rates": { "dhcp": 0 } } ] }
EOF
agent_start --no-tpm >/dev/null || { ok 1 "agent starts"; tap_done; exit 1; }
up() { agent dhcp status --json 2>/dev/null | jq -e --arg b "$BR" '.dhcp.bridges[] | select(.name == $b) | .up' >/dev/null &&
       [[ $(agent vm stats $A --json | jq -r '.vms[0].ifindex') != 0 && $(agent vm stats $B --json | jq -r '.vms[0].ifindex') != 0 ]]; }
wait_for 10 up || { ok 1 "the agent serves the bridge"; tap_done; exit 1; }
ctr() { agent vm stats "$1" --json | jq -r ".vms[0].$2.reasons.$3.packets // 0"; }

# one KIND: a DORA run of B; KIND none|own|random sets A's flood alongside.
declare -A PER_S LAT50 LAT99 FLOOD
one() {
	local kind=$1 fpid= line
	case $kind in
	own) ip netns exec "$NS_A" "$TOOL" eth0 "$MAC_A" dhcp discover "$MAC_A" 1000000 "$PPS" \
		"secs=$((SECS + 1))" >"$T/flood.out" 2>&1 & fpid=$! ;;
	random) ip netns exec "$NS_A" "$TOOL" eth0 "$MAC_A" dhcp discover random 1000000 "$PPS" \
		"secs=$((SECS + 1))" >"$T/flood.out" 2>&1 & fpid=$! ;;
	esac
	sleep 0.2
	line=$(ip netns exec "$NS_B" "$TOOL" eth0 "$MAC_B" dora "$SECS" 1)
	[[ -n $fpid ]] && { wait "$fpid"; FLOOD[$kind]+="$(awk -v s=$((SECS + 1)) '{ printf "%d ", $2 / s }' "$T/flood.out")"; }
	PER_S[$kind]+="$(awk '{ print $6 }' <<<"$line") "
	LAT50[$kind]+="$(awk '{ print $8 }' <<<"$line") "
	LAT99[$kind]+="$(awk '{ print $10 }' <<<"$line") "
	diag "$kind: $line"
}
pct() {	# pct P VALUES...: the P-th percentile (nearest rank)
	local p=$1; shift
	printf '%s\n' "$@" | sort -g | awk -v p="$p" '{ v[NR] = $1 } END { i = int(NR * p / 100 + 0.999); if (i < 1) i = 1; print v[i] }'
}

# Warm up (the lease log's first blocks, the caches), then measure.
ip netns exec "$NS_B" "$TOOL" eth0 "$MAC_B" dora 1 1 >/dev/null
r0=$(ctr $A out drop_dhcp_rate) c0=$(ctr $A out drop_dhcp_chaddr)
for ((run = 0; run < RUNS; run++)); do
	one none
	one own
	one random
done
r1=$(ctr $A out drop_dhcp_rate) c1=$(ctr $A out drop_dhcp_chaddr)

base=$(pct 50 ${PER_S[none]})
for kind in none own random; do
	p50=$(pct 50 ${PER_S[$kind]}) p99=$(pct 99 ${PER_S[$kind]})
	l50=$(pct 50 ${LAT50[$kind]}) l99=$(pct 99 ${LAT99[$kind]})
	case $kind in
	none) what="no flood" ;;
	own) what="A floods its own MAC at $(pct 50 ${FLOOD[own]})/s" ;;
	random) what="A floods invented chaddrs at $(pct 50 ${FLOOD[random]})/s" ;;
	esac
	printf '# B DORA/s %-44s p50 %7s p99 %7s over %d runs of %d s; latency p50 %s ms p99 %s ms; %s of unflooded p50\n' \
		"($what)" "$p50" "$p99" "$RUNS" "$SECS" "$l50" "$l99" \
		"$(awk -v a="$p50" -v b="$base" 'BEGIN { printf "%.0f%%", b ? 100 * a / b : 0 }')"
done
diag "A's flood at its tap: $((r1 - r0)) dropped as dhcp_rate, $((c1 - c0)) as dhcp_chaddr; the server answered $(agent dhcp status --json | jq --arg b "$BR" '.dhcp.bridges[] | select(.name == $b) | .received.DISCOVER') DISCOVERs in all"
diag "target: B keeps >= 80% of its unflooded DORA/s (the p50 ratio above)"
ok 0 "dhcp isolation benchmark ran"
tap_done
