#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Builds tests/dhcp/fuzz_dhcp_proto.c with clang's libFuzzer, ASan and UBSan
# and runs it for FUZZ_SECONDS (default 20) from a small seed corpus of
# valid messages.  Any crash, leak or undefined behaviour fails the test.
# Skips when clang or its fuzzer runtime (libclang-rt-14-dev) is missing.
set -uo pipefail
cd "$(dirname "$0")/../.."
source tests/lib/lib.sh

SECS=${FUZZ_SECONDS:-20}
need_cmds "dhcp fuzz" clang
T=$(mktemp -d /tmp/rayos-dhcp-fuzz.XXXXXX)
on_exit "rm -rf '$T'"

if ! clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
	-D_GNU_SOURCE -I. tests/dhcp/fuzz_dhcp_proto.c agent/dhcp/dhcp_proto.c agent/dhcp/dhcp_server.c \
	agent/dhcp/dhcp_leases.c agent/core/log.c agent/core/util.c -o "$T/fuzz" 2>"$T/build.log"; then
	if grep -qiE 'libclang_rt\.fuzzer|cannot find|unsupported option' "$T/build.log"; then
		skip "no libFuzzer runtime (apt install libclang-rt-14-dev)" "dhcp parser fuzz"
		tap_done; exit 0
	fi
	sed 's/^/# /' "$T/build.log"
	ok 1 "fuzz target builds"
	tap_done; exit 1
fi
ok 0 "fuzz target builds with ASan, UBSan and libFuzzer"

# Seeds: a DISCOVER, a REQUEST with options, an overloaded message.
mkdir -p "$T/corpus"
python3 - "$T/corpus" <<'PY'
import os, struct, sys
d = sys.argv[1]
def msg(opts, file=b"", sname=b""):
    h = struct.pack("!BBBBIHHIIII", 1, 1, 6, 0, 0x1234, 0, 0x8000, 0, 0, 0, 0)
    h += bytes.fromhex("525400000002") + bytes(10)
    h += sname.ljust(64, b"\0") + file.ljust(128, b"\0")
    return h + bytes.fromhex("63825363") + opts + b"\xff"
open(os.path.join(d, "discover"), "wb").write(msg(b"\x35\x01\x01\x37\x03\x01\x03\x06"))
open(os.path.join(d, "request"), "wb").write(msg(b"\x35\x01\x03\x32\x04\xc6\x12\x00\x64\x36\x04\xc6\x12\x00\x01\x3d\x07\x01RAYOS!\x52\x06\x01\x04port"))
open(os.path.join(d, "overload"), "wb").write(msg(b"\x35\x01\x01\x34\x01\x03", b"\x0c\x03vm1\xff", b"\xe0\x01x\xff"))
open(os.path.join(d, "rapid"), "wb").write(msg(b"\x35\x01\x01\x50\x00"))
open(os.path.join(d, "inform"), "wb").write(msg(b"\x35\x01\x08"))
PY
if "$T/fuzz" -max_total_time="$SECS" -max_len=1500 -print_final_stats=1 -artifact_prefix="$T/" \
	"$T/corpus" >"$T/fuzz.log" 2>&1; then
	ok 0 "fuzzed the DHCP parser and engine for ${SECS}s: no crash, leak or UB"
	grep -E 'stat::number_of_executed_units|cov:' "$T/fuzz.log" | tail -2 | sed 's/^/# /'
else
	grep -m1 -A15 -E 'ERROR|runtime error|deadly' "$T/fuzz.log" | cut -c1-200 | sed 's/^/# /'
	ok 1 "fuzzed the DHCP parser and engine for ${SECS}s: no crash, leak or UB"
fi
tap_done
