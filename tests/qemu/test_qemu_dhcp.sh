#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# A real guest takes its address from RayOS and can then only use that one.
# The guest (guest.sh, rayos.dhcp=1) boots under TCG through rayos-qemu on a
# bridge made for this test; the agent serves DHCP there (the policy's "dhcp"
# object) and its VM has a MAC and a bridge but no "ipv4", so it gets a pool
# address.  Checks: before any lease a non-DHCP IPv4 packet is refused as
# unbound; busybox udhcpc gets a pool address; `dhcp leases` shows it for the
# VM's MAC; rayos_ip_bind holds it for the VM (a lease, not static); a TCP
# connection from it to an allowed host port works; one from a second address
# the guest adds itself (leased + 1) reaches no listener and is counted as a
# spoof_ip drop in rayos_vm_stats.
# Traffic: one bridge + tap, no other port on the bridge, 198.18.0.0/15.
# The whole test is bounded by a watchdog (LIMIT seconds).
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "QEMU DHCP end-to-end"
need_cmds "QEMU DHCP end-to-end" qemu-system-x86_64 ip jq python3 timeout bpftool cpio dpkg-deb apt-get
need_guest "QEMU DHCP end-to-end"

# ---- watchdog: the whole test ends within LIMIT seconds, cleanups included.
LIMIT=${LIMIT:-80}
T_START=$EPOCHREALTIME
trap 'ok 1 "the test finished within $LIMIT s (watchdog fired)"; tap_done; exit 1' USR1
( trap 'kill $sp 2>/dev/null; exit 0' TERM
  sleep "$LIMIT" & sp=$!
  wait $sp && kill -USR1 $$ ) >/dev/null 2>&1 &
WD=$!
on_exit "kill -TERM $WD"
elapsed() { awk -v a="$1" -v b="${2:-$EPOCHREALTIME}" 'BEGIN { printf "%.1f", b - a }'; }

agent_env
VM=78 TAP=rd$$t BR=rd$$b MAC=52:54:00:78:00:02
for ((i = 0; i < 50; i++)); do
	NET=198.18.$((RANDOM % 250 + 2))
	[[ -z $(ip -4 -o addr show to "$NET.0/24") && -z $(ip -4 route show to match "$NET.1" | grep -v '^default') ]] && break
done
BR_MAC=$(printf '02:00:00:78:%02x:01' $((RANDOM % 256)))
POOL_LO=100 POOL_HI=103
PREIP=$NET.250		# the address the guest tries before it has a lease

# The bridge: only the VM's tap will ever join it.  Its MAC is fixed, so it
# does not change when the tap joins, and the guest gets it as a static
# neighbour entry (its probes then send no ARP from a foreign address).
ip link add "$BR" type bridge || exit 1
on_exit "ip link del '$BR'"
sysctl -qw "net.ipv6.conf.$BR.disable_ipv6=1"
ip link set "$BR" address "$BR_MAC"
ip addr add "$NET.1/24" dev "$BR"
ip link set "$BR" up

cat >"$T/policies/dhcp.json" <<EOF
{ "version": 1,
  "dhcp": { "bridges": { "$BR": {
	"server_ip": "$NET.1", "subnet": "$NET.0/24",
	"pools": ["$NET.$POOL_LO-$NET.$POOL_HI"], "router": "$NET.1",
	"lease_time": 600, "conflict_check": "arp" } } },
  "vms": [ { "id": $VM, "name": "dhcp-$VM", "interface": "$TAP", "bridge": "$BR",
	     "mac": "$MAC",
	     "capabilities": ["CAP_NETWORK", "CAP_CONSOLE"],
	     "host": { "rules": [ { "action": "allow", "protocol": "tcp", "ports": [9000] } ] },
	     "firewall": {
		"in":  { "default": "deny" },
		"out": { "default": "deny", "rules": [
			{ "action": "allow", "protocol": "tcp", "ports": [9000], "cidrs": ["$NET.1"] } ] } } } ] }
EOF
check "the policy (VM without ipv4, dhcp on $BR) is valid" -- \
	bash -c "'$AGENT' policy check '$T/policies/dhcp.json' >'$T/check.out' 2>&1" ||
	sed 's/^/#   /' "$T/check.out"
# --no-tpm: the TPM is not under test, and an embedded swtpm would outlive
# the agent's kill -9 in the cleanups.
check "agent starts with VM $VM and DHCP on $BR" -- agent_start --no-tpm || { tap_done; exit 1; }
# dhcp_up: the agent's server has its sockets on the bridge
dhcp_up() {
	agent dhcp status --json 2>/dev/null |
		jq -e --arg b "$BR" '.dhcp.bridges[] | select(.name == $b) | .up' >/dev/null 2>&1
}
sock_err() { grep -q "dhcp $BR: opening sockets" "$T/agent.log"; }
dhcp_up_or_err() { dhcp_up || sock_err; }
wait_for 5 dhcp_up_or_err
if dhcp_up; then
	ok 0 "the agent (capabilities: $(agent status --json | jq -r '.capabilities // "?"' 2>/dev/null)) serves DHCP on $BR"
else
	# With its dropped capabilities the agent still needs to bind UDP 67
	# (cap_net_bind_service, agent/core/privs.c): a failure here is that.
	ok 1 "the agent serves DHCP on $BR"
	agent dhcp status --json 2>&1 | sed 's/^/#   /'; grep -i dhcp "$T/agent.log" | tail -5 | sed 's/^/#   /'
fi

# Host side: answer "RAYOS-HOST-<port>" on 9000 (allowed out), log who connected.
host_listen "$NET.1" 9000

# ---- launch --------------------------------------------------------------
APPEND="console=ttyS0 quiet panic=-1 rayos.dhcp=1 rayos.gw=$NET.1 rayos.gwmac=$BR_MAC"
APPEND+=" rayos.preip=$PREIP/24 rayos.preprobe=$NET.1:9000"
APPEND+=" rayos.probe=$NET.1:9000 rayos.alias=+1 rayos.aprobe=$NET.1:9000 rayos.hold=60"
t0=$EPOCHREALTIME
guest_launch "$VM" "$APPEND"
wait_for 5 bash -c "[[ \$(readlink /proc/$QPID/exe) == *qemu-system-x86_64* ]]"
qst=$(grep -E '^(Uid|CapEff|Seccomp):' "/proc/$QPID/status" | awk '{ print $1, $2 }' | tr '\n' ' ')
ok "$([[ $qst != *"Uid: 0 "* && $qst == *"CapEff: 0000000000000000"* && $qst == *"Seccomp: 2"* ]]; echo $?)" \
	"QEMU runs unprivileged under its sandbox ($qst)"
SLOT=$(agent status --json | jq -r ".vms[] | select(.id == $VM) | .slot")
diag "VM $VM has slot ${SLOT:-?}"

# ---- the lease -----------------------------------------------------------
# lease: the agent's lease for the VM's MAC, as JSON ("" while there is none)
lease() {
	agent dhcp leases --json 2>/dev/null |
		jq -c --arg m "$MAC" '(if type == "object" then .leases else . end)[] | select(.mac == $m)' 2>/dev/null
}
lease_bound() { [[ $(lease | jq -r 'select(.state == "bound") | .ip' 2>/dev/null) ]]; }
wait_for 45 lease_bound
ok $? "the agent leased an address to $MAC ($(elapsed "$t0") s after launch, guest boot included)" || {
	diag "leases:"; agent dhcp leases --json 2>&1 | sed 's/^/#   /'
	diag "dhcp status:"; agent dhcp status --json 2>&1 | sed 's/^/#   /'
	diag "agent log:"; grep -i dhcp "$T/agent.log" | tail -20 | sed 's/^/#   /'
	diag "console:"; tr -d '\r' <"$T/console.log" | tail -20 | sed 's/^/#   /'; }
L=$(lease)
diag "lease: $L"
LIP=$(jq -r '.ip // empty' <<<"$L")
ok "$([[ -n $L ]] && jq -e --argjson vm "$VM" '.state == "bound" and .vm_id == $vm and .static == false' <<<"$L" >/dev/null 2>&1; echo $?)" \
	"dhcp leases: $MAC holds ${LIP:-nothing}, bound, for VM $VM, not a reservation"
last=${LIP##*.}
ok "$([[ $LIP == "$NET".* ]] && ((last >= POOL_LO && last <= POOL_HI)); echo $?)" \
	"the address comes from the pool $NET.$POOL_LO-$NET.$POOL_HI (${LIP:-none})"

wait_for 10 grep -aq 'RAYOS-DHCP-' "$T/console.log"
gl=$(grep -a 'RAYOS-DHCP-' "$T/console.log" | tr -d '\r' | head -1)
diag "guest: $gl"
ok "$([[ $gl == "RAYOS-DHCP-LEASE $LIP/24 router $NET.1 server $NET.1 "* ]]; echo $?)" \
	"the guest's udhcpc got $LIP/24, router and server $NET.1"
[[ $gl == *" in "*" ms" ]] && diag "time to lease in the guest (udhcpc start to the bound script): $(sed 's/.* in \([0-9]*\) ms/\1/' <<<"$gl") ms"

le32() { printf '%d %d %d %d' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24)); }
# ipv4_be read as a little-endian __u32: a.b.c.d -> a | b<<8 | c<<16 | d<<24
be_le() { local IFS=.; set -- $1; echo $(($1 | $2 << 8 | $3 << 16 | $4 << 24)); }
bind=$(bpftool -j map lookup pinned "$PIN/rayos_ip_bind" key $(le32 "$VM") 2>&1)
bv=$(jq -c '.formatted.value // .value' <<<"$bind" 2>/dev/null)
diag "rayos_ip_bind[$VM]: $bv"
bip=$(jq -r '.ipv4_be' <<<"$bv" 2>/dev/null) bfl=$(jq -r '.flags' <<<"$bv" 2>/dev/null)
ok "$([[ -n $LIP && $bip == "$(be_le "$LIP")" && -n $bfl ]] && (( (bfl & 1) && !(bfl & 4) )); echo $?)" \
	"rayos_ip_bind[$VM] holds $LIP (ipv4_be $bip), flags ${bfl:-?}: IPV4, not STATIC"
dump=$(bpftool map dump pinned "$PIN/rayos_ip_bind" 2>&1)
ok "$(grep -q "\"ipv4_be\": $(be_le "${LIP:-0.0.0.0}")" <<<"$dump"; echo $?)" \
	"bpftool map dump of rayos_ip_bind shows the leased address"

# ---- the guest's probes --------------------------------------------------
wait_for 40 grep -aq RAYOS-PROBES-DONE "$T/console.log"
ok $? "the guest ran its probes ($(elapsed "$t0") s after launch)" || {
	diag "console:"; tr -d '\r' <"$T/console.log" | tail -30 | sed 's/^/#   /'; }
grep -a RAYOS- "$T/console.log" | tr -d '\r' | sed 's/^/# guest: /'
ok "$(grep -aq "RAYOS-NET-UP $MAC $LIP/24" "$T/console.log"; echo $?)" \
	"the guest's NIC has the policy's MAC $MAC and the leased address"

ALIAS=$(tr -d '\r' <"$T/console.log" | sed -n 's/^RAYOS-ALIAS //p' | head -1)
ok "$(grep -aq "RAYOS-PROBE $NET.1:9000 open RAYOS-HOST-9000" "$T/console.log"; echo $?)" \
	"guest -> host tcp/9000 from the leased address connects and gets the host's reply"
ok "$(grep -q "^9000 $LIP\$" "$T/served.log"; echo $?)" "the host's listener saw the connection from $LIP"
ok "$([[ -n $ALIAS && $ALIAS != "$LIP" ]] && grep -aq "RAYOS-APROBE $NET.1:9000 closed" "$T/console.log"; echo $?)" \
	"guest -> host tcp/9000 from a second address it added (${ALIAS:-none}) does not connect"
ok "$([[ -n $ALIAS ]] && ! grep -q " $ALIAS\$" "$T/served.log"; echo $?)" \
	"the host's listener saw nothing from ${ALIAS:-the second address}"
ok "$(grep -aq "RAYOS-PREPROBE $NET.1:9000 closed" "$T/console.log"; echo $?)" \
	"before its lease the guest cannot connect from an address of its own choosing ($PREIP)"
ok "$(! grep -q " $PREIP\$" "$T/served.log"; echo $?)" "the host's listener saw nothing from $PREIP"

# ---- counters: rayos_vm_stats[slot], per CPU, summed --------------------
OUT=1 PASS_CTRL=3 SPOOF_IP=14 UNBOUND=17
stats=$(bpftool -j map lookup pinned "$PIN/rayos_vm_stats" key $(le32 "${SLOT:-0}") |
	jq -c '[.formatted.values[].value.c] | transpose | map(transpose | map(map(.packets) | add))')
ctr() { jq -r ".[$1][$2] // 0" <<<"$stats" 2>/dev/null || echo 0; }
n_spoof=$(ctr $OUT $SPOOF_IP) n_unb=$(ctr $OUT $UNBOUND) n_ctrl=$(ctr $OUT $PASS_CTRL)
diag "slot ${SLOT:-?} out: pass_ctrl $n_ctrl, spoof_ip $n_spoof, unbound $n_unb"
ok "$([[ -n $SLOT ]] && ((n_spoof >= 1)); echo $?)" "rayos_vm_stats counts the second address's packets as out spoof_ip ($n_spoof)"
ok "$([[ -n $SLOT ]] && ((n_unb >= 1)); echo $?)" "rayos_vm_stats counts the packets before the lease as out unbound ($n_unb)"
ok "$([[ -n $SLOT ]] && ((n_ctrl >= 2)); echo $?)" "the guest's DHCP client traffic passed as control ($n_ctrl out)"

# ---- QEMU exits ----------------------------------------------------------
kill -TERM "$QPID"
wait_for 10 bash -c "! kill -0 $QPID 2>/dev/null"
ok $? "QEMU stops on SIGTERM"
wait "$QPID" 2>/dev/null
ok "$(wait_for 5 bash -c "! [[ -e /sys/class/net/$TAP ]]"; echo $?)" "the tap $TAP went away with QEMU"
diag "whole test so far: $(elapsed "$T_START") s"
tap_done
