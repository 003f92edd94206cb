#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# RayOS's DHCP client (test_dhcp_client --run, the code behind
# `rayos-agent dhcp client`) against real servers on one L2 segment made of
# network namespaces: dnsmasq and RayOS's own server (test_dhcpd --serve).
# DORA with the address and default route applied; report-only mode; INIT-REBOOT, renew at a scaled T1 and
# RELEASE on exit; an ARP conflict with a squatting neighbour -> DECLINE and
# another address; two servers -> the documented choice, and the other one
# when the first is stopped; no server -> the static fallback.  Traffic
# stays inside namespaces this test creates (198.18.7.0/24).
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/lib.sh

need_root "dhcp client live"
need_cmds "dhcp client live" ip dnsmasq jq timeout
CLIENT=$BUILD/tests/dhcp/test_dhcp_client
DHCPD=$BUILD/tests/dhcp/test_dhcpd
for b in "$CLIENT" "$DHCPD"; do
	[[ -x $b ]] || { skip "build $b first (make)" "dhcp client live"; tap_done; exit 0; }
done

T=$(mktemp -d /tmp/rayos-dhcpc-live.XXXXXX)
on_exit "rm -rf '$T'"
MAC=52:54:00:07:00:01
RESERVED=198.18.7.120	# dnsmasq's dhcp-host address for $MAC

# The segment: a bridge in hub namespace H, one veth per namespace.
netns_new H
ip -n "$H" link add br0 type bridge
ip -n "$H" link set br0 up
n_ports=0
attach() {	# attach VAR [MAC]: a namespace with eth0 on the segment
	local _ns port=p$((n_ports++))
	netns_new _ns
	ip -n "$H" link add "$port" type veth peer name eth0 netns "$_ns"
	[[ -n ${2:-} ]] && ip -n "$_ns" link set eth0 address "$2"
	ip -n "$_ns" link set lo up
	ip -n "$_ns" link set eth0 up
	ip -n "$H" link set "$port" master br0 up
	printf -v "$1" '%s' "$_ns"
}
attach D; ip -n "$D" addr add 198.18.7.1/24 dev eth0	# dnsmasq
attach R; ip -n "$R" addr add 198.18.7.2/24 dev eth0	# RayOS server
attach Q						# the squatter
attach C "$MAC"						# the client

DNSMASQ_PID=
dnsmasq_start() {
	spawn DNSMASQ_PID ip netns exec "$D" dnsmasq --no-daemon --conf-file=/dev/null --port=0 \
		--user=root --interface=eth0 --bind-interfaces --dhcp-authoritative --no-ping \
		--dhcp-range=198.18.7.100,198.18.7.149,255.255.255.0,2m \
		--dhcp-host=$MAC,$RESERVED --dhcp-option=3,198.18.7.1 \
		--dhcp-leasefile="$T/dnsmasq.leases" --pid-file="$T/dnsmasq.pid" \
		--log-dhcp --log-facility="$T/dnsmasq.log" >"$T/dnsmasq.out" 2>&1
	wait_for 5 grep -qs 'DHCP, sockets bound' "$T/dnsmasq.log"
}
stop() { kill -TERM "$1" 2>/dev/null; wait "$1" 2>/dev/null; true; }

# run_client LOG ARGS...: the client in C, bounded in time; status of the run.
run_client() {
	local log=$1; shift
	timeout -k 2 30 ip netns exec "$C" "$CLIENT" --run eth0 --log "$T/$log.jsonl" "$@" \
		2>"$T/$log.err"
}
logged() {	# logged LOG JQ-FILTER: some line of the transaction log matches
	jq -e -s "any(.[]; $2)" "$T/$1.jsonl" >/dev/null 2>&1
}
addr_of_c() { ip -n "$C" -4 -o addr show dev eth0 | awk '{ print $4 }'; }
show_log() { diag "client log $1:"; sed 's/^/#   /' "$T/$1.jsonl" "$T/$1.err" 2>/dev/null | tail -40; }

dnsmasq_start
ok $? "dnsmasq serves the segment" || { sed 's/^/#   /' "$T/dnsmasq.log" "$T/dnsmasq.out"; tap_done; exit 1; }

# ---- 1. DORA against dnsmasq, address applied ----
run_client dora --once --route --scale 0.1 --offer-window 300 --max-seconds 20 --lease-file "$T/lease.json"
ok $? "DORA: client exits 0 once bound" || show_log dora
check "DORA: DISCOVER, OFFER, REQUEST, ACK in the transaction log" -- \
	logged dora '.event == "tx" and .type == "DISCOVER"' &&
	logged dora '.event == "rx" and .type == "OFFER" and .server == "198.18.7.1"' &&
	logged dora '.event == "tx" and .type == "REQUEST" and .state == "REQUESTING"' &&
	logged dora '.event == "rx" and .type == "ACK"'
check "DORA: 3 ARP probes before binding" -- \
	test "$(jq -s '[.[] | select(.event == "probe")] | length' "$T/dora.jsonl")" = 3
check "DORA: $RESERVED/24 applied on eth0" -- test "$(addr_of_c)" = "$RESERVED/24"
check "DORA: --route: default route via the router option" -- \
	bash -c "ip -n $C -4 route show default | grep -q 'via 198.18.7.1 dev eth0 proto dhcp'"
check "DORA: lease file remembers $RESERVED" -- test "$(jq -r .ip "$T/lease.json")" = "$RESERVED"
check "DORA: dnsmasq recorded the lease" -- grep -q "$MAC $RESERVED" "$T/dnsmasq.leases"

# ---- 2. INIT-REBOOT, renew at T1 (2 min lease scaled by 0.05: T1 3 s), RELEASE ----
spawn CPID ip netns exec "$C" "$CLIENT" --run eth0 --scale 0.05 --release --max-seconds 25 \
	--lease-file "$T/lease.json" --log "$T/renew.jsonl" 2>"$T/renew.err"
check "INIT-REBOOT: REQUEST for the remembered address, ACK" -- \
	wait_for 10 logged renew '.event == "state" and .from == "REBOOTING" and .to == "PROBING"'
check "INIT-REBOOT: no DISCOVER needed" -- bash -c "! grep -q DISCOVER '$T/renew.jsonl'"
check "renew: T1 -> RENEWING, unicast REQUEST to dnsmasq, ACK -> BOUND" -- \
	wait_for 15 logged renew '.event == "state" and .from == "RENEWING" and .to == "BOUND"'
check "renew: address still applied" -- test "$(addr_of_c)" = "$RESERVED/24"
check "renew: the REQUEST went unicast to dnsmasq (RENEWING)" -- \
	logged renew '.event == "tx" and .type == "REQUEST" and .state == "RENEWING" and .server == "198.18.7.1"'
check "renew: dnsmasq ACKed both REQUESTs (reboot + renew)" -- \
	test "$(grep -c "DHCPACK(eth0) $RESERVED $MAC" "$T/dnsmasq.log")" -ge 3
stop "$CPID"
check "RELEASE on exit: dnsmasq got it" -- wait_for 5 grep -q "DHCPRELEASE(eth0) $RESERVED" "$T/dnsmasq.log"
check "RELEASE on exit: address removed, lease file gone" -- \
	bash -c "[[ -z \$(ip -n $C -4 -o addr show dev eth0) && ! -e '$T/lease.json' ]]"
[[ $_tap_fail != 0 ]] && show_log renew

# ---- 3. a neighbour squats on the offered address: DECLINE, another address ----
ip -n "$Q" addr add "$RESERVED/24" dev eth0
run_client conflict --once --scale 0.1 --offer-window 300 --decline-backoff 500 --max-seconds 20
ok $? "conflict: client still gets bound" || show_log conflict
check "conflict: the ARP probe found the squatter" -- \
	logged conflict ".event == \"conflict\" and .ip == \"$RESERVED\""
check "conflict: DECLINE sent" -- logged conflict '.event == "tx" and .type == "DECLINE"'
check "conflict: dnsmasq got the DECLINE" -- grep -q "DHCPDECLINE(eth0) $RESERVED" "$T/dnsmasq.log"
got=$(addr_of_c)
check "conflict: bound to another address ($got)" -- \
	bash -c "[[ '$got' == 198.18.7.1[0-4][0-9]/24 ]]"
ip -n "$Q" addr flush dev eth0
ip -n "$C" addr flush dev eth0

# ---- 4. two servers: the documented choice, then the other one ----
cat >"$T/policy.json" <<'EOF'
{ "version": 1,
  "dhcp": { "bridges": { "eth0": {
	"server_ip": "198.18.7.2", "subnet": "198.18.7.0/24", "pools": ["198.18.7.150-198.18.7.199"],
	"router": "198.18.7.2", "lease_time": 60, "conflict_check": "off" } } } }
EOF
mkdir -p "$T/state"
spawn RPID ip netns exec "$R" "$DHCPD" --serve "$T/policy.json" "$T/state" >"$T/dhcpd.log" 2>&1
wait_for 5 grep -q '^ready' "$T/dhcpd.log"
ok $? "RayOS server serves the segment too" || sed 's/^/#   /' "$T/dhcpd.log"
run_client two --once --release --scale 0.1 --offer-window 1500 --max-seconds 20
ok $? "two servers: bound" || show_log two
check "two servers: offers from both" -- \
	logged two '.event == "rx" and .type == "OFFER" and .server == "198.18.7.1"' &&
	logged two '.event == "rx" and .type == "OFFER" and .server == "198.18.7.2"'
check "two servers: the longer lease (dnsmasq, 2 min vs 1 min) chosen" -- \
	logged two '.event == "offer-chosen" and .server == "198.18.7.1"'
stop "$DNSMASQ_PID"
run_client other --once --scale 0.1 --offer-window 300 --max-seconds 20
ok $? "dnsmasq stopped: bound via the other server" || show_log other
check "dnsmasq stopped: RayOS's server ACKed" -- \
	logged other '.event == "rx" and .type == "ACK" and .server == "198.18.7.2"'
got=$(addr_of_c)
check "dnsmasq stopped: a RayOS pool address ($got) applied" -- \
	bash -c "[[ '$got' == 198.18.7.1[5-9][0-9]/24 ]]"
ip -n "$C" addr flush dev eth0
run_client noapply --once --no-apply --scale 0.1 --offer-window 300 --max-seconds 20
ok $? "report only (--no-apply): bound" || show_log noapply
check "report only: BOUND logged, interface left alone" -- \
	bash -c "jq -e -s 'any(.[]; .event == \"state\" and .to == \"BOUND\")' '$T/noapply.jsonl' >/dev/null && [[ -z \$(ip -n $C -4 -o addr show dev eth0) ]]"
stop "$RPID"

# ---- 5. no server at all: static fallback ----
run_client static --once --scale 0.1 --static 198.18.7.250/24,198.18.7.1 --static-after 1.5 --max-seconds 20
ok $? "no server: client settles" || show_log static
check "no server: static fallback logged" -- \
	logged static '.event == "state" and .from == "STATIC-PROBING" and .to == "STATIC"'
check "no server: static address applied (probed first)" -- \
	bash -c "[[ \$(ip -n $C -4 -o addr show dev eth0 | awk '{ print \$4 }') == 198.18.7.250/24 ]] && grep -q '\"probe\"' '$T/static.jsonl'"

tap_done
