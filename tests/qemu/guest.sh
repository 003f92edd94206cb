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
[ -n "$ip" ] && ip addr add "$ip" dev eth0
say "RAYOS-NET-UP $(cat /sys/class/net/eth0/address) $ip"
for p in $(arg rayos.serve | tr ',' ' '); do
	printf '#!/bin/sh\necho RAYOS-GUEST-%s\n' "$p" >/bin/serve-$p
	chmod +x /bin/serve-$p
	nc -ll -p "$p" -e /bin/serve-$p &
done
for hp in $(arg rayos.probe | tr ',' ' '); do
	h=${hp%:*} p=${hp#*:}
	if line=$(timeout 8 nc -w 4 "$h" "$p" </dev/null 2>/dev/null | head -1) && [ -n "$line" ]; then
		say "RAYOS-PROBE $hp open $line"
	else
		say "RAYOS-PROBE $hp closed"
	fi
done
say "RAYOS-PROBES-DONE"
[ -n "$hold" ] && sleep "$hold"
say "RAYOS-HOLD-END"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$DIR/initrd.gz.tmp"
mv "$DIR/initrd.gz.tmp" "$DIR/initrd.gz"
echo "$stamp" >"$DIR/initrd.stamp"
echo "$DIR"
