#!/bin/sh
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Creates the system user rayos-qemu runs QEMU as (idempotent; run as root;
# `make install` and tests/deps run it):
#   - a system user and group, no home, no login shell;
#   - in group kvm when the host has one (/dev/kvm is root:kvm 0660);
#   - a subordinate uid range in /etc/subuid, so that each running VM's
#     QEMU gets its own uid (processes of one uid can trace and signal each
#     other).  The range must not overlap another one or hold an account.
#   qemu-hooks/rayos-qemu-user.sh [USER]        (default rayos-qemu)
#   RAYOS_QEMU_SUBUIDS=FIRST-LAST               (default 1879048192-1879113727,
#                                                0x70000000 + 65536: above the
#                                                ranges containers pick)
set -eu
user=${1:-rayos-qemu}
range=${RAYOS_QEMU_SUBUIDS:-1879048192-1879113727}
first=${range%-*} last=${range#*-}

case $first$last in
*[!0-9]*|'') echo "rayos-qemu-user: RAYOS_QEMU_SUBUIDS=$range is not FIRST-LAST" >&2; exit 2 ;;
esac
if [ "$first" -lt 1000 ] || [ "$last" -lt "$first" ] || [ "$last" -gt 4294967294 ]; then
	echo "rayos-qemu-user: range $range must lie within 1000-4294967294" >&2
	exit 2
fi

if ! getent passwd "$user" >/dev/null; then
	useradd --system --user-group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --comment "RayOS QEMU" "$user"
	echo "rayos-qemu-user: created system user $user (uid $(id -u "$user"))"
fi
if getent group kvm >/dev/null && ! id -nG "$user" | tr ' ' '\n' | grep -qx kvm; then
	usermod -a -G kvm "$user"
	echo "rayos-qemu-user: added $user to group kvm"
fi

uid=$(id -u "$user")
touch /etc/subuid
if awk -F: -v u="$user" -v n="$uid" '$1 == u || $1 == n { found = 1 } END { exit !found }' /etc/subuid; then
	exit 0	# has a range already: the admin's choice stands
fi
clash=$(awk -F: -v a="$first" -v b="$last" \
	'NF >= 3 && $2 + 0 <= b + 0 && $2 + $3 - 1 >= a + 0 { print $1 ":" $2 ":" $3 }' /etc/subuid)
if [ -n "$clash" ]; then
	echo "rayos-qemu-user: range $range overlaps /etc/subuid's $clash;" \
	     "choose another with RAYOS_QEMU_SUBUIDS=FIRST-LAST" >&2
	exit 1
fi
acct=$(getent passwd | awk -F: -v a="$first" -v b="$last" '$3 + 0 >= a + 0 && $3 + 0 <= b + 0 { print $1; exit }')
if [ -n "$acct" ]; then
	echo "rayos-qemu-user: account $acct has a uid in $range;" \
	     "choose another with RAYOS_QEMU_SUBUIDS=FIRST-LAST" >&2
	exit 1
fi
usermod --add-subuids "$first-$last" "$user"
echo "rayos-qemu-user: $user's VMs run as uids $first-$last (/etc/subuid)"
