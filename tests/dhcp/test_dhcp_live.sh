#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Real DHCP clients against the RayOS server (test_dhcpd --serve) on a
# bridge in a network namespace: dhclient, udhcpc and dhcpcd each in their
# own namespace complete DORA, renew and release; dhcping's INFORM gets an
# ACK; dhclient's INIT-REBOOT with a wrong remembered address gets a NAK and
# then a pool address; a server killed with SIGKILL and restarted ACKs the
# renewal of the lease it gave before; an address squatted by another host
# is detected by the server's ARP probe and never offered.  All traffic
# stays inside namespaces this test creates.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/lib.sh

need_root "dhcp live"
need_cmds "dhcp live" ip
DHCPD=$BUILD/tests/dhcp/test_dhcpd
[[ $DHCPD == /* ]] || DHCPD=$PWD/$DHCPD
[[ -x $DHCPD ]] || { skip "build $DHCPD first (make)" "dhcp live"; tap_done; exit 0; }

T=$(mktemp -d /tmp/rayos-dhcp-live.XXXXXX)
on_exit "rm -rf '$T'"
mkdir -p "$T/state"
netns_new S
ip -n "$S" link set lo up
ip -n "$S" link add br0 type bridge
ip -n "$S" addr add 198.18.0.1/24 dev br0
ip -n "$S" link set br0 up

cat >"$T/policy.json" <<'EOF'
{ "version": 1,
  "dhcp": { "bridges": { "br0": {
	"server_ip": "198.18.0.1", "subnet": "198.18.0.0/24", "pools": ["198.18.0.100-198.18.0.149"],
	"router": "198.18.0.1", "dns": ["198.18.0.53"], "domain": "live.test",
	"lease_time": 60, "t1": 3, "t2": 50, "conflict_check": "arp" } } },
  "vms": [ { "id": 41, "name": "vm-static", "bridge": "br0", "mac": "52:54:00:00:04:01",
	     "ipv4": "198.18.0.41" } ] }
EOF

SERVER_PID=
server_start() {
	ip netns exec "$S" "$DHCPD" --serve "$T/policy.json" "$T/state" >>"$T/dhcpd.log" 2>&1 &
	SERVER_PID=$!
	on_exit "kill -9 $SERVER_PID"
	wait_for 5 grep -q '^ready' "$T/dhcpd.log"
}
status() {	# status JQ-EXPR: a field of the server's status
	rm -f "$T/state/status.json"
	kill -USR1 "$SERVER_PID"
	wait_for 2 test -s "$T/state/status.json" || return 1
	jq -r "$1" "$T/state/status.json"
}
leased_to() {	# leased_to MAC: the address bound to MAC, or nothing
	rm -f "$T/state/leases.json"
	kill -USR1 "$SERVER_PID"
	wait_for 2 test -s "$T/state/leases.json" || return 1
	jq -r --arg m "$1" '.[] | select(.mac == $m and .state == "bound") | .ip' "$T/state/leases.json"
}

# client_ns VAR MAC: a namespace with eth0 (MAC) on the server's bridge.
n_clients=0
client_ns() {
	local _ns port=vc$((n_clients++))
	netns_new _ns
	ip -n "$S" link add "$port" type veth peer name eth0 netns "$_ns"
	ip -n "$_ns" link set eth0 address "$2"
	ip -n "$_ns" link set lo up
	ip -n "$_ns" link set eth0 up
	ip -n "$S" link set "$port" master br0 up
	printf -v "$1" '%s' "$_ns"
}
has_addr() { ip -n "$1" -4 addr show dev eth0 | grep -q "inet $2/"; }
acks() { status '.bridges[0].acks'; }

server_start || { diag "server did not start"; sed 's/^/#   /' "$T/dhcpd.log"; ok 1 "server starts"; tap_done; exit 1; }
ok 0 "server starts on br0 in a namespace"

# A script for dhclient and udhcpc that only sets the address: the stock
# ones would write the host's /etc/resolv.conf.
cat >"$T/client-script" <<'EOF'
#!/bin/sh
# dhclient passes $reason and $new_ip_address, udhcpc passes $1 and $ip.
r=${reason:-$1} a=${new_ip_address:-${ip:-}}
case "$r" in
BOUND|RENEW|REBIND|REBOOT|bound|renew)
	ip addr flush dev "$interface"; ip addr add "$a/24" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP|deconfig|leasefail|nak)
	ip addr flush dev "$interface" ;;
esac
echo "$r $a" >>"$(dirname "$0")/client-$interface-events"
exit 0
EOF
chmod +x "$T/client-script"

# ---- dhclient ----
if command -v dhclient >/dev/null; then
	MAC=52:54:00:00:01:01
	client_ns C1 $MAC
	spawn DHC ip netns exec "$C1" dhclient -4 -d -v -lf "$T/dhclient.leases" -pf "$T/dhclient.pid" \
		-sf "$T/client-script" eth0 >"$T/dhclient.log" 2>&1
	check "dhclient: DORA" -- wait_for 15 bash -c "[[ -n \$(ip -n $C1 -4 -o addr show dev eth0) ]]"
	ip1=$(leased_to $MAC)
	check "dhclient: lease recorded ($ip1) and bound on the client" -- has_addr "$C1" "$ip1"
	check "dhclient: binding hook saw the grant" -- grep -q "mac=$MAC ip=$ip1" "$T/state/bindings.log"
	a0=$(acks)
	check "dhclient: renews at T1 (unicast)" -- wait_for 10 bash -c "(( \$(jq -r '.bridges[0].acks' '$T/state/status.json') > $a0 )) || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
	# SIGKILL the server: the renewal after the restart is ACKed.
	kill -9 "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null
	server_start
	check "restart after SIGKILL: lease replayed" -- test "$(leased_to $MAC)" = "$ip1"
	a0=$(acks)
	check "restart after SIGKILL: renewal ACKed" -- wait_for 10 bash -c "(( \$(jq -r '.bridges[0].acks' '$T/state/status.json') > $a0 )) || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
	check "restart after SIGKILL: same address" -- has_addr "$C1" "$ip1"
	ip netns exec "$C1" dhclient -4 -r -lf "$T/dhclient.leases" -pf "$T/dhclient.pid" \
		-sf "$T/client-script" eth0 >>"$T/dhclient.log" 2>&1
	check "dhclient: RELEASE frees the lease" -- wait_for 5 bash -c "[[ -z \$(jq -r --arg m $MAC '.[] | select(.mac == \$m and .state == \"bound\") | .ip' '$T/state/leases.json') ]] || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
	check "dhclient: binding hook saw the release" -- grep -q "mac=$MAC ip=none" "$T/state/bindings.log"
	kill "$DHC" 2>/dev/null

	# INIT-REBOOT with an address this server never gave: NAK, then DORA.
	MAC=52:54:00:00:01:02
	client_ns C2 $MAC
	cat >"$T/dhclient2.leases" <<EOF
lease {
  interface "eth0";
  fixed-address 198.18.0.77;
  option subnet-mask 255.255.255.0;
  option dhcp-server-identifier 198.18.0.1;
  option dhcp-lease-time 60;
  renew 6 2099/01/01 00:00:00;
  rebind 6 2099/01/01 00:00:00;
  expire 6 2099/01/01 00:00:00;
}
EOF
	naks0=$(status '.bridges[0].naks')
	spawn DHC2 ip netns exec "$C2" dhclient -4 -d -v -lf "$T/dhclient2.leases" -pf "$T/dhclient2.pid" \
		-sf "$T/client-script" eth0 >"$T/dhclient2.log" 2>&1
	check "INIT-REBOOT of a wrong address: NAK" -- wait_for 10 bash -c "grep -q DHCPNAK '$T/dhclient2.log'"
	check "INIT-REBOOT: NAK counted by the server" -- test "$(status '.bridges[0].naks')" -gt "$naks0"
	check "after the NAK: a pool address" -- wait_for 15 bash -c "ip -n $C2 -4 -o addr show dev eth0 | grep -q 'inet 198.18.0.1[0-4][0-9]/'"
	kill "$DHC2" 2>/dev/null
else
	skip "dhclient missing (isc-dhcp-client)" "dhclient DORA/renew/release, INIT-REBOOT NAK"
fi

# ---- udhcpc ----
if command -v udhcpc >/dev/null; then
	MAC=52:54:00:00:02:01
	client_ns C3 $MAC
	spawn UDH ip netns exec "$C3" udhcpc -f -R -i eth0 -s "$T/client-script" -t 5 -T 1 -A 1 \
		>"$T/udhcpc.log" 2>&1
	check "udhcpc: DORA" -- wait_for 15 bash -c "[[ -n \$(ip -n $C3 -4 -o addr show dev eth0) ]]"
	ip3=$(leased_to $MAC)
	check "udhcpc: lease recorded ($ip3)" -- has_addr "$C3" "$ip3"
	a0=$(acks)
	kill -USR1 "$UDH"	# busybox renews at lease/2 by itself; ask now
	check "udhcpc: renews" -- wait_for 10 bash -c "(( \$(jq -r '.bridges[0].acks' '$T/state/status.json') > $a0 )) || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
	kill -TERM "$UDH"	# -R: release on exit
	check "udhcpc: RELEASE on exit frees the lease" -- wait_for 5 bash -c "[[ -z \$(jq -r --arg m $MAC '.[] | select(.mac == \$m and .state == \"bound\") | .ip' '$T/state/leases.json') ]] || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
else
	skip "udhcpc missing" "udhcpc DORA/renew/release"
fi

# ---- dhcpcd ----
if command -v dhcpcd >/dev/null; then
	MAC=52:54:00:00:03:01
	client_ns C4 $MAC
	spawn DCD ip netns exec "$C4" dhcpcd -4 -B -f /dev/null --noipv4ll -c "$T/client-script" \
		-t 20 eth0 >"$T/dhcpcd.log" 2>&1
	check "dhcpcd: DORA" -- wait_for 20 bash -c "[[ -n \$(ip -n $C4 -4 -o addr show dev eth0 | grep 198.18) ]]"
	ip4=$(leased_to $MAC)
	check "dhcpcd: lease recorded ($ip4)" -- has_addr "$C4" "$ip4"
	a0=$(acks)
	check "dhcpcd: renews" -- wait_for 10 bash -c "(( \$(jq -r '.bridges[0].acks' '$T/state/status.json') > $a0 )) || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
	ip netns exec "$C4" dhcpcd -4 -k eth0 >>"$T/dhcpcd.log" 2>&1
	check "dhcpcd: RELEASE frees the lease" -- wait_for 5 bash -c "[[ -z \$(jq -r --arg m $MAC '.[] | select(.mac == \$m and .state == \"bound\") | .ip' '$T/state/leases.json') ]] || { kill -USR1 $SERVER_PID; sleep 0.3; false; }"
	kill "$DCD" 2>/dev/null
else
	skip "dhcpcd missing (dhcpcd-base)" "dhcpcd DORA/renew/release"
fi

# ---- INFORM (dhcping) ----
if command -v dhcping >/dev/null; then
	client_ns C5 52:54:00:00:05:01
	ip -n "$C5" addr add 198.18.0.200/24 dev eth0
	check "dhcping: INFORM gets an ACK" -- timeout 10 ip netns exec "$C5" dhcping -i -t 3 -s 198.18.0.1 -c 198.18.0.200 -h 52:54:00:00:05:01
	check "INFORM: counted, no lease made" -- test -z "$(leased_to 52:54:00:00:05:01)"
else
	skip "dhcping missing" "INFORM via dhcping"
fi

# ---- conflict detection: a host squatting on the next pool address ----
if command -v udhcpc >/dev/null; then
	# The server hands out the lowest pool address nobody holds.
	leased_to none >/dev/null
	next=$(jq -r '[.[] | select(.state != "free") | .ip] as $h | [range(100; 150) | "198.18.0.\(.)"] - $h | .[0]' "$T/state/leases.json")
	client_ns C6 52:54:00:00:06:01
	ip -n "$C6" addr add "$next/24" dev eth0
	client_ns C7 52:54:00:00:07:01
	c0=$(status '.bridges[0].conflicts')
	spawn UDH7 ip netns exec "$C7" udhcpc -f -i eth0 -s "$T/client-script" -t 10 -T 1 -A 1 \
		>"$T/udhcpc7.log" 2>&1
	check "with a squatter: client still gets an address" -- wait_for 15 bash -c "[[ -n \$(ip -n $C7 -4 -o addr show dev eth0) ]]"
	check "with a squatter: the squatted address ($next) is not offered" -- bash -c "! ip -n $C7 -4 addr show dev eth0 | grep -q 'inet $next/'"
	check "ARP probe found the conflict" -- test "$(status '.bridges[0].conflicts')" -gt "$c0"
	kill "$UDH7" 2>/dev/null
fi

check "server still running" -- kill -0 "$SERVER_PID"
tap_done
