# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Shell side of the test harness: TAP output, temporary places that are
# always cleaned up (dirs, pins, namespaces, links, processes by PID), and
# helpers to run the real agent.  Source it, then call tap_done at the end.

BUILD=${BUILD:-build}
[[ $BUILD == /* ]] || BUILD=$PWD/$BUILD
AGENT=${AGENT:-$BUILD/rayos-agent}
_tap_n=0 _tap_fail=0 _tap_skip=0
_cleanups=()

ok() {	# ok COND-EXIT-STATUS NAME...
	local rc=$1; shift
	_tap_n=$((_tap_n + 1))
	if [[ $rc == 0 ]]; then
		echo "ok $_tap_n - $*"
	else
		echo "not ok $_tap_n - $*"
		_tap_fail=$((_tap_fail + 1))
	fi
	return "$rc"
}
check() {	# check NAME -- CMD...: ok if CMD succeeds
	local name=$1; shift; [[ $1 == -- ]] && shift
	"$@"; ok $? "$name"
}
skip() {	# skip REASON NAME...
	local reason=$1; shift
	_tap_n=$((_tap_n + 1)) _tap_skip=$((_tap_skip + 1))
	echo "ok $_tap_n - $* # SKIP $reason"
}
diag() { printf '# %s\n' "$@"; }
tap_done() {
	echo "1..$_tap_n"
	echo "$((_tap_n - _tap_fail - _tap_skip)) passed, $_tap_fail failed, $_tap_skip skipped"
	[[ $_tap_fail == 0 ]]
}

# Cleanups run in reverse order on any exit.
on_exit() { _cleanups=("$*" "${_cleanups[@]}"); }
_run_cleanups() {
	local c
	for c in "${_cleanups[@]}"; do eval "$c" >/dev/null 2>&1 || true; done
}
trap _run_cleanups EXIT
# A signal (tests/run's timeout sends TERM) must still run the cleanups:
# turn it into an ordinary exit so the EXIT trap fires.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

need_root() {
	if [[ $(id -u) != 0 ]]; then
		skip "needs root" "$@"
		tap_done
		exit 0
	fi
}

# A private set of agent directories and a pin root for this test.
agent_env() {
	T=$(mktemp -d /tmp/rayos-test.XXXXXX)
	on_exit "rm -rf '$T'"
	mkdir -p "$T/policies" "$T/state" "$T/run"
	PIN=/sys/fs/bpf/rayos-test-$$-$RANDOM
	on_exit "'$AGENT' stop --purge --run-dir '$T/run' --pin-root '$PIN'; rm -rf '$PIN'"
	METRICS_PORT=$((20000 + RANDOM % 20000))	# tests may run side by side
	AGENT_ARGS=(--policy-dir "$T/policies" --state-dir "$T/state" --run-dir "$T/run"
		    --pin-root "$PIN" --metrics-port "$METRICS_PORT")
}

# agent_start: the real agent in the background, log in $T/agent.log.
agent_start() {
	"$AGENT" start "${AGENT_ARGS[@]}" "$@" >>"$T/agent.log" 2>&1 &
	AGENT_PID=$!
	# A clean stop first: the agent ends the swtpm it started.
	on_exit "'$AGENT' stop --run-dir '$T/run' >/dev/null 2>&1; kill -9 $AGENT_PID"
	local i
	for ((i = 0; i < 100; i++)); do
		[[ -S $T/run/control.sock ]] && agent status --json >/dev/null 2>&1 && return 0
		kill -0 "$AGENT_PID" 2>/dev/null || break
		sleep 0.1
	done
	diag "agent did not come up; log:"; sed 's/^/#   /' "$T/agent.log"
	return 1
}

agent() { "$AGENT" "$1" --run-dir "$T/run" --pin-root "$PIN" "${@:2}"; }

# wait_for TIMEOUT_S CMD...: poll CMD every 20 ms until it succeeds.
wait_for() {
	local deadline=$(( $(date +%s%N) + ${1%.*}000000000 )); shift
	until "$@"; do
		(( $(date +%s%N) > deadline )) && return 1
		sleep 0.02
	done
}

# The cgroup v2 mount point (/sys/fs/cgroup, or /sys/fs/cgroup/unified on
# hybrid hosts); empty when none.
cgroup2_mount() { awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts; }

# need_guest NAME: skip the test NAME (and exit) unless rayos-qemu is built
# and tests/qemu/guest.sh can build the guest; sets GUEST to it.
need_guest() {
	local err=${TMPDIR:-/tmp}/rayos-guest.$$.err
	if [[ ! -x $BUILD/rayos-qemu ]]; then
		skip "$BUILD/rayos-qemu is not built (make)" "$1"
		tap_done; exit 0
	fi
	if ! GUEST=$(tests/qemu/guest.sh "$BUILD/guest" 2>"$err"); then
		skip "cannot build the guest: $(tail -1 "$err")" "$1"
		rm -f "$err"
		tap_done; exit 0
	fi
	rm -f "$err"
}

# guest_launch VM APPEND [QEMU-ARGS...]: boot the test guest ($GUEST) under
# TCG through rayos-qemu and check that rayos-qemu registered it (the test
# ends there if not).  QPID is its pid, the serial console goes to
# $T/console.log, rayos-qemu's output to $T/qemu.err; the VM's cgroup goes
# at exit.  QEMU runs unprivileged: the console file is opened here and
# handed over as an fd set, as libvirt does; the guest kernel and initrd
# must be readable by QEMU's user.
guest_launch() {
	local vm=$1 append=$2 con
	shift 2
	on_exit "rmdir '$(cgroup2_mount)/rayos/vm$vm'"
	on_exit "sleep 0.3"
	exec {con}>"$T/console.log"
	spawn QPID "$BUILD/rayos-qemu" --vm "$vm" --run-dir "$T/run" -- qemu-system-x86_64 \
		-machine q35,accel=tcg -m 256 -nodefaults -display none -no-reboot \
		-add-fd "fd=$con,set=9,opaque=console" -serial file:/dev/fdset/9 \
		-kernel "$GUEST/vmlinuz" -initrd "$GUEST/initrd.gz" \
		-append "$append" "$@" >"$T/qemu.out" 2>"$T/qemu.err"
	exec {con}>&-
	wait_for 15 grep -q 'registered on' "$T/qemu.err"
	ok $? "rayos-qemu registered VM $vm ($(head -1 "$T/qemu.err"))" || {
		sed 's/^/#   /' "$T/qemu.err" "$T/agent.log"; tap_done; exit 1; }
}

# host_listen ADDR PORT...: answer "RAYOS-HOST-<port>" on each port of ADDR
# (tests/qemu/host_serve.py) and log "<port> <peer>" to $T/served.log.
# Started directly (no timeout wrapper) so that the cleanup's kill -9 ends
# it; its output never goes to our stdout, which tests/run reads to EOF.
host_listen() {
	: >"$T/served.log"
	spawn SRV python3 tests/qemu/host_serve.py "$1" "$T/served.log" "${@:2}" >/dev/null 2>&1
	wait_for 5 test -e "$T/served.log.ready" || diag "host listener did not come up"
}

# vm_veth PREFIX MAC: a "VM" namespace $VMNS behind a veth, its host end
# $HOST (the tap the agent enforces on) in this namespace, the VM end $VMIF
# with MAC, addresses $NET.1 (host) and $NET.2 (VM) from a /24 of
# 198.18.0.0/15 no interface here uses.  No IPv6 (its ND/MLD chatter would
# land in counters) and permanent neighbours (no ARP), so every packet
# counted is one the test sent.  vmx CMD runs CMD in the VM namespace.
vm_veth() {
	netns_new VMNS || return 1
	HOST=$1$$a VMIF=$1$$b
	local i
	for ((i = 0; i < 50; i++)); do
		NET=198.18.$((RANDOM % 250 + 2))
		[[ -z $(ip -4 -o addr show to "$NET.0/24") &&
		   -z $(ip -4 route show to match "$NET.1" | grep -v '^default') ]] && break
	done
	ip link add "$HOST" type veth peer name "$VMIF" netns "$VMNS" || return 1
	on_exit "ip link del '$HOST'"
	sysctl -qw "net.ipv6.conf.$HOST.disable_ipv6=1"
	vmx sysctl -qw "net.ipv6.conf.all.disable_ipv6=1"
	ip -n "$VMNS" link set "$VMIF" address "$2"
	ip addr add "$NET.1/24" dev "$HOST"
	ip -n "$VMNS" addr add "$NET.2/24" dev "$VMIF"
	ip link set "$HOST" up
	ip -n "$VMNS" link set "$VMIF" up
	ip -n "$VMNS" link set lo up
	HOST_MAC=$(cat "/sys/class/net/$HOST/address")
	ip neigh replace "$NET.2" lladdr "$2" dev "$HOST" nud permanent
	ip -n "$VMNS" neigh replace "$NET.1" lladdr "$HOST_MAC" dev "$VMIF" nud permanent
}
vmx() { ip netns exec "$VMNS" "$@"; }

# free_net VAR: the first three octets of a /24 of 198.18.0.0/15 that no
# interface here uses and no route here covers (like vm_veth's $NET).
free_net() {
	local _i _n
	for ((_i = 0; _i < 50; _i++)); do
		_n=198.18.$((RANDOM % 250 + 2))
		[[ -z $(ip -4 -o addr show to "$_n.0/24") &&
		   -z $(ip -4 route show to match "$_n.1" | grep -v '^default') ]] && break
	done
	printf -v "$1" '%s' "$_n"
}

# bridge_guest VAR TAP MAC BRIDGE: a guest namespace (its name in VAR)
# whose eth0 has MAC and whose veth peer, TAP, is a port of BRIDGE here:
# the tap the agent enforces on.  IPv6 off on both ends (no ND chatter).
bridge_guest() {
	local _ns
	netns_new _ns || return 1
	ip link add "$2" type veth peer name eth0 netns "$_ns" || return 1
	on_exit "ip link del '$2'"
	ip netns exec "$_ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
	sysctl -qw "net.ipv6.conf.$2.disable_ipv6=1"
	ip -n "$_ns" link set eth0 address "$3"
	ip -n "$_ns" link set lo up
	ip -n "$_ns" link set eth0 up
	ip link set "$2" master "$4" up
	printf -v "$1" '%s' "$_ns"
}

# open_in_cgroup PROCS NODE [r|w|rw]: open NODE (read-write unless told)
# from a process moved into the cgroup whose cgroup.procs is PROCS; prints
# OK or the errno name (a mknod node of an absent driver: EPERM = the cgroup
# denies, ENXIO/ENODEV = allowed).
open_in_cgroup() {
	python3 - "$1" "$2" "${3:-rw}" <<'EOF'
import errno, os, sys
with open(sys.argv[1], "w") as f:
    f.write(str(os.getpid()))
flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[sys.argv[3]]
try:
    os.close(os.open(sys.argv[2], flags)); print("OK")
except OSError as e:
    print(errno.errorcode[e.errno])
EOF
}

# vm_stand_in VM: a process (sleep) registered as VM's QEMU, so the agent
# puts it in the VM's cgroup; its PID in QEMU, killed and the cgroup
# removed at exit.  Fails as `vm register` does.
vm_stand_in() {
	on_exit "rmdir '$(cgroup2_mount)/rayos/vm$1' 2>/dev/null"
	spawn QEMU sleep 300
	agent vm register "$1" --pid "$QEMU" >/dev/null
}

# tcp_probes ADDR PORT...: "PORT:open" for each port whose service (one of
# tests/qemu/host_serve.py's) answered, else "PORT:closed".  One SYN and
# its retransmit within 1.2 s: a dropped SYN never answers.
tcp_probes() {
	local p r out=()
	for p in "${@:2}"; do
		r=$(timeout 3 nc -w 1 "$1" "$p" </dev/null 2>/dev/null)
		if [[ $r == "RAYOS-HOST-$p" ]]; then out+=("$p:open"); else out+=("$p:closed"); fi
	done
	echo "${out[*]}"
}

# iperf_mbps ADDR [ARGS...]: TCP goodput to an iperf3 server on ADDR:5201
# over 3 s, in Mbit/s (-R: from it), once no earlier test flow is open.
iperf_mbps() {
	wait_for 3 bash -c "! ss -tn state established | grep -q '$1:5201'"
	timeout 20 iperf3 -c "$1" -p 5201 -t 3 -J "${@:2}" 2>/dev/null |
		jq -r '.end.sum_received.bits_per_second / 1e6 * 100 | round / 100'
}

# within VALUE LO HI: LO <= VALUE <= HI (decimals)
within() { awk -v m="$1" -v lo="$2" -v hi="$3" 'BEGIN { exit !(m >= lo && m <= hi) }'; }

# netns_new VAR: a network namespace with a unique name, stored in VAR and
# deleted on exit together with every process still running inside it.  It
# sets a variable instead of printing the name because an on_exit registered
# in a $(...) subshell would be lost with the subshell.
netns_new() {
	local ns=rayos-t$$-$RANDOM
	if [[ $# != 1 ]]; then
		echo "netns_new: usage: netns_new VAR (not \$(netns_new))" >&2
		return 2
	fi
	ip netns add "$ns" || return 1
	on_exit "ip netns del '$ns'"
	on_exit "kill -9 \$(ip netns pids '$ns') 2>/dev/null"
	printf -v "$1" '%s' "$ns"
}

# spawn VAR CMD...: CMD in the background, its PID in VAR, killed (by PID)
# on exit if it is still running.
spawn() {
	local _var=$1; shift
	"$@" &
	local pid=$!
	on_exit "kill -9 $pid"
	printf -v "$_var" '%s' "$pid"
}

# start_swtpm DIR: a swtpm of the test's own (state in DIR, errors in
# DIR/swtpm.err) on a free 127.0.0.1 port pair, killed at exit; sets PORT.
start_swtpm() {
	local dir=$1 try
	for try in 1 2 3 4 5; do
		PORT=$((30000 + (RANDOM % 10000) * 2))
		swtpm socket --tpm2 --tpmstate dir="$dir" --flags not-need-init,startup-clear \
			--server type=tcp,port=$PORT,bindaddr=127.0.0.1 \
			--ctrl type=tcp,port=$((PORT + 1)),bindaddr=127.0.0.1 \
			--pid file="$dir/pid" --daemon 2>>"$dir/swtpm.err" || continue
		on_exit "kill -9 $(cat "$dir/pid" 2>/dev/null || echo 0)"
		wait_for 5 tpm2_getcap properties-fixed -T "swtpm:host=127.0.0.1,port=$PORT" \
			>/dev/null 2>&1 && return 0
	done
	return 1
}

# need_cmds NAME CMD...: skip the whole test (one SKIP line naming NAME and
# the missing commands) unless every CMD is on PATH.
need_cmds() {
	local name=$1 c missing=(); shift
	for c in "$@"; do command -v "$c" >/dev/null 2>&1 || missing+=("$c"); done
	((${#missing[@]} == 0)) && return 0
	skip "missing ${missing[*]} (sudo tests/deps installs them)" "$name"
	tap_done
	exit 0
}
