#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Live veth cost of filtering: a flood of 60-byte UDP frames from a "VM"
# namespace into the root namespace over one veth pair, counted at the
# receiver, with (a) no filter and an empty tc program, (b) RayOS (a ~20-rule VM policy with CIDRs
# and ranges, the flood allowed by a rule), (c) nftables with the same rules
# linear, (d) nftables with the rules as one set, (e) nftables with 10,000
# linear rules vs RayOS with 64 rules per VM on 157 VMs (~10,000 host-wide).
# Prints figures only; never fails on a timing.  Traffic stays on the veth,
# addressed from 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
if [[ $(id -u) != 0 ]]; then echo "# bench_live: needs root, skipped"; exit 0; fi
for c in ip tc nft jq bpftool; do
	command -v "$c" >/dev/null || { echo "# bench_live: $c missing (sudo tests/deps), skipped"; exit 0; }
done
SECS=${BENCH_SECS:-3} REPS=${BENCH_REPS:-2}

agent_env
VM_MAC=52:54:00:5e:00:03 NFT_TABLE=rayos_bench_$$
vm_veth rb "$VM_MAC" || exit 1
on_exit "nft delete table netdev '$NFT_TABLE'"

# udp_in: datagrams the root namespace's UDP layer took in (delivered,
# dropped on a full socket buffer, or to no socket): what got past the filters.
udp_in() {
	awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) n[$i] = i; h = 1; next }
		print $n["InDatagrams"] + $n["RcvbufErrors"] + $n["NoPorts"] }' /proc/net/snmp
}
# flood: packets/s past the filters during one $SECS s flood of 60-byte UDP
# frames (tests/net/tool_flood: AF_PACKET, sendmmsg, no qdisc) from the VM
# side, counted in the root namespace's kernel.  On a veth the receive path,
# filters included, runs in the sender's softirq on its CPU.
flood() {
	local a b secs
	a=$(udp_in)
	secs=$(vmx timeout $((SECS + 10)) taskset -c 0 "$BUILD/tests/net/tool_flood" "$VMIF" \
		"$VM_MAC" "$HOST_MAC" "$NET.2" "$NET.1" 5201 "$SECS" | awk '{ print $2 }')
	b=$(udp_in)
	awk -v a="$a" -v b="$b" -v s="${secs:-0}" 'BEGIN { print (s > 0 ? int((b - a) / s) : 0) }'
}
declare -A PPS
# run NAME: best of $REPS floods
run() {
	local best=0 p i
	for ((i = 0; i < REPS; i++)); do
		p=$(flood); ((p > best)) && best=$p
	done
	PPS[$1]=$best
}

# The ~20 rules of one direction, as RayOS JSON and as nft statements.  The
# flood (UDP to $NET.1:5201) matches the last allow rule.
rules_json() {
	cat <<EOF
{ "action": "deny", "protocol": "tcp", "ports": [25], "comment": "no mail" },
{ "action": "allow", "protocol": "udp", "ports": [53, 123], "cidrs": ["10.10.0.2", "10.10.0.3"] },
{ "action": "allow", "protocol": "tcp", "ports": [443], "cidrs": ["10.10.0.0/24"] },
{ "action": "deny", "cidrs": ["192.168.0.0/16"] },
{ "action": "allow", "protocol": "tcp", "ports": ["8000-8099"], "cidrs": ["203.0.113.0/24"] },
{ "action": "allow", "protocol": "tcp", "ports": [22], "cidrs": ["10.20.0.0/16"] },
{ "action": "allow", "protocol": "tcp", "ports": ["9100-9102"], "cidrs": ["10.10.0.5"] },
{ "action": "allow", "protocol": "udp", "ports": ["30000-30999"], "cidrs": ["172.16.0.0/12"] },
{ "action": "deny", "protocol": "udp", "ports": [137, 138, 139] },
{ "action": "allow", "protocol": "tcp", "ports": [5432], "cidrs": ["192.0.2.0/28"] },
{ "action": "allow", "protocol": "tcp", "ports": [6379], "cidrs": ["192.0.2.16/28"] },
{ "action": "allow", "protocol": "tcp", "ports": [3306], "cidrs": ["192.0.2.32/28"] },
{ "action": "allow", "protocol": "udp", "ports": [514], "cidrs": ["10.30.0.0/16"] },
{ "action": "allow", "protocol": "tcp", "ports": ["20000-20100"], "cidrs": ["10.40.0.0/16"] },
{ "action": "deny", "protocol": "tcp", "ports": [23] },
{ "action": "allow", "protocol": "icmp", "icmp_types": [0, 8] },
{ "action": "allow", "protocol": "tcp", "ports": [5201], "cidrs": ["$NET.1"] },
{ "action": "allow", "protocol": "tcp", "ports": [1000, 2000, 3000], "cidrs": ["10.50.0.0/16"] },
{ "action": "allow", "protocol": "udp", "ports": ["40000-40100"], "cidrs": ["10.60.0.0/16"] },
{ "action": "allow", "protocol": "udp", "ports": [5201], "cidrs": ["$NET.1"] }
EOF
}
rules_nft() {
	cat <<EOF
tcp dport 25 drop
ip daddr { 10.10.0.2, 10.10.0.3 } udp dport { 53, 123 } accept
ip daddr 10.10.0.0/24 tcp dport 443 accept
ip daddr 192.168.0.0/16 drop
ip daddr 203.0.113.0/24 tcp dport 8000-8099 accept
ip daddr 10.20.0.0/16 tcp dport 22 accept
ip daddr 10.10.0.5 tcp dport 9100-9102 accept
ip daddr 172.16.0.0/12 udp dport 30000-30999 accept
udp dport { 137, 138, 139 } drop
ip daddr 192.0.2.0/28 tcp dport 5432 accept
ip daddr 192.0.2.16/28 tcp dport 6379 accept
ip daddr 192.0.2.32/28 tcp dport 3306 accept
ip daddr 10.30.0.0/16 udp dport 514 accept
ip daddr 10.40.0.0/16 tcp dport 20000-20100 accept
tcp dport 23 drop
icmp type { echo-reply, echo-request } accept
ip daddr $NET.1 tcp dport 5201 accept
ip daddr 10.50.0.0/16 tcp dport { 1000, 2000, 3000 } accept
ip daddr 10.60.0.0/16 udp dport 40000-40100 accept
ip daddr $NET.1 udp dport 5201 accept
EOF
}
# nft_load RULES-FILE: our own netdev table, ingress of the veth only (the
# hook where RayOS's rayos_from_vm runs), default drop for IPv4.
nft_load() {
	nft delete table netdev "$NFT_TABLE" 2>/dev/null
	{
		echo "table netdev $NFT_TABLE {"
		echo "  chain from_vm { type filter hook ingress device \"$HOST\" priority 0; policy accept;"
		echo "    meta protocol != ip accept"
		sed 's/^/    /' "$1"
		echo "    drop"
		echo "  }"
		echo "}"
	} >"$T/nft.conf"
	nft -f "$T/nft.conf"
}

echo "# live veth, flood of 60-byte UDP frames VM ns -> root ns, best of $REPS x ${SECS}s, $(nproc) CPUs"
run a_none

# The hook's own cost: an empty tc program (returns "pass") at the same place.
if tc qdisc add dev "$HOST" clsact 2>/dev/null &&
   tc filter add dev "$HOST" ingress bpf direct-action obj "$BUILD/bpf/rayos_bench.bpf.o" sec tc 2>/dev/null; then
	run a_empty_tc
else
	PPS[a_empty_tc]=0
fi
tc qdisc del dev "$HOST" clsact 2>/dev/null

rules_nft >"$T/r20"
nft_load "$T/r20" && run c_nft20 || PPS[c_nft20]=0

# The same rules as one interval set over daddr . proto . dport (the
# protocol-wide drops and ICMP stay rules in front of it).
{
	echo "tcp dport { 23, 25 } drop"
	echo "ip daddr 192.168.0.0/16 drop"
	echo "udp dport { 137, 138, 139 } drop"
	echo "icmp type { echo-reply, echo-request } accept"
	echo "ip daddr . meta l4proto . th dport { \
10.10.0.2 . udp . 53, 10.10.0.3 . udp . 53, 10.10.0.2 . udp . 123, 10.10.0.3 . udp . 123, \
10.10.0.0/24 . tcp . 443, 203.0.113.0/24 . tcp . 8000-8099, 10.20.0.0/16 . tcp . 22, \
10.10.0.5 . tcp . 9100-9102, 172.16.0.0/12 . udp . 30000-30999, 192.0.2.0/28 . tcp . 5432, \
192.0.2.16/28 . tcp . 6379, 192.0.2.32/28 . tcp . 3306, 10.30.0.0/16 . udp . 514, \
10.40.0.0/16 . tcp . 20000-20100, $NET.1 . tcp . 5201, 10.50.0.0/16 . tcp . 1000, \
10.50.0.0/16 . tcp . 2000, 10.50.0.0/16 . tcp . 3000, 10.60.0.0/16 . udp . 40000-40100, \
$NET.1 . udp . 5201 } accept"
} >"$T/rset"
nft_load "$T/rset" && run d_nftset || PPS[d_nftset]=0

# 10,000 rules that do not match (distinct /32s in 10.128.0.0/9), then the
# 20 above: the flood walks all of them.
awk 'BEGIN { for (i = 0; i < 10000; i++)
	printf "ip daddr 10.%d.%d.%d udp dport %d accept\n", 128 + int(i / 65536) % 128,
		int(i / 256) % 256, i % 256, 1024 + i % 50000 }' >"$T/r10k"
cat "$T/r20" >>"$T/r10k"
t0=$EPOCHREALTIME
nft_load "$T/r10k" && run e_nft10k || PPS[e_nft10k]=0
nft delete table netdev "$NFT_TABLE"

# RayOS: the VM with the 20 rules out (default deny) ...
{
	echo '{ "version": 1, "vms": [ { "id": 1, "name": "bench-vm", "interface": "'"$HOST"'",'
	echo '  "mac": "'"$VM_MAC"'", "ipv4": "'"$NET.2"'", "capabilities": ["CAP_NETWORK"], "host": { "default": "allow" },'
	echo '  "firewall": { "in": { "default": "deny" }, "out": { "default": "deny", "rules": ['
	rules_json
	echo '] } } } ] }'
} >"$T/policies/bench.json"
if agent_start >/dev/null; then
	run b_rayos20
	# ... and 64 rules on each of 157 VMs (10,048 rules host-wide): the
	# bench VM gets 44 more rules in front, 156 VMs on absent taps fill the maps.
	v=$(agent status --json | jq .policy.version)
	{
		echo '{ "version": 1, "vms": [ { "id": 1, "name": "bench-vm", "interface": "'"$HOST"'",'
		echo '  "mac": "'"$VM_MAC"'", "ipv4": "'"$NET.2"'", "capabilities": ["CAP_NETWORK"], "host": { "default": "allow" },'
		echo '  "firewall": { "in": { "default": "deny" }, "out": { "default": "deny", "rules": ['
		for ((i = 0; i < 44; i++)); do
			echo "{ \"action\": \"allow\", \"protocol\": \"udp\", \"ports\": [$((1024 + i))], \"cidrs\": [\"10.$((128 + i)).0.0/16\"] },"
		done
		rules_json
		echo '] } } }'
		for ((vm = 2; vm <= 157; vm++)); do
			echo ", { \"id\": $vm, \"name\": \"other-$vm\", \"interface\": \"rbx$$-$vm\","
			echo '  "capabilities": ["CAP_NETWORK"], "firewall": { "out": { "default": "deny", "rules": ['
			for ((i = 0; i < 64; i++)); do
				((i)) && echo ","
				echo "{ \"action\": \"allow\", \"protocol\": \"udp\", \"ports\": [$((2000 + i))], \"cidrs\": [\"10.$((vm % 250)).$i.0/24\"] }"
			done
			echo '] } } }'
		done
		echo '] }'
	} >"$T/policies/bench.json.tmp"
	mv "$T/policies/bench.json.tmp" "$T/policies/bench.json"
	if wait_for 10 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"; then
		run e_rayos10k
	else
		echo "# the 157-VM policy was not applied; see $T/agent.log"; PPS[e_rayos10k]=0
		sed 's/^/#   /' "$T/agent.log" | tail -5
	fi
	agent stop --purge >/dev/null
	wait "$AGENT_PID" 2>/dev/null
else
	echo "# the agent did not start; RayOS cases skipped"
	PPS[b_rayos20]=0 PPS[e_rayos10k]=0
fi
run a_none_again

base=${PPS[a_none]}
((PPS[a_none_again] > base)) && base=${PPS[a_none_again]}
printf '# %-44s %10s %10s %12s\n' "case" "pkt/s" "ns/pkt" "added ns/pkt"
for k in a_none a_none_again a_empty_tc b_rayos20 c_nft20 d_nftset e_rayos10k e_nft10k; do
	case $k in
	a_none)        what="(a) no filter" ;;
	a_empty_tc)    what="(a) an empty tc program, same hook" ;;
	a_none_again)  what="(a) no filter, again after the rest" ;;
	b_rayos20)     what="(b) RayOS, 20 rules (CIDRs, ranges)" ;;
	c_nft20)       what="(c) nftables, the 20 rules linear" ;;
	d_nftset)      what="(d) nftables, the rules as a set" ;;
	e_rayos10k)    what="(e) RayOS, 64 rules/VM, 157 VMs (10,048)" ;;
	e_nft10k)      what="(e) nftables, 10,020 linear rules" ;;
	esac
	p=${PPS[$k]:-0}
	if ((p > 0)); then
		awk -v w="$what" -v p="$p" -v b="$base" 'BEGIN {
			printf "# %-44s %10d %10.0f %+12.0f\n", w, p, 1e9 / p, 1e9 / p - 1e9 / b }'
	else
		printf '# %-44s %10s\n' "$what" "failed"
	fi
done
echo "# pkt/s = datagrams reaching the root netns UDP layer / s (sender and its softirq on CPU 0); added = ns/pkt minus the better no-filter run."
echo "# RayOS passes this flood by its flow entry after the first packet (one hash lookup)."
