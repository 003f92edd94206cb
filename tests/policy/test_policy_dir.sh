#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# The policy directory followed by its path where inotify on the directory
# and its parent cannot see the change, through the agent's periodic check:
# the parent directory itself replaced, a symlink higher up the path
# switched, the directory replaced by a regular file (reported missing) and
# back.  (Replacing, removing and symlink-switching the directory itself:
# test_failclosed.sh.)  VM id 1330.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "policy directory followed by path"
need_cmds "policy directory followed by path" jq
agent_env

vm() {	# vm DIR NAME: one VM named NAME in DIR/p.json
	mkdir -p "$1"
	echo "{ \"version\": 1, \"vms\": [ { \"id\": 1330, \"name\": \"$2\" } ] }" >"$1/.p.tmp"
	mv "$1/.p.tmp" "$1/p.json"
}
name_is() {
	"$AGENT" status --json --run-dir "$T/run" | jq -e --arg n "$1" '.vms[0].name == $n' >/dev/null
}
degraded() {
	"$AGENT" status --json --run-dir "$T/run" |
		jq -e --arg s "$1" 'any(.degraded[]; .state == $s)' >/dev/null
}

# /T/etc/rayos/policies, the parent /T/etc/rayos to be replaced.
vm "$T/etc/rayos/policies" first
AGENT_ARGS=("${AGENT_ARGS[@]/#$T\/policies/$T/etc/rayos/policies}")
check "agent starts on $T/etc/rayos/policies" -- agent_start --no-tpm
check "the first set is applied" -- name_is first

vm "$T/etc/rayos.new/policies" second
mv "$T/etc/rayos" "$T/etc/rayos.old" && mv "$T/etc/rayos.new" "$T/etc/rayos"
wait_for 4 name_is second
ok $? "the parent directory replaced: the new policy directory is applied"
vm "$T/etc/rayos.old/policies" stale
vm "$T/etc/rayos/policies" third
wait_for 3 name_is third
ok $? "  ...and followed: an edit in it is applied"
ok "$(! grep -q '"stale"' <("$AGENT" status --json --run-dir "$T/run"); echo $?)" \
	"  ...while the old one is not followed"

# A file where the directory was: missing; a directory again: applied.
mv "$T/etc/rayos/policies" "$T/etc/rayos/policies.d"
echo "not a directory" >"$T/etc/rayos/policies"
wait_for 3 degraded policy_dir_missing
ok $? "a regular file in the directory's place is reported as policy_dir_missing"
check "  ...and the last set stays" -- name_is third
rm "$T/etc/rayos/policies"
vm "$T/etc/rayos/policies.d" fourth
mv "$T/etc/rayos/policies.d" "$T/etc/rayos/policies"
wait_for 3 name_is fourth
ok $? "a directory back under the name is applied"

# A symlink one level up switched: /T/etc/rayos -> releases/rN.
agent stop >/dev/null; wait "$AGENT_PID" 2>/dev/null
vm "$T/releases/r1/policies" r1
vm "$T/releases/r2/policies" r2
rm -rf "$T/etc/rayos" && ln -s "$T/releases/r1" "$T/etc/rayos"
check "agent restarts on a path with a symlink in the middle" -- agent_start --no-tpm
check "  ...release r1 applied" -- name_is r1
v=$("$AGENT" status --json --run-dir "$T/run" | jq .policy.version)
ln -sfn "$T/releases/r2" "$T/etc/rayos.tmp" && mv -T "$T/etc/rayos.tmp" "$T/etc/rayos"
wait_for 4 name_is r2
ok $? "the symlink above the directory switched: release r2 applied"
ok "$([[ $("$AGENT" status --json --run-dir "$T/run" | jq .policy.version) == $((v + 1)) ]]; echo $?)" \
	"  ...in one publish"
tap_done
