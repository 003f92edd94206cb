#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# `rayos-agent dhcp client` against a rogue server (tool_rogue_dhcpd) on a
# segment of network namespaces: every kind of nonsense offer (the subnet's
# broadcast or network address, the server's own address, zero, loopback,
# multicast, reserved, a zero or non-contiguous mask, a zero lease) is
# refused with a log line naming the field, none is configured, and the
# client falls back to its static address; a server that baits with a
# sane OFFER and ACKs nonsense ends the same way; with a sane server
# (dnsmasq) next to the rogue, the sane lease is taken although the rogue
# offers longer ones.  Traffic stays in namespaces this test creates
# (198.18.9.0/24).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/lib.sh

need_root "dhcp client vs a rogue server"
need_cmds "dhcp client vs a rogue server" ip dnsmasq jq timeout
ROGUE=$BUILD/tests/dhcp/tool_rogue_dhcpd
for b in "$ROGUE" "$AGENT"; do
	[[ -x $b ]] || { skip "build $b first (make)" "dhcp client vs a rogue server"; tap_done; exit 0; }
done
T=$(mktemp -d /tmp/rayos-dhcp-rogue.XXXXXX)
on_exit "rm -rf '$T'"

netns_new H
ip -n "$H" link add br0 type bridge
ip -n "$H" link set br0 up
n_ports=0
attach() {	# attach VAR: a namespace with eth0 on the segment
	local _ns port=p$((n_ports++))
	netns_new _ns
	ip -n "$H" link add "$port" type veth peer name eth0 netns "$_ns"
	ip -n "$_ns" link set lo up
	ip -n "$_ns" link set eth0 up
	ip -n "$H" link set "$port" master br0 up
	printf -v "$1" '%s' "$_ns"
}
attach R; ip -n "$R" addr add 198.18.9.1/24 dev eth0	# the rogue
attach D; ip -n "$D" addr add 198.18.9.2/24 dev eth0	# dnsmasq
attach C						# the client

ROGUE_PID=
rogue_start() {	# rogue_start KINDS
	spawn ROGUE_PID ip netns exec "$R" "$ROGUE" eth0 198.18.9.1 "$1" --max-seconds 120 \
		>"$T/rogue.out" 2>&1
	wait_for 5 grep -q ready "$T/rogue.out" || diag "rogue did not come up: $(cat "$T/rogue.out")"
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; true; }
# client LOG ARGS...: the agent's DHCP client in C's namespace, bounded in time
client() {
	local log=$1; shift
	ip -n "$C" -4 addr flush dev eth0
	timeout -k 2 40 ip netns exec "$C" "$AGENT" dhcp client eth0 --log "$T/$log.jsonl" \
		--quiet --once --scale 0.1 --offer-window 300 "$@" 2>"$T/$log.err"
}
addrs() { ip -n "$C" -4 -o addr show dev eth0 | awk '{ print $4 }' | sort | tr '\n' ' '; }
refused() {	# refused LOG FIELD REASON-REGEX: a "refused" line names the field
	jq -e -s --arg f "$2" --arg r "$3" \
		'any(.[]; .event == "refused" and .field == $f and (.reason | test($r)))' \
		"$T/$1.jsonl" >/dev/null 2>&1
}
applied_only_static() {	# every "apply" in LOG is the static address
	jq -e -s 'map(select(.event == "apply")) | length >= 1 and
		  all(.[]; .reason == "static" and .ip == "198.18.9.250")' "$T/$1.jsonl" >/dev/null
}
show() { diag "log $1:"; tail -25 "$T/$1.jsonl" "$T/$1.err" 2>/dev/null | sed 's/^/#   /'; }

# ---- every kind of nonsense at once; no sane server ----
rogue_start broadcast,network,server,zero,loopback,multicast,reserved,mask0,masknc,lease0
client all --static 198.18.9.250/24,198.18.9.1 --static-after 2 --max-seconds 30
ok $? "only nonsense on offer: the client settles" || show all
ok "$([[ $(addrs) == "198.18.9.250/24 " ]]; echo $?)" "only the static address is configured ($(addrs))"
check "nothing offered was applied, only the static fallback" -- applied_only_static all
while IFS='|' read -r field re what; do
	check "refused and logged ($field): $what" -- refused all "$field" "$re"
done <<'EOF2'
yiaddr|broadcast address of 198\.18\.9\.0/24|the subnet's broadcast address as yiaddr
yiaddr|network address of 198\.18\.9\.0/24|the subnet's network address as yiaddr
yiaddr|198\.18\.9\.1 is the server's own address|the server's own address as yiaddr
yiaddr|0\.0\.0\.0 is zero|a zero yiaddr
yiaddr|loopback|a loopback yiaddr
yiaddr|multicast|a multicast yiaddr
yiaddr|reserved|a reserved yiaddr
subnet mask|0\.0\.0\.0 is no subnet|a 0.0.0.0 mask
subnet mask|255\.0\.255\.0 is not contiguous|a 255.0.255.0 mask
lease time|lease time 0|a zero lease time
EOF2
stop "$ROGUE_PID"

# ---- a sane OFFER as bait, a nonsense ACK ----
rogue_start ackbad
client bait --static 198.18.9.250/24,198.18.9.1 --static-after 2 --max-seconds 30
ok $? "a baiting server (sane OFFER, broadcast address in the ACK): the client settles" || show bait
ok "$([[ $(addrs) == "198.18.9.250/24 " ]]; echo $?)" "  ...on the static address ($(addrs))"
check "  ...the ACK was refused, naming yiaddr" -- refused bait yiaddr "broadcast address"
check "  ...and nothing it offered was applied" -- applied_only_static bait

# ---- the rogue next to a sane server ----
spawn DNSMASQ_PID ip netns exec "$D" dnsmasq --no-daemon --conf-file=/dev/null --port=0 \
	--user=root --interface=eth0 --bind-interfaces --dhcp-authoritative --no-ping \
	--dhcp-range=198.18.9.100,198.18.9.149,255.255.255.0,2m --dhcp-option=3,198.18.9.2 \
	--dhcp-leasefile="$T/dnsmasq.leases" --log-dhcp --log-facility="$T/dnsmasq.log" \
	>"$T/dnsmasq.out" 2>&1
wait_for 5 grep -qs 'DHCP, sockets bound' "$T/dnsmasq.log"
ok $? "dnsmasq serves the segment too"
client both --max-seconds 30
ok $? "rogue and dnsmasq: the client binds" || show both
a=$(addrs)
ok "$([[ $a =~ ^198\.18\.9\.1[0-4][0-9]/24\ $ ]]; echo $?)" "  ...dnsmasq's address, not the rogue's longer leases ($a)"
check "  ...the rogue's offers were refused" -- refused both yiaddr "broadcast address"
stop "$ROGUE_PID"
stop "$DNSMASQ_PID"
tap_done
