#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# /metrics as a scraper and a hostile client see it: promtool accepts the
# exposition, the content type carries version=0.0.4, HEAD answers without a
# body, other methods get 405, and neither 500 idle or half-sent connections
# nor 1,000 concurrent GETs keep a fresh scrape or the control socket out.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
need_root "metrics endpoint"
need_cmds "metrics endpoint" promtool curl python3
agent_env

cat >"$T/policies/m.json" <<EOF2
{ "version": 1,
  "vms": [ { "id": 1501, "name": "metrics-vm", "interface": "rm$$x",
	     "firewall": { "in": { "default": "deny" } } } ] }
EOF2
check "agent starts" -- agent_start
URL=http://127.0.0.1:$METRICS_PORT/metrics

curl -s -D "$T/head" -o "$T/body" "$URL"
ok "$(grep -qi '^content-type: text/plain; version=0.0.4' "$T/head"; echo $?)" \
	"GET /metrics: Content-Type text/plain; version=0.0.4 ($(grep -i '^content-type' "$T/head" | tr -d '\r'))"
promtool check metrics <"$T/body" >"$T/promtool.out" 2>&1
ok $? "promtool check metrics accepts the exposition" ||
	sed 's/^/#   /' "$T/promtool.out" | head -20
ok "$(grep -q '^rayos_policy_version 1$' "$T/body"; echo $?)" "the exposition has the policy version"

code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -d x=1 "$URL")
allow=$(curl -s -D - -o /dev/null -X PUT "$URL" | grep -i '^allow:' | tr -d '\r')
ok "$([[ $code == 405 && $allow == *GET* ]]; echo $?)" "POST and PUT get 405 with Allow: GET, HEAD ($code, $allow)"
head_out=$(curl -s -I "$URL")
ok "$([[ $head_out == "HTTP/1.1 200"* && $head_out == *"Content-Length"* ]] &&
      [[ -z $(curl -s -X HEAD --max-time 2 "$URL" 2>/dev/null) ]]; echo $?)" "HEAD answers 200 with headers only"
ok "$([[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$METRICS_PORT/nope") == 404 ]]; echo $?)" \
	"an unknown path gets 404"

# 500 clients hold connections, half of them with half a request sent.
spawn HOLD python3 tests/metrics/http_flood.py hold "$METRICS_PORT" 500 "$T/held"
wait_for 20 test -e "$T/held"
ok $? "500 connections to /metrics are held open (half of them half-sent)"
t0=$EPOCHREALTIME
code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$URL")
ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
ok "$([[ $code == 200 ]] && ((ms < 1000)); echo $?)" \
	"with 500 held connections a fresh scrape gets 200 within 1 s ($code in $ms ms)"
t0=$EPOCHREALTIME
agent status --json >/dev/null
rc=$?
ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
ok "$rc" "with 500 held connections the control socket answers status ($ms ms)"
{ kill -9 "$HOLD"; wait "$HOLD"; } 2>/dev/null

# 1,000 concurrent GETs: each answered or cleanly refused, none left hanging.
res=$(python3 tests/metrics/http_flood.py burst "$METRICS_PORT" 1000)
read -r _ answered _ refused _ hung <<<"$res"
ok "$([[ $hung == 0 ]] && ((answered + refused == 1000 && answered > 0)); echo $?)" \
	"1,000 concurrent GETs: every one answered or refused ($res)"
code=$(curl -s -o /dev/null --max-time 5 -w '%{http_code}' "$URL")
ok "$([[ $code == 200 ]]; echo $?)" "after the burst a scrape still gets 200"
check "the agent is still running" -- kill -0 "$AGENT_PID"
tap_done
