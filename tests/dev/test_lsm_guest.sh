#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The device programs in a kernel that runs BPF LSM programs: this host's
# kernel refuses them (EPERM), so tests/dev/test_dev boots the Debian test
# guest (tests/qemu/guest.sh, booted with lsm=...,bpf under TCG) with
# test_dev and its libraries in the initramfs and runs it there as init's
# child: the LSM program (rayos_file_open, which shares the capability walk
# with the cgroup device program) must load, attach and decide.  The
# guest's TAP lines are checked here.  Heavy: run under the suite lock.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "LSM in the guest"
need_cmds "LSM in the guest" qemu-system-x86_64 cpio gzip ldd timeout
BUILD=${BUILD:-build}
BIN=$BUILD/tests/dev/test_dev
[[ -x $BIN ]] || { skip "$BIN is not built" "LSM in the guest"; tap_done; exit 0; }
GUEST=$(BUILD=$BUILD tests/qemu/guest.sh 2>"$T/guest.err") ||
	{ skip "no test guest: $(tail -1 "$T/guest.err")" "LSM in the guest"; tap_done; exit 0; }

root=$T/root
mkdir -p "$root"/{bin,dev,proc,sys,tmp,run,lib64,lib/x86_64-linux-gnu,work}
cp /bin/busybox "$root/bin/busybox"
cp "$BIN" "$root/bin/test_dev"
for lib in $(ldd "$BIN" | awk '/=>/ { print $3 } /ld-linux/ { print $1 }'); do
	mkdir -p "$root$(dirname "$lib")"
	cp -L "$lib" "$root$lib"
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
ok "$([[ $out == *"lsm: active"* ]]; echo $?)" "rayos_file_open loads and attaches there ($(grep -o '#   lsm: .*' <<<"$out" | head -1))"
lsm_ok=$(grep -c '^ok [0-9]* - LSM' <<<"$out")
lsm_bad=$(grep -c '^not ok [0-9]* - LSM' <<<"$out")
ok "$(( lsm_ok > 0 && lsm_bad == 0 ? 0 : 1 ))" "its decisions in the guest: $lsm_ok LSM checks pass, $lsm_bad fail"
ok "$([[ $out == *"RAYOS-TEST-DEV-EXIT 0"* ]]; echo $?)" "test_dev passes in the guest ($(grep -E '^[0-9]+ passed' <<<"$out"))"
[[ $out == *"RAYOS-TEST-DEV-EXIT 0"* ]] || tail -40 <<<"$out" | sed "s/^/#   /"
tap_done
