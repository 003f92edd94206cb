#!/usr/bin/env bash
# The JSON Schema against the policies: every example must validate, and the
# bad files whose defect a schema can express must not.  TAP, ends with
# "N passed, N failed, N skipped"; skips when python3-jsonschema is missing.
set -uo pipefail
cd "$(dirname "$0")/../.."

if ! python3 -c 'import jsonschema' 2>/dev/null; then
	echo "ok 1 - schema checks # SKIP python3 jsonschema is not installed (apt-get install python3-jsonschema)"
	echo "1..1"
	echo "0 passed, 0 failed, 1 skipped"
	exit 0
fi

exec python3 - <<'PY'
import glob, json, sys
import jsonschema

# Defects the schema can see; the rest (cycles, duplicates across files,
# host bits, merged rule counts) only the agent can.
SCHEMA_REJECTS = """
action-maybe action-missing burst-too-small burst-without-rate cap-duplicate
cap-unknown caps-not-array cidrs-empty default-reject description-number
firewall-unknown-dir group-bad-name icmp-type-256 icmp-types-with-tcp id-2pow32
id-fraction id-missing id-negative id-string id-zero interface-slash
interface-too-long ipv4-bad mac-bad mac-multicast mac-zero name-empty
name-space name-too-long ports-empty ports-with-any ports-with-icmp
ports-with-sctp protocol-300 protocol-unknown rate-bad-unit rule-unknown-key
rules-65 rules-not-array temporary-capabilities unknown-top-key version-2
version-missing version-string vm-null vms-not-array
device-bad-access device-bad-type device-not-a-rule devices-unknown-key
disk-block-without-device disk-bad-mode disk-relative-path disk-image-with-device
host-unknown-key host-rule-no-action ll6-global ll6-three control-rates-unknown
cap-audit-removed deleg-unknown-cap deleg-bad-expiry deleg-both-deadlines
control-rates-negative
limits-port-garbage limits-port-empty
limits-rate-unit limits-cap-mismatch limits-cap-none limits-node-not-dri
""".split()

n = failed = 0
def tap(ok, name, diag=None):
    global n, failed
    n += 1
    failed += not ok
    print(f"{'ok' if ok else 'not ok'} {n} - {name}")
    if not ok and diag:
        print(f"#   {diag}")

with open("policies/rayos-policy.schema.json") as f:
    schema = json.load(f)
cls = jsonschema.validators.validator_for(schema)
try:
    cls.check_schema(schema)
    tap(True, "schema is a valid draft 2020-12 schema")
except jsonschema.SchemaError as e:
    tap(False, "schema is a valid draft 2020-12 schema", e.message)
    print(f"1..{n}\n0 passed, {failed} failed, 0 skipped")
    sys.exit(1)
validator = cls(schema, format_checker=cls.FORMAT_CHECKER)

examples = sorted(glob.glob("policies/examples/*.json"))
tap(len(examples) >= 2, "there are example policies")
for path in examples:
    with open(path) as f:
        errors = sorted(validator.iter_errors(json.load(f)), key=str)
    tap(not errors, f"{path} validates", errors[0].message if errors else None)

for name in SCHEMA_REJECTS:
    path = f"policies/bad/{name}.json"
    try:
        with open(path) as f:
            doc = json.load(f)
    except OSError as e:
        tap(False, f"{path} is rejected by the schema", str(e))
        continue
    tap(not validator.is_valid(doc), f"{path} is rejected by the schema")

print(f"1..{n}")
print(f"{n - failed} passed, {failed} failed, 0 skipped")
sys.exit(1 if failed else 0)
PY
