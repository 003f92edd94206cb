#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The real agent enforcing a VM policy on real traffic.  The "VM" is a
# network namespace holding one end of a veth pair; the other end stays in
# the root namespace (where the agent attaches by name) and plays the tap.
# Checks the firewall both ways, flow tracking, IP/MAC anti-spoofing, rogue
# DHCP, the byte-rate limits (iperf3) and the per-VM counters.  Traffic stays
# on that one link, addressed from 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "live network enforcement"
need_cmds "live network enforcement" ip nc iperf3 python3 jq bpftool ping timeout

agent_env
VM_ID=42 VM_MAC=52:54:00:5e:00:02 BAD_MAC=52:54:00:5e:00:99
vm_veth rv "$VM_MAC" || exit 1

# write_policy [BANDWIDTH-JSON]: VM 42 on $HOST.  In: TCP 8080 from
# 198.18.0.0/15 only.  Out: TCP 9000 and 5201, UDP 5201 to the host, ICMP.
# The host is this test's peer: its "host" rules let the firewall decide.
write_policy() {
	cat >"$T/policies/live.json.tmp" <<EOF
{
	"version": 1,
	"vms": [ {
		"id": $VM_ID, "name": "vm-live", "interface": "$HOST",
		"mac": "$VM_MAC", "ipv4": "$NET.2", "capabilities": ["CAP_NETWORK"],
		${1:+\"bandwidth\": $1,}
		"host": { "default": "allow" },
		"firewall": {
			"in": { "default": "deny", "rules": [
				{ "action": "allow", "protocol": "tcp", "ports": [8080],
				  "cidrs": ["198.18.0.0/15"] } ] },
			"out": { "default": "deny", "rules": [
				{ "action": "allow", "protocol": "tcp", "ports": [9000, 5201],
				  "cidrs": ["$NET.1"] },
				{ "action": "allow", "protocol": "udp", "ports": [5201],
				  "cidrs": ["$NET.1"] },
				{ "action": "allow", "protocol": "icmp" } ] }
		}
	} ]
}
EOF
	mv "$T/policies/live.json.tmp" "$T/policies/live.json"
}
policy_version() { agent status --json | jq -r .policy.version; }
# apply_policy [BANDWIDTH-JSON]: write it and wait until the agent applied it.
apply_policy() {
	local v; v=$(policy_version)
	write_policy "$@"
	wait_for 3 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
}

write_policy
check "agent starts with VM $VM_ID on $HOST" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '.vms[0].ifindex == $(cat "/sys/class/net/$HOST/ifindex")' >/dev/null"
ok $? "the VM's programs are attached to $HOST" || { tap_done; exit 1; }
SLOT=$(agent status --json | jq -r '.vms[0].slot')

# ---- counters: rayos_vm_stats[slot], per CPU, summed --------------------
IN=0 OUT=1
PASS_RULE=0 PASS_DEFAULT=1 PASS_FLOW=2 PASS_CTRL=3
DROP_RULE=8 DROP_DEFAULT=9 SPOOF_MAC=13 SPOOF_IP=14 ROGUE_DHCP=18 RATE=20 DHCP_CHADDR=22
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
# stats: the VM's counters as [dir][reason] = {packets, bytes}, summed over CPUs.
stats() {
	bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "$SLOT") |
		jq -c '[.formatted.values[].value.c] | transpose | map(transpose | map({
			packets: (map(.packets) | add), bytes: (map(.bytes) | add)}))'
}
# ctr SNAPSHOT DIR REASON [packets|bytes]
ctr() { jq -r ".[$2][$3].${4:-packets}" <<<"$1"; }
# delta BEFORE AFTER DIR REASON...: packets counted between the snapshots
delta() {
	local a=$1 b=$2 dir=$3 n=0 r; shift 3
	for r in "$@"; do n=$((n + $(ctr "$b" "$dir" "$r") - $(ctr "$a" "$dir" "$r"))); done
	echo "$n"
}
rule_ctr() {	# rule_ctr DIR RULE: packets rule RULE of DIR decided
	bpftool -j map lookup pinned "$PIN/rayos_rule_stats" \
		key $(le32 $((SLOT * 128 + $1 * 64 + $2))) |
		jq '.formatted.value.packets'
}

# ---- UDP helpers (python3): a bounded sender and a device-bound listener --
cat >"$T/udp.py" <<'EOF'
# send SRC_PORT DST DST_PORT DEV COUNT  |  listen PORT DEV SECONDS READY_FILE
# Datagrams carry a RAYOS-TEST marker; the listener prints how many it got.
import os, socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
if sys.argv[1] == "send":
    sport, dst, dport, dev, count = sys.argv[2:7]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.bind(("0.0.0.0", int(sport)))
    msg = b"RAYOS-TEST" + bytes(290)
    if os.environ.get("CHADDR"):    # a BOOTREQUEST for that MAC, marker in sname
        msg = bytearray(300)
        msg[0:3] = b"\x01\x01\x06"
        msg[28:34] = bytes.fromhex(os.environ["CHADDR"].replace(":", ""))
        msg[44:54] = b"RAYOS-TEST"
        msg = bytes(msg)
    for _ in range(int(count)):
        try:    # a drop on the sender's own egress hook shows as ENOBUFS
            s.sendto(msg, (dst, int(dport)))
        except OSError:
            pass
        time.sleep(0.001)
else:
    port, dev, secs, ready = sys.argv[2:6]
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, dev.encode())
    s.bind(("0.0.0.0", int(port)))
    open(ready, "w").close()
    n, end = 0, time.time() + float(secs)
    while (left := end - time.time()) > 0:
        s.settimeout(left)
        try:
            n += b"RAYOS-TEST" in s.recv(2048)
        except socket.timeout:
            break
    print(n)
EOF
udp_send() { timeout 10 python3 "$T/udp.py" send "$@"; }
udp_send_vm() { vmx timeout 10 python3 "$T/udp.py" send "$@"; }
# udp_listen_bg OUTFILE NETNS-CMD-PREFIX... -- PORT DEV SECONDS: listener in the
# background, returns when it is bound.
udp_listen_bg() {
	local out=$1 ready=$T/ready.$RANDOM; shift
	rm -f "$ready"
	spawn LISTEN_PID "$@" timeout 15 python3 "$T/udp.py" listen "${LISTEN_ARGS[@]}" "$ready" >"$out"
	wait_for 3 test -e "$ready"
}

# ---- firewall ------------------------------------------------------------
spawn NC1 vmx nc -lk 8080
spawn NC2 vmx nc -lk 8081
spawn NC3 nc -lk "$NET.1" 9000
spawn NC4 nc -lk "$NET.1" 9001
sleep 0.3
check "host -> VM tcp/8080 connects (in rule allows 198.18.0.0/15)" -- \
	timeout 5 nc -z -w1 "$NET.2" 8080
! timeout 5 nc -z -w1 "$NET.2" 8081
ok $? "host -> VM tcp/8081 does not connect (default deny in; a listener is there)"
s0=$(stats)
check "VM -> host tcp/9000 connects (out rule)" -- vmx timeout 5 nc -z -w1 "$NET.1" 9000
s1=$(stats)
n=$(delta "$s0" "$s1" $IN $PASS_FLOW)
ok "$((n >= 2 ? 0 : 1))" "the return traffic of the VM's connection passed by flow, no in rule ($n packets)"
! vmx timeout 5 nc -z -w1 "$NET.1" 9001
ok $? "VM -> host tcp/9001 does not connect (default deny out)"
kill -9 "$NC3" 2>/dev/null; wait "$NC3" 2>/dev/null
spawn NC3 bash -c "echo pong | timeout 10 nc -l -N '$NET.1' 9000 >/dev/null"
sleep 0.2
reply=$(echo ping | vmx timeout 5 nc -N -w2 "$NET.1" 9000)
ok "$([[ $reply == pong ]]; echo $?)" "data flows both ways on the VM's outgoing connection (got '$reply')"

# ---- anti-spoofing -------------------------------------------------------
kill -9 "$NC3" 2>/dev/null; wait "$NC3" 2>/dev/null
spawn NC3 nc -lk "$NET.1" 9000
sleep 0.2
vmx ip addr add "$NET.3/24" dev "$VMIF"
ip neigh replace "$NET.3" lladdr "$VM_MAC" dev "$HOST" nud permanent
s0=$(stats)
! vmx timeout 5 nc -z -w1 -s "$NET.3" "$NET.1" 9000
ok $? "a connection from a second, unbound VM address ($NET.3) fails"
s1=$(stats)
n=$(delta "$s0" "$s1" $OUT $SPOOF_IP)
ok "$((n >= 1 ? 0 : 1))" "rayos_vm_stats counts it as out spoof_ip ($n)"
vmx ip addr del "$NET.3/24" dev "$VMIF"
check "the bound address still connects" -- vmx timeout 5 nc -z -w1 -s "$NET.2" "$NET.1" 9000

vmx ip link set "$VMIF" address "$BAD_MAC"
s0=$(stats)
! vmx timeout 5 nc -z -w1 "$NET.1" 9000
ok $? "with a MAC other than the policy's ($BAD_MAC) the VM cannot connect"
s1=$(stats)
n=$(delta "$s0" "$s1" $OUT $SPOOF_MAC)
ok "$((n >= 1 ? 0 : 1))" "rayos_vm_stats counts it as out spoof_mac ($n)"
vmx ip link set "$VMIF" address "$VM_MAC"
check "back on the policy's MAC the VM connects again" -- vmx timeout 5 nc -z -w1 "$NET.1" 9000

# ---- DHCP hygiene --------------------------------------------------------
LISTEN_ARGS=(68 "$HOST" 2)
udp_listen_bg "$T/got68"
s0=$(stats)
udp_send_vm 67 255.255.255.255 68 "$VMIF" 5
udp_send_vm 67 "$NET.1" 68 "$VMIF" 5
wait "$LISTEN_PID"
s1=$(stats)
ok "$([[ $(cat "$T/got68") == 0 ]]; echo $?)" \
	"no rogue DHCP OFFER (VM 67 -> 68, broadcast and unicast) reaches the host ($(cat "$T/got68") of 10)"
n=$(delta "$s0" "$s1" $OUT $ROGUE_DHCP)
ok "$((n == 10 ? 0 : 1))" "rayos_vm_stats counts exactly 10 out rogue_dhcp ($n)"

LISTEN_ARGS=(67 "$HOST" 2)
udp_listen_bg "$T/got67"
s0=$(stats)
CHADDR=$VM_MAC udp_send_vm 68 255.255.255.255 67 "$VMIF" 5
wait "$LISTEN_PID"
s1=$(stats)
ok "$([[ $(cat "$T/got67") == 5 ]]; echo $?)" "a DHCP DISCOVER (VM 68 -> 67 broadcast) reaches the host ($(cat "$T/got67") of 5)"
n=$(delta "$s0" "$s1" $OUT $PASS_CTRL)
ok "$((n == 5 ? 0 : 1))" "... counted as out pass_ctrl, outside the firewall ($n)"

LISTEN_ARGS=(67 "$HOST" 2)
udp_listen_bg "$T/got67b"
s0=$(stats)
CHADDR=$BAD_MAC udp_send_vm 68 255.255.255.255 67 "$VMIF" 5
udp_send_vm 68 255.255.255.255 67 "$VMIF" 5
wait "$LISTEN_PID"
s1=$(stats)
ok "$([[ $(cat "$T/got67b") == 0 ]]; echo $?)" "a DISCOVER naming another MAC, or no BOOTP header, does not reach the host ($(cat "$T/got67b") of 10)"
n=$(delta "$s0" "$s1" $OUT $DHCP_CHADDR)
ok "$((n == 10 ? 0 : 1))" "... counted as out dhcp_chaddr ($n)"

LISTEN_ARGS=(68 "$VMIF" 2)
udp_listen_bg "$T/got68vm" vmx
udp_send 67 "$NET.2" 68 "$HOST" 5
wait "$LISTEN_PID"
ok "$([[ $(cat "$T/got68vm") == 5 ]]; echo $?)" "a DHCP reply from the host side (67 -> 68) reaches the VM ($(cat "$T/got68vm") of 5)"

# ---- counters: known numbers of packets ------------------------------------
s0=$(stats)
udp_send_vm 40000 "$NET.1" 9999 "$VMIF" 100
s1=$(stats)
n=$(delta "$s0" "$s1" $OUT $DROP_DEFAULT)
ok "$((n == 100 ? 0 : 1))" "100 UDP datagrams VM -> host:9999 (default deny out): drop_default out +$n"

udp_send 40000 "$NET.2" 7777 "$HOST" 100
s2=$(stats)
n=$(delta "$s1" "$s2" $IN $DROP_DEFAULT)
ok "$((n == 100 ? 0 : 1))" "100 UDP datagrams host -> VM:7777 (default deny in): drop_default in +$n"

r0=$(rule_ctr $OUT 2)
vmx timeout 20 ping -q -c 100 -i 0.005 -W 1 "$NET.1" >/dev/null
ok $? "100 pings VM -> host all answered (icmp out rule, replies by flow)"
s3=$(stats)
n_out=$(delta "$s2" "$s3" $OUT $PASS_RULE $PASS_FLOW)
n_in=$(delta "$s2" "$s3" $IN $PASS_FLOW)
n_rule=$(( $(rule_ctr $OUT 2) - r0 ))
ok "$((n_out == 100 && n_in == 100 && n_rule == 1 ? 0 : 1))" \
	"counters: out pass_rule+pass_flow +$n_out, in pass_flow +$n_in (100 each), icmp rule hits +$n_rule (1: the rest by flow)"

timeout 20 ping -q -c 100 -i 0.005 -W 0.2 "$NET.2" >/dev/null 2>&1
s4=$(stats)
n=$(delta "$s3" "$s4" $IN $DROP_DEFAULT)
ok "$((n >= 100 ? 0 : 1))" "100 pings host -> VM (no icmp in rule): drop_default in +$n (>= 100: ping resends on ENOBUFS)"

# ---- bandwidth -------------------------------------------------------------
# Accuracy is judged on L2 (wire) bytes.  UDP: the bytes
# delivered between second 1.5 and 5.5 of a 6-second iperf3 run, for
# guest->host what the VM's ifb shaper sent on, for host->guest what the VM's
# interface received (both after the queue, unlike the programs' pass
# counters).  TCP: see tcp_wire.  iperf3's goodput is printed next to it.
delivered() {	# delivered DIR: byte counter after the shaper
	if [[ $1 == "$OUT" && -e /sys/class/net/rfb$VM_ID ]]; then
		ip -j -s link show "rfb$VM_ID" | jq '.[0].stats64.tx.bytes'
	elif [[ $1 == "$OUT" ]]; then	# unshaped: all the tap received
		ip -j -s link show "$HOST" | jq '.[0].stats64.rx.bytes'
	else
		ip -n "$VMNS" -j -s link show "$VMIF" | jq '.[0].stats64.rx.bytes'
	fi
}
iperf3 -s -B "$NET.1" -p 5201 -D -I "$T/iperf3.pid" --logfile "$T/iperf3.log" || exit 1
wait_for 3 test -s "$T/iperf3.pid"
on_exit "kill -9 \$(cat '$T/iperf3.pid')"
wait_for 3 bash -c "ss -ltn | grep -q '$NET.1:5201'"

# measure DIR [iperf3 args]: prints "l2_mbit goodput_mbit"
measure() {
	local dir=$1 a b ta tb pid; shift
	# The server takes a moment after a test before it accepts the next.
	wait_for 3 bash -c "! ss -tn state established | grep -q '$NET.1:5201'"
	vmx timeout 20 iperf3 -c "$NET.1" -t 6 -J "$@" >"$T/iperf3.json" 2>&1 &
	pid=$!
	sleep 1.5
	# Timestamps around each read: the midpoint is when the counter was read.
	ta=$EPOCHREALTIME; a=$(delivered "$dir"); ta=$(awk -v x="$ta" -v y="$EPOCHREALTIME" 'BEGIN { printf "%.6f", (x + y) / 2 }')
	sleep 4
	tb=$EPOCHREALTIME; b=$(delivered "$dir"); tb=$(awk -v x="$tb" -v y="$EPOCHREALTIME" 'BEGIN { printf "%.6f", (x + y) / 2 }')
	wait "$pid"
	local bytes=$((b - a))
	local good
	jq -e .error "$T/iperf3.json" >/dev/null 2>&1 &&
		diag "iperf3 $*: $(jq -r .error "$T/iperf3.json")" >&2
	good=$(jq -r 'if .end.sum_received then .end.sum_received.bits_per_second
		      else .end.sum.bits_per_second * (100 - .end.sum.lost_percent) / 100 end
		      / 1e6' "$T/iperf3.json" 2>/dev/null)
	awk -v b="$bytes" -v ta="$ta" -v tb="$tb" -v g="${good:-0}" \
		'BEGIN { printf "%.2f %.2f\n", b * 8 / (tb - ta) / 1e6, g }'
}
# TCP's wire rate from what the receiver got over the whole run (slow start
# is a few ms of it, a per-interval view is quantised by 64 KiB GSO chunks at
# low rates): the interface counters see a GSO packet's headers once, but tbf
# charges every segment's headers (qdisc_pkt_len), so the wire rate is
# payload * (MSS + 14 Ethernet + 20 IP + 32 TCP with timestamps) / MSS.
tcp_wire() {
	jq -r '(.start.tcp_mss_default // 1448) as $mss
	       | .end.sum_received.bits_per_second * ($mss + 66) / $mss / 1e6
	       * 100 | round / 100' "$T/iperf3.json"
}
within5() { awk -v m="$1" -v r="$2" 'BEGIN { exit !(m >= r * 0.95 && m <= r * 1.05) }'; }

read -r base_out _ < <(measure $OUT)
read -r base_in _ < <(measure $IN -R)
diag "unlimited veth TCP: out (VM->host) $base_out Mbit/s, in (host->VM) $base_in Mbit/s (L2)"
base=$(awk -v a="$base_out" -v b="$base_in" 'BEGIN { print (a < b ? a : b) }')

ok "$(awk -v b="$base" 'BEGIN { exit !(b > 50) }'; echo $?)" "the unlimited veth carries TCP ($base Mbit/s)"
for rate in 10 100 1000; do
	if awk -v r="$rate" -v b="$base" 'BEGIN { exit !(r > 0.7 * b) }'; then
		skip "$rate Mbit/s is above 70% of the unlimited veth rate ($base Mbit/s)" \
			"TCP at ${rate} Mbit/s"
		continue
	fi
	apply_policy "{ \"in\": { \"rate\": \"${rate}mbit\" }, \"out\": { \"rate\": \"${rate}mbit\" } }"
	ok $? "policy with ${rate}mbit both ways applied"
	for d in out in; do
		if [[ $d == out ]]; then dir=$OUT args=(); else dir=$IN args=(-R); fi
		s0=$(stats)
		read -r _ good < <(measure "$dir" "${args[@]}")
		l2=$(tcp_wire)
		s1=$(stats)
		drops=$(delta "$s0" "$s1" "$dir" $RATE)
		err=$(awk -v m="$l2" -v r="$rate" 'BEGIN { printf "%+.1f", (m / r - 1) * 100 }')
		msg="TCP $d ${rate} Mbit/s: wire $l2 Mbit/s ($err%), goodput $good, rate drops $drops"
		diag "$msg"
		if ((rate <= 100)); then
			within5 "$l2" "$rate"; ok $? "$msg: within 5%"
		fi
		read -r l2 good < <(measure "$dir" -u -b "$((rate * 2))M" -l 1400 "${args[@]}")
		err=$(awk -v m="$l2" -v r="$rate" 'BEGIN { printf "%+.1f", (m / r - 1) * 100 }')
		msg="UDP $d ${rate} Mbit/s offered $((rate * 2)): L2 $l2 Mbit/s ($err%), goodput $good"
		diag "$msg"
		if ((rate <= 100)); then
			within5 "$l2" "$rate"; ok $? "$msg: within 5%"
		fi
	done
done

tap_done
