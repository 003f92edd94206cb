#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Guest isolation against the running agent: two guests, A (VM 1101) and B
# (VM 1102), each a network namespace behind a veth whose host end is its
# "tap" on a bridge made for this test; the agent serves DHCP there.  A
# takes its lease with dhclient, B with udhcpc.  A then does what a
# hostile guest would, with frames crafted by tests/net/tool_hostile:
#  - floods DISCOVERs with invented chaddrs, INIT-REBOOTs every pool address
#    (with invented chaddrs and with its own), floods DISCOVERs with its own
#    MAC: B still completes a DORA; A holds one lease;
#  - sends RELEASE and DECLINE for B's lease (with B's chaddr, and with its
#    own): B's lease, its binding in rayos_ip_bind and its traffic stay;
#  - connects to a host service bound to 0.0.0.0, on the bridge address and
#    on an address of another interface added while the agent runs: refused
#    until the policy's "host" section allows it;
#  - sends from a link-local address that is not its own, an ARP burst of
#    30,000, an ICMP error about its own flow with 800 bytes after the quote
#    and one to an address the flow does not belong to.
# Every drop is checked under its reason in the VM's counters.  Traffic
# stays on the test's bridge and namespaces, 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "guest isolation"
need_cmds "guest isolation" ip jq python3 nc udhcpc dhclient bpftool timeout
TOOL=$BUILD/tests/net/tool_hostile
[[ -x $TOOL ]] || { skip "build $TOOL first (make)" "guest isolation"; tap_done; exit 0; }

agent_env
A=1101 B=1102 MAC_A=52:54:00:11:01:01 MAC_B=52:54:00:11:01:02
BR=ri$$b TAP_A=ri$$a TAP_B=ri$$c DUMMY=ri$$d
free_net NET
P1=$((30000 + RANDOM % 20000)) P2=$((P1 + 1))	# host services, bound to 0.0.0.0

ip link add "$BR" type bridge || exit 1
on_exit "ip link del '$BR'"
ip link set "$BR" address "02:00:00:11:$(printf %02x $((RANDOM % 256))):01"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up
free_net OTHER
OTHER=$OTHER.1		# an address of another interface of the host

bridge_guest NS_A "$TAP_A" "$MAC_A" "$BR" && bridge_guest NS_B "$TAP_B" "$MAC_B" "$BR" ||
	{ ok 1 "guests set up"; tap_done; exit 1; }

# write_policy HOST_RULES_OF_A: both VMs on the bridge, DHCP with a pool of
# ten; the host lets both reach P1, A also what the rules given allow.  B's
# outbound traffic is shaped: its frames (DHCP's too) take the detour
# through its ifb, and the server must still know them as B's.
write_policy() {
	cat >"$T/policies/iso.json.tmp" <<EOF
{ "version": 1,
  "dhcp": { "bridges": { "$BR": {
	"server_ip": "$NET.1", "subnet": "$NET.0/24", "pools": ["$NET.100-$NET.109"],
	"router": "$NET.1", "lease_time": 300, "conflict_check": "arp" } } },
  "defaults": { "capabilities": ["CAP_NETWORK"],
		"host": { "rules": [ { "action": "allow", "protocol": "tcp", "ports": [$P1] } ] } },
  "vms": [
	{ "id": $A, "name": "guest-a", "interface": "$TAP_A", "bridge": "$BR", "mac": "$MAC_A",
	  "host": { "rules": [ ${1:-} ] } },
	{ "id": $B, "name": "guest-b", "interface": "$TAP_B", "bridge": "$BR", "mac": "$MAC_B",
	  "bandwidth": { "out": { "rate": "100mbit" } } } ] }
EOF
	mv "$T/policies/iso.json.tmp" "$T/policies/iso.json"
}
write_policy
check "agent starts with guests A ($A) and B ($B) and DHCP on the bridge" -- agent_start --no-tpm ||
	{ tap_done; exit 1; }
attached() { [[ $(agent vm stats "$1" --json 2>/dev/null | jq -r '.vms[0].ifindex') != 0 ]]; }
dhcp_up() { agent dhcp status --json 2>/dev/null | jq -e --arg b "$BR" '.dhcp.bridges[] | select(.name == $b) | .up' >/dev/null; }
ready() { attached $A && attached $B && dhcp_up; }
check "both taps enforced and the DHCP server up on $BR" -- wait_for 10 ready
host_addrs=$(agent status --json | jq -r '.host_addresses // 0')
ok "$((host_addrs >= 2 ? 0 : 1))" "the agent knows the host's addresses ($host_addrs)"

# ctr VM DIR REASON: a packet counter of the VM.
ctr() { agent vm stats "$1" --json | jq -r ".vms[0].$2.reasons.$3.packets // 0"; }
status() { agent dhcp status --json | jq -r --arg b "$BR" ".dhcp.bridges[] | select(.name == \$b) | $1"; }
leases() { agent dhcp leases --json | jq -c '(if type == "object" then .leases else . end)[]'; }
lease_of() { leases | jq -r --argjson vm "$1" 'select(.vm_id == $vm and .state == "bound") | .ip'; }
held_by() { leases | jq -r --argjson vm "$1" 'select(.vm_id == $vm and .state != "free") | .ip' | wc -l; }
hostile() { ip netns exec "$NS_A" "$TOOL" eth0 "$MAC_A" "$@"; }
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
be_le() { local IFS=.; set -- $1; echo $(($1 | $2 << 8 | $3 << 16 | $4 << 24)); }
bound_ip() {	# the address rayos_ip_bind holds for VM $1, dotted
	local v; v=$(bpftool -j map lookup pinned "$PIN/rayos_ip_bind" key $(le32 "$1") 2>/dev/null |
		jq -r '(.formatted.value // .value).ipv4_be // empty')
	[[ -n $v ]] && echo "$((v & 255)).$((v >> 8 & 255)).$((v >> 16 & 255)).$((v >> 24 & 255))"
}

# A script for the clients that only sets the address.
cat >"$T/client-script" <<'EOF'
#!/bin/sh
r=${reason:-$1} a=${new_ip_address:-${ip:-}}
case "$r" in
BOUND|RENEW|REBIND|REBOOT|bound|renew) ip addr flush dev "$interface"; ip addr add "$a/24" dev "$interface" ;;
EXPIRE|FAIL|RELEASE|STOP|deconfig|leasefail|nak) ip addr flush dev "$interface" ;;
esac
exit 0
EOF
chmod +x "$T/client-script"
has_addr() { ip -n "$1" -4 -o addr show dev eth0 | grep -q "inet $NET\."; }

# ---- A's own lease, with dhclient -----------------------------------------
spawn DHC ip netns exec "$NS_A" dhclient -4 -d -v -lf "$T/a.leases" -pf "$T/a.pid" \
	-sf "$T/client-script" eth0 >"$T/dhclient.log" 2>&1
check "A (dhclient) takes a lease" -- wait_for 20 has_addr "$NS_A"
IP_A=$(lease_of $A)
diag "A holds ${IP_A:-nothing}"

# ---- the pool starvation attempt -------------------------------------------
c0=$(ctr $A out drop_dhcp_chaddr)
sent=$(hostile dhcp discover random 3000 5000 | awk '{ print $2 }')
for ((i = 100; i < 110; i++)); do hostile dhcp request random 1 0 "req=$NET.$i" >/dev/null; done
c1=$(ctr $A out drop_dhcp_chaddr)
ok "$(((c1 - c0) == ${sent:-0} + 10 ? 0 : 1))" \
	"A's ${sent:-0} DISCOVERs and 10 INIT-REBOOTs with invented chaddrs: all dropped as dhcp_chaddr ($((c1 - c0)))"
n0=$(status .naks_no_record) a0=$(status .acks)
for ((i = 100; i < 110; i++)); do hostile dhcp request "$MAC_A" 1 0 "req=$NET.$i" >/dev/null; done
sleep 0.5
n1=$(status .naks_no_record) a1=$(status .acks)
ok "$(((n1 - n0) >= 9 && (a1 - a0) <= 1 ? 0 : 1))" \
	"A's INIT-REBOOTs (own MAC) for every pool address: $((n1 - n0)) NAKed (no record), $((a1 - a0)) ACKed (its own)"
r0=$(ctr $A out drop_dhcp_rate)
t0=$EPOCHREALTIME
hostile dhcp discover "$MAC_A" 4000 4000 >/dev/null
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
r1=$(ctr $A out drop_dhcp_rate)
pass=$(awk -v s="$secs" 'BEGIN { printf "%d", 40 + 20 * s + 10 }')	# burst + rate + slack
ok "$(((r1 - r0) >= 4000 - pass ? 0 : 1))" \
	"A's flood of 4000 DISCOVERs ($secs s, own MAC): $((r1 - r0)) over its rate (20/s, burst 40), dropped as dhcp_rate"
ok "$(($(held_by $A) <= 1 ? 0 : 1))" "A holds at most one lease ($(held_by $A))"

# A also answers each of the server's ARP probes with a probe of its own.
k0=$(status .conflicts)
spawn ECHO ip netns exec "$NS_A" "$TOOL" eth0 "$MAC_A" probeback 5 >"$T/probeback.out" 2>&1
wait_for 5 grep -q '^listening' "$T/probeback.out"	# else it may miss the probe
spawn UDH ip netns exec "$NS_B" udhcpc -f -R -i eth0 -s "$T/client-script" -t 10 -T 1 -A 1 \
	>"$T/udhcpc.log" 2>&1
check "after the attack B (udhcpc) completes a DORA" -- wait_for 20 has_addr "$NS_B"
wait "$ECHO" 2>/dev/null
answered=$(awk '/^answered/ { print $2 }' "$T/probeback.out")
ok "$((${answered:-0} >= 1 && $(status .conflicts) == k0 ? 0 : 1))" \
	"A answered the server's ARP probes with its own (${answered:-0}): no conflict, no quarantine"
IP_B=$(lease_of $B)
ok "$([[ -n $IP_B ]] && ip -n "$NS_B" -4 addr show dev eth0 | grep -q "inet $IP_B/"; echo $?)" \
	"B's lease ($IP_B) is recorded for VM $B and on B's interface"
ok "$([[ $(bound_ip $B) == "$IP_B" ]]; echo $?)" "rayos_ip_bind[$B] holds $IP_B"
ifb_pk=$(cat /sys/class/net/rfb$B/statistics/tx_packets 2>/dev/null || echo 0)
ok "$((ifb_pk > 0 ? 0 : 1))" "B's frames, its DHCP too, went through its shaping ifb rfb$B ($ifb_pk)"
used=$(status .pool_used)
ok "$((used <= 2 ? 0 : 1))" "the pool holds A's and B's leases only ($used used of 10)"

# ---- forged RELEASE and DECLINE for B's lease --------------------------------
host_listen 0.0.0.0 "$P1" "$P2"
b_connects() { ip netns exec "$NS_B" timeout 5 nc -z -w2 "$NET.1" "$P1"; }
check "B reaches the host service it is allowed (tcp $P1)" -- b_connects
c0=$(ctr $A out drop_dhcp_chaddr) p0=$(ctr $A out pass_control) d0=$(status .declines)
hostile dhcp release "$MAC_B" 1 0 "ciaddr=$IP_B" "server=$NET.1" "src=${IP_A:-0.0.0.0}" "dst=$NET.1" >/dev/null
hostile dhcp decline "$MAC_B" 1 0 "req=$IP_B" "server=$NET.1" >/dev/null
hostile dhcp release "$MAC_A" 1 0 "ciaddr=$IP_B" "server=$NET.1" "src=${IP_A:-0.0.0.0}" "dst=$NET.1" >/dev/null
hostile dhcp decline "$MAC_A" 1 0 "req=$IP_B" "server=$NET.1" >/dev/null
sleep 0.5
c1=$(ctr $A out drop_dhcp_chaddr) p1=$(ctr $A out pass_control)
ok "$(((c1 - c0) == 2 ? 0 : 1))" "RELEASE and DECLINE with B's chaddr: dropped at A's tap as dhcp_chaddr ($((c1 - c0)))"
ok "$(((p1 - p0) >= 2 ? 0 : 1))" "RELEASE and DECLINE with A's own chaddr reach the server ($((p1 - p0)) passed)"
ok "$([[ $(lease_of $B) == "$IP_B" ]]; echo $?)" "B's lease is intact ($(lease_of $B))"
ok "$([[ $(bound_ip $B) == "$IP_B" ]]; echo $?)" "B's binding is intact ($(bound_ip $B))"
ok "$(($(status .declines) == d0 && $(leases | jq -r 'select(.state == "quarantined")' | wc -l) == 0 ? 0 : 1))" \
	"no address was declined or quarantined"
check "B's traffic still passes" -- b_connects
a0=$(status .acks)
acked() { (( $(status .acks) > a0 )); }
kill -USR1 "$UDH"	# busybox: renew now
check "B renews its lease" -- wait_for 10 acked
ok "$([[ $(lease_of $B) == "$IP_B" ]]; echo $?)" "... keeping $IP_B"

# ---- the host's own services ------------------------------------------------
# Another interface of the host (a bridge: the dummy driver may be missing),
# with an address the agent learns while it runs.
ip link add "$DUMMY" type bridge && on_exit "ip link del '$DUMMY'"
ip addr add "$OTHER/32" dev "$DUMMY"
ip link set "$DUMMY" up
check "the host has a second address, $OTHER on $DUMMY" -- bash -c "ip -4 -o addr show dev '$DUMMY' | grep -q 'inet $OTHER/'"
ip -n "$NS_A" route add "$OTHER/32" via "$NET.1" dev eth0
a_connects() { ip netns exec "$NS_A" timeout 5 nc -z -w2 "$1" "$P2"; }
sleep 1		# the agent hears of the new address
h0=$(ctr $A out drop_host)
a_connects "$NET.1"; r1=$?
a_connects "$OTHER"; r2=$?
h1=$(ctr $A out drop_host)
ok "$((r1 && r2 ? 0 : 1))" "a host service on 0.0.0.0:$P2 is unreachable from A (bridge address, and $OTHER added while the agent ran)"
ok "$(((h1 - h0) >= 2 ? 0 : 1))" "... counted as out drop_host ($((h1 - h0)))"
ok "$(! grep -q "^$P2 " "$T/served.log"; echo $?)" "... and the service saw nothing"
v=$(agent status --json | jq -r .policy.version)
applied() { (( $(agent status --json | jq -r .policy.version) > v )); }
write_policy "{ \"action\": \"allow\", \"protocol\": \"tcp\", \"ports\": [$P2] }"
wait_for 5 applied
check "with the host section allowing tcp $P2, A reaches it on the bridge address" -- a_connects "$NET.1"
check "... and on $OTHER" -- a_connects "$OTHER"
check "B, whose host rules do not allow it, still cannot" -- bash -c "! ip netns exec '$NS_B' timeout 5 nc -z -w2 '$NET.1' '$P2'"

# ---- link-local sources, ARP bursts, ICMP quotes ------------------------------
eui64() {	# the EUI-64 link-local address of MAC $1
	local IFS=:; set -- $1
	printf 'fe80::%x:%x:%x:%x' $(( (0x$1 ^ 2) << 8 | 0x$2 )) $(( 0x$3 << 8 | 0xff )) \
		$(( 0xfe << 8 | 0x$4 )) $(( 0x$5 << 8 | 0x$6 ))
}
passed() { echo $(( $(ctr $A out pass_default) + $(ctr $A out pass_flow) )); }
s0=$(ctr $A out drop_spoof_ip) q0=$(passed)
hostile udp fe80::1 "$(eui64 $MAC_B)" "$MAC_B" 40000 9 50 >/dev/null
hostile udp "$(eui64 $MAC_A)" "$(eui64 $MAC_B)" "$MAC_B" 40000 9 50 >/dev/null
s1=$(ctr $A out drop_spoof_ip) q1=$(passed)
ok "$(((s1 - s0) == 50 ? 0 : 1))" "50 datagrams from the link-local address fe80::1 (not A's): dropped as spoof_ip ($((s1 - s0)))"
ok "$(((q1 - q0) == 50 ? 0 : 1))" "50 from A's own EUI-64 link-local address $(eui64 $MAC_A): passed ($((q1 - q0)))"

rx() { ip netns exec "$NS_B" cat /sys/class/net/eth0/statistics/rx_packets; }
x0=$(ctr $A out drop_arp_rate) b0=$(rx)
t0=$EPOCHREALTIME
hostile arp 30000 "${IP_A:-0.0.0.0}" "$IP_B" >/dev/null
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
sleep 0.3
x1=$(ctr $A out drop_arp_rate) b1=$(rx)
limit=$(awk -v s="$secs" 'BEGIN { printf "%d", 200 + 100 * (s + 0.3) + 50 }')
ok "$(((x1 - x0) >= 30000 - limit ? 0 : 1))" "an ARP burst of 30,000 from A ($secs s): $((x1 - x0)) dropped as arp_rate"
ok "$(((b1 - b0) <= limit ? 0 : 1))" "... B received $((b1 - b0)) frames (at most $limit: burst 200 + 100/s)"

hostile udp "$IP_A" "$IP_B" "$MAC_B" 40000 7 1 >/dev/null	# a flow of A's, to B
k0=$(ctr $A out pass_related) k1=$(ctr $A out drop_icmp_quote) k2=$(ctr $A out drop_host)
hostile icmperr "$IP_A" "$IP_B" "$MAC_B" "$IP_B" "$IP_A" 7 40000 0 >/dev/null
hostile icmperr "$IP_A" "$IP_B" "$MAC_B" "$IP_B" "$IP_A" 7 40000 800 >/dev/null
hostile icmperr "$IP_A" "$NET.1" "$(cat /sys/class/net/$BR/address)" "$IP_B" "$IP_A" 7 40000 0 >/dev/null
ok "$(($(ctr $A out pass_related) - k0 == 1 ? 0 : 1))" "A's port unreachable back to B about their flow passes as related"
ok "$(($(ctr $A out drop_icmp_quote) - k1 == 1 ? 0 : 1))" "the same with 800 bytes after the quote: dropped as icmp_quote"
ok "$(($(ctr $A out drop_host) - k2 == 1 ? 0 : 1))" "the same error sent to the host instead of B is no part of the flow: dropped as host"

check "the agent is still running" -- kill -0 "$AGENT_PID"
tap_done
