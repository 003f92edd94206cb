#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# make install into a staging root: binaries, example policies that the
# installed agent accepts, the JSON Schema and a systemd unit that points at
# the installed binary; and --daemon starts an agent that answers, then stops.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
R=$(mktemp -d /tmp/rayos-install.XXXXXX)
on_exit "rm -rf '$R'"

make -s install DESTDIR="$R" PREFIX=/usr BUILD="$BUILD" >"$R.log" 2>&1
ok $? "make install into a staging root" || sed 's/^/#   /' "$R.log"
rm -f "$R.log"
for f in usr/sbin/rayos-agent usr/sbin/rayos-qemu usr/sbin/rayos-libvirt-hook \
	 usr/share/rayos/rayos-policy.schema.json lib/systemd/system/rayos-agent.service; do
	check "installed $f" -- test -s "$R/$f"
done
n=$(ls "$R/etc/rayos/policies/"*.json 2>/dev/null | wc -l)
ok "$((n >= 3 ? 0 : 1))" "example policies installed ($n)"
check "the installed agent accepts the installed policies" -- \
	"$R/usr/sbin/rayos-agent" policy check "$R/etc/rayos/policies"
check "the unit starts the installed binary" -- \
	grep -q "^ExecStart=/usr/sbin/rayos-agent start" "$R/lib/systemd/system/rayos-agent.service"

if [[ $(id -u) == 0 ]]; then
	agent_env
	"$AGENT" start "${AGENT_ARGS[@]}" --no-tpm --daemon >"$T/daemon.out" 2>&1
	ok $? "start --daemon returns once the agent answers ($(cat "$T/daemon.out"))"
	check "the daemon answers status" -- bash -c "'$AGENT' status --json --run-dir '$T/run' >/dev/null"
	check "its log goes to the run dir" -- test -s "$T/run/agent.log"
	agent stop >/dev/null
	ok $? "stop ends the daemon"
else
	skip "needs root" "start --daemon"
fi
tap_done
