#!/usr/bin/env bash
# SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
# Measured launch against an attacker who can send the TPM any command with
# owner auth (tpm2-tools on the same swtpm) and rewrite the event log and
# quote files, but cannot read the agent's memory or state dir: resetting
# the measurement register and replaying a forged log, reading the MAC seed,
# quoting on a second TPM, downgrading quote.json, and the held cases
# (edited, removed, reordered, appended records; wrong nonce; flipped bytes).
# Two swtpms started here: A provisioned with an EK certificate by
# swtpm_setup (local CA in the test dir), B bare.
cd "$(dirname "$0")/../.." || exit 1
source tests/lib/lib.sh
quiet() { "$@" >/dev/null; }	# for check: the command's output, not the TAP line

need_cmds "TPM attacks" swtpm swtpm_setup swtpm_localca tpm2_nvundefine tpm2_nvdefine \
	tpm2_nvextend tpm2_nvread tpm2_nvreadpublic tpm2_makecredential jq
TOOL=$BUILD/tests/tpm/tool_tpm
[[ -x $TOOL && -x $AGENT ]] || { skip "$TOOL or $AGENT not built" "TPM attacks"; tap_done; exit 0; }

T=$(mktemp -d /tmp/rayos-tpm-attack.XXXXXX)
on_exit "rm -rf '$T'"
unset RAYOS_TCTI TPM2TOOLS_TCTI
export TSS2_LOG=all+none

# TPM A: EK and EK certificate from swtpm_setup, signed by a CA made here.
mkdir -p "$T/a/tpm" "$T/a/state" "$T/a/run" "$T/b/tpm" "$T/b/state" "$T/b/run" "$T/ca"
cat >"$T/ca/localca.conf" <<EOF
statedir = $T/ca
signingkey = $T/ca/signkey.pem
issuercert = $T/ca/issuercert.pem
certserial = $T/ca/certserial
EOF
cat >"$T/ca/setup.conf" <<EOF
create_certs_tool = $(command -v swtpm_localca)
create_certs_tool_config = $T/ca/localca.conf
create_certs_tool_options = /etc/swtpm-localca.options
active_pcr_banks = sha256
EOF
swtpm_setup --tpm2 --tpmstate "$T/a/tpm" --create-ek-cert --config "$T/ca/setup.conf" \
	--overwrite >"$T/setup.log" 2>&1
ok $? "swtpm_setup provisions TPM A with an EK certificate" ||
	{ sed 's/^/#   /' "$T/setup.log"; tap_done; exit 1; }
cat "$T/ca/issuercert.pem" "$T/ca/swtpm-localca-rootca-cert.pem" >"$T/ca/bundle.pem"
start_swtpm "$T/a/tpm" || { ok 1 "swtpm A starts"; tap_done; exit 1; }
A=swtpm:host=127.0.0.1,port=$PORT
start_swtpm "$T/b/tpm" || { ok 1 "swtpm B starts"; tap_done; exit 1; }
B=swtpm:host=127.0.0.1,port=$PORT

cli() {	# cli A|B ARGS...: the RayOS CLI against that TPM and its agent dirs
	local which=$1 tcti; shift
	[[ $which == A ]] && tcti=$A || tcti=$B
	local d=$T/${which,,}
	RAYOS_TCTI=$tcti "$AGENT" tpm "$1" --run-dir "$d/run" --state-dir "$d/state" "${@:2}"
}
atk() {	# atk A|B TOOL ARGS...: the attacker's tpm2-tools, owner auth empty
	local which=$1; shift
	[[ $which == A ]] && TPM2TOOLS_TCTI=$A "$@" || TPM2TOOLS_TCTI=$B "$@"
}
# fails NAME EXPECT -- CMD...: CMD must fail and print EXPECT (a regex)
fails() {
	local name=$1 want=$2 out rc; shift 3
	out=$("$@" 2>&1); rc=$?
	[[ $rc != 0 && $out =~ $want ]]
	ok $? "$name" || diag "status $rc: $out"
	[[ $rc != 0 ]] && head -n 2 <<<"$out" | cut -c1-240 | sed 's/^/# /'
}
NONCE=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')

# Boot measurements in PCRs 0-7, as firmware would leave them.
for p in 0 2 4 7; do
	atk A tpm2_pcrextend "$p:sha256=$(printf 'boot %s' "$p" | sha256sum | cut -c1-64)" ||
		diag "cannot extend PCR $p"
done

# ---- the agent measures on A and B --------------------------------------
out=$(RAYOS_TCTI=$A "$TOOL" measure "$T/a/state" "$T/a/run" 20 2>"$T/a.log")
ok $? "20 measurements extended on TPM A" || sed 's/^/#   /' "$T/a.log"
[[ $(jq -r .state <<<"$out") == ready ]]; ok $? "TPM A state: ready ($(jq -r .state <<<"$out"))"
RAYOS_TCTI=$B "$TOOL" measure "$T/b/state" "$T/b/run" 20 >/dev/null 2>"$T/b.log"
ok $? "20 measurements extended on TPM B"
check "tpm verify on A" -- cli A verify
LOG=$T/a/run/tpm-eventlog.jsonl
cp "$LOG" "$T/log.good"

# ---- enrollment: AK tied to the EK by credential activation ---------------
check "tpm enroll exports EK, EK certificate and AK" -- cli A enroll --out "$T/enroll"
check "enroll wrote ek.crt (the EK certificate from NV)" -- test -s "$T/enroll/ek.crt"
check "verifier: EK certificate chains to the CA, credential made" -- \
	cli A challenge --ek "$T/enroll/ek.pub" --ak "$T/enroll/ak.pub" \
	--ek-cert "$T/enroll/ek.crt" --ek-ca "$T/ca/bundle.pem" --out "$T/chal"
fails "an EK certificate from another CA is refused" "chain" -- \
	cli A challenge --ek "$T/enroll/ek.pub" --ak "$T/enroll/ak.pub" \
	--ek-cert "$T/enroll/ek.crt" --ek-ca /etc/ssl/certs/ca-certificates.crt --out "$T/chal-x"
RAYOS_TCTI=$B "$AGENT" tpm enroll --run-dir "$T/b/run" --state-dir "$T/b/state" \
	--out "$T/enroll-b" >/dev/null
fails "the EK certificate of A does not vouch for B's EK" "another key" -- \
	cli A challenge --ek "$T/enroll-b/ek.pub" --ak "$T/enroll-b/ak.pub" \
	--ek-cert "$T/enroll/ek.crt" --out "$T/chal-y"
check "tpm quote on A activates the credential" -- \
	cli A quote --nonce "$NONCE" --out "$T/q" --challenge "$T/chal/credential.bin"
Q=$T/q
check "verify-quote with the trusted EK and the challenge" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ek "$T/enroll/ek.pub" --challenge "$T/chal"
check "verify-quote with the trusted AK file" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
check "verify-quote with the AK's name (fingerprint)" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ak-name "$(cat "$T/enroll/ak.name")"
check "verify-quote with the trusted AK as PEM" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ak "$T/enroll/ak.pem"
fails "verify-quote without a trusted key fails" "trust" -- \
	cli A verify-quote "$Q" --nonce "$NONCE"
fails "verify-quote with --ek but no challenge fails" "needs --challenge" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ek "$T/enroll/ek.pub"

# ---- attack: quote from a second TPM ---------------------------------------
cli B quote --nonce "$NONCE" --out "$T/qb" >/dev/null
fails "a quote made on TPM B fails against A's AK" "does not verify with the trusted AK" -- \
	cli A verify-quote "$T/qb" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
fails "B's quote fails against A's AK as PEM" "not the key in" -- \
	cli A verify-quote "$T/qb" --nonce "$NONCE" --ak "$T/enroll/ak.pem"
fails "B's quote fails against A's AK name" "not the one --ak-name names" -- \
	cli A verify-quote "$T/qb" --nonce "$NONCE" --ak-name "$(cat "$T/enroll/ak.name")"
cp "$T/enroll/ak.pub" "$T/qb/ak.pub"
fails "B's quote with A's ak.pub copied in still fails" "does not verify" -- \
	cli A verify-quote "$T/qb" --nonce "$NONCE" --ak-name "$(cat "$T/enroll/ak.name")"
fails "TPM B cannot activate the credential made for A's EK" "activate" -- \
	cli B quote --nonce "$NONCE" --out "$T/qb2" --challenge "$T/chal/credential.bin"
cp "$T/chal/secret" "$T/qb/activation.bin" 2>/dev/null
fails "B's quote with a copied activation fails against A's EK" "another key|does not verify|not the AK" -- \
	cli A verify-quote "$T/qb" --nonce "$NONCE" --ek "$T/enroll/ek.pub" --challenge "$T/chal"

# ---- attack: quote.json downgrade, --banks ------------------------------
cp -r "$Q" "$T/qj"
jq '.pcrs = "sha1:0" | .records = 0 | .nv_index = 0' "$Q/quote.json" >"$T/qj/quote.json"
check "quote.json rewritten (banks, records) changes nothing: it is not trusted" -- \
	cli A verify-quote "$T/qj" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
fails "--banks sha1 asks for more than the sha256-only quote covers" "asks for sha1" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ak "$T/enroll/ak.pub" --banks sha1,sha256
check "--banks sha256 (what the quote covers) verifies" -- \
	cli A verify-quote "$Q" --nonce "$NONCE" --ak "$T/enroll/ak.pub" --banks sha256
cp -r "$Q" "$T/qz"
head -c "$(stat -c %s "$Q/quote.pcrs")" /dev/zero >"$T/qz/quote.pcrs"
fails "zeroed PCR values fail" "not the ones the quote signed" -- \
	cli A verify-quote "$T/qz" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
head -c 32 "$Q/quote.pcrs" >"$T/qz/quote.pcrs"
fails "a truncated quote.pcrs (fewer PCRs) fails" "shorter than the signed" -- \
	cli A verify-quote "$T/qz" --nonce "$NONCE" --ak "$T/enroll/ak.pub"

# ---- held: wrong nonce, flipped bytes -----------------------------------
fails "wrong nonce fails" "nonce" -- \
	cli A verify-quote "$Q" --nonce "${NONCE%??}00" --ak "$T/enroll/ak.pub"
flip() {	# flip FILE OFFSET: xor one byte
	local b
	b=$(od -An -tu1 -j "$2" -N1 "$1" | tr -d ' ')
	printf "$(printf '\\%03o' $(( (b ^ 0x5a) & 255 )))" |
		dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
for f in quote.msg quote.sig quote.pcrs nv.msg nv.sig; do
	size=$(stat -c %s "$Q/$f")
	for off in 0 $((size / 2)) $((size - 1)); do
		rm -rf "$T/qf"; cp -r "$Q" "$T/qf"
		flip "$T/qf/$f" "$off"
		"$AGENT" tpm verify-quote "$T/qf" --nonce "$NONCE" --ak "$T/enroll/ak.pub" \
			>"$T/qf.out" 2>&1
		[[ $? != 0 ]]; ok $? "flipped byte $off of $f fails ($(head -c 120 "$T/qf.out"))"
	done
done

# ---- held: the log in the quote: edited, removed, reordered, appended ---------
qlog() {	# qlog NAME EXPECT EDIT...: edit a copy of the quote's log, must fail
	local name=$1 want=$2; shift 2
	rm -rf "$T/ql"; cp -r "$Q" "$T/ql"
	"$@" "$T/ql/eventlog.jsonl"
	fails "$name" "$want" -- cli A verify-quote "$T/ql" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
}
edit_seq() { sed -i '6s/"seq":5/"seq":6/' "$1"; }
drop5() { sed -i '6d' "$1"; }
swap() { awk 'NR==6 { six = $0; next } { print } NR==7 { print six }' "$1" >"$1.x" && mv "$1.x" "$1"; }
append() { "$TOOL" record 20 rayos/vm-launch '{"id":1499}' >>"$1"; }
retype() { sed -i '1s/"content_type":"[^"]*"/"content_type":"rayos\/vm-stop"/' "$1"; }
qlog "edited record fails and is named" "record 5 .*does not match" edit_seq
qlog "removed record fails and is named" "record 5 is missing.*removed" drop5
qlog "reordered records fail and say reordered" "reordered" swap
qlog "appended record fails and is named" "record 20 .*first record not in the TPM" append
qlog "retyped record (content type changed) fails" "record 0 .*does not match" retype

# ---- attack: the MAC seed is not readable with owner auth ----------------------
fails "seed index 0x01500523 refuses owner auth" "ERROR|authorization" -- \
	atk A tpm2_nvread -C o -s 32 0x01500523
fails "seed index refuses its empty auth" "ERROR|authorization|auth" -- \
	atk A tpm2_nvread -C 0x01500523 -s 32 0x01500523
pub=$(atk A tpm2_nvreadpublic 0x01500523 | grep -o 'friendly: .*' | head -1)
[[ $pub != *ownerread* && $pub != *ppread* ]]; ok $? "seed index has no owner or platform read ($pub)"
check "the agent's own auth reads it (tpm nv read)" -- quiet cli A nv read

# ---- attack: reset the register, replay a forged log ---------------------------
# The forged log: VM 1400's first launch (record 0) removed, renumbered,
# digests recomputed; the attacker has no MAC seed.
"$TOOL" forge "$LOG" "$T/log.forged" 0
policy=$(atk A tpm2_nvreadpublic 0x01500524 | awk '/authorization policy/ { print $3 }')
printf '%s' "$policy" | xxd -r -p >"$T/policy.bin"
check "attacker undefines the measurement index (owner auth)" -- \
	atk A tpm2_nvundefine -C o 0x01500524
check "attacker redefines it identically (same attributes and policy)" -- quiet \
	atk A tpm2_nvdefine 0x01500524 -C o -s 32 -g sha256 -L "$T/policy.bin" \
	-a "nt=extend|policywrite|authread|no_da|orderly|clear_stclear"
d0=$(head -n 1 "$T/log.forged" | jq -r '.digests[0].digest')
printf '%s' "$d0" | xxd -r -p >"$T/d0"
fails "attacker cannot extend it with the index's auth" "ERROR" -- \
	atk A tpm2_nvextend -C 0x01500524 -i "$T/d0" 0x01500524
fails "attacker cannot extend it with owner auth" "ERROR" -- \
	atk A tpm2_nvextend -C o -i "$T/d0" 0x01500524
cp "$T/log.forged" "$LOG"
fails "tpm verify: forged log after the reset does not verify" "record|NV index" -- cli A verify
fails "tpm quote: nothing to certify on the reset index" "unwritten" -- \
	cli A quote --nonce "$NONCE" --out "$T/qr"
# The agent keeps measuring onto the reset index: the index now holds only
# records 20.., and no log from record 0 replays to it.
cp "$T/log.good" "$LOG"
out=$(RAYOS_TCTI=$A "$TOOL" measure "$T/a/state" "$T/a/run" 3 2>>"$T/a.log")
[[ $(jq -r .state <<<"$out") == diverged ]]
ok $? "the agent notices the reset: state diverged ($(jq -r .last_error <<<"$out" | head -c 150))"
fails "tpm verify: the whole log no longer replays (reset shown)" "matches no prefix|reset" -- cli A verify
cli A quote --nonce "$NONCE" --out "$T/qr" >/dev/null 2>&1
fails "verify-quote after the reset: the full log fails" "matches no prefix|not in the TPM" -- \
	cli A verify-quote "$T/qr" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
"$TOOL" forge "$LOG" "$T/qr/eventlog.jsonl" -1 20
fails "verify-quote after the reset: the last records renumbered from 0 fail" "matches no prefix" -- \
	cli A verify-quote "$T/qr" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
# An index of the attacker's own (a policy they can satisfy) with the forged
# chain extended into it: the name in the certification gives it away.
atk A tpm2_nvundefine -C o 0x01500524 >/dev/null 2>&1
atk A tpm2_nvdefine 0x01500524 -C o -s 32 -g sha256 -a "nt=extend|authwrite|authread|no_da" \
	>/dev/null 2>&1
while read -r line; do
	jq -r '.digests[0].digest' <<<"$line" | xxd -r -p >"$T/d"
	atk A tpm2_nvextend -C 0x01500524 -i "$T/d" 0x01500524 >/dev/null 2>&1 || break
done <"$T/log.forged"
v=$(atk A tpm2_nvread -C 0x01500524 -s 32 0x01500524 2>/dev/null | xxd -p | tr -d '\n')
[[ -n $v ]]; ok $? "attacker's own index holds the forged chain (${v:0:16}…)"
cp "$T/log.forged" "$LOG"
fails "tpm verify: an index with another policy is not RayOS's" "not RayOS's measurement index" -- \
	cli A verify
cli A quote --nonce "$NONCE" --out "$T/qf2" >/dev/null 2>&1
cp "$T/log.forged" "$T/qf2/eventlog.jsonl"
fails "verify-quote: the certified index is not RayOS's" "not RayOS's measurement index" -- \
	cli A verify-quote "$T/qf2" --nonce "$NONCE" --ak "$T/enroll/ak.pub"
# PCR 23 is no longer the register: resetting it changes nothing.
check "tpm2_pcrreset 23 still works (locality 0) but RayOS does not use PCR 23" -- \
	atk A tpm2_pcrreset 23
tap_done
