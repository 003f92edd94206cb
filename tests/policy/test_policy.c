// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Policy parser, linker and compiler.  The centre piece compares, packet by
 * packet, a linear first-match walk over the flattened rules with a
 * simulation of the kernel's lookups over the compiled map entries.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/stat.h>
#include <cjson/cJSON.h>

#include "agent/policy/policy.h"
#include "agent/quarantine.h"
#include "bpf/include/fwtab.bpf.h"
#include "tests/lib/tap.h"

#define BAD_DIR		"policies/bad"
#define EXAMPLES_DIR	"policies/examples"

static char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (!f)
		return NULL;
	if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET))
		goto out;
	buf = calloc(1, (size_t)n + 1);
	if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (len)
		*len = (size_t)n;
out:
	fclose(f);
	return buf;
}

static bool write_file(const char *dir, const char *name, const char *text)
{
	char path[PATH_MAX];
	FILE *f;
	bool ok;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "w");
	if (!f)
		return false;
	ok = fputs(text, f) >= 0;
	return !fclose(f) && ok;
}

static struct policy_set *parse(const char *json, struct policy_error *err)
{
	struct policy_set *set = policy_set_new();

	if (set && policy_set_add_json(set, "test.json", json, strlen(json), err)) {
		policy_set_free(set);
		return NULL;
	}
	return set;
}

/* ---- the bad corpus -------------------------------------------------------- */

/* Expectation: NAME.expect next to a file that cannot hold it, else x-expect. */
static bool read_expectations(const char *name, char *expect, size_t elen, char *path,
			      size_t plen, bool *has_path)
{
	char file[PATH_MAX], *text;
	cJSON *root, *e, *p;
	bool ok = false;

	*has_path = false;
	snprintf(file, sizeof(file), BAD_DIR "/%.*s.expect", (int)(strlen(name) - 5), name);
	text = slurp(file, NULL);
	if (text) {
		text[strcspn(text, "\n")] = '\0';
		snprintf(expect, elen, "%s", text);
		free(text);
		return true;
	}
	snprintf(file, sizeof(file), BAD_DIR "/%s", name);
	text = slurp(file, NULL);
	root = text ? cJSON_Parse(text) : NULL;
	e = cJSON_GetObjectItemCaseSensitive(root, "x-expect");
	p = cJSON_GetObjectItemCaseSensitive(root, "x-expect-path");
	if (cJSON_IsString(e)) {
		snprintf(expect, elen, "%s", e->valuestring);
		ok = true;
	}
	if (cJSON_IsString(p)) {
		snprintf(path, plen, "%s", p->valuestring);
		*has_path = true;
	}
	cJSON_Delete(root);
	free(text);
	return ok;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void check_bad_file(const char *name)
{
	char file[PATH_MAX], expect[512], want_path[256], msg[PATH_MAX + 600];
	struct policy_set *set = NULL;
	struct policy_error err;
	bool has_path;
	int ret;

	snprintf(file, sizeof(file), BAD_DIR "/%s", name);
	if (!read_expectations(name, expect, sizeof(expect), want_path, sizeof(want_path),
			       &has_path)) {
		tap_ok(false, "%s: has an x-expect or a .expect file", name);
		return;
	}
	ret = policy_load_file(file, &set, &err);
	policy_set_free(set);
	if (!tap_ok(ret == -EINVAL && !set, "%s: rejected", name))
		return;
	policy_error_format(&err, msg, sizeof(msg));
	ASSERT_CONTAINS(msg, expect, name);
	if (has_path && !ASSERT_STREQ(err.path, want_path, "  ...at the expected path"))
		tap_diag("  %s", msg);
	if (!tap_ok(err.line > 0, "  ...with a line number"))
		tap_diag("  %s", msg);
}

static void test_bad_corpus(void)
{
	char **names = NULL;
	size_t nr = 0, i;
	struct dirent *de;
	DIR *d = opendir(BAD_DIR);

	if (!tap_ok(d != NULL, "open " BAD_DIR))
		return;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);

		if (n > 5 && !strcmp(de->d_name + n - 5, ".json")) {
			names = realloc(names, (nr + 1) * sizeof(*names));
			names[nr++] = strdup(de->d_name);
		}
	}
	closedir(d);
	qsort(names, nr, sizeof(*names), cmp_names);
	ASSERT_TRUE(nr >= 35, "bad corpus has at least 35 files");
	for (i = 0; i < nr; i++) {
		check_bad_file(names[i]);
		free(names[i]);
	}
	free(names);
}

/* ---- directories: several files form one set -------------------------------- */

static const char dir_a[] =
	"{ \"version\": 1, \"vms\": [ { \"id\": 7, \"name\": \"a\", \"group\": \"web\" } ] }";
static const char dir_b[] =
	"{ \"version\": 1, \"groups\": { \"web\": { \"capabilities\": [\"CAP_GPU\"] } },\n"
	"  \"defaults\": { \"capabilities\": [\"CAP_CONSOLE\"] },\n"
	"  \"vms\": [ { \"id\": 8, \"name\": \"b\" } ] }";

static void expect_dir_error(const char *dir, const char *want, const char *want_file,
			     const char *name)
{
	struct policy_set *set = NULL;
	struct policy_error err;
	char msg[PATH_MAX * 2];
	int ret;

	ret = policy_load_dir(dir, &set, &err);
	policy_set_free(set);
	policy_error_format(&err, msg, sizeof(msg));
	if (tap_ok(ret == -EINVAL, "%s: rejected", name)) {
		ASSERT_CONTAINS(msg, want, "  ...with the expected message");
		ASSERT_CONTAINS(err.file, want_file, "  ...in the expected file");
	}
}

static void test_directory(void)
{
	char dir[] = "/tmp/rayos-policy-XXXXXX", path[PATH_MAX], big[64];
	struct policy_set *set = NULL;
	struct policy_error err;
	int ret, fd;

	if (!tap_ok(mkdtemp(dir) != NULL, "mkdtemp"))
		return;
	ret = policy_load_dir(dir, &set, &err);
	if (ASSERT_EQ(ret, 0, "empty directory loads") && ASSERT_EQ(set->nr_vms, 0, "  ...as 0 VMs"))
		policy_set_free(set);

	/* a.json uses a group b.json defines: order within a directory is free. */
	write_file(dir, "a.json", dir_a);
	write_file(dir, "b.json", dir_b);
	write_file(dir, ".a.json.swp", "garbage");
	write_file(dir, "a.json~", "garbage");
	write_file(dir, "notes.txt", "garbage");
	ret = policy_load_dir(dir, &set, &err);
	if (ASSERT_EQ(ret, 0, "two files, group defined in the later one")) {
		ASSERT_EQ(set->nr_vms, 2, "  ...both VMs, editor files skipped");
		ASSERT_EQ(set->nr_files, 2, "  ...two files recorded");
		ASSERT_EQ(policy_set_find(set, 7)->caps, 1ULL << RAYOS_CAP_GPU,
			  "  ...group capabilities across files");
		ASSERT_EQ(policy_set_find(set, 7)->fw[RAYOS_DIR_IN].default_action, RAYOS_ACT_DENY,
			  "  ...other file's defaults do not apply");
		ASSERT_EQ(policy_set_find(set, 8)->caps, 1ULL << RAYOS_CAP_CONSOLE,
			  "  ...own file's defaults apply");
		ASSERT_TRUE(policy_set_find(set, 9) == NULL, "  ...unknown id not found");
		policy_set_free(set);
	}

	write_file(dir, "c.json", "{ \"version\": 1, \"vms\": [ { \"id\": 7, \"name\": \"c\" } ] }");
	snprintf(path, sizeof(path), "%s/a.json vms[0]", dir);
	expect_dir_error(dir, path, "c.json", "duplicate VM id across files");
	write_file(dir, "c.json", "{ \"version\": 1, \"vms\": [ { \"id\": 9, \"name\": \"a\" } ] }");
	expect_dir_error(dir, "duplicate VM name \"a\"", "c.json", "duplicate VM name across files");
	write_file(dir, "c.json", "{ \"version\": 1, \"groups\": { \"web\": {} } }");
	snprintf(path, sizeof(path), "group \"web\" is also defined in %s/b.json", dir);
	expect_dir_error(dir, path, "c.json", "group defined in two files");

	snprintf(path, sizeof(path), "%s/c.json", dir);
	fd = open(path, O_WRONLY | O_TRUNC);
	snprintf(big, sizeof(big), "%u", POLICY_MAX_FILE_SIZE + 1);
	if (fd >= 0) {
		ret = ftruncate(fd, POLICY_MAX_FILE_SIZE + 1);
		close(fd);
	}
	expect_dir_error(dir, "limited to 1 MiB", "c.json", "file over 1 MiB");

	unlink(path);
	snprintf(path, sizeof(path), "%s/a.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/b.json", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/.a.json.swp", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/a.json~", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/notes.txt", dir);
	unlink(path);
	rmdir(dir);

	ret = policy_load_dir("/nonexistent/rayos", &set, &err);
	ASSERT_EQ(ret, -ENOENT, "missing directory is -ENOENT");
	ASSERT_TRUE(set == NULL, "  ...and no set");
}

/* ---- precedence ------------------------------------------------------------- */

static const char precedence_json[] =
"{ \"version\": 1,\n"
"  \"defaults\": { \"capabilities\": [\"CAP_NETWORK\"],\n"
"    \"firewall\": { \"in\": { \"rules\": [ { \"action\": \"allow\", \"comment\": \"D\" } ] } } },\n"
"  \"groups\": {\n"
"    \"root\": { \"capabilities\": [\"CAP_DISK_READ\"],\n"
"      \"bandwidth\": { \"in\": { \"rate\": \"100mbit\" }, \"out\": { \"rate\": 1000000, \"burst\": \"2m\" } },\n"
"      \"firewall\": { \"in\": { \"default\": \"deny\", \"rules\": [ { \"action\": \"deny\", \"comment\": \"R\" } ] } } },\n"
"    \"child\": { \"parent\": \"root\",\n"
"      \"firewall\": { \"in\": { \"default\": \"allow\", \"rules\": [ { \"action\": \"allow\", \"comment\": \"C\" } ] } } }\n"
"  },\n"
"  \"vms\": [\n"
"    { \"id\": 3, \"name\": \"vm\", \"group\": \"child\", \"capabilities\": [\"CAP_GPU\", \"CAP_INPUT\"],\n"
"      \"bandwidth\": { \"in\": { \"rate\": 0 } },\n"
"      \"firewall\": { \"in\": { \"rules\": [ { \"action\": \"deny\", \"comment\": \"V\" } ] } } },\n"
"    { \"id\": 2, \"name\": \"inherits\", \"group\": \"child\" },\n"
"    { \"id\": 1, \"name\": \"plain\", \"capabilities\": [] }\n"
"  ] }\n";

static void check_order(const struct fw_dir *d, const char *want, const char *name)
{
	char got[16] = "";
	size_t i;

	for (i = 0; i < d->nr_rules && i < sizeof(got) - 1; i++)
		got[i] = d->rules[i].comment ? d->rules[i].comment[0] : '?';
	got[i] = '\0';
	ASSERT_STREQ(got, want, name);
}

static const char dup_json[] = "{\"version\":1,\"vms\":[{\"id\":3,\"name\":\"x\"}]}";
static const char more_json[] =
	"{\"version\":1,\"vms\":[{\"id\":4,\"name\":\"x\",\"group\":\"root\"}]}";

static void test_precedence(void)
{
	const struct policy_vm *vm, *inh, *plain;
	struct policy_error err;
	struct policy_set *set;
	char msg[PATH_MAX + 600];

	set = parse(precedence_json, &err);
	if (!set) {
		policy_error_format(&err, msg, sizeof(msg));
		tap_ok(false, "precedence policy parses: %s", msg);
		return;
	}
	ASSERT_EQ(set->vms[0].id, 1, "VMs sorted by id");
	vm = policy_set_find(set, 3);
	inh = policy_set_find(set, 2);
	plain = policy_set_find(set, 1);
	ASSERT_EQ(vm->caps, (1ULL << RAYOS_CAP_GPU) | (1ULL << RAYOS_CAP_INPUT),
		  "VM capabilities replace its groups'");
	ASSERT_EQ(inh->caps, 1ULL << RAYOS_CAP_DISK_READ, "nearest group (parent) capabilities");
	ASSERT_EQ(plain->caps, 0, "empty list replaces the defaults'");
	check_order(&vm->fw[RAYOS_DIR_IN], "VCRD", "rules: VM, group, parent, defaults");
	check_order(&inh->fw[RAYOS_DIR_IN], "CRD", "rules of a VM without its own");
	check_order(&plain->fw[RAYOS_DIR_IN], "D", "rules of a VM without a group");
	ASSERT_EQ(vm->fw[RAYOS_DIR_IN].default_action, RAYOS_ACT_ALLOW,
		  "default from the nearest group");
	ASSERT_EQ(plain->fw[RAYOS_DIR_IN].default_action, RAYOS_ACT_DENY, "built-in in: deny");
	ASSERT_EQ(plain->fw[RAYOS_DIR_OUT].default_action, RAYOS_ACT_ALLOW, "built-in out: allow");
	ASSERT_EQ(vm->fw[RAYOS_DIR_IN].rate_bytes, 0, "VM rate 0 overrides the group limit");
	ASSERT_EQ(inh->fw[RAYOS_DIR_IN].rate_bytes, 12500000, "100mbit is 12500000 bytes/s");
	ASSERT_EQ(inh->fw[RAYOS_DIR_IN].burst_bytes, 125000, "default burst: 10 ms of rate");
	ASSERT_EQ(inh->fw[RAYOS_DIR_OUT].rate_bytes, 1000000, "integer rate is bytes/s");
	ASSERT_EQ(inh->fw[RAYOS_DIR_OUT].burst_bytes, 2 << 20, "burst 2m is 2 MiB");
	ASSERT_EQ(plain->fw[RAYOS_DIR_IN].rate_bytes, 0, "no limit by default");

	/* A failed add leaves the set as it was. */
	ASSERT_EQ(policy_set_add_json(set, "more.json", dup_json, strlen(dup_json), &err),
		  -EINVAL, "adding a duplicate id fails");
	ASSERT_EQ(set->nr_vms, 3, "  ...and leaves the set unchanged");
	ASSERT_EQ(policy_set_add_json(set, "more.json", more_json, strlen(more_json), &err), 0,
		  "adding a document using an earlier group");
	if (ASSERT_EQ(set->nr_vms, 4, "  ...adds its VM"))
		ASSERT_STREQ(policy_set_find(set, 4)->source, "more.json", "  ...with its source file");
	ASSERT_EQ(set->nr_files, 2, "  ...and its file");
	policy_set_free(set);
}

static void test_units(void)
{
	static const struct { const char *rate; uint64_t bytes; } rates[] = {
		{ "\"1gbit\"", 125000000 }, { "\"500kbit\"", 62500 }, { "\"8bit\"", 1 },
		{ "\"10MB/s\"", 10000000 }, { "\"1 GiB/s\"", 1ULL << 30 }, { "4096", 4096 },
	};
	char json[256];
	struct policy_error err;
	struct policy_set *set;
	size_t i;

	for (i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		snprintf(json, sizeof(json), "{\"version\":1,\"vms\":[{\"id\":1,\"name\":\"a\","
			 "\"bandwidth\":{\"out\":{\"rate\":%s,\"burst\":\"64k\"}}}]}", rates[i].rate);
		set = parse(json, &err);
		if (tap_ok(set != NULL, "rate %s parses", rates[i].rate)) {
			ASSERT_EQ(set->vms[0].fw[RAYOS_DIR_OUT].rate_bytes, rates[i].bytes, "  ...value");
			ASSERT_EQ(set->vms[0].fw[RAYOS_DIR_OUT].burst_bytes, 65536, "  ...burst 64k");
		}
		policy_set_free(set);
	}
}

static void test_error_format(void)
{
	struct policy_error err = { .file = "a.json", .line = 3, .path = "vms[0]", .msg = "bad" };
	char buf[64];

	policy_error_format(&err, buf, sizeof(buf));
	ASSERT_STREQ(buf, "a.json:3: vms[0]: bad", "error format, all parts");
	err.line = 0;
	err.path[0] = '\0';
	policy_error_format(&err, buf, sizeof(buf));
	ASSERT_STREQ(buf, "a.json: bad", "error format, file only");
	ASSERT_EQ(policy_error_format(&err, buf, 4), -ENOSPC, "short buffer is -ENOSPC");
	ASSERT_STREQ(buf, "a.j", "  ...and holds a prefix");
	ASSERT_STREQ(policy_cap_name(RAYOS_CAP_GPU), "CAP_GPU", "capability name");
	ASSERT_EQ(policy_cap_from_name("CAP_ADMIN"), RAYOS_CAP_ADMIN, "capability from name");
	ASSERT_EQ(policy_cap_from_name("CAP_NOPE"), -EINVAL, "unknown capability name");
	ASSERT_EQ(policy_cap_from_name("CAP_AUDIT"), -EOPNOTSUPP, "CAP_AUDIT: removed");
	ASSERT_TRUE(policy_cap_name(RAYOS_CAP_COUNT) == NULL, "capability out of range");
}

/* ---- compiler: reference walk vs. kernel simulation ------------------------- */

struct packet {
	uint8_t dir, proto, family;
	uint16_t port;		/* or ICMP type */
	uint8_t addr[16];	/* remote address, network order */
};

static bool prefix_has(const uint8_t *net, int len, const uint8_t *addr)
{
	int i;

	for (i = 0; i < len; i++)
		if ((net[i / 8] ^ addr[i / 8]) & (0x80 >> (i % 8)))
			return false;
	return true;
}

/* What the rules mean: first match wins, else the default. */
static int reference_verdict(const struct policy_vm *vm, const struct packet *p)
{
	const struct fw_dir *d = &vm->fw[p->dir];
	size_t i, j;

	for (i = 0; i < d->nr_rules; i++) {
		const struct fw_rule *r = &d->rules[i];
		bool hit = !r->nr_ports, in_cidr = !r->nr_cidrs;

		if (r->proto != RAYOS_PROTO_ANY && r->proto != p->proto)
			continue;
		for (j = 0; j < r->nr_ports; j++)
			hit |= r->ports[j].lo <= p->port && p->port <= r->ports[j].hi;
		for (j = 0; j < r->nr_cidrs; j++)
			in_cidr |= r->cidrs[j].family == p->family &&
				   prefix_has(r->cidrs[j].addr, r->cidrs[j].prefixlen, p->addr);
		if (hit && in_cidr)
			return r->action;
	}
	return d->default_action;
}

/* Entries are sorted by key bytes (the compiler promises it): bsearch. */
static const void *find_key(const void *arr, size_t nr, size_t stride, const void *key,
			    size_t key_size)
{
	size_t lo = 0, hi = nr;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		const uint8_t *e = (const uint8_t *)arr + mid * stride;
		int r = memcmp(key, e, key_size);

		if (!r)
			return e;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return NULL;
}

static void mask_key(uint8_t *key, size_t key_size, uint32_t plen)
{
	size_t i;

	memcpy(key, &plen, 4);
	for (i = plen; i < (key_size - 4) * 8; i++)
		key[4 + i / 8] &= (uint8_t)~(0x80 >> (i % 8));
}

/* LPM trie semantics: the entry with the longest prefixlen whose first
 * prefixlen data bits equal the lookup's.  Tried length by length with the
 * lookup masked, which equals the trie as long as no entry has bits set past
 * its prefix; lpm_dirty() checks that. */
static const void *lpm_lookup(const void *arr, size_t nr, size_t stride, size_t key_size,
			      const void *lookup)
{
	bool used[8 * 32 + 1] = { false };
	uint8_t key[32];
	uint32_t plen;
	const void *e;
	size_t i;

	/* Only the prefix lengths some entry has can match: saves the search. */
	for (i = 0; i < nr; i++) {
		memcpy(&plen, (const uint8_t *)arr + i * stride, 4);
		if (plen <= (key_size - 4) * 8)
			used[plen] = true;
	}
	for (plen = (uint32_t)(key_size - 4) * 8;; plen--) {
		if (used[plen]) {
			memcpy(key, lookup, key_size);
			mask_key(key, key_size, plen);
			e = find_key(arr, nr, stride, key, key_size);
			if (e)
				return e;
		}
		if (!plen)
			return NULL;
	}
}

static size_t lpm_dirty(const void *arr, size_t nr, size_t stride, size_t key_size)
{
	uint8_t key[32];
	size_t i, dirty = 0;

	for (i = 0; i < nr; i++) {
		const uint8_t *e = (const uint8_t *)arr + i * stride;
		uint32_t plen;

		memcpy(&plen, e, 4);
		memcpy(key, e, key_size);
		if (plen <= (key_size - 4) * 8)
			mask_key(key, key_size, plen);
		dirty += plen > (key_size - 4) * 8 || memcmp(key, e, key_size) ||
			 (i && memcmp(e - stride, e, key_size) >= 0);
	}
	return dirty;
}

static const struct compiled_port *port_lookup(const struct compiled_vm *cvm,
					       const struct rayos_fw_port_key *k)
{
	return find_key(cvm->ports, cvm->nr_ports, sizeof(*cvm->ports), k, sizeof(*k));
}

/* The direction's interval table, as rayos_fw_eval() looks it up. */
static const struct rayos_fw_tab *tab_lookup(const struct compiled_vm *cvm, int dir)
{
	for (size_t i = 0; i < cvm->nr_tabs; i++)
		if (cvm->tabs[i].key.dir == dir)
			return &cvm->tabs[i].val;
	return NULL;
}

static uint32_t be32_at(const uint8_t *a)
{
	return (uint32_t)a[0] << 24 | a[1] << 16 | a[2] << 8 | a[3];
}

static uint64_t kernel_port_bits(const struct compiled_vm *cvm, const struct packet *p)
{
	const struct rayos_fw_tab *tab = tab_lookup(cvm, p->dir);
	const struct rayos_dir_policy *dp = &cvm->vm.dir[p->dir];
	struct rayos_fw_port_key k;
	struct rayos_fw_range_key rk;
	const struct compiled_port *hit;
	const struct compiled_range *rhit;

	/* As the parser: only these protocols have ports (or a type). */
	bool has_ports = p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP ||
			 p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6;

	if (tab && (dp->flags & RAYOS_DIRF_PORT_TAB))
		return fwtab_port(tab, (uint32_t)p->proto << 17 |
				       (has_ports ? 1U << 16 | p->port : 0));
	memset(&k, 0, sizeof(k));
	k.vm_id = cvm->vm.vm_id;
	k.dir = p->dir;
	k.proto = p->proto;
	k.kind = RAYOS_PORT_EXACT;
	k.port_host = p->port;
	if ((hit = port_lookup(cvm, &k)))
		return hit->val.rules;
	if (tab && (dp->flags & RAYOS_DIRF_RANGE_TAB)) {
		uint64_t r = fwtab_range(tab, (uint32_t)p->proto << 16 | p->port);

		if (r)
			return r;
	} else if (dp->flags & RAYOS_DIRF_PORT_RANGES) {
		memset(&rk, 0, sizeof(rk));
		rk.prefixlen = (sizeof(rk) - 4) * 8;
		rk.vm_id = cvm->vm.vm_id;
		rk.dir = p->dir;
		rk.proto = p->proto;
		rk.port_be = htons(p->port);
		rhit = lpm_lookup(cvm->ranges, cvm->nr_ranges, sizeof(*cvm->ranges), sizeof(rk), &rk);
		if (rhit)
			return rhit->val.rules;
	}
	k.kind = RAYOS_PORT_ANY;
	k.port_host = 0;
	if ((hit = port_lookup(cvm, &k)))
		return hit->val.rules;
	k.proto = RAYOS_PROTO_ANY;
	hit = port_lookup(cvm, &k);
	return hit ? hit->val.rules : 0;
}

static uint64_t kernel_cidr_bits(const struct compiled_vm *cvm, const struct packet *p)
{
	const struct rayos_dir_policy *dp = &cvm->vm.dir[p->dir];
	const struct rayos_fw_tab *tab = tab_lookup(cvm, p->dir);
	uint64_t bits = dp->cidr_wild_bits;

	if (tab && p->family == AF_INET && (dp->flags & RAYOS_DIRF_CIDR4_TAB)) {
		bits |= fwtab_cidr4(tab, be32_at(p->addr));
	} else if (tab && p->family == AF_INET6 && (dp->flags & RAYOS_DIRF_CIDR6_TAB)) {
		bits |= fwtab_cidr6(tab, (uint64_t)be32_at(p->addr) << 32 | be32_at(p->addr + 4),
				    (uint64_t)be32_at(p->addr + 8) << 32 | be32_at(p->addr + 12));
	} else if (p->family == AF_INET && (dp->flags & RAYOS_DIRF_CIDR4)) {
		struct rayos_fw_cidr4_key k;
		const struct compiled_cidr4 *e;

		memset(&k, 0, sizeof(k));
		k.prefixlen = (sizeof(k) - 4) * 8;
		k.vm_id = cvm->vm.vm_id;
		k.dir = p->dir;
		memcpy(&k.addr_be, p->addr, 4);
		e = lpm_lookup(cvm->cidr4, cvm->nr_cidr4, sizeof(*cvm->cidr4), sizeof(k), &k);
		bits |= e ? e->val.rules : 0;
	} else if (p->family == AF_INET6 && (dp->flags & RAYOS_DIRF_CIDR6)) {
		struct rayos_fw_cidr6_key k;
		const struct compiled_cidr6 *e;

		memset(&k, 0, sizeof(k));
		k.prefixlen = (sizeof(k) - 4) * 8;
		k.vm_id = cvm->vm.vm_id;
		k.dir = p->dir;
		memcpy(k.addr, p->addr, 16);
		e = lpm_lookup(cvm->cidr6, cvm->nr_cidr6, sizeof(*cvm->cidr6), sizeof(k), &k);
		bits |= e ? e->val.rules : 0;
	}
	return bits;
}

static int kernel_verdict(const struct compiled_vm *cvm, const struct packet *p)
{
	const struct rayos_dir_policy *dp = &cvm->vm.dir[p->dir];
	uint64_t match = kernel_port_bits(cvm, p) & kernel_cidr_bits(cvm, p);

	if (!match)
		return dp->default_action;
	return (dp->allow_bits >> __builtin_ctzll(match)) & 1;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t rnd(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return (uint32_t)(rng_state >> 16);
}

struct sampler {
	uint16_t ports[4096];
	size_t nr_ports;
	struct fw_cidr addrs[512];	/* sample addresses, prefixlen unused */
	size_t nr_addrs;
};

static void add_sample_port(struct sampler *s, long port)
{
	if (port >= 0 && port <= 65535 && s->nr_ports < 4096)
		s->ports[s->nr_ports++] = (uint16_t)port;
}

/* The first and last address of net, and the ones just outside it. */
static void add_sample_addrs(struct sampler *s, const struct fw_cidr *net)
{
	int bytes = net->family == AF_INET ? 4 : 16, i, k;

	for (k = 0; k < 4 && s->nr_addrs < 512; k++) {
		struct fw_cidr *a = &s->addrs[s->nr_addrs++];

		*a = *net;
		for (i = net->prefixlen; i < bytes * 8; i++)
			if (k & 1)
				a->addr[i / 8] |= 0x80 >> (i % 8);
		if (k >= 2) {	/* step one address below the first / above the last */
			for (i = bytes - 1; i >= 0; i--) {
				a->addr[i] += k == 2 ? 0xff : 1;
				if (k == 2 ? a->addr[i] != 0xff : a->addr[i] != 0)
					break;
			}
		}
	}
}

static int cmp_u16(const void *a, const void *b)
{
	return (int)*(const uint16_t *)a - (int)*(const uint16_t *)b;
}

static void collect_samples(const struct policy_vm *vm, struct sampler *s)
{
	static const long fixed[] = { 0, 1, 2, 65534, 65535 };
	size_t i, j, d;

	s->nr_ports = s->nr_addrs = 0;
	for (i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		add_sample_port(s, fixed[i]);
	for (d = 0; d < RAYOS_FW_DIRS; d++)
		for (i = 0; i < vm->fw[d].nr_rules; i++) {
			const struct fw_rule *r = &vm->fw[d].rules[i];

			for (j = 0; j < r->nr_ports; j++) {
				long lo = r->ports[j].lo, hi = r->ports[j].hi;

				add_sample_port(s, lo - 1);
				add_sample_port(s, lo);
				add_sample_port(s, lo + 1);
				add_sample_port(s, hi - 1);
				add_sample_port(s, hi);
				add_sample_port(s, hi + 1);
				add_sample_port(s, lo + (hi - lo) / 2);
			}
			for (j = 0; j < r->nr_cidrs; j++)
				add_sample_addrs(s, &r->cidrs[j]);
		}
	qsort(s->ports, s->nr_ports, sizeof(*s->ports), cmp_u16);
	for (i = 1, j = 1; i < s->nr_ports; i++)
		if (s->ports[i] != s->ports[j - 1])
			s->ports[j++] = s->ports[i];
	s->nr_ports = j;
}

static const uint8_t sample_protos[] = {
	IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP, IPPROTO_ICMPV6, 47,
};

static void random_addr(struct packet *p, const struct sampler *s)
{
	uint32_t r = rnd();

	if (s->nr_addrs && r % 4) {
		const struct fw_cidr *base = &s->addrs[rnd() % s->nr_addrs];
		int bytes = base->family == AF_INET ? 4 : 16, i;

		p->family = base->family;
		memcpy(p->addr, base->addr, 16);
		/* Flip a few low bits: stays near the interesting prefixes. */
		for (i = 0; i < 3; i++)
			p->addr[bytes - 1 - rnd() % 3] ^= (uint8_t)(1u << (rnd() % 8));
		return;
	}
	p->family = r & 1 ? AF_INET : AF_INET6;
	memset(p->addr, 0, sizeof(p->addr));
	for (int i = 0; i < (p->family == AF_INET ? 4 : 16); i++)
		p->addr[i] = (uint8_t)rnd();
}

/* Set while a test breaks entries on purpose: mismatches are expected. */
static bool quiet_mismatches;

static size_t check_packet(const struct policy_vm *vm, const struct compiled_vm *cvm,
			   struct packet *p, bool *reported)
{
	int want, got;

	if (p->proto == IPPROTO_ICMP || p->proto == IPPROTO_ICMPV6)
		p->port &= 0xff;
	want = reference_verdict(vm, p);
	got = kernel_verdict(cvm, p);
	if (want == got)
		return 0;
	if (!*reported && !quiet_mismatches)
		tap_diag("  vm %u dir %u proto %u port %u family %u: rules say %d, maps say %d",
			 vm->id, p->dir, p->proto, p->port, p->family, want, got);
	*reported = true;
	return 1;
}

/* Every direction and protocol for one port and address. */
static size_t check_all_protos(const struct policy_vm *vm, const struct compiled_vm *cvm,
			       struct packet *p, uint16_t port, bool *reported, size_t *nr_checked)
{
	size_t d, i, bad = 0;

	for (d = 0; d < RAYOS_FW_DIRS; d++)	/* in, out and the host rules */
		for (i = 0; i < sizeof(sample_protos); i++) {
			p->dir = (uint8_t)d;
			p->proto = sample_protos[i];
			p->port = port;
			bad += check_packet(vm, cvm, p, reported);
			(*nr_checked)++;
		}
	return bad;
}

static void sample_addr(struct packet *p, const struct fw_cidr *a)
{
	p->family = a->family;
	memcpy(p->addr, a->addr, 16);
}

/* Boundary ports against boundary addresses (all pairs while that stays
 * small, else each against a few random partners), then nr_random packets
 * near the boundaries; returns how many verdicts disagree. */
static size_t compare_vm(const struct policy_vm *vm, const struct compiled_vm *cvm,
			 size_t nr_random, size_t *nr_checked)
{
	static struct sampler s;
	struct packet p;
	size_t i, j, bad = 0;
	bool reported = false, full;

	collect_samples(vm, &s);
	full = s.nr_ports * s.nr_addrs <= 20000;
	memset(&p, 0, sizeof(p));
	for (i = 0; i < s.nr_addrs; i++) {
		sample_addr(&p, &s.addrs[i]);
		for (j = 0; j < (full ? s.nr_ports : 4); j++)
			bad += check_all_protos(vm, cvm, &p, s.ports[full ? j : rnd() % s.nr_ports],
						&reported, nr_checked);
	}
	for (j = 0; !full && j < s.nr_ports; j++)
		for (i = 0; i < 4; i++) {
			sample_addr(&p, &s.addrs[rnd() % s.nr_addrs]);
			bad += check_all_protos(vm, cvm, &p, s.ports[j], &reported, nr_checked);
		}
	for (i = 0; i < nr_random; i++) {
		random_addr(&p, &s);
		bad += check_all_protos(vm, cvm, &p, rnd() % 3 ? s.ports[rnd() % s.nr_ports] :
					(uint16_t)rnd(), &reported, nr_checked);
	}
	return bad;
}

static size_t compare_set(const struct policy_set *set, const struct compiled_policy *cp,
			  size_t nr_random, size_t *nr_checked)
{
	size_t i, bad = 0;

	for (i = 0; i < set->nr_vms; i++) {
		const struct compiled_vm *c = &cp->vms[i];
		size_t dirty = lpm_dirty(c->ranges, c->nr_ranges, sizeof(*c->ranges),
					 sizeof(c->ranges->key)) +
			       lpm_dirty(c->cidr4, c->nr_cidr4, sizeof(*c->cidr4),
					 sizeof(c->cidr4->key)) +
			       lpm_dirty(c->cidr6, c->nr_cidr6, sizeof(*c->cidr6),
					 sizeof(c->cidr6->key));

		if (dirty)
			tap_diag("  vm %u: %zu LPM entries unsorted or with bits past their prefix",
				 c->vm.vm_id, dirty);
		bad += dirty + compare_vm(&set->vms[i], c, nr_random, nr_checked);
	}
	return bad;
}

/* Overlapping ranges, exact ports inside ranges, proto-any rules with and
 * without CIDRs, nested prefixes in both families, /0 and /32 and /128. */
static const char overlap_json[] =
"{ \"version\": 1, \"vms\": [ { \"id\": 42, \"name\": \"overlap\", \"firewall\": {\n"
"  \"in\": { \"default\": \"deny\", \"rules\": [\n"
"    { \"action\": \"deny\", \"protocol\": \"tcp\", \"ports\": [8080] },\n"
"    { \"action\": \"allow\", \"protocol\": \"tcp\", \"ports\": [\"8000-8999\", 443] },\n"
"    { \"action\": \"deny\", \"protocol\": \"tcp\", \"ports\": [\"8500-9500\", 22] },\n"
"    { \"action\": \"allow\", \"protocol\": \"tcp\", \"ports\": [22, \"20-25\"], \"cidrs\": [\"10.0.0.0/8\"] },\n"
"    { \"action\": \"deny\", \"cidrs\": [\"10.1.0.0/16\", \"fd00:1::/32\"] },\n"
"    { \"action\": \"deny\", \"protocol\": \"udp\", \"ports\": [53, 5353], \"cidrs\": [\"10.1.2.3\"] },\n"
"    { \"action\": \"allow\", \"protocol\": \"udp\", \"ports\": [\"1024-65535\", 53] },\n"
"    { \"action\": \"allow\", \"protocol\": \"icmp\", \"icmp_types\": [0, 8] },\n"
"    { \"action\": \"deny\", \"protocol\": \"icmpv6\" },\n"
"    { \"action\": \"allow\", \"cidrs\": [\"192.168.0.0/16\", \"192.168.1.0/24\", \"fd00::/8\"] },\n"
"    { \"action\": \"allow\", \"protocol\": \"tcp\", \"cidrs\": [\"2001:db8::/32\", \"2001:db8::1\"] },\n"
"    { \"action\": \"deny\", \"protocol\": 47 },\n"
"    { \"action\": \"allow\", \"protocol\": \"sctp\" },\n"
"    { \"action\": \"allow\", \"protocol\": \"udp\", \"ports\": [\"100-200\", \"150-160\", 155] },\n"
"    { \"action\": \"allow\", \"protocol\": \"tcp\", \"ports\": [\"1-1023\"], \"cidrs\": [\"0.0.0.0/0\"] }\n"
"  ] },\n"
"  \"out\": { \"default\": \"allow\", \"rules\": [\n"
"    { \"action\": \"allow\", \"protocol\": \"tcp\", \"ports\": [25], \"cidrs\": [\"10.0.0.25\"] },\n"
"    { \"action\": \"deny\", \"protocol\": \"tcp\", \"ports\": [25, \"465-587\"] },\n"
"    { \"action\": \"deny\", \"cidrs\": [\"::/0\"] },\n"
"    { \"action\": \"allow\", \"protocol\": \"udp\" },\n"
"    { \"action\": \"deny\", \"protocol\": \"udp\", \"ports\": [\"1-65535\"] }\n"
"  ] } } } ] }\n";

static const uint16_t port_pool[] = { 1, 2, 20, 22, 25, 53, 80, 443, 1000, 1023, 1024,
				      8000, 8080, 8999, 9000, 32768, 65534, 65535 };

static const char *const cidr_pool[] = {
	"0.0.0.0/0", "10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3", "10.1.2.128/25",
	"192.168.0.0/16", "192.168.1.0/24", "172.16.0.0/12",
	"::/0", "fd00::/8", "fd00:1::/32", "2001:db8::/32", "2001:db8::1", "2001:db8:0:1::/64",
};

/* Set for policies whose ports and prefixes are drawn from the whole space:
 * they have more intervals than a rayos_fw_tab holds, so those dimensions
 * stay in the LPM tries and that path is compared too. */
static bool scatter;

static uint16_t random_port(void)
{
	return !scatter && rnd() % 4 ? port_pool[rnd() % (sizeof(port_pool) / sizeof(port_pool[0]))] :
	       (uint16_t)(rnd() % 65535 + 1);
}

/* A random rule over a small pool of ports and prefixes, so they overlap. */
static void random_rule(struct fw_rule *r, struct fw_port_range *ports, struct fw_cidr *cidrs)
{
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP,
					  IPPROTO_ICMPV6, 47, RAYOS_PROTO_ANY };
	size_t i;

	memset(r, 0, sizeof(*r));
	r->action = rnd() & 1;
	r->proto = protos[rnd() % sizeof(protos)];
	r->ports = ports;
	r->cidrs = cidrs;
	if ((r->proto == IPPROTO_TCP || r->proto == IPPROTO_UDP) && rnd() % 4) {
		r->nr_ports = 1 + rnd() % 4;
		for (i = 0; i < r->nr_ports; i++) {
			uint16_t a = random_port(), b = rnd() % 2 ? a : random_port();

			ports[i].lo = a < b ? a : b;
			ports[i].hi = a < b ? b : a;
		}
	} else if ((r->proto == IPPROTO_ICMP || r->proto == IPPROTO_ICMPV6) && rnd() % 2) {
		r->nr_ports = 1 + rnd() % 3;
		for (i = 0; i < r->nr_ports; i++)
			ports[i].lo = ports[i].hi = (uint16_t)(rnd() % 4 ? rnd() % 12 : rnd() % 256);
	}
	if (rnd() % 2) {
		r->nr_cidrs = 1 + rnd() % 3;
		for (i = 0; i < r->nr_cidrs; i++) {
			const char *s = cidr_pool[rnd() % (sizeof(cidr_pool) / sizeof(cidr_pool[0]))];
			char buf[64], *slash;

			if (scatter) {
				memset(&cidrs[i], 0, sizeof(cidrs[i]));
				cidrs[i].family = rnd() % 3 ? AF_INET : AF_INET6;
				for (int b = 0; b < (cidrs[i].family == AF_INET ? 4 : 16); b++)
					cidrs[i].addr[b] = (uint8_t)rnd();
				cidrs[i].prefixlen = cidrs[i].family == AF_INET ? 20 + rnd() % 13 :
						     48 + rnd() % 81;
				/* host bits clear, as the parser requires */
				for (int bit = cidrs[i].prefixlen; bit < 128; bit++)
					cidrs[i].addr[bit / 8] &= (uint8_t)~(0x80 >> (bit % 8));
				continue;
			}
			snprintf(buf, sizeof(buf), "%s", s);
			slash = strchr(buf, '/');
			if (slash)
				*slash = '\0';
			memset(&cidrs[i], 0, sizeof(cidrs[i]));
			cidrs[i].family = strchr(buf, ':') ? AF_INET6 : AF_INET;
			inet_pton(cidrs[i].family, buf, cidrs[i].addr);
			cidrs[i].prefixlen = slash ? (uint8_t)atoi(slash + 1) :
					     cidrs[i].family == AF_INET ? 32 : 128;
		}
	}
}

static void test_compile_random(void)
{
	enum { NR_POLICIES = 120 };
	static struct fw_rule rules[RAYOS_FW_DIRS][RAYOS_MAX_RULES];
	static struct fw_port_range ports[RAYOS_FW_DIRS][RAYOS_MAX_RULES][4];
	static struct fw_cidr cidrs[RAYOS_FW_DIRS][RAYOS_MAX_RULES][3];
	struct policy_vm vm;
	struct policy_set set = { .nr_vms = 1, .vms = &vm };
	struct compiled_policy *cp;
	struct policy_error err;
	size_t n, bad = 0, checked = 0, failed_compiles = 0, in_tab = 0, in_trie = 0;
	size_t port_tab = 0, port_hash = 0;
	int d;

	for (n = 0; n < NR_POLICIES; n++) {
		memset(&vm, 0, sizeof(vm));
		vm.id = 1000 + (uint32_t)n;
		scatter = n % 8 == 7;
		for (d = 0; d < RAYOS_FW_DIRS; d++) {
			size_t i, nr = n == 0 || scatter ? RAYOS_MAX_RULES : 1 + rnd() % 24;

			vm.fw[d].default_action = rnd() & 1;
			vm.fw[d].nr_rules = nr;
			vm.fw[d].rules = rules[d];
			for (i = 0; i < nr; i++)
				random_rule(&rules[d][i], ports[d][i], cidrs[d][i]);
		}
		if (policy_compile(&set, &cp, &err)) {
			failed_compiles++;
			continue;
		}
		bad += compare_set(&set, cp, 300, &checked);
		for (d = 0; d < RAYOS_FW_DIRS; d++) {
			unsigned int f = cp->vms[0].vm.dir[d].flags;

			in_tab += !!(f & RAYOS_DIRF_CIDR4_TAB) + !!(f & RAYOS_DIRF_RANGE_TAB) +
				  !!(f & RAYOS_DIRF_PORT_TAB);
			port_tab += !!(f & RAYOS_DIRF_PORT_TAB);
			port_hash += vm.fw[d].nr_rules && !(f & RAYOS_DIRF_PORT_TAB);
			in_trie += !!(f & RAYOS_DIRF_CIDR4) + !!(f & RAYOS_DIRF_PORT_RANGES);
		}
		compiled_policy_free(cp);
	}
	ASSERT_EQ(failed_compiles, 0, "random policies compile");
	scatter = false;
	tap_ok(in_tab > 0 && in_trie > 0, "random policies: some dimensions in interval "
	       "tables (%zu), some too big and in LPM tries (%zu)", in_tab, in_trie);
	tap_ok(port_tab > 0 && port_hash > 0, "random policies: whole port dimensions in a "
	       "table (%zu), some too big and in the hash (%zu)", port_tab, port_hash);
	if (!ASSERT_EQ(bad, 0, "random policies: maps give the rules' verdict on every packet"))
		tap_diag("  %zu of %zu packets disagree", bad, checked);
	tap_diag("  %d random policies, %zu packets compared", NR_POLICIES, checked);
}

/* ---- CAP_NETWORK port limits: firewall ∩ limit ------------------------------ */

#define V_CAP_PORTS	(-1)	/* dropped by the limit (RAYOS_RSN_CAP_PORTS) */

/* rayos_fw_eval() with the limit's check (bpf/include/fw.bpf.h). */
static int limit_verdict(const struct compiled_vm *cvm, const struct packet *p)
{
	const struct rayos_dir_policy *dp = &cvm->vm.dir[p->dir];
	uint64_t match = kernel_port_bits(cvm, p) & kernel_cidr_bits(cvm, p);

	if (dp->cap_rules && (match & (~0ULL << ((dp->nr_rules - dp->cap_rules) & 63))))
		return V_CAP_PORTS;
	if (!match)
		return dp->default_action;
	return (dp->allow_bits >> __builtin_ctzll(match)) & 1;
}

/* What a limit means: TCP and UDP to a listed port and every protocol
 * without ports keep the firewall's verdict; other ports and SCTP drop. */
static int limit_expected(const struct caps_ports *lim, const struct packet *p, int fw)
{
	if (p->dir == RAYOS_FW_HOST)
		return fw;
	if (p->proto == IPPROTO_SCTP)
		return V_CAP_PORTS;
	if ((p->proto == IPPROTO_TCP || p->proto == IPPROTO_UDP) && !caps_ports_has(lim, p->port))
		return V_CAP_PORTS;
	return fw;
}

static void random_limit(struct caps_ports *lim)
{
	size_t n = rnd() % 6;

	memset(lim, 0, sizeof(*lim));
	if (!n) {	/* everything but a few ports */
		caps_ports_add(lim, 1, 21);
		caps_ports_add(lim, 23, 65535);
		return;
	}
	while (n--) {
		uint32_t a = 1 + rnd() % 65535, b = rnd() % 2 ? a : 1 + rnd() % 65535;

		caps_ports_add(lim, a < b ? a : b, a < b ? b : a);
	}
}

/* Random policies with and without a random port limit: on every packet
 * the limited maps answer exactly firewall ∩ limit. */
static void test_cap_limit_random(void)
{
	enum { NR_POLICIES = 80 };
	static const uint8_t protos[] = { IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_ICMP, 47 };
	static struct fw_rule rules[RAYOS_FW_DIRS][RAYOS_MAX_RULES];
	static struct fw_port_range ports[RAYOS_FW_DIRS][RAYOS_MAX_RULES][4];
	static struct fw_cidr cidrs[RAYOS_FW_DIRS][RAYOS_MAX_RULES][3];
	static struct sampler smp;
	struct policy_vm vm;
	struct policy_set set = { .nr_vms = 1, .vms = &vm };
	struct compiled_policy *plain, *lim;
	struct policy_error err;
	size_t n, bad = 0, checked = 0, capped = 0, failed = 0, too_many = 0;

	for (n = 0; n < NR_POLICIES; n++) {
		bool full = n % 10 == 9;	/* 62+ rules: the limit's cannot fit */

		memset(&vm, 0, sizeof(vm));
		vm.id = 2000 + (uint32_t)n;
		for (int d = 0; d < RAYOS_FW_DIRS; d++) {
			size_t i, nr = full ? RAYOS_MAX_RULES - 1 : 1 + rnd() % 24;

			vm.fw[d].default_action = rnd() & 1;
			vm.fw[d].nr_rules = nr;
			vm.fw[d].rules = rules[d];
			for (i = 0; i < nr; i++)
				random_rule(&rules[d][i], ports[d][i], cidrs[d][i]);
		}
		if (policy_compile(&set, &plain, &err)) {
			failed++;
			continue;
		}
		vm.limits.has_ports = true;
		random_limit(&vm.limits.ports);
		if (policy_compile(&set, &lim, &err)) {
			too_many += full && strstr(err.msg, "port limit adds");
			failed += !full;
			compiled_policy_free(plain);
			continue;
		}
		failed += full;
		collect_samples(&vm, &smp);
		for (uint32_t i = 0; i < vm.limits.ports.nr; i++) {
			add_sample_port(&smp, (long)vm.limits.ports.r[i].lo - 1);
			add_sample_port(&smp, vm.limits.ports.r[i].lo);
			add_sample_port(&smp, vm.limits.ports.r[i].hi);
			add_sample_port(&smp, (long)vm.limits.ports.r[i].hi + 1);
		}
		for (int d = 0; d < RAYOS_FW_DIRS; d++)
			for (size_t pi = 0; pi < smp.nr_ports; pi++)
				for (size_t k = 0; k < sizeof(protos); k++) {
					const struct fw_cidr *a = &smp.addrs[rnd() % (smp.nr_addrs ?: 1)];
					struct packet p = { .dir = (uint8_t)d, .proto = protos[k],
							    .port = smp.ports[pi],
							    .family = smp.nr_addrs ? a->family : AF_INET };
					int fw, got, want;

					if (smp.nr_addrs)
						memcpy(p.addr, a->addr, 16);
					fw = kernel_verdict(&plain->vms[0], &p);
					want = limit_expected(&vm.limits.ports, &p, fw);
					got = limit_verdict(&lim->vms[0], &p);
					checked++;
					capped += want == V_CAP_PORTS;
					if (got != want && bad++ < 5)
						tap_diag("  VM %u dir %d proto %u port %u: got %d, want %d "
							 "(firewall %d)", vm.id, d, p.proto, p.port, got,
							 want, fw);
				}
		compiled_policy_free(plain);
		compiled_policy_free(lim);
	}
	ASSERT_EQ(failed, 0, "random policies with a port limit compile (and 63 rules + limit "
		  "do not)");
	ASSERT_EQ(too_many, NR_POLICIES / 10, "a direction with no room for the limit's rules "
		  "is refused, naming the limit");
	if (!ASSERT_EQ(bad, 0, "port limit: the maps give firewall ∩ limit on every packet"))
		tap_diag("  %zu of %zu packets disagree", bad, checked);
	tap_ok(capped > 0 && capped < checked, "port limit: some packets dropped by it (%zu of "
	       "%zu), the rest judged by the firewall", capped, checked);
}

/* The example: a firewall allowing tcp 22, 80, 443 and a limit of
 * 443,80 -> 443 and 80 pass, 22 drops as the limit's, 8080 (listed by the
 * limit, refused by the firewall) stays refused; rates: the lower wins. */
static void test_cap_limit_example(void)
{
	static const char json[] =
		"{ \"version\": 1, \"vms\": [ { \"id\": 5, \"name\": \"web\","
		"  \"firewall\": { \"out\": { \"default\": \"deny\", \"rules\": ["
		"    { \"action\": \"allow\", \"protocol\": \"tcp\", \"ports\": [22, 80, 443] } ] } },"
		"  \"bandwidth\": { \"out\": { \"rate\": \"100mbit\" }, \"in\": { \"rate\": \"10mbit\" } },"
		"  \"capability_limits\": { \"CAP_NETWORK\": { \"allow_ports\": [443, 80, \"8080\"],"
		"    \"max_bandwidth\": \"50Mbps\" }, \"CAP_GPU\": { \"nodes\": [\"226:128\"] } } } ] }";
	static const struct { uint16_t port; int want; } cases[] = {
		{ 443, 1 }, { 80, 1 }, { 22, V_CAP_PORTS }, { 8080, 0 }, { 8081, V_CAP_PORTS },
	};
	struct policy_error err;
	struct compiled_policy *cp;
	struct policy_set *set = parse(json, &err);
	uint64_t burst;
	bool marked = false;

	if (!tap_ok(set != NULL, "capability_limits example parses: %s", set ? "" : err.msg))
		return;
	if (!ASSERT_EQ(policy_compile(set, &cp, &err), 0, "capability_limits example compiles"))
		goto out;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct packet p = { .dir = RAYOS_DIR_OUT, .proto = IPPROTO_TCP, .family = AF_INET,
				    .port = cases[i].port };

		tap_ok(limit_verdict(&cp->vms[0], &p) == cases[i].want, "fw tcp 22,80,443 ∩ limit "
		       "80,443,8080: tcp %u -> %s", cases[i].port, cases[i].want == 1 ? "pass" :
		       cases[i].want ? "cap_ports" : "firewall drop");
	}
	ASSERT_EQ(cp->vms[0].vm.dir[RAYOS_DIR_OUT].rate_bytes, 50000000 / 8,
		  "out: limit 50Mbps below the policy's 100mbit wins");
	ASSERT_EQ(cp->vms[0].vm.dir[RAYOS_DIR_IN].rate_bytes, 10000000 / 8,
		  "in: the policy's 10mbit below the limit's 50Mbps wins");
	ASSERT_EQ(policy_vm_rate(&set->vms[0], RAYOS_DIR_OUT, &burst), 50000000 / 8,
		  "policy_vm_rate (the shapers' figure) agrees");
	for (size_t i = 0; i < cp->vms[0].nr_dev; i++)
		marked |= cp->vms[0].dev[i].key.major == 226 && cp->vms[0].dev[i].key.minor == 128 &&
			  (cp->vms[0].dev[i].val.limit & RAYOS_DEV_LIMIT_GPU);
	ASSERT_TRUE(marked && (cp->vms[0].vm.flags & RAYOS_VMF_GPU_NODES),
		    "CAP_GPU nodes: the record says limited, node 226:128 is marked");
	compiled_policy_free(cp);
out:
	policy_set_free(set);
}

/* CAP_DISK_WRITE limited to one block disk and one image: the record says
 * so, the listed block disk's entry carries the mark, the other's not. */
static void test_disk_limit_compile(void)
{
	static const char json[] =
		"{ \"version\": 1, \"vms\": [ { \"id\": 6, \"name\": \"db\","
		"  \"capabilities\": [\"CAP_DISK_READ\", \"CAP_DISK_WRITE\"],"
		"  \"disks\": [ { \"path\": \"/dev/rayos-d0\", \"device\": \"60:0\", \"mode\": \"rw\" },"
		"    { \"path\": \"/dev/rayos-d1\", \"device\": \"60:1\", \"mode\": \"rw\" },"
		"    { \"path\": \"/var/lib/rayos/images/db.qcow2\", \"mode\": \"rw\" } ],"
		"  \"capability_limits\": { \"CAP_DISK_WRITE\": { \"disks\": [\"/dev/rayos-d0\","
		"    \"/var/lib/rayos/images/db.qcow2\"] } } } ] }";
	struct policy_error err;
	struct compiled_policy *cp;
	struct policy_set *set = parse(json, &err);
	uint8_t mark[2] = { 0xff, 0xff };

	if (!tap_ok(set != NULL, "disk limit example parses: %s", set ? "" : err.msg))
		return;
	ASSERT_TRUE(caps_disk_allowed(&set->vms[0].limits, CAPS_DISK_WRITE,
				      "/var/lib/rayos/images/db.qcow2") &&
		    !caps_disk_allowed(&set->vms[0].limits, CAPS_DISK_WRITE, "/dev/rayos-d1") &&
		    caps_disk_allowed(&set->vms[0].limits, CAPS_DISK_READ, "/dev/rayos-d1"),
		    "the limit lists d0 and the image for writing, reading is not limited");
	if (!ASSERT_EQ(policy_compile(set, &cp, &err), 0, "disk limit example compiles"))
		goto out;
	for (size_t i = 0; i < cp->vms[0].nr_dev; i++)
		if (cp->vms[0].dev[i].key.type == RAYOS_DEV_BLOCK && cp->vms[0].dev[i].key.major == 60 &&
		    cp->vms[0].dev[i].key.minor < 2)
			mark[cp->vms[0].dev[i].key.minor] = cp->vms[0].dev[i].val.limit;
	ASSERT_TRUE((cp->vms[0].vm.flags & RAYOS_VMF_DISK_WRITE_LIMIT) &&
		    !(cp->vms[0].vm.flags & RAYOS_VMF_DISK_READ_LIMIT),
		    "the record: CAP_DISK_WRITE limited, CAP_DISK_READ not");
	ASSERT_TRUE(mark[0] != 0xff && (mark[0] & RAYOS_DEV_LIMIT_DISK_WRITE),
		    "60:0 (listed) is marked for writing");
	ASSERT_TRUE(mark[1] != 0xff && !(mark[1] & RAYOS_DEV_LIMIT_DISK_WRITE),
		    "60:1 (not listed) is not");
	compiled_policy_free(cp);
out:
	policy_set_free(set);
}

static void test_compile_overlap(void)
{
	struct policy_error err;
	struct compiled_policy *cp;
	struct policy_set *set;
	size_t checked = 0, bad, i;
	char msg[PATH_MAX + 600];

	set = parse(overlap_json, &err);
	if (!set) {
		policy_error_format(&err, msg, sizeof(msg));
		tap_ok(false, "overlap policy parses: %s", msg);
		return;
	}
	if (!ASSERT_EQ(policy_compile(set, &cp, &err), 0, "overlap policy compiles"))
		goto out;
	bad = compare_set(set, cp, 5000, &checked);
	if (!ASSERT_EQ(bad, 0, "overlapping ranges, nested CIDRs: maps agree with the rules"))
		tap_diag("  %zu of %zu packets disagree", bad, checked);
	tap_diag("  %zu packets compared", checked);
	ASSERT_TRUE(cp->vms[0].vm.dir[RAYOS_DIR_IN].flags ==
		    (RAYOS_DIRF_PORT_TAB | RAYOS_DIRF_CIDR4_TAB | RAYOS_DIRF_CIDR6_TAB),
		    "in: ports (with ranges), cidr4 and cidr6 all in the interval table");

	/* The comparison must be able to fail: clear the interval of tcp 443
	 * (also inside a range) in the port table and expect a miss. */
	for (i = 0; i < cp->vms[0].nr_tabs; i++) {
		struct rayos_fw_tab *t = &cp->vms[0].tabs[i].val;
		uint32_t x = IPPROTO_TCP << 17 | 1U << 16 | 443;

		if (cp->vms[0].tabs[i].key.dir != RAYOS_DIR_IN)
			continue;
		for (size_t c = 0; c < RAYOS_TAB_PORTS; c++)	/* the cell holding x */
			if (t->port_lo[c] <= x && (c + 1 == RAYOS_TAB_PORTS || t->port_lo[c + 1] > x))
				t->port_bits[c] = 0;
	}
	checked = 0;
	quiet_mismatches = true;
	ASSERT_TRUE(compare_set(set, cp, 0, &checked) > 0, "a broken entry is detected");
	quiet_mismatches = false;
	compiled_policy_free(cp);
out:
	policy_set_free(set);
}

/* ---- compiled record, layout, digests ---------------------------------------- */

static void test_compiled_record(void)
{
	struct compiled_policy *cp;
	struct policy_error err;
	struct policy_set *set = NULL;
	const struct compiled_vm *web1 = NULL;
	bool clean = true;
	size_t i, j;
	int ret;

	ret = policy_load_dir(EXAMPLES_DIR, &set, &err);
	if (!ASSERT_EQ(ret, 0, "example policies load as one directory"))
		return;
	ASSERT_EQ(set->nr_vms, 6, "  ...six VMs");
	ASSERT_EQ(set->nr_files, 4, "  ...from four files");
	if (!ASSERT_EQ(policy_compile(set, &cp, &err), 0, "  ...and compile"))
		goto out;
	for (i = 0; i < cp->nr_vms; i++)
		if (cp->vms[i].vm.vm_id == 101)
			web1 = &cp->vms[i];
	if (!ASSERT_TRUE(web1 != NULL, "web-1 compiled"))
		goto free_cp;
	ASSERT_EQ(web1->vm.caps, (1ULL << RAYOS_CAP_NETWORK) | (1ULL << RAYOS_CAP_DISK_READ) |
		  (1ULL << RAYOS_CAP_DISK_WRITE) | (1ULL << RAYOS_CAP_CONSOLE), "web-1 caps from defaults");
	ASSERT_EQ(web1->vm.flags, RAYOS_VMF_MAC, "web-1 MAC enforced");
	ASSERT_EQ(web1->vm.mac[5], 0x01, "  ...MAC bytes");
	ASSERT_TRUE(web1->has_bind, "web-1 static bind");
	ASSERT_EQ(web1->bind.flags, RAYOS_BINDF_IPV4 | RAYOS_BINDF_IPV6 | RAYOS_BINDF_STATIC,
		  "  ...IPv4, IPv6, static");
	ASSERT_EQ(web1->bind.ipv4_be, inet_addr("192.0.2.11"), "  ...IPv4 address");
	ASSERT_EQ(web1->vm.dir[RAYOS_DIR_IN].rate_bytes, 125000000, "web-1 in rate 1gbit");
	ASSERT_EQ(web1->vm.dir[RAYOS_DIR_OUT].burst_bytes, 1 << 20, "web-1 out burst 1m");
	ASSERT_EQ(web1->vm.dir[RAYOS_DIR_IN].nr_rules, 6, "web-1: 2 web + 2 managed + 2 default rules");
	ASSERT_EQ(web1->vm.dir[RAYOS_DIR_IN].allow_bits, 0x3f, "  ...all allow");
	ASSERT_EQ(web1->vm.dir[RAYOS_DIR_IN].default_action, RAYOS_ACT_DENY, "  ...default deny");
	ASSERT_EQ(web1->vm.gen | web1->vm.slot | web1->vm.policy_version, 0,
		  "gen, slot, version left to the publisher");
	ASSERT_EQ(web1->vm.dir[RAYOS_FW_HOST].nr_rules, 4,
		  "web-1 host rules: 1 from managed (jump port) + 3 defaults (DNS, ping)");
	ASSERT_EQ(web1->vm.dir[RAYOS_FW_HOST].default_action, RAYOS_ACT_DENY,
		  "  ...host default deny (built in)");
	ASSERT_EQ(web1->vm.ctl[RAYOS_CTL_ARP].rate, 100, "web-1 ARP rate: built-in 100/s");
	ASSERT_EQ(web1->vm.ctl[RAYOS_CTL_DHCP].rate, 20, "  ...DHCP 20/s");
	ASSERT_EQ(web1->vm.ctl[RAYOS_CTL_DHCP].burst, 40, "  ...burst two seconds' worth");
	for (i = 0; i < cp->nr_vms; i++) {
		const struct compiled_vm *v = &cp->vms[i];

		if (v->vm.vm_id == 201)
			ASSERT_TRUE(v->vm.ctl[RAYOS_CTL_ARP].rate == 20 &&
				    v->vm.ctl[RAYOS_CTL_DHCP].rate == 5 &&
				    v->vm.ctl[RAYOS_CTL_ND].rate == 20,
				    "db-primary: control_rates from its group");
		if (v->vm.vm_id == 103) {
			static const uint8_t ll[16] = { 0xfe, 0x80, [8] = 0x3c, 0x1e, 0x9a, 0x2b,
							0x77, 0xd4, 0xe0, 0x19 };

			ASSERT_TRUE(!memcmp(v->vm.ll6[0], ll, 16), "web-canary: its listed link-local");
		}
		if (v->vm.vm_id == 101) {
			size_t host_entries = 0;

			for (j = 0; j < v->nr_ports; j++)
				host_entries += v->ports[j].key.dir == RAYOS_FW_HOST;
			for (j = 0; j < v->nr_tabs; j++)
				host_entries += v->tabs[j].key.dir == RAYOS_FW_HOST;
			ASSERT_TRUE(host_entries > 0, "web-1: host rules compiled into entries of dir 2");
		}
	}

	for (i = 0; i < cp->nr_vms; i++) {
		const struct compiled_vm *v = &cp->vms[i];

		for (j = 0; j < v->nr_ports; j++)
			clean &= !v->ports[j].key.gen && !v->ports[j].key.pad &&
				 v->ports[j].key.vm_id == v->vm.vm_id &&
				 (j == 0 || memcmp(&v->ports[j - 1].key, &v->ports[j].key,
						   sizeof(v->ports[j].key)) < 0);
		for (j = 0; j < v->nr_ranges; j++)
			clean &= !v->ranges[j].key.gen && !v->ranges[j].key.pad &&
				 !v->ranges[j].key.pad2 &&
				 v->ranges[j].key.prefixlen >= RAYOS_FW_RANGE_PREFIX &&
				 v->ranges[j].key.prefixlen <= RAYOS_FW_RANGE_PREFIX + 16;
		for (j = 0; j < v->nr_cidr4; j++)
			clean &= !v->cidr4[j].key.gen && !v->cidr4[j].key.pad[0] &&
				 !v->cidr4[j].key.pad[1];
	}
	ASSERT_TRUE(clean, "entries: gen and padding zero, keys sorted and unique");
free_cp:
	compiled_policy_free(cp);
out:
	policy_set_free(set);
}

static bool compile_digest(const char *json, uint8_t policy[32], uint8_t vm0[32])
{
	struct compiled_policy *cp;
	struct policy_error err;
	struct policy_set *set = parse(json, &err);
	bool ok = set && !policy_compile(set, &cp, &err);

	if (ok) {
		memcpy(policy, cp->digest, 32);
		memcpy(vm0, cp->vms[0].digest, 32);
		compiled_policy_free(cp);
	}
	policy_set_free(set);
	return ok;
}

static void test_digest(void)
{
	static const char a[] =
		"{\"version\":1,\"vms\":[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\",\"firewall\":"
		"{\"in\":{\"rules\":[{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[22]}]}}}]}";
	static const char a_reordered[] =
		"{\"version\":1,\"vms\":[{\"firewall\":{\"in\":{\"rules\":[{\"ports\":[22],\"protocol\":"
		"\"tcp\",\"action\":\"allow\"}]}},\"name\":\"b\",\"id\":2},{\"id\":1,\"name\":\"a\"}]}";
	static const char b[] =
		"{\"version\":1,\"vms\":[{\"id\":1,\"name\":\"a\"},{\"id\":2,\"name\":\"b\",\"firewall\":"
		"{\"in\":{\"rules\":[{\"action\":\"allow\",\"protocol\":\"tcp\",\"ports\":[23]}]}}}]}";
	uint8_t p1[32], p2[32], p3[32], v1[32], v2[32], v3[32];

	if (!ASSERT_TRUE(compile_digest(a, p1, v1) && compile_digest(a, p2, v2) &&
			 compile_digest(a_reordered, p3, v3), "digest policies compile"))
		return;
	ASSERT_TRUE(!memcmp(p1, p2, 32), "same policy, same digest");
	ASSERT_TRUE(!memcmp(p1, p3, 32), "key and VM order do not change the digest");
	ASSERT_TRUE(compile_digest(b, p2, v2), "changed policy compiles");
	ASSERT_TRUE(memcmp(p1, p2, 32), "one port changed: policy digest differs");
	ASSERT_TRUE(!memcmp(v1, v2, 32), "  ...the untouched VM's digest does not");
}

/* ---- devices and disks ------------------------------------------------------- */

static void test_devices(void)
{
	static const char json[] =
		"{\"version\": 1,"
		" \"defaults\": {\"devices\": {\"allow\": [\"c 241:0 r\"]}},"
		" \"groups\": {\"g\": {\"devices\": {\"allow\": [\"c 242:* rw\"]},"
		"   \"disks\": [{\"path\": \"/dev/vdb\", \"device\": \"254:16\", \"mode\": \"ro\"}]}},"
		" \"vms\": ["
		"  {\"id\": 1, \"name\": \"a\"},"
		"  {\"id\": 2, \"name\": \"b\", \"group\": \"g\"},"
		"  {\"id\": 3, \"name\": \"c\", \"group\": \"g\","
		"   \"devices\": {\"allow\": [\"c 10:200 rwm\", \"b 254:16 w\"], \"deny\": [\"c 10:200 m\"]},"
		"   \"disks\": [{\"path\": \"/dev/vdb\", \"device\": \"254:16\", \"mode\": \"rw\"},"
		"             {\"path\": \"/var/lib/images/c.qcow2\", \"mode\": \"ro\", \"x-note\": 1}]}]}";
	struct compiled_policy *cp = NULL, *cp2 = NULL;
	const struct policy_vm *vm;
	struct policy_error err;
	struct policy_set *set = parse(json, &err);
	const struct compiled_dev *d;

	if (!ASSERT_TRUE(set, "devices: policy parses"))
		return;
	vm = policy_set_find(set, 1);
	ASSERT_TRUE(vm && vm->nr_dev_allow == 1 && vm->dev_allow[0].major == 241 &&
		    vm->nr_disks == 0, "devices: the file defaults apply to a VM without a group");
	vm = policy_set_find(set, 2);
	ASSERT_TRUE(vm && vm->nr_dev_allow == 1 && vm->dev_allow[0].minor == RAYOS_DEV_MINOR_ANY &&
		    vm->nr_disks == 1 && vm->disks[0].is_block,
		    "devices: the group's devices and disks replace the defaults' whole");
	vm = policy_set_find(set, 3);
	ASSERT_TRUE(vm && vm->nr_dev_allow == 2 && vm->nr_dev_deny == 1 && vm->nr_disks == 2 &&
		    !vm->disks[1].is_block && vm->disks[1].mode == RAYOS_DEV_ACC_READ,
		    "devices: the VM's own lists win");
	if (!ASSERT_EQ(policy_compile(set, &cp, &err), 0, "devices: compiles"))
		goto out;
	d = cp->vms[2].dev;
	/* c 10:200 (allow rwm, deny m) and b 254:16 (allow w, disk rw), sorted by key:
	 * the block entry (type 1) first. */
	if (ASSERT_EQ(cp->vms[2].nr_dev, 2, "devices: one entry per device key")) {
		ASSERT_TRUE(d[0].key.type == RAYOS_DEV_BLOCK && d[0].key.major == 254 &&
			    d[0].key.minor == 16 && d[0].val.allow == RAYOS_DEV_ACC_WRITE &&
			    d[0].val.disk == (RAYOS_DEV_ACC_READ | RAYOS_DEV_ACC_WRITE),
			    "devices: rule and disk merge into one entry");
		ASSERT_TRUE(d[1].key.type == RAYOS_DEV_CHAR && d[1].key.major == 10 &&
			    d[1].val.allow == RAYOS_DEV_ACC_ALL && d[1].val.deny == RAYOS_DEV_ACC_MKNOD,
			    "devices: allow and deny of one device share the entry");
		ASSERT_TRUE(d[0].key.vm_id == 3 && d[1].key.vm_id == 3 && !d[0].key.gen,
			    "devices: keys carry the VM id, generation 0 until published");
	}
	ASSERT_EQ(cp->vms[1].nr_dev, 2, "devices: group VM: wildcard rule + block disk");
	ASSERT_TRUE(policy_compile(set, &cp2, &err) == 0 &&
		    !memcmp(cp->digest, cp2->digest, sizeof(cp->digest)),
		    "devices: compiling twice gives the same digest");
	ASSERT_TRUE(memcmp(cp->vms[0].digest, cp->vms[1].digest, 32),
		    "devices: device entries are part of the VM digest");
out:
	compiled_policy_free(cp);
	compiled_policy_free(cp2);
	policy_set_free(set);
}

/* A VM the agent keeps quarantined: inserted in id order, compiled to a
 * deny-all record with the flag, no capabilities and no entries. */
static void test_quarantined(void)
{
	static const char json[] =
		"{ \"version\": 1, \"vms\": [ { \"id\": 5, \"name\": \"five\" },"
		" { \"id\": 9, \"name\": \"nine\", \"capabilities\": [\"CAP_GPU\"] } ] }";
	struct policy_error err = {};
	struct policy_set *set = parse(json, &err);
	struct compiled_policy *cp = NULL;
	const struct compiled_vm *q = NULL;

	if (!ASSERT_TRUE(set != NULL, "quarantine: base set parses"))
		return;
	struct policy_quarantined seven[] = { { 7, "seven", "tap7" } };
	struct policy_quarantined clash[] = { { 3, NULL, NULL }, { 9, "nine", NULL } };
	struct policy_quarantined twice[] = { { 4, NULL, NULL }, { 4, NULL, NULL } };
	struct policy_quarantined more[] = { { 11, NULL, NULL }, { 1, NULL, NULL },
					      { 6, NULL, NULL } };

	ASSERT_EQ(policy_set_add_quarantined(set, seven, 1), 0, "quarantine: VM 7 added");
	ASSERT_EQ(policy_set_add_quarantined(set, clash, 2), -EEXIST,
		  "quarantine: a VM with a policy is not replaced");
	ASSERT_EQ(policy_set_add_quarantined(set, twice, 2), -EEXIST,
		  "quarantine: the same VM twice is refused");
	ASSERT_TRUE(set->nr_vms == 3 && set->vms[0].id == 5 && set->vms[1].id == 7 &&
		    set->vms[2].id == 9, "quarantine: the set stays sorted by id, all or nothing");
	ASSERT_TRUE(set->vms[1].quarantined && !strcmp(set->vms[1].iface, "tap7") &&
		    !strcmp(set->vms[1].name, "seven"), "quarantine: name and tap kept");
	if (!ASSERT_EQ(policy_compile(set, &cp, &err), 0, "quarantine: the set compiles"))
		goto out;
	for (size_t i = 0; i < cp->nr_vms; i++)
		if (cp->vms[i].vm.vm_id == 7)
			q = &cp->vms[i];
	if (!ASSERT_TRUE(q != NULL, "quarantine: VM 7 compiled"))
		goto out;
	ASSERT_EQ(q->vm.flags, RAYOS_VMF_QUARANTINE, "quarantine: record flag, no MAC");
	ASSERT_EQ(q->vm.caps, 0, "quarantine: no capabilities");
	ASSERT_TRUE(q->vm.dir[RAYOS_DIR_IN].default_action == RAYOS_ACT_DENY &&
		    q->vm.dir[RAYOS_DIR_OUT].default_action == RAYOS_ACT_DENY &&
		    !q->vm.dir[0].nr_rules && !q->vm.dir[1].nr_rules,
		    "quarantine: both directions deny, no rules");
	ASSERT_TRUE(!q->nr_ports && !q->nr_ranges && !q->nr_cidr4 && !q->nr_cidr6 &&
		    !q->nr_tabs && !q->nr_dev && !q->has_bind, "quarantine: no map entries");
	ASSERT_TRUE(policy_set_remove(set, 7) && set->nr_vms == 2 && set->vms[1].id == 9 &&
		    !policy_set_remove(set, 7), "quarantine: removed again, once");
	ASSERT_EQ(policy_set_add_quarantined(set, more, 3), 0, "quarantine: three at once");
	ASSERT_TRUE(set->nr_vms == 5 && set->vms[0].id == 1 && set->vms[1].id == 5 &&
		    set->vms[2].id == 6 && set->vms[3].id == 9 && set->vms[4].id == 11 &&
		    set->vms[0].quarantined && !set->vms[1].quarantined &&
		    set->vms[2].quarantined && !set->vms[3].quarantined &&
		    set->vms[4].quarantined && !strcmp(set->vms[3].name, "nine"),
		    "quarantine: merged in id order, the others untouched");
out:
	compiled_policy_free(cp);
	policy_set_free(set);
}

/* The mass-removal rule and the quarantine list's file. */
static void test_quarantine_list(void)
{
	static const struct {
		size_t leaving, enforced;
		unsigned int pct;
		bool held;
	} rules[] = {
		{ 1, 1, 50, false },	/* one VM may always go */
		{ 2, 2, 50, true },	/* all of them */
		{ 1, 2, 50, false },	/* half */
		{ 2, 3, 50, true },	/* more than half */
		{ 2, 4, 50, false },
		{ 3, 4, 50, true },
		{ 4, 4, 100, false },	/* 100: never held */
		{ 2, 100, 0, true },	/* 0: any two */
		{ 0, 0, 50, false },
	};
	struct quarantine q = {}, back = {};
	struct quarantine_entry e = { .id = 7, .since = 1700000000, .name = "seven",
				      .iface = "tap7" };
	char dir[] = "/tmp/rayos-quarantine.XXXXXX", path[PATH_MAX];

	for (size_t i = 0; i < sizeof(rules) / sizeof(rules[0]); i++)
		tap_ok(quarantine_mass_removal(rules[i].leaving, rules[i].enforced,
					       rules[i].pct) == rules[i].held,
		       "mass removal: %zu of %zu VMs at %u%% %s", rules[i].leaving,
		       rules[i].enforced, rules[i].pct, rules[i].held ? "held" : "goes");
	if (!mkdtemp(dir))
		return;
	snprintf(path, sizeof(path), "%s/quarantine.json", dir);
	ASSERT_EQ(quarantine_load(&q, path), 0, "quarantine list: a missing file is empty");
	quarantine_put(&q, &e);
	e.since = 1800000000;
	quarantine_put(&q, &e);
	ASSERT_EQ(q.e[0].since, 1700000000, "quarantine list: an update keeps since");
	e.id = 8;
	quarantine_put(&q, &e);
	ASSERT_EQ(quarantine_save(&q), 0, "quarantine list: saved");
	ASSERT_EQ(quarantine_load(&back, path), 0, "quarantine list: read back");
	ASSERT_TRUE(back.nr == 2 && quarantine_find(&back, 7) &&
		    quarantine_find(&back, 7)->since == 1700000000 &&
		    !strcmp(quarantine_find(&back, 8)->iface, "tap7"),
		    "quarantine list: ids, since and interface survive");
	ASSERT_TRUE(quarantine_del(&back, 7) && !quarantine_del(&back, 7) && back.nr == 1,
		    "quarantine list: delete once");
	write_file(dir, "quarantine.json", "[1, 2");
	quarantine_free(&back);
	ASSERT_EQ(quarantine_load(&back, path), 0, "quarantine list: a damaged file is ignored");
	ASSERT_EQ(back.nr, 0, "  ...and yields nothing");
	quarantine_free(&q);
	quarantine_free(&back);
	unlink(path);
	rmdir(dir);
}

/* "delegations": a depth-3 chain written leaf first (order does not
 * matter), with a temporary root grant and a deadline on one link. */
static void test_delegations(void)
{
	const char *json = "{\"version\": 1, \"vms\": ["
		"{\"id\": 4, \"name\": \"d\", \"capabilities\": []},"
		"{\"id\": 3, \"name\": \"c\", \"capabilities\": [\"CAP_ADMIN\"],"
		" \"delegations\": [{\"to\": 4, \"cap\": \"CAP_GPU\", \"expires\": \"30m\"}]},"
		"{\"id\": 2, \"name\": \"b\", \"capabilities\": [\"CAP_ADMIN\"],"
		" \"delegations\": [{\"to\": 3, \"cap\": \"CAP_GPU\"}]},"
		"{\"id\": 1, \"name\": \"a\", \"capabilities\": [\"CAP_ADMIN\"],"
		" \"temporary_capabilities\": [{\"cap\": \"CAP_GPU\", \"expires\": \"1h\"}],"
		" \"delegations\": [{\"to\": 2, \"cap\": \"CAP_GPU\", "
		"\"until\": \"2099-01-01T00:00:00Z\"}]}]}";
	struct policy_error err = {};
	struct policy_set *set = parse(json, &err);
	struct compiled_policy *cp = NULL;
	const struct policy_vm *c;

	ASSERT_TRUE(set != NULL, "delegations: a depth-3 chain written leaf first is accepted");
	if (!set) {
		tap_diag("  %s", err.msg);
		return;
	}
	c = policy_set_find(set, 3);
	ASSERT_TRUE(c && c->nr_deleg == 1 && c->deleg[0].to == 4 &&
		    c->deleg[0].cap == RAYOS_CAP_GPU && c->deleg[0].expires_ns == 1800ULL * 1000000000ULL,
		    "delegations: the entry as parsed");
	ASSERT_TRUE(policy_set_find(set, 1)->deleg[0].until_wall_ns > 0,
		    "delegations: \"until\" as a wall-clock time");
	ASSERT_EQ(policy_compile(set, &cp, &err), 0, "delegations: the set compiles");
	compiled_policy_free(cp);
	policy_set_free(set);
}

int main(void)
{
	test_error_format();
	test_delegations();
	test_bad_corpus();
	test_directory();
	test_precedence();
	test_units();
	test_compile_overlap();
	test_compile_random();
	test_cap_limit_random();
	test_cap_limit_example();
	test_disk_limit_compile();
	test_compiled_record();
	test_digest();
	test_devices();
	test_quarantined();
	test_quarantine_list();
	return tap_done();
}
