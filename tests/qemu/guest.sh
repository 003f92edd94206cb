#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Builds the test guest into a cache directory from Debian packages: the
# kernel of linux-image-amd64 (unpacked with dpkg-deb, never installed on the
# host) and an initramfs of busybox-static with the virtio-net modules and
# an /init that runs the network checks the kernel command line asks for.
#   tests/qemu/guest.sh [DIR]     (default $BUILD/guest); prints DIR
# Afterwards DIR/vmlinuz and DIR/initrd.gz are the guest.  Downloads once:
# the .deb stays in DIR/deb and a rebuild only repacks the initramfs when
# this script or busybox changed.
#
# The guest's /init reads (kernel command line):
#   rayos.ip=A.B.C.D/N    static address of eth0 (until DHCP lands)
#   rayos.gw=A.B.C.D      the host side; its neighbour entry is static
#   rayos.serve=P,P       ports to answer on (each connection gets
#                         "RAYOS-GUEST-<port>" and is closed)
#   rayos.probe=H:P,H:P   TCP connections to try; each prints
#                         "RAYOS-PROBE H:P open <first line>" or
#                         "RAYOS-PROBE H:P closed"
#   rayos.hold=S          stay up S seconds after the probes (default 0)
#   rayos.dhcp=1          take eth0's address by DHCP (busybox udhcpc, the
#                         script /bin/udhcpc.script sets address and default
#                         route) instead of rayos.ip; prints
#                         "RAYOS-DHCP-LEASE A.B.C.D/N router R server S in MS ms"
#                         or "RAYOS-DHCP-FAIL after MS ms"
#   rayos.gwmac=MAC       a permanent neighbour entry rayos.gw -> MAC, so that
#                         the probes below send no ARP from their address
#   rayos.preip=A.B.C.D/N with rayos.dhcp: before DHCP, eth0 gets this address
#   rayos.preprobe=H:P    for the probes in rayos.preprobe ("RAYOS-PREPROBE
#                         H:P open|closed"), then loses it again
#   rayos.alias=+K        after the probes: a second address, eth0's address
#                         plus K in the last octet ("RAYOS-ALIAS A.B.C.D")
#   rayos.aprobe=H:P,...  TCP connections from that second address (a host
#                         route with "src"): "RAYOS-APROBE H:P open|closed"
# It prints RAYOS-NET-UP, RAYOS-PROBES-DONE and RAYOS-HOLD-END on the
# serial console, then powers off.
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
DIR=${1:-$BUILD/guest}
mkdir -p "$DIR/deb"
DIR=$(cd "$DIR" && pwd)

for c in apt-get dpkg-deb cpio gzip; do
	command -v "$c" >/dev/null || { echo "guest.sh: $c is missing (sudo tests/deps)" >&2; exit 1; }
done
BUSYBOX=/bin/busybox
if [[ ! -x $BUSYBOX ]] || ldd "$BUSYBOX" >/dev/null 2>&1; then
	echo "guest.sh: $BUSYBOX is not the static busybox (apt-get install busybox-static)" >&2
	exit 1
fi

# ---- kernel: the versioned package linux-image-amd64 depends on ----------
deb=$(ls "$DIR"/deb/linux-image-*-amd64_*.deb 2>/dev/null | head -1 || true)
if [[ -z $deb ]]; then
	pkg=$(apt-cache depends linux-image-amd64 2>/dev/null |
	      awk '/Depends: linux-image-[0-9]/ { print $2; exit }')
	if [[ -z $pkg ]]; then
		echo "guest.sh: apt-cache knows no linux-image-amd64 (run apt-get update)" >&2
		exit 1
	fi
	# apt's sandbox user must be able to write where it downloads.
	tmp=$(mktemp -d)
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download -q "$pkg" >/dev/null) ||
		{ rm -rf "$tmp"; echo "guest.sh: apt-get download $pkg failed" >&2; exit 1; }
	mv "$tmp"/*.deb "$DIR/deb/"
	rm -rf "$tmp"
	deb=$(ls "$DIR"/deb/linux-image-*-amd64_*.deb | head -1)
fi
# Keep only what the guest needs (vmlinuz, the modules below): the unpacked
# package is ~400 MB.  Modules go in load order, dependencies first, read
# from each module's .modinfo "depends=" (the package has no modules.dep).
if [[ ! -e $DIR/kernel.stamp || $(cat "$DIR/kernel.stamp") != "$deb" ||
      ! -e $DIR/modules/order || ! -e $DIR/vmlinuz ]]; then
	rm -rf "$DIR/modules" "$DIR/vmlinuz" "$DIR/kernel"
	x=$(mktemp -d)
	trap 'rm -rf "$x"' EXIT
	dpkg-deb -x "$deb" "$x"
	MODDIR=$(echo "$x"/lib/modules/*)
	declare -A seen=()
	order=()
	modfile() { find "$MODDIR/kernel" -name "$1.ko" -print -quit; }
	add_mod() {
		local name=$1 f dep
		[[ -n ${seen[$name]:-} ]] && return 0
		seen[$name]=1
		f=$(modfile "$name")
		[[ -n $f ]] || { echo "guest.sh: module $name is not in $deb" >&2; exit 1; }
		for dep in $(tr '\0' '\n' <"$f" | sed -n 's/^depends=//p' | tr ',' ' '); do
			add_mod "$dep"
		done
		order+=("$name")
	}
	add_mod virtio_pci
	add_mod virtio_net
	mkdir -p "$DIR/modules"
	for m in "${order[@]}"; do cp "$(modfile "$m")" "$DIR/modules/"; done
	printf '%s\n' "${order[@]}" >"$DIR/modules/order"
	cp "$x"/boot/vmlinuz-* "$DIR/vmlinuz"
	rm -rf "$x"
	trap - EXIT
	echo "$deb" >"$DIR/kernel.stamp"
fi

# ---- initramfs ------------------------------------------------------------
stamp="$deb $(sha256sum "$0" "$BUSYBOX" | awk '{print $1}' | tr '\n' ' ')"
if [[ -e $DIR/initrd.gz && -e $DIR/initrd.stamp && $(cat "$DIR/initrd.stamp") == "$stamp" ]]; then
	echo "$DIR"
	exit 0
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,lib/modules}
cp "$BUSYBOX" "$root/bin/busybox"
cp "$DIR"/modules/* "$root/lib/modules/"

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
arg() { sed -n "s/.*\\b$1=\\([^ ]*\\).*/\\1/p" /proc/cmdline; }
say() { echo "$*" >/dev/ttyS0; }
for m in $(cat /lib/modules/order); do insmod /lib/modules/$m.ko || say "RAYOS-ERROR insmod $m"; done
ip=$(arg rayos.ip) gw=$(arg rayos.gw) hold=$(arg rayos.hold)
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
ip link set lo up
ip link set eth0 up
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
# probe TAG H:P...: one TCP connection each, the first line it gets
probe() {
	tag=$1; shift
	for hp in "$@"; do
		h=${hp%:*} p=${hp#*:}
		if line=$(timeout 8 nc -w 4 "$h" "$p" </dev/null 2>/dev/null | head -1) && [ -n "$line" ]; then
			say "$tag $hp open $line"
		else
			say "$tag $hp closed"
		fi
	done
}
gwmac=$(arg rayos.gwmac)
[ -n "$gwmac" ] && [ -n "$gw" ] && arp -i eth0 -s "$gw" "$gwmac"
if [ "$(arg rayos.dhcp)" = 1 ]; then
	preip=$(arg rayos.preip)
	if [ -n "$preip" ]; then
		ip addr add "$preip" dev eth0
		probe RAYOS-PREPROBE $(arg rayos.preprobe | tr ',' ' ')
		ip addr del "$preip" dev eth0
	fi
	t0=$(ms)
	rm -f /tmp/lease
	udhcpc -f -q -n -i eth0 -t 10 -T 1 -s /bin/udhcpc.script >/tmp/udhcpc.log 2>&1
	t1=$(ms)
	if [ -s /tmp/lease ]; then
		read ip lrouter lserver </tmp/lease
		say "RAYOS-DHCP-LEASE $ip router $lrouter server $lserver in $((t1 - t0)) ms"
	else
		say "RAYOS-DHCP-FAIL after $((t1 - t0)) ms"
		sed 's/^/RAYOS-UDHCPC /' /tmp/udhcpc.log >/dev/ttyS0
	fi
fi
[ -n "$ip" ] && [ "$(arg rayos.dhcp)" != 1 ] && ip addr add "$ip" dev eth0
say "RAYOS-NET-UP $(cat /sys/class/net/eth0/address) $ip"
for p in $(arg rayos.serve | tr ',' ' '); do
	printf '#!/bin/sh\necho RAYOS-GUEST-%s\n' "$p" >/bin/serve-$p
	chmod +x /bin/serve-$p
	nc -ll -p "$p" -e /bin/serve-$p &
done
probe RAYOS-PROBE $(arg rayos.probe | tr ',' ' ')
alias=$(arg rayos.alias)
if [ -n "$alias" ] && [ -n "$ip" ]; then
	a=${ip%/*} n=${ip#*/}
	[ "$n" = "$ip" ] && n=32
	second=${a%.*}.$(( ${a##*.} + ${alias#+} ))
	ip addr add "$second/$n" dev eth0
	say "RAYOS-ALIAS $second"
	for hp in $(arg rayos.aprobe | tr ',' ' '); do
		ip route replace "${hp%:*}/32" dev eth0 src "$second"
		probe RAYOS-APROBE "$hp"
		ip route del "${hp%:*}/32" dev eth0
	done
fi
say "RAYOS-PROBES-DONE"
[ -n "$hold" ] && sleep "$hold"
say "RAYOS-HOLD-END"
poweroff -f
INIT
chmod +x "$root/init"
# udhcpc's event script: the lease becomes eth0's address and default route;
# /tmp/lease says "A.B.C.D/N ROUTER SERVER" for /init.
cat >"$root/bin/udhcpc.script" <<'SCRIPT'
#!/bin/busybox sh
case "$1" in
deconfig)
	ip addr flush dev "$interface"
	ip link set "$interface" up
	;;
bound|renew)
	ip addr flush dev "$interface"
	ip addr add "$ip/${mask:-24}" dev "$interface"
	r=${router%% *}
	[ -n "$r" ] && ip route replace default via "$r" dev "$interface"
	echo "$ip/${mask:-24} ${r:-none} ${serverid:-none}" >/tmp/lease
	;;
esac
exit 0
SCRIPT
chmod +x "$root/bin/udhcpc.script"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$DIR/initrd.gz.tmp"
mv "$DIR/initrd.gz.tmp" "$DIR/initrd.gz"
echo "$stamp" >"$DIR/initrd.stamp"
echo "$DIR"
