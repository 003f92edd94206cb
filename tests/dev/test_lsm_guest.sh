#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The device programs in a kernel that runs BPF LSM programs: this host's
# kernel refuses them (EPERM), so the Debian test guest (tests/qemu/guest.sh)
# boots under TCG with lsm=...,bpf and bpftool, test_dev and their libraries
# in its initramfs.  There the verifier must accept rayos_lsm (rayos_file_open,
# which shares the capability walk with the cgroup device program) and
# rayos_dev; then test_dev runs (the LSM attached and deciding), or is a skip
# with the reason when the guest kernel refuses rayos_net, which the loader
# opens first (Debian's 6.1 does, for main's build as well).  Heavy: run
# under the suite lock.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "LSM in the guest"
need_cmds "LSM in the guest" qemu-system-x86_64 cpio gzip ldd timeout
BUILD=${BUILD:-build}
T=$(mktemp -d /tmp/rayos-test-lsm.XXXXXX) || exit 1
on_exit "rm -rf '$T'"
BIN=$BUILD/tests/dev/test_dev
[[ -x $BIN ]] || { skip "$BIN is not built" "LSM in the guest"; tap_done; exit 0; }
GUEST=$(BUILD=$BUILD tests/qemu/guest.sh 2>"$T/guest.err") ||
	{ skip "no test guest: $(tail -1 "$T/guest.err")" "LSM in the guest"; tap_done; exit 0; }

root=$T/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,lib64,lib/x86_64-linux-gnu,work}
cp /bin/busybox "$root/bin/busybox"
cp "$BIN" "$root/bin/test_dev"
BPFTOOL_BIN=$(command -v bpftool)
cp "$BPFTOOL_BIN" "$root/bin/bpftool"
for lib in $(ldd "$BIN" "$BPFTOOL_BIN" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }' | sort -u); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
done
# The objects the guest verifies on their own (RAYOS_GUEST_OBJS adds more,
# e.g. another build's, to compare).
for o in "$BUILD"/bpf/rayos_{lsm,dev,net}.bpf.o ${RAYOS_GUEST_OBJS:-}; do
	cp "$o" "$root/work/"
done
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
mount -t tmpfs run /run
mount -t securityfs securityfs /sys/kernel/security
mkdir -p /sys/fs/bpf /sys/fs/cgroup
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "RAYOS-LSM $(cat /sys/kernel/security/lsm)" >/dev/ttyS0
echo "RAYOS-KERNEL $(uname -r)" >/dev/ttyS0
for o in /work/*.bpf.o; do
	n=$(basename "$o" .bpf.o)
	mkdir -p "/sys/fs/bpf/$n"
	# Maps pin by name under /sys/fs/bpf: each object gets fresh ones.
	bpftool prog loadall "$o" "/sys/fs/bpf/$n/p" >/tmp/log 2>&1
	rc=$?
	rm -rf /sys/fs/bpf/rayos_*
	echo "RAYOS-LOAD $n $rc" >/dev/ttyS0
	[ $rc = 0 ] || grep -v '^;' /tmp/log | grep -v '^[0-9]*: ' | tail -6 | sed "s/^/RAYOS-LOG $n: /" >/dev/ttyS0
	rm -rf "/sys/fs/bpf/$n"
done
cd /work && /bin/test_dev >/dev/ttyS0 2>&1
echo "RAYOS-TEST-DEV-EXIT $?" >/dev/ttyS0
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$T/initrd.gz"

timeout 300 qemu-system-x86_64 -machine q35,accel=tcg -m 1024 -nodefaults -display none \
	-no-reboot -serial "file:$T/serial" \
	-kernel "$GUEST/vmlinuz" -initrd "$T/initrd.gz" \
	-append "console=ttyS0 panic=-1 quiet lsm=lockdown,capability,bpf" \
	>"$T/qemu.out" 2>"$T/qemu.err"
out=$(tr -d '\r' <"$T/serial" 2>/dev/null; cat "$T/qemu.err")
ok "$([[ $out == *"RAYOS-LSM "*bpf* ]]; echo $?)" "the guest kernel runs BPF LSM ($(grep -o 'RAYOS-LSM.*' <<<"$out"))"
ok "$([[ $out == *"RAYOS-LOAD rayos_lsm 0"* ]]; echo $?)" "the verifier of $(grep -o 'RAYOS-KERNEL.*' <<<"$out" | cut -d' ' -f2) accepts rayos_lsm (rayos_file_open, with the capability walk)"
ok "$([[ $out == *"RAYOS-LOAD rayos_dev 0"* ]]; echo $?)" "and rayos_dev (the cgroup device program)"
grep -E '^RAYOS-(LOAD|LOG)' <<<"$out" | sed 's/^/#   /'
if [[ $out != *"RAYOS-LOAD rayos_net 0"* ]]; then
	# The loader opens rayos_net first; a guest kernel whose verifier
	# refuses it (Debian 6.1 does, for main's build too) cannot run test_dev.
	skip "the guest kernel refuses rayos_net, which the loader opens first" \
		"test_dev (LSM attach and decisions) in the guest"
	tap_done
	exit
fi
ok "$([[ $out == *"lsm: active"* ]]; echo $?)" "rayos_file_open loads and attaches there ($(grep -o '#   lsm: .*' <<<"$out" | head -1))"
lsm_ok=$(grep -c '^ok [0-9]* - LSM' <<<"$out")
lsm_bad=$(grep -c '^not ok [0-9]* - LSM' <<<"$out")
ok "$(( lsm_ok > 0 && lsm_bad == 0 ? 0 : 1 ))" "its decisions in the guest: $lsm_ok LSM checks pass, $lsm_bad fail"
ok "$([[ $out == *"RAYOS-TEST-DEV-EXIT 0"* ]]; echo $?)" "test_dev passes in the guest ($(grep -E '^[0-9]+ passed' <<<"$out"))"
[[ $out == *"RAYOS-TEST-DEV-EXIT 0"* ]] || tail -40 <<<"$out" | sed "s/^/#   /"
tap_done
