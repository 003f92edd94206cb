#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# CAP_NETWORK gates the packet path of the running agent: a VM whose policy
# does not grant it passes no frame either way; `cap revoke ID CAP_NETWORK`
# stops a VM's traffic, flows already open included, from the next packet
# on, in both directions, counted as drop_no_cap_network; the revoke holds
# across a policy reload and with the agent SIGKILLed and restarted; `cap
# grant` brings the traffic back.  Two "VMs" (network namespaces behind
# veth pairs, ids 1600 and 1601), traffic only on those links, addressed
# from 198.18.0.0/15.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "CAP_NETWORK on the live packet path"
need_cmds "CAP_NETWORK on the live packet path" ip python3 jq bpftool timeout

agent_env
NOCAP_ID=1601 NOCAP_MAC=52:54:00:16:01:01
vm_veth rc "$NOCAP_MAC" || exit 1
NOCAP_HOST=$HOST NOCAP_VMIF=$VMIF NOCAP_NS=$VMNS NOCAP_NET=$NET
VM_ID=1600 VM_MAC=52:54:00:16:00:01
vm_veth rk "$VM_MAC" || exit 1

# write_policy [DESCRIPTION]: VM 1600 with CAP_NETWORK, VM 1601 without;
# both firewalls open both ways, so only the capability decides.
write_policy() {
	cat >"$T/policies/caps.json.tmp" <<EOF
{
	"version": 1, "description": "${1:-cap network}",
	"vms": [
		{ "id": $VM_ID, "name": "vm-cap", "interface": "$HOST", "mac": "$VM_MAC",
		  "ipv4": "$NET.2", "capabilities": ["CAP_NETWORK"],
		  "host": { "rules": [ { "action": "allow", "protocol": "udp" } ] },
		  "firewall": { "in": { "default": "allow" }, "out": { "default": "allow" } } },
		{ "id": $NOCAP_ID, "name": "vm-nocap", "interface": "$NOCAP_HOST",
		  "mac": "$NOCAP_MAC", "ipv4": "$NOCAP_NET.2", "capabilities": ["CAP_CONSOLE"],
		  "host": { "rules": [ { "action": "allow", "protocol": "udp" } ] },
		  "firewall": { "in": { "default": "allow" }, "out": { "default": "allow" } } }
	]
}
EOF
	mv "$T/policies/caps.json.tmp" "$T/policies/caps.json"
}
policy_version() { agent status --json | jq -r .policy.version; }

write_policy
check "agent starts with VMs $VM_ID and $NOCAP_ID" -- agent_start
wait_for 3 bash -c "'$AGENT' status --json --run-dir '$T/run' | jq -e '[.vms[] | select(.ifindex > 0)] | length == 2' >/dev/null"
ok $? "both VMs' programs are attached" || { tap_done; exit 1; }
slot_of() { agent status --json | jq -r ".vms[] | select(.id == $1) | .slot"; }
SLOT=$(slot_of $VM_ID) NOCAP_SLOT=$(slot_of $NOCAP_ID)

# ---- counters: rayos_vm_stats[slot], per CPU, summed --------------------
# The reason number as the ABI defines it (bpf/abi/net.h).
IN=0 OUT=1 NO_CAP=$(awk '/RAYOS_RSN_NO_CAP_NETWORK =/ { print $3 + 0 }' bpf/abi/net.h)
PASSES=(0 1 2 3 4)
le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
stats() {	# stats SLOT: [dir][reason] packets, summed over CPUs
	bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "$1") |
		jq -c '[.formatted.values[].value.c] | transpose | map(transpose | map(map(.packets) | add))'
}
# delta BEFORE AFTER DIR REASON...: packets counted between the snapshots
delta() {
	local a=$1 b=$2 dir=$3 n=0 r; shift 3
	for r in "$@"; do
		n=$((n + $(jq -r ".[$dir][$r]" <<<"$b") - $(jq -r ".[$dir][$r]" <<<"$a")))
	done
	echo "$n"
}

# ---- UDP: a bounded sender and a listener that counts (tests/lib/udp.py) --
UDP=$PWD/tests/lib/udp.py
# listen OUTFILE [NS] PORT DEV SECONDS [EXPECT]: a listener in the
# background; returns once it is bound.
listen() {
	local out=$1 ready=$T/ready.$RANDOM pfx=(); shift
	[[ $1 == rayos-* ]] && { pfx=(ip netns exec "$1"); shift; }
	spawn LISTEN_PID "${pfx[@]}" timeout 20 python3 "$UDP" listen "${@:1:3}" "$ready" "${@:4}" >"$out"
	wait_for 15 test -e "$ready" || diag "listener on $* not ready after 15 s"
}
send() { timeout 20 python3 "$UDP" send "$@"; }
# exchange TAG COUNT: COUNT datagrams each way between host and VM 1600;
# prints "<to VM> <to host>" as the listeners counted them.
exchange() {
	listen "$T/$1.vm" "$VMNS" 7001 "$VMIF" 8 "$2"; local l1=$LISTEN_PID
	listen "$T/$1.host" 7002 "$HOST" 8 "$2"; local l2=$LISTEN_PID
	# Source ports differ from the listeners' (SO_REUSEADDR would let a
	# sender's socket take datagrams meant for the listener).
	send 7003 "$NET.2" 7001 "$HOST" "$2" 0.002 &
	local s=$!
	vmx timeout 20 python3 "$UDP" send 7004 "$NET.1" 7002 "$VMIF" "$2" 0.002
	wait "$s" "$l1" "$l2"	# not a bare wait: the agent is a child too
	echo "$(cat "$T/$1.vm") $(cat "$T/$1.host")"
	diag "$1: VM counters [in, out] reason:packets: $(stats "$SLOT" | jq -c 'map([to_entries[] | select(.value > 0) | "\(.key):\(.value)"])')" >&2
}

# ---- a policy without CAP_NETWORK: nothing crosses the tap ----------------
s0=$(stats "$NOCAP_SLOT")
listen "$T/nocap.vm" "$NOCAP_NS" 7001 "$NOCAP_VMIF" 1.5; l1=$LISTEN_PID
listen "$T/nocap.host" 7002 "$NOCAP_HOST" 1.5; l2=$LISTEN_PID
send 7003 "$NOCAP_NET.2" 7001 "$NOCAP_HOST" 10 0.005 &
s=$!
ip netns exec "$NOCAP_NS" timeout 20 python3 "$UDP" send 7004 "$NOCAP_NET.1" 7002 "$NOCAP_VMIF" 10 0.005
wait "$s" "$l1" "$l2"
s1=$(stats "$NOCAP_SLOT")
got="$(cat "$T/nocap.vm") $(cat "$T/nocap.host")"
ok "$([[ $got == "0 0" ]]; echo $?)" "VM $NOCAP_ID without CAP_NETWORK: no datagram arrives either way (got $got)"
ok "$(( $(delta "$s0" "$s1" $IN $NO_CAP) >= 10 && $(delta "$s0" "$s1" $OUT $NO_CAP) >= 10 ? 0 : 1))" \
	"its frames are counted as no_cap_network both ways (in $(delta "$s0" "$s1" $IN $NO_CAP), out $(delta "$s0" "$s1" $OUT $NO_CAP))"
ok "$(( $(delta "$s0" "$s1" $IN "${PASSES[@]}") + $(delta "$s0" "$s1" $OUT "${PASSES[@]}") == 0 ? 0 : 1))" \
	"and none counted as passed"

# ---- VM 1600 holds it: traffic flows ----------------------------------------
got=$(exchange before 10)
ok "$([[ $got == "10 10" ]]; echo $?)" "VM $VM_ID with CAP_NETWORK: datagrams arrive both ways (got $got)"

# ---- revoke while flows are open ---------------------------------------------
# Senders both ways on the same ports until the test ends: their flows
# are open (tracked) when the revoke lands.  Bounded by their count; no
# timeout(1) in between, so that their pids are the senders themselves.
python3 "$UDP" send 7102 "$NET.2" 7101 "$HOST" 30000 0.002 &
S1=$!
ip netns exec "$VMNS" python3 "$UDP" send 7101 "$NET.1" 7102 "$VMIF" 30000 0.002 &
S2=$!
on_exit "kill -9 $S1 $S2"
z=$(stats "$SLOT")
flowing() {	# flowing SNAPSHOT: both directions passed >= 20 as flow since
	local now; now=$(stats "$SLOT")
	(( $(delta "$1" "$now" $IN 2) >= 20 && $(delta "$1" "$now" $OUT 2) >= 20 ))
}
wait_for 10 flowing "$z"
ok $? "before the revoke both flows are open and pass as flows"
out=$(agent cap revoke "$VM_ID" CAP_NETWORK 2>&1)
ok $? "cap revoke $VM_ID CAP_NETWORK ($out)"
b=$(stats "$SLOT")
sleep 0.5
c=$(stats "$SLOT")
n_pass=$(( $(delta "$b" "$c" $IN "${PASSES[@]}") + $(delta "$b" "$c" $OUT "${PASSES[@]}") ))
ok "$((n_pass == 0 ? 0 : 1))" "after the revoke returned, no packet of the open flows passed ($n_pass)"
ni=$(delta "$b" "$c" $IN $NO_CAP) no=$(delta "$b" "$c" $OUT $NO_CAP)
ok "$((ni >= 50 && no >= 50 ? 0 : 1))" "they are dropped as no_cap_network both ways (in $ni, out $no)"

m=$(python3 -c 'import sys, urllib.request
print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=5).read().decode())' "$METRICS_PORT")
ok "$(grep -q "rayos_vm_packets_total{vm=\"$VM_ID\".*reason=\"drop_no_cap_network\"} [1-9]" <<<"$m"; echo $?)" \
	"/metrics labels them reason=\"drop_no_cap_network\""

# ---- the revoke holds across a policy reload and an agent SIGKILL + restart --
v=$(policy_version)
write_policy "reloaded"
wait_for 3 bash -c "(( \$('$AGENT' status --json --run-dir '$T/run' | jq .policy.version) > $v ))"
ok $? "the policy reloads (version > $v)"
b=$(stats "$SLOT"); sleep 0.3; c=$(stats "$SLOT")
n_pass=$(( $(delta "$b" "$c" $IN "${PASSES[@]}") + $(delta "$b" "$c" $OUT "${PASSES[@]}") ))
ok "$((n_pass == 0 && $(delta "$b" "$c" $OUT $NO_CAP) > 0 ? 0 : 1))" \
	"after the reload the revoke still holds ($n_pass passed)"

kill -9 "$AGENT_PID"; wait "$AGENT_PID" 2>/dev/null
b=$(stats "$SLOT"); sleep 0.3; c=$(stats "$SLOT")
n_pass=$(( $(delta "$b" "$c" $IN "${PASSES[@]}") + $(delta "$b" "$c" $OUT "${PASSES[@]}") ))
ok "$((n_pass == 0 && $(delta "$b" "$c" $OUT $NO_CAP) > 0 ? 0 : 1))" \
	"with the agent SIGKILLed the kernel keeps dropping ($n_pass passed)"
check "the agent restarts" -- agent_start
b=$(stats "$SLOT"); sleep 0.3; c=$(stats "$SLOT")
n_pass=$(( $(delta "$b" "$c" $IN "${PASSES[@]}") + $(delta "$b" "$c" $OUT "${PASSES[@]}") ))
ok "$((n_pass == 0 && $(delta "$b" "$c" $OUT $NO_CAP) > 0 ? 0 : 1))" \
	"after the restart the revoke still holds ($n_pass passed)"
kill -9 "$S1" "$S2" 2>/dev/null; wait "$S1" "$S2" 2>/dev/null

# ---- grant brings it back -------------------------------------------------
out=$(agent cap grant "$VM_ID" CAP_NETWORK 2>&1)
ok $? "cap grant $VM_ID CAP_NETWORK ($out)"
got=$(exchange after 10)
ok "$([[ $got == "10 10" ]]; echo $?)" "granted again: datagrams arrive both ways (got $got)"

# ---- bad input changes nothing ----------------------------------------------
out=$(agent cap revoke 1699 CAP_NETWORK 2>&1)
ok "$([[ $? != 0 && $out == *1699* ]]; echo $?)" "revoke for an unknown VM is refused, naming it ($out)"
out=$(agent cap revoke "$VM_ID" CAP_NETWRK 2>&1)
ok "$([[ $? != 0 && $out == *CAP_NETWRK* ]]; echo $?)" "an unknown capability is refused, naming it ($out)"
got=$(exchange unchanged 5)
ok "$([[ $got == "5 5" ]]; echo $?)" "after the refused requests traffic still flows (got $got)"

tap_done
