// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * Policy files -> validated, flattened policy_set: strict JSON parsing with
 * errors that name file, line and JSON path, then group resolution and the
 * precedence rules of policies/README.md.  No privileged calls.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cjson/cJSON.h>

#include "agent/caps/caps.h"
#include "agent/caps/deleg.h"
#include "agent/policy/policy.h"

#define MAX_PATH_DEPTH		12
#define MAX_JSON_DEPTH		64	/* a valid policy nests 7 deep */
#define MIN_BURST_BYTES		1514	/* one full Ethernet frame */
#define MIN_DEFAULT_BURST	(64U << 10)	/* one GSO super-packet */

/* Built-in defaults, the lowest precedence level (see policies/README.md). */
#define BUILTIN_DEFAULT_IN	RAYOS_ACT_DENY
#define BUILTIN_DEFAULT_OUT	RAYOS_ACT_ALLOW
#define BUILTIN_DEFAULT_HOST	RAYOS_ACT_DENY
/* Link-control messages per second per VM ("control_rates"). */
static const uint32_t builtin_ctl_rate[RAYOS_CTL_MAX] = {
	[RAYOS_CTL_ARP] = 100,
	[RAYOS_CTL_ND] = 100,
	[RAYOS_CTL_DHCP] = 20,
};
#define MAX_CTL_RATE		1000000

/* ---- parsed documents: what one file says, before groups are resolved ---- */

struct raw_dir {
	bool has_default;
	uint8_t default_action;
	size_t nr_rules;
	struct fw_rule *rules;
	bool has_bandwidth;
	uint64_t rate_bytes, burst_bytes;
};

/* The fields defaults, groups and VMs share; has_* says the level sets it. */
struct raw_settings {
	bool has_caps;
	uint64_t caps;
	struct raw_dir dir[RAYOS_FW_DIRS];	/* firewall.in, firewall.out, host */
	bool has_ctl[RAYOS_CTL_MAX];
	uint32_t ctl[RAYOS_CTL_MAX];
	bool has_devices;
	size_t nr_dev_allow, nr_dev_deny;
	struct dev_rule *dev_allow, *dev_deny;
	bool has_disks;
	size_t nr_disks;
	struct policy_disk *disks;	/* paths are strdup'ed: freed with the document */
};

struct raw_group {
	char name[RAYOS_NAME_LEN];
	char parent[RAYOS_NAME_LEN];	/* "" when a root group */
	struct raw_settings s;
};

struct raw_vm {
	struct policy_vm vm;		/* identity fields; caps and fw unset */
	struct raw_settings s;
	/* capability_limits' disk paths (strdup'ed: freed with the document),
	 * checked against the VM's "disks" once they are known (flatten_vm) */
	const char *limit_disks[CAPS_DISK_KINDS][CAPS_MAX_DISKS];
	uint32_t nr_limit_disks[CAPS_DISK_KINDS];
};

struct raw_doc {
	char *file;
	char *text;			/* NUL-terminated; kept to locate later errors */
	size_t len;
	struct raw_settings defaults;
	size_t nr_groups;
	struct raw_group *groups;
	size_t nr_vms;
	struct raw_vm *vms;
	cJSON *dhcp;			/* the "dhcp" object, checked by agent/dhcp/dhcp.c */
};

struct policy_docs {
	size_t nr;
	struct raw_doc **docs;		/* in the order they were added */
};

/* ---- error reporting ---------------------------------------------------- */

struct path_elem {
	const char *key;		/* NULL: index into an array */
	int index;
};

/* Where the parser or linker is: the document and the JSON path inside it. */
struct pctx {
	const struct raw_doc *doc;
	struct policy_error *err;
	int depth;
	struct path_elem path[MAX_PATH_DEPTH];
};

static void push_key(struct pctx *c, const char *key)
{
	if (c->depth < MAX_PATH_DEPTH)
		c->path[c->depth] = (struct path_elem){ .key = key };
	c->depth++;
}

static void push_index(struct pctx *c, int index)
{
	if (c->depth < MAX_PATH_DEPTH)
		c->path[c->depth] = (struct path_elem){ .index = index };
	c->depth++;
}

static void pop(struct pctx *c)
{
	c->depth--;
}

static int path_depth(const struct pctx *c)
{
	return c->depth < MAX_PATH_DEPTH ? c->depth : MAX_PATH_DEPTH;
}

static void render_path(const struct pctx *c, char *buf, size_t len)
{
	size_t off = 0;
	int i, n;

	buf[0] = '\0';
	for (i = 0; i < path_depth(c) && off < len; i++) {
		const struct path_elem *e = &c->path[i];

		if (e->key)
			n = snprintf(buf + off, len - off, "%s%s", i ? "." : "", e->key);
		else
			n = snprintf(buf + off, len - off, "[%d]", e->index);
		if (n < 0)
			break;
		off += (size_t)n;
	}
}

/* A tiny navigator over text that is known to be valid JSON: finds where the
 * value at a path starts, so semantic errors get a line number too. */
static bool is_json_ws(char ch)
{
	return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

static const char *skip_ws(const char *p, const char *end)
{
	while (p < end && is_json_ws(*p))
		p++;
	return p;
}

static const char *skip_string(const char *p, const char *end)
{
	for (p++; p < end; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return end;
}

static const char *skip_value(const char *p, const char *end)
{
	int depth = 0;

	while (p < end) {
		if (*p == '"') {
			p = skip_string(p, end);
			if (!depth)
				return p;
			continue;
		}
		if (*p == '{' || *p == '[') {
			depth++;
		} else if (*p == '}' || *p == ']') {
			if (!depth)
				return p;
			if (!--depth)
				return p + 1;
		} else if (!depth && (*p == ',' || is_json_ws(*p))) {
			return p;
		}
		p++;
	}
	return end;
}

static const char *find_member(const char *p, const char *end, const char *key)
{
	size_t klen = strlen(key);

	if (p >= end || *p != '{')
		return NULL;
	for (p++;;) {
		const char *name;

		p = skip_ws(p, end);
		if (p >= end || *p != '"')
			return NULL;
		name = p + 1;
		p = skip_string(p, end);
		if ((size_t)(p - 1 - name) == klen && !memcmp(name, key, klen)) {
			p = skip_ws(p, end);
			return p < end ? skip_ws(p + 1, end) : NULL;
		}
		p = skip_ws(p, end);
		p = skip_value(skip_ws(p + 1, end), end);
		p = skip_ws(p, end);
		if (p >= end || *p != ',')
			return NULL;
		p++;
	}
}

static const char *find_element(const char *p, const char *end, int index)
{
	int i;

	if (p >= end || *p != '[')
		return NULL;
	for (p++, i = 0;; i++) {
		p = skip_ws(p, end);
		if (p >= end || *p == ']')
			return NULL;
		if (i == index)
			return p;
		p = skip_ws(skip_value(p, end), end);
		if (p >= end || *p != ',')
			return NULL;
		p++;
	}
}

static int line_of(const char *text, const char *pos)
{
	int line = 1;

	for (; text < pos; text++)
		line += *text == '\n';
	return line;
}

static const char *after_bom(const char *text, size_t len)
{
	return len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3) ? text + 3 : text;
}

static int locate_line(const struct pctx *c)
{
	const char *text = c->doc->text, *end = text + c->doc->len;
	const char *p = skip_ws(after_bom(text, c->doc->len), end);
	int i;

	for (i = 0; i < path_depth(c) && p; i++) {
		const struct path_elem *e = &c->path[i];

		p = e->key ? find_member(p, end, e->key) : find_element(p, end, e->index);
	}
	return p ? line_of(text, p) : 0;
}

static int fail(struct pctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Fills c->err for the current path; returns -EINVAL so callers can return it. */
static int fail(struct pctx *c, const char *fmt, ...)
{
	struct policy_error *err = c->err;
	va_list ap;

	memset(err, 0, sizeof(*err));
	snprintf(err->file, sizeof(err->file), "%s", c->doc->file);
	render_path(c, err->path, sizeof(err->path));
	err->line = locate_line(c);
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int fail_file(struct policy_error *err, const char *file, int line,
		     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int fail_file(struct policy_error *err, const char *file, int line,
		     const char *fmt, ...)
{
	va_list ap;

	memset(err, 0, sizeof(*err));
	snprintf(err->file, sizeof(err->file), "%s", file);
	err->line = line;
	va_start(ap, fmt);
	vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	return -EINVAL;
}

int policy_error_format(const struct policy_error *err, char *buf, size_t len)
{
	char line[16] = "";
	int n;

	if (err->line)
		snprintf(line, sizeof(line), ":%d", err->line);
	n = snprintf(buf, len, "%s%s%s%s%s%s", err->file, line,
		     err->file[0] || err->line ? ": " : "",
		     err->path, err->path[0] ? ": " : "", err->msg);
	return n < 0 || (size_t)n >= len ? -ENOSPC : 0;
}

/* ---- strict JSON syntax check: cJSON cannot say where a document breaks --- */

struct jscan {
	const char *p, *end;
	const char *why;
};

static bool scan_value(struct jscan *s, int depth);

static bool scan_eof(struct jscan *s)
{
	return s->p >= s->end;
}

/* At the end of the text every complaint is the same: something is missing. */
static bool scan_fail(struct jscan *s, const char *why)
{
	s->why = scan_eof(s) ? "unexpected end of file" : why;
	return false;
}

static bool scan_string(struct jscan *s)
{
	for (s->p++; !scan_eof(s); s->p++) {
		unsigned char ch = (unsigned char)*s->p;

		if (ch == '"') {
			s->p++;
			return true;
		}
		if (ch < 0x20)
			return scan_fail(s, "control character inside a string (escape it)");
		if (ch != '\\')
			continue;
		if (++s->p >= s->end)
			break;
		if (*s->p == 'u') {
			int i;

			for (i = 0; i < 4; i++)
				if (++s->p >= s->end || !isxdigit((unsigned char)*s->p))
					return scan_fail(s, "\\u needs four hex digits");
		} else if (!strchr("\"\\/bfnrt", *s->p)) {
			return scan_fail(s, "unknown escape sequence in a string");
		}
	}
	s->why = "unterminated string";
	return false;
}

static bool scan_digits(struct jscan *s)
{
	const char *start = s->p;

	while (!scan_eof(s) && isdigit((unsigned char)*s->p))
		s->p++;
	return s->p > start || scan_fail(s, "malformed number");
}

static bool scan_number(struct jscan *s)
{
	if (*s->p == '-')
		s->p++;
	if (!scan_eof(s) && *s->p == '0')
		s->p++;
	else if (!scan_digits(s))
		return false;
	if (!scan_eof(s) && *s->p == '.') {
		s->p++;
		if (!scan_digits(s))
			return false;
	}
	if (!scan_eof(s) && (*s->p == 'e' || *s->p == 'E')) {
		s->p++;
		if (!scan_eof(s) && (*s->p == '+' || *s->p == '-'))
			s->p++;
		if (!scan_digits(s))
			return false;
	}
	return true;
}

static bool scan_literal(struct jscan *s)
{
	static const char *const words[] = { "true", "false", "null" };
	size_t i;

	for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
		size_t n = strlen(words[i]);

		if ((size_t)(s->end - s->p) >= n && !memcmp(s->p, words[i], n)) {
			s->p += n;
			return true;
		}
	}
	return scan_fail(s, *s->p == '\'' ? "strings need double quotes" :
			    "expected a value (string, number, object, array, true, false or null)");
}

/* Members of an object or elements of an array, after the opening bracket. */
static bool scan_container(struct jscan *s, int depth, char close)
{
	bool object = close == '}';

	s->p = skip_ws(s->p + 1, s->end);
	if (!scan_eof(s) && *s->p == close) {
		s->p++;
		return true;
	}
	for (;;) {
		if (object) {
			if (scan_eof(s) || *s->p != '"')
				return scan_fail(s, "expected a double-quoted key");
			if (!scan_string(s))
				return false;
			s->p = skip_ws(s->p, s->end);
			if (scan_eof(s) || *s->p != ':')
				return scan_fail(s, "expected ':' after the key");
			s->p = skip_ws(s->p + 1, s->end);
		}
		if (!scan_value(s, depth + 1))
			return false;
		s->p = skip_ws(s->p, s->end);
		if (!scan_eof(s) && *s->p == close) {
			s->p++;
			return true;
		}
		if (scan_eof(s) || *s->p != ',')
			return scan_fail(s, object ? "expected ',' or '}' after a member" :
					    "expected ',' or ']' after an element");
		s->p = skip_ws(s->p + 1, s->end);
		if (!scan_eof(s) && *s->p == close)
			return scan_fail(s, object ? "trailing comma before '}'" :
					    "trailing comma before ']'");
	}
}

static bool scan_value(struct jscan *s, int depth)
{
	if (depth > MAX_JSON_DEPTH)
		return scan_fail(s, "nested too deeply");
	if (scan_eof(s))
		return scan_fail(s, "unexpected end of file");
	switch (*s->p) {
	case '{':
		return scan_container(s, depth, '}');
	case '[':
		return scan_container(s, depth, ']');
	case '"':
		return scan_string(s);
	case '-': case '0': case '1': case '2': case '3': case '4':
	case '5': case '6': case '7': case '8': case '9':
		return scan_number(s);
	default:
		return scan_literal(s);
	}
}

static int check_syntax(const struct raw_doc *doc, struct policy_error *err)
{
	const char *text = doc->text, *end = text + doc->len, *nl;
	struct jscan s = { .p = skip_ws(after_bom(text, doc->len), end), .end = end };

	if (scan_value(&s, 0)) {
		s.p = skip_ws(s.p, end);
		if (scan_eof(&s))
			return 0;
		s.why = "trailing garbage after the JSON document";
	}
	for (nl = s.p; nl > text && nl[-1] != '\n'; nl--)
		;
	return fail_file(err, doc->file, line_of(text, s.p), "invalid JSON at column %d: %s",
			 (int)(s.p - nl) + 1, s.why);
}

/* ---- typed accessors -------------------------------------------------- */

static const char *type_name(const cJSON *j)
{
	if (cJSON_IsString(j))
		return "a string";
	if (cJSON_IsNumber(j))
		return "a number";
	if (cJSON_IsObject(j))
		return "an object";
	if (cJSON_IsArray(j))
		return "an array";
	if (cJSON_IsBool(j))
		return "a boolean";
	return "null";
}

static int want_string(struct pctx *c, const cJSON *j, const char **out)
{
	*out = "";	/* callers may not look at it on error; compilers cannot know */
	if (!cJSON_IsString(j))
		return fail(c, "expected a string, got %s", type_name(j));
	*out = j->valuestring;
	return 0;
}

static int want_uint(struct pctx *c, const cJSON *j, const char *what,
		     uint64_t min, uint64_t max, uint64_t *out)
{
	double v;

	*out = 0;	/* see want_string */
	if (!cJSON_IsNumber(j))
		return fail(c, "%s must be an integer, got %s", what, type_name(j));
	v = j->valuedouble;
	if (!isfinite(v) || v != floor(v))
		return fail(c, "%s %.17g is not an integer", what, v);
	if (v < (double)min || v > (double)max)
		return fail(c, "%s %.17g is out of range %llu..%llu", what, v,
			    (unsigned long long)min, (unsigned long long)max);
	*out = (uint64_t)v;
	return 0;
}

static bool is_extension_key(const char *key)
{
	return !strncmp(key, "x-", 2);
}

typedef int (*field_fn)(struct pctx *c, const cJSON *item, void *arg);
typedef int (*elem_fn)(struct pctx *c, const cJSON *item, int index, void *arg);

/* Calls fn for every member except "x-*" ones, with the path pointing at it.
 * Duplicate keys are an error: cJSON would silently use the first. */
static int for_each_field(struct pctx *c, const cJSON *obj, field_fn fn, void *arg)
{
	const cJSON *it, *prev;
	int ret;

	if (!cJSON_IsObject(obj))
		return fail(c, "expected an object, got %s", type_name(obj));
	cJSON_ArrayForEach(it, obj) {
		push_key(c, it->string);
		for (prev = obj->child; prev != it; prev = prev->next)
			if (!strcmp(prev->string, it->string)) {
				ret = fail(c, "duplicate key \"%s\"", it->string);
				goto out;
			}
		ret = is_extension_key(it->string) ? 0 : fn(c, it, arg);
out:
		pop(c);
		if (ret)
			return ret;
	}
	return 0;
}

static int for_each_elem(struct pctx *c, const cJSON *arr, elem_fn fn, void *arg)
{
	const cJSON *it;
	int i = 0, ret;

	if (!cJSON_IsArray(arr))
		return fail(c, "expected an array, got %s", type_name(arr));
	cJSON_ArrayForEach(it, arr) {
		push_index(c, i);
		ret = fn(c, it, i, arg);
		pop(c);
		if (ret)
			return ret;
		i++;
	}
	return 0;
}

static int unknown_key(struct pctx *c, const char *key, const char *known)
{
	return fail(c, "unknown key \"%s\" (known: %s; \"x-\" keys are ignored)", key, known);
}

static int want_nonempty_array(struct pctx *c, const cJSON *j, const char *what)
{
	if (!cJSON_IsArray(j))
		return fail(c, "expected an array, got %s", type_name(j));
	if (!cJSON_GetArraySize(j))
		return fail(c, "%s must not be empty (leave the key out to match every %s)",
			    j->string, what);
	return 0;
}

/* ---- names and addresses ---------------------------------------------- */

static int check_name(struct pctx *c, const char *s, const char *what, char out[RAYOS_NAME_LEN])
{
	const char *p;

	if (!*s)
		return fail(c, "%s must not be empty", what);
	if (strlen(s) >= RAYOS_NAME_LEN)
		return fail(c, "%s \"%.20s...\" is %zu characters long; at most %d", what, s,
			    strlen(s), RAYOS_NAME_LEN - 1);
	for (p = s; *p; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_.-", *p))
			return fail(c, "%s \"%s\" may only contain A-Z a-z 0-9 _ . -", what, s);
	strcpy(out, s);
	return 0;
}

static int parse_name(struct pctx *c, const cJSON *j, const char *what, char out[RAYOS_NAME_LEN])
{
	const char *s;
	int ret;

	ret = want_string(c, j, &s);
	return ret ?: check_name(c, s, what, out);
}

/* The kernel's dev_valid_name(), restricted to printable ASCII. */
static int parse_ifname(struct pctx *c, const cJSON *j, char out[IF_NAMESIZE])
{
	const char *s, *p;
	int ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	if (!*s)
		return fail(c, "interface name must not be empty");
	if (strlen(s) >= IF_NAMESIZE)
		return fail(c, "interface name \"%s\" is %zu characters long; at most %d", s,
			    strlen(s), IF_NAMESIZE - 1);
	if (!strcmp(s, ".") || !strcmp(s, ".."))
		return fail(c, "\"%s\" is not a valid interface name", s);
	for (p = s; *p; p++)
		if (!isgraph((unsigned char)*p) || *p == '/' || *p == ':')
			return fail(c, "interface name \"%s\" may not contain '/', ':', spaces "
				    "or non-ASCII characters", s);
	strcpy(out, s);
	return 0;
}

static int parse_mac(struct pctx *c, const cJSON *j, uint8_t mac[6])
{
	static const uint8_t zero[6];
	const char *s;
	int i, ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	for (i = 0; i < 6; i++) {
		const char *o = s + 3 * i;
		char hex[3] = { o[0], o[0] ? o[1] : 0, 0 };

		if (!isxdigit((unsigned char)hex[0]) || !isxdigit((unsigned char)hex[1]) ||
		    o[2] != (i < 5 ? ':' : '\0'))
			return fail(c, "MAC address \"%s\" is not of the form aa:bb:cc:dd:ee:ff", s);
		mac[i] = (uint8_t)strtoul(hex, NULL, 16);
	}
	if (mac[0] & 1)
		return fail(c, "MAC address %s is a multicast address (lowest bit of the first "
			    "octet set); a VM needs a unicast address", s);
	if (!memcmp(mac, zero, 6))
		return fail(c, "MAC address %s is all zeros", s);
	return 0;
}

static int parse_ipv4(struct pctx *c, const cJSON *j, uint32_t *out_be)
{
	const char *s;
	struct in_addr a;
	uint32_t h;
	int ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	if (strchr(s, '/'))
		return fail(c, "\"%s\": ipv4 is the VM's address, without a prefix length", s);
	if (inet_pton(AF_INET, s, &a) != 1)
		return fail(c, "\"%s\" is not an IPv4 address (a.b.c.d)", s);
	h = ntohl(a.s_addr);
	if (!h || h == 0xffffffff || (h >> 24) == 127 || (h >> 28) == 0xe)
		return fail(c, "%s is not a usable unicast address for a VM", s);
	*out_be = a.s_addr;
	return 0;
}

static int parse_ipv6(struct pctx *c, const cJSON *j, uint8_t out[16])
{
	static const uint8_t any[16], loop[16] = { [15] = 1 };
	const char *s;
	int ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	if (strchr(s, '/'))
		return fail(c, "\"%s\": ipv6 is the VM's address, without a prefix length", s);
	if (inet_pton(AF_INET6, s, out) != 1)
		return fail(c, "\"%s\" is not an IPv6 address", s);
	if (!memcmp(out, any, 16) || !memcmp(out, loop, 16) || out[0] == 0xff)
		return fail(c, "%s is not a usable unicast address for a VM", s);
	if (out[0] == 0xfe && (out[1] & 0xc0) == 0x80)
		return fail(c, "%s is link-local; ipv6 is the VM's global address", s);
	return 0;
}

static int ll6_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct policy_vm *vm = arg;
	uint8_t *out = vm->ll6[i];
	const char *s;
	int ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	if (strchr(s, '/') || inet_pton(AF_INET6, s, out) != 1)
		return fail(c, "\"%s\" is not an IPv6 address (without a prefix length)", s);
	if (out[0] != 0xfe || (out[1] & 0xc0) != 0x80)
		return fail(c, "%s is not link-local (fe80::/10); a global address goes in \"ipv6\"",
			    s);
	for (int k = 0; k < i; k++)
		if (!memcmp(vm->ll6[k], out, 16))
			return fail(c, "duplicate address %s", s);
	vm->nr_ll6 = (size_t)i + 1;
	return 0;
}

/* "ipv6_link_local": the link-local sources a guest with stable-privacy
 * addresses (RFC 7217) uses, besides the EUI-64 one of its MAC. */
static int parse_ll6_list(struct pctx *c, const cJSON *j, struct policy_vm *vm)
{
	int ret = want_nonempty_array(c, j, "link-local address");

	if (ret)
		return ret;
	if (cJSON_GetArraySize(j) > RAYOS_LL6_MAX)
		return fail(c, "%d addresses; at most %d", cJSON_GetArraySize(j), RAYOS_LL6_MAX);
	return for_each_elem(c, j, ll6_elem, vm);
}

static bool host_bits_set(const uint8_t *addr, int addr_bytes, int prefixlen)
{
	int i;

	for (i = prefixlen; i < addr_bytes * 8; i++)
		if (addr[i / 8] & (0x80 >> (i % 8)))
			return true;
	return false;
}

static void clear_host_bits(uint8_t *addr, int addr_bytes, int prefixlen)
{
	int i;

	for (i = prefixlen; i < addr_bytes * 8; i++)
		addr[i / 8] &= (uint8_t)~(0x80 >> (i % 8));
}

static int parse_cidr(struct pctx *c, const char *s, struct fw_cidr *out)
{
	char addr[INET6_ADDRSTRLEN + 1], fixed[INET6_ADDRSTRLEN];
	const char *slash = strchr(s, '/');
	size_t alen = slash ? (size_t)(slash - s) : strlen(s);
	int bytes, maxlen, len;

	memset(out, 0, sizeof(*out));
	if (alen >= sizeof(addr))
		return fail(c, "\"%s\" is not an address or CIDR", s);
	memcpy(addr, s, alen);
	addr[alen] = '\0';
	out->family = strchr(addr, ':') ? AF_INET6 : AF_INET;
	bytes = out->family == AF_INET ? 4 : 16;
	maxlen = bytes * 8;
	if (inet_pton(out->family, addr, out->addr) != 1)
		return fail(c, "\"%s\" is not an %s address or CIDR", s,
			    out->family == AF_INET ? "IPv4" : "IPv6");
	len = maxlen;
	if (slash) {
		const char *p = slash + 1;

		if (!*p || strlen(p) > 3 || strspn(p, "0123456789") != strlen(p) ||
		    (len = atoi(p)) > maxlen)
			return fail(c, "\"%s\": prefix length must be 0..%d", s, maxlen);
	}
	out->prefixlen = (uint8_t)len;
	if (host_bits_set(out->addr, bytes, len)) {
		uint8_t net[16];

		memcpy(net, out->addr, 16);
		clear_host_bits(net, bytes, len);
		inet_ntop(out->family, net, fixed, sizeof(fixed));
		return fail(c, "%s has host bits set (did you mean %s/%d?)", s, fixed, len);
	}
	return 0;
}

/* ---- rules -------------------------------------------------------------- */

struct proto_name {
	const char *name;
	uint8_t proto;
};

static const struct proto_name proto_names[] = {
	{ "any", RAYOS_PROTO_ANY },
	{ "tcp", IPPROTO_TCP },
	{ "udp", IPPROTO_UDP },
	{ "sctp", IPPROTO_SCTP },
	{ "icmp", IPPROTO_ICMP },
	{ "icmpv6", IPPROTO_ICMPV6 },
};

/* Only what the data path parses ports of (bpf/include/parse.bpf.h): a port
 * rule for another protocol would silently never match. */
static bool proto_has_ports(uint8_t proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP;
}

static bool proto_is_icmp(uint8_t proto)
{
	return proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6;
}

static const char *proto_str(uint8_t proto, char buf[8])
{
	size_t i;

	for (i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++)
		if (proto_names[i].proto == proto)
			return proto_names[i].name;
	snprintf(buf, 8, "%u", proto);
	return buf;
}

static int parse_proto(struct pctx *c, const cJSON *j, uint8_t *out)
{
	uint64_t v;
	size_t i;
	int ret;

	if (cJSON_IsNumber(j)) {
		ret = want_uint(c, j, "protocol", 0, 254, &v);
		if (ret)
			return ret;
		*out = (uint8_t)v;
		return 0;
	}
	if (!cJSON_IsString(j))
		return fail(c, "protocol must be a name or a number 0..254, got %s", type_name(j));
	for (i = 0; i < sizeof(proto_names) / sizeof(proto_names[0]); i++)
		if (!strcmp(j->valuestring, proto_names[i].name)) {
			*out = proto_names[i].proto;
			return 0;
		}
	return fail(c, "unknown protocol \"%s\" (known: tcp, udp, sctp, icmp, icmpv6, any, "
		    "or a number 0..254)", j->valuestring);
}

static int parse_action(struct pctx *c, const cJSON *j, uint8_t *out)
{
	const char *s;
	int ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	if (!strcmp(s, "allow"))
		*out = RAYOS_ACT_ALLOW;
	else if (!strcmp(s, "deny"))
		*out = RAYOS_ACT_DENY;
	else
		return fail(c, "%s must be \"allow\" or \"deny\", not \"%s\"", j->string ?: "value", s);
	return 0;
}

/* "N" or "N-M" with plain decimal digits. */
static int parse_port_string(struct pctx *c, const char *s, struct fw_port_range *out)
{
	unsigned long lo, hi;
	char *end;

	if (!isdigit((unsigned char)*s))
		goto bad;
	lo = strtoul(s, &end, 10);
	hi = lo;
	if (*end == '-') {
		if (!isdigit((unsigned char)end[1]))
			goto bad;
		hi = strtoul(end + 1, &end, 10);
	}
	if (*end)
		goto bad;
	if (lo < 1 || lo > 65535)
		return fail(c, "port %lu is out of range 1..65535", lo);
	if (hi < 1 || hi > 65535)
		return fail(c, "port %lu is out of range 1..65535", hi);
	if (lo > hi)
		return fail(c, "port range %lu-%lu is reversed (the start must not exceed the end)",
			    lo, hi);
	out->lo = (uint16_t)lo;
	out->hi = (uint16_t)hi;
	return 0;
bad:
	return fail(c, "\"%s\" is not a port or a port range like \"8000-8080\"", s);
}

static int port_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct fw_rule *r = arg;
	struct fw_port_range *out = &r->ports[i];
	uint64_t v;
	int ret;

	if (cJSON_IsString(j))
		return parse_port_string(c, j->valuestring, out);
	ret = want_uint(c, j, "port", 1, 65535, &v);
	if (ret)
		return ret;
	out->lo = out->hi = (uint16_t)v;
	return 0;
}

static int icmp_type_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct fw_rule *r = arg;
	uint64_t v;
	int ret;

	ret = want_uint(c, j, "icmp type", 0, 255, &v);
	if (ret)
		return ret;
	r->ports[i].lo = r->ports[i].hi = (uint16_t)v;
	return 0;
}

static int cidr_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct fw_rule *r = arg;
	const char *s;
	int ret;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	return parse_cidr(c, s, &r->cidrs[i]);
}

/* Allocates the list before walking it so a failure leaves nothing dangling
 * (the document's free walks the rule). */
static int parse_port_list(struct pctx *c, const cJSON *j, struct fw_rule *r, elem_fn fn,
			   const char *what)
{
	int ret;

	ret = want_nonempty_array(c, j, what);
	if (ret)
		return ret;
	if (r->ports)
		return fail(c, "a rule takes ports or icmp_types, not both");
	r->nr_ports = (size_t)cJSON_GetArraySize(j);
	r->ports = calloc(r->nr_ports, sizeof(*r->ports));
	if (!r->ports)
		return -ENOMEM;
	return for_each_elem(c, j, fn, r);
}

struct rule_parse {
	struct fw_rule *rule;
	bool has_action;
	bool has_ports, has_types;
};

static int rule_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct rule_parse *rp = arg;
	struct fw_rule *r = rp->rule;
	const char *k = it->string, *s;
	int ret;

	if (!strcmp(k, "action")) {
		rp->has_action = true;
		return parse_action(c, it, &r->action);
	}
	if (!strcmp(k, "protocol"))
		return parse_proto(c, it, &r->proto);
	if (!strcmp(k, "ports")) {
		rp->has_ports = true;
		return parse_port_list(c, it, r, port_elem, "port");
	}
	if (!strcmp(k, "icmp_types")) {
		rp->has_types = true;
		return parse_port_list(c, it, r, icmp_type_elem, "ICMP type");
	}
	if (!strcmp(k, "cidrs")) {
		ret = want_nonempty_array(c, it, "address");
		if (ret)
			return ret;
		r->nr_cidrs = (size_t)cJSON_GetArraySize(it);
		r->cidrs = calloc(r->nr_cidrs, sizeof(*r->cidrs));
		if (!r->cidrs)
			return -ENOMEM;
		return for_each_elem(c, it, cidr_elem, r);
	}
	if (!strcmp(k, "comment")) {
		ret = want_string(c, it, &s);
		if (ret)
			return ret;
		r->comment = strdup(s);
		return r->comment ? 0 : -ENOMEM;
	}
	return unknown_key(c, k, "action, protocol, ports, icmp_types, cidrs, comment");
}

/* Checks that need the whole rule: the keys may come in any order. */
static int check_rule(struct pctx *c, const struct rule_parse *rp)
{
	const struct fw_rule *r = rp->rule;
	char buf[8];
	int ret = 0;

	if (!rp->has_action)
		return fail(c, "rule has no \"action\" (\"allow\" or \"deny\")");
	if (rp->has_ports && !proto_has_ports(r->proto)) {
		push_key(c, "ports");
		ret = fail(c, "ports need protocol tcp or udp; this rule's protocol is %s%s",
			   proto_str(r->proto, buf), r->proto == IPPROTO_SCTP ?
			   " (the data path does not read SCTP ports)" : "");
		pop(c);
	} else if (rp->has_types && !proto_is_icmp(r->proto)) {
		push_key(c, "icmp_types");
		ret = fail(c, "icmp_types need protocol icmp or icmpv6; this rule's protocol is %s",
			   proto_str(r->proto, buf));
		pop(c);
	}
	return ret;
}

static int rule_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct raw_dir *d = arg;
	struct rule_parse rp = { .rule = &d->rules[i] };
	int ret;

	rp.rule->proto = RAYOS_PROTO_ANY;
	ret = for_each_field(c, j, rule_field, &rp);
	return ret ?: check_rule(c, &rp);
}

static int parse_rules(struct pctx *c, const cJSON *j, struct raw_dir *d)
{
	int n;

	if (!cJSON_IsArray(j))
		return fail(c, "expected an array of rules, got %s", type_name(j));
	n = cJSON_GetArraySize(j);
	if (n > RAYOS_MAX_RULES)
		return fail(c, "%d rules; at most %d per direction", n, RAYOS_MAX_RULES);
	d->nr_rules = (size_t)n;
	d->rules = calloc(d->nr_rules ?: 1, sizeof(*d->rules));
	if (!d->rules)
		return -ENOMEM;
	return for_each_elem(c, j, rule_elem, d);
}

/* ---- settings: capabilities, firewall, bandwidth ------------------------ */

static const char *const cap_names[RAYOS_CAP_COUNT] = {
	[RAYOS_CAP_NETWORK] = "CAP_NETWORK",
	[RAYOS_CAP_DISK_READ] = "CAP_DISK_READ",
	[RAYOS_CAP_DISK_WRITE] = "CAP_DISK_WRITE",
	[RAYOS_CAP_GPU] = "CAP_GPU",
	[RAYOS_CAP_INPUT] = "CAP_INPUT",
	[RAYOS_CAP_CONSOLE] = "CAP_CONSOLE",
	[RAYOS_CAP_AUDIT] = "CAP_AUDIT",
	[RAYOS_CAP_ADMIN] = "CAP_ADMIN",
};

int policy_cap_from_name(const char *name)
{
	int i;

	/* Removed: its bit stays reserved in the ABI (never renumbered). */
	if (!strcmp(name, cap_names[RAYOS_CAP_AUDIT]))
		return -EOPNOTSUPP;
	for (i = 0; i < RAYOS_CAP_COUNT; i++)
		if (!strcmp(name, cap_names[i]))
			return i;
	return -EINVAL;
}

void policy_cap_error(const char *name, char *buf, size_t len)
{
	if (policy_cap_from_name(name) == -EOPNOTSUPP)
		snprintf(buf, len, "CAP_AUDIT was removed: it gated nothing in the kernel (the "
			 "audit trail records every change whatever a VM holds); drop it");
	else
		snprintf(buf, len, "unknown capability \"%s\" (known: CAP_NETWORK, "
			 "CAP_DISK_READ, CAP_DISK_WRITE, CAP_GPU, CAP_INPUT, CAP_CONSOLE, "
			 "CAP_ADMIN)", name);
}

const char *policy_cap_name(int cap)
{
	return cap >= 0 && cap < RAYOS_CAP_COUNT ? cap_names[cap] : NULL;
}

static int cap_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct raw_settings *s = arg;
	const char *name;
	int cap, ret;

	(void)i;
	ret = want_string(c, j, &name);
	if (ret)
		return ret;
	cap = policy_cap_from_name(name);
	if (cap < 0) {
		char why[160];

		policy_cap_error(name, why, sizeof(why));
		return fail(c, "%s", why);
	}
	if (s->caps & (1ULL << cap))
		return fail(c, "duplicate capability \"%s\"", name);
	s->caps |= 1ULL << cap;
	return 0;
}

static int dir_index(struct pctx *c, const char *key, int *dir)
{
	*dir = RAYOS_DIR_IN;
	if (!strcmp(key, "in"))
		*dir = RAYOS_DIR_IN;
	else if (!strcmp(key, "out"))
		*dir = RAYOS_DIR_OUT;
	else
		return unknown_key(c, key, "in, out");
	return 0;
}

static int fw_dir_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_dir *d = arg;

	if (!strcmp(it->string, "default")) {
		d->has_default = true;
		return parse_action(c, it, &d->default_action);
	}
	if (!strcmp(it->string, "rules"))
		return parse_rules(c, it, d);
	return unknown_key(c, it->string, "default, rules");
}

static int firewall_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_settings *s = arg;
	int dir, ret;

	ret = dir_index(c, it->string, &dir);
	return ret ?: for_each_field(c, it, fw_dir_field, &s->dir[dir]);
}

struct unit {
	const char *name;
	uint64_t mult;
};

/* Bit units are per second and SI (1000); byte units say so with "/s". */
static const struct unit rate_units[] = {
	{ "bit", 1 }, { "kbit", 1000ULL }, { "mbit", 1000000ULL },
	{ "gbit", 1000000000ULL }, { "tbit", 1000000000000ULL },
	{ "B/s", 8 }, { "kB/s", 8000ULL }, { "MB/s", 8000000ULL },
	{ "GB/s", 8000000000ULL }, { "KiB/s", 8ULL << 10 }, { "MiB/s", 8ULL << 20 },
	{ "GiB/s", 8ULL << 30 },
};

static const struct unit burst_units[] = {
	{ "", 1 }, { "k", 1ULL << 10 }, { "K", 1ULL << 10 }, { "KiB", 1ULL << 10 },
	{ "m", 1ULL << 20 }, { "M", 1ULL << 20 }, { "MiB", 1ULL << 20 },
	{ "g", 1ULL << 30 }, { "G", 1ULL << 30 }, { "GiB", 1ULL << 30 },
};

/* "<digits>[ ]<unit>" -> value * unit multiplier; -ERANGE on overflow. */
static int parse_with_unit(const char *s, const struct unit *units, size_t nr_units,
			   uint64_t *out)
{
	uint64_t v = 0;
	const char *p = s;
	size_t i;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++)
		if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *p - '0', &v))
			return -ERANGE;
	if (*p == ' ')
		p++;
	for (i = 0; i < nr_units; i++)
		if (!strcmp(p, units[i].name))
			return __builtin_mul_overflow(v, units[i].mult, out) ? -ERANGE : 0;
	return -EINVAL;
}

static int parse_rate(struct pctx *c, const cJSON *j, uint64_t *bytes)
{
	uint64_t bits;
	int ret;

	if (cJSON_IsNumber(j))
		return want_uint(c, j, "rate", 0, 1ULL << 53, bytes);
	if (!cJSON_IsString(j))
		return fail(c, "rate must be a string like \"100mbit\" or an integer of bytes/s, "
			    "got %s", type_name(j));
	ret = parse_with_unit(j->valuestring, rate_units,
			      sizeof(rate_units) / sizeof(rate_units[0]), &bits);
	if (ret == -ERANGE)
		return fail(c, "rate \"%s\" is too large", j->valuestring);
	if (ret)
		return fail(c, "rate \"%s\" is not <integer><unit> with unit bit, kbit, mbit, gbit, "
			    "tbit, B/s, kB/s, MB/s, GB/s, KiB/s, MiB/s or GiB/s", j->valuestring);
	if (bits % 8)
		return fail(c, "rate \"%s\" is not a whole number of bytes per second",
			    j->valuestring);
	*bytes = bits / 8;
	return 0;
}

static int parse_burst(struct pctx *c, const cJSON *j, uint64_t *bytes)
{
	int ret;

	if (cJSON_IsNumber(j))
		ret = want_uint(c, j, "burst", 0, 1ULL << 53, bytes);
	else if (!cJSON_IsString(j))
		return fail(c, "burst must be a string like \"64k\" or an integer of bytes, got %s",
			    type_name(j));
	else
		ret = parse_with_unit(j->valuestring, burst_units,
				      sizeof(burst_units) / sizeof(burst_units[0]), bytes);
	if (ret == -ERANGE)
		return fail(c, "burst \"%s\" is too large", j->valuestring);
	if (ret == -EINVAL && cJSON_IsString(j))
		return fail(c, "burst \"%s\" is not <integer><unit> with unit k, m, g (KiB, MiB, "
			    "GiB) or none (bytes)", j->valuestring);
	if (ret)
		return ret;
	if (*bytes < MIN_BURST_BYTES)
		return fail(c, "burst of %llu bytes is below one full frame (%d bytes)",
			    (unsigned long long)*bytes, MIN_BURST_BYTES);
	return 0;
}

struct bw_parse {
	const cJSON *rate, *burst;
};

static int bw_dir_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct bw_parse *bp = arg;

	if (!strcmp(it->string, "rate"))
		bp->rate = it;
	else if (!strcmp(it->string, "burst"))
		bp->burst = it;
	else
		return unknown_key(c, it->string, "rate, burst");
	return 0;
}

/* Rate first: burst is judged against it, whatever the key order. */
static int parse_bw_dir(struct pctx *c, const cJSON *j, struct raw_dir *d)
{
	struct bw_parse bp = { 0 };
	int ret;

	ret = for_each_field(c, j, bw_dir_field, &bp);
	if (ret)
		return ret;
	if (!bp.rate)
		return fail(c, bp.burst ? "burst without rate: add a \"rate\" (0 = unlimited)" :
			    "\"rate\" is required (0 = unlimited)");
	push_key(c, "rate");
	ret = parse_rate(c, bp.rate, &d->rate_bytes);
	pop(c);
	if (ret)
		return ret;
	d->has_bandwidth = true;
	if (!bp.burst) {
		/* 10 ms worth of traffic, but at least one 64 KiB GSO packet. */
		d->burst_bytes = d->rate_bytes ? d->rate_bytes / 100 : 0;
		if (d->rate_bytes && d->burst_bytes < MIN_DEFAULT_BURST)
			d->burst_bytes = MIN_DEFAULT_BURST;
		return 0;
	}
	push_key(c, "burst");
	ret = d->rate_bytes ? parse_burst(c, bp.burst, &d->burst_bytes) :
	      fail(c, "burst with rate 0 (unlimited) has no meaning; remove it");
	pop(c);
	return ret;
}

static int bandwidth_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_settings *s = arg;
	int dir, ret;

	ret = dir_index(c, it->string, &dir);
	return ret ?: parse_bw_dir(c, it, &s->dir[dir]);
}

/* ---- devices and disks ---------------------------------------------------- */

/* A decimal number of at most 7 digits, no sign, no leading zeros. */
static bool parse_dev_num(const char *s, size_t len, uint32_t *out)
{
	uint32_t v = 0;
	size_t i;

	if (!len || len > 7 || (len > 1 && s[0] == '0'))
		return false;
	for (i = 0; i < len; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (uint32_t)(s[i] - '0');
	}
	*out = v;
	return true;
}

/* "MAJOR:MINOR" (minor "*" only when wild is allowed). */
static int parse_dev_numbers(struct pctx *c, const char *s, bool wild, uint32_t *major,
			     uint32_t *minor)
{
	const char *colon = strchr(s, ':');

	if (!colon || !parse_dev_num(s, (size_t)(colon - s), major))
		return fail(c, "\"%s\" is not MAJOR:MINOR (decimal numbers%s)", s,
			    wild ? ", MINOR may be *" : "");
	if (wild && !strcmp(colon + 1, "*"))
		*minor = RAYOS_DEV_MINOR_ANY;
	else if (!parse_dev_num(colon + 1, strlen(colon + 1), minor))
		return fail(c, "\"%s\" is not MAJOR:MINOR (decimal numbers%s)", s,
			    wild ? ", MINOR may be *" : "");
	if (*major > RAYOS_DEV_MAJOR_MAX)
		return fail(c, "device major %u is out of range 0..%u", *major, RAYOS_DEV_MAJOR_MAX);
	if (*minor != RAYOS_DEV_MINOR_ANY && *minor > RAYOS_DEV_MINOR_MAX)
		return fail(c, "device minor %u is out of range 0..%u (or *)", *minor,
			    RAYOS_DEV_MINOR_MAX);
	return 0;
}

/* "c 10:200 rw": type, MAJOR:MINOR, access letters r, w, m. */
static int dev_rule_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct dev_rule *rules = arg, *r = &rules[i];
	char type[4], num[24], acc[8];
	const char *s, *p;
	int ret, n = 0;

	ret = want_string(c, j, &s);
	if (ret)
		return ret;
	/* Exactly one space between the parts: what `ls -l` users type. */
	if (sscanf(s, "%3s %23s %7s%n", type, num, acc, &n) != 3 || s[n] || strlen(type) != 1 ||
	    strlen(s) != strlen(type) + strlen(num) + strlen(acc) + 2)
		return fail(c, "\"%s\" is not a device rule like \"c 10:200 rw\" (type c or b, "
			    "MAJOR:MINOR or MAJOR:*, access letters r, w, m)", s);
	if (type[0] != 'c' && type[0] != 'b')
		return fail(c, "device type \"%s\" in \"%s\" must be c (character) or b (block)",
			    type, s);
	r->type = type[0] == 'c' ? RAYOS_DEV_CHAR : RAYOS_DEV_BLOCK;
	ret = parse_dev_numbers(c, num, true, &r->major, &r->minor);
	if (ret)
		return ret;
	for (p = acc; *p; p++) {
		uint8_t bit = *p == 'r' ? RAYOS_DEV_ACC_READ : *p == 'w' ? RAYOS_DEV_ACC_WRITE :
			      *p == 'm' ? RAYOS_DEV_ACC_MKNOD : 0;

		if (!bit)
			return fail(c, "access \"%s\" in \"%s\": letters are r (read), w (write) "
				    "and m (mknod)", acc, s);
		if (r->access & bit)
			return fail(c, "access \"%s\" in \"%s\" repeats '%c'", acc, s, *p);
		r->access |= bit;
	}
	return 0;
}

static int parse_dev_list(struct pctx *c, const cJSON *j, struct dev_rule **out, size_t *nr)
{
	if (!cJSON_IsArray(j))
		return fail(c, "expected an array of device rules like \"c 10:200 rw\", got %s",
			    type_name(j));
	*nr = (size_t)cJSON_GetArraySize(j);
	*out = calloc(*nr ?: 1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	return for_each_elem(c, j, dev_rule_elem, *out);
}

static int devices_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_settings *s = arg;

	if (!strcmp(it->string, "allow"))
		return parse_dev_list(c, it, &s->dev_allow, &s->nr_dev_allow);
	if (!strcmp(it->string, "deny"))
		return parse_dev_list(c, it, &s->dev_deny, &s->nr_dev_deny);
	return unknown_key(c, it->string, "allow, deny");
}

struct disk_parse {
	struct policy_disk *d;
	const cJSON *device;
	bool has_mode;
};

static int disk_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct disk_parse *dp = arg;
	const char *k = it->string, *s;
	int ret;

	if (!strcmp(k, "path")) {
		ret = want_string(c, it, &s);
		if (ret)
			return ret;
		if (s[0] != '/')
			return fail(c, "disk path \"%s\" must be absolute", s);
		if (strlen(s) >= PATH_MAX)
			return fail(c, "disk path is %zu characters long; at most %d", strlen(s),
				    PATH_MAX - 1);
		if (strstr(s, "/../") || strstr(s, "/./") || strstr(s, "//") ||
		    (strlen(s) >= 3 && !strcmp(s + strlen(s) - 3, "/..")))
			return fail(c, "disk path \"%s\" must be canonical (no //, /./ or /../)", s);
		dp->d->path = strdup(s);
		return dp->d->path ? 0 : -ENOMEM;
	}
	if (!strcmp(k, "device")) {
		dp->device = it;
		return 0;
	}
	if (!strcmp(k, "mode")) {
		ret = want_string(c, it, &s);
		if (ret)
			return ret;
		if (strcmp(s, "ro") && strcmp(s, "rw"))
			return fail(c, "disk mode must be \"ro\" or \"rw\", not \"%s\"", s);
		dp->d->mode = RAYOS_DEV_ACC_READ | (s[1] == 'w' ? RAYOS_DEV_ACC_WRITE : 0);
		dp->has_mode = true;
		return 0;
	}
	if (!strcmp(k, "comment"))
		return want_string(c, it, &s);
	return unknown_key(c, k, "path, device, mode, comment");
}

static int disk_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct disk_parse dp = { .d = &((struct policy_disk *)arg)[i] };
	const char *s;
	int ret;

	ret = for_each_field(c, j, disk_field, &dp);
	if (ret)
		return ret;
	if (!dp.d->path)
		return fail(c, "disk has no \"path\"");
	if (!dp.has_mode)
		return fail(c, "disk has no \"mode\" (\"ro\" or \"rw\")");
	dp.d->is_block = !strncmp(dp.d->path, "/dev/", 5);
	if (!dp.d->is_block) {
		if (!dp.device)
			return 0;
		push_key(c, "device");
		ret = fail(c, "\"device\" is only for block devices (paths under /dev/); %s is "
			   "an image file", dp.d->path);
		pop(c);
		return ret;
	}
	if (!dp.device)
		return fail(c, "block disk %s needs \"device\": \"MAJOR:MINOR\" (see `ls -l %s`; "
			    "the policy compiler does not look at the host)", dp.d->path,
			    dp.d->path);
	push_key(c, "device");
	ret = want_string(c, dp.device, &s);
	if (!ret)
		ret = parse_dev_numbers(c, s, false, &dp.d->major, &dp.d->minor);
	pop(c);
	return ret;
}

static int parse_disks(struct pctx *c, const cJSON *j, struct raw_settings *s)
{
	if (!cJSON_IsArray(j))
		return fail(c, "expected an array of disks, got %s", type_name(j));
	s->nr_disks = (size_t)cJSON_GetArraySize(j);
	s->disks = calloc(s->nr_disks ?: 1, sizeof(*s->disks));
	if (!s->disks)
		return -ENOMEM;
	return for_each_elem(c, j, disk_elem, s->disks);
}

/* "host": the same shape as one firewall direction. */
static int host_field(struct pctx *c, const cJSON *it, void *arg)
{
	return fw_dir_field(c, it, arg);
}

static const char *const ctl_names[RAYOS_CTL_MAX] = {
	[RAYOS_CTL_ARP] = "arp",
	[RAYOS_CTL_ND] = "nd",
	[RAYOS_CTL_DHCP] = "dhcp",
};

static int ctl_rate_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_settings *s = arg;
	uint64_t v;
	int k, ret;

	for (k = 0; k < RAYOS_CTL_MAX; k++)
		if (ctl_names[k] && !strcmp(it->string, ctl_names[k]))
			break;
	if (k == RAYOS_CTL_MAX)
		return unknown_key(c, it->string, "arp, nd, dhcp");
	ret = want_uint(c, it, "packets per second", 0, MAX_CTL_RATE, &v);
	if (ret)
		return ret;
	s->has_ctl[k] = true;
	s->ctl[k] = (uint32_t)v;
	return 0;
}

/* Returns 1 when key is not a settings field, so callers try their own. */
static int settings_field(struct pctx *c, const cJSON *it, struct raw_settings *s)
{
	const char *k = it->string;

	if (!strcmp(k, "host"))
		return for_each_field(c, it, host_field, &s->dir[RAYOS_FW_HOST]);
	if (!strcmp(k, "control_rates"))
		return for_each_field(c, it, ctl_rate_field, s);

	if (!strcmp(k, "devices")) {
		s->has_devices = true;
		return for_each_field(c, it, devices_field, s);
	}
	if (!strcmp(k, "disks")) {
		s->has_disks = true;
		return parse_disks(c, it, s);
	}
	if (!strcmp(k, "capabilities")) {
		s->has_caps = true;
		return for_each_elem(c, it, cap_elem, s);
	}
	if (!strcmp(k, "firewall"))
		return for_each_field(c, it, firewall_field, s);
	if (!strcmp(k, "bandwidth"))
		return for_each_field(c, it, bandwidth_field, s);
	return 1;
}

static int description_field(struct pctx *c, const cJSON *it)
{
	const char *s;

	return want_string(c, it, &s);
}

static int defaults_field(struct pctx *c, const cJSON *it, void *arg)
{
	int ret = settings_field(c, it, arg);

	if (ret <= 0)
		return ret;
	if (!strcmp(it->string, "description"))
		return description_field(c, it);
	return unknown_key(c, it->string, "capabilities, firewall, host, bandwidth, "
			   "control_rates, devices, disks, description");
}

/* Keys the next format revisions add; refusing them beats ignoring them. */
static int reserved_field(struct pctx *c, const char *key)
{
	return fail(c, "\"%s\" is not supported yet by this version of rayos", key);
}

static int group_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_group *g = arg;
	const char *k = it->string;
	int ret = settings_field(c, it, &g->s);

	if (ret <= 0)
		return ret;
	if (!strcmp(k, "parent"))
		return parse_name(c, it, "parent group name", g->parent);
	if (!strcmp(k, "description"))
		return description_field(c, it);
	if (!strcmp(k, "temporary_capabilities") || !strcmp(k, "delegations"))
		return reserved_field(c, k);
	return unknown_key(c, k, "parent, description, capabilities, firewall, host, "
			   "bandwidth, control_rates, devices, disks");
}

static int vm_identity_field(struct pctx *c, const cJSON *it, struct policy_vm *vm)
{
	const char *k = it->string;
	uint64_t id;
	int ret;

	if (!strcmp(k, "id")) {
		ret = want_uint(c, it, "id", 1, UINT32_MAX, &id);
		vm->id = (uint32_t)id;
		return ret;
	}
	if (!strcmp(k, "name"))
		return parse_name(c, it, "name", vm->name);
	if (!strcmp(k, "group"))
		return parse_name(c, it, "group name", vm->group);
	if (!strcmp(k, "interface"))
		return parse_ifname(c, it, vm->iface);
	if (!strcmp(k, "bridge"))
		return parse_ifname(c, it, vm->bridge);
	if (!strcmp(k, "mac")) {
		vm->has_mac = true;
		return parse_mac(c, it, vm->mac);
	}
	if (!strcmp(k, "ipv4")) {
		vm->has_ipv4 = true;
		return parse_ipv4(c, it, &vm->ipv4_be);
	}
	if (!strcmp(k, "ipv6")) {
		vm->has_ipv6 = true;
		return parse_ipv6(c, it, vm->ipv6);
	}
	if (!strcmp(k, "ipv6_link_local"))
		return parse_ll6_list(c, it, vm);
	return 1;
}

/* One "temporary_capabilities" entry: {"cap", "expires" | "until"}. */
struct temp_entry {
	struct policy_vm *vm;
	int cap;
	bool has_expires, has_until;
	uint64_t expires_ns, until_wall_ns;
};

static int temp_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct temp_entry *te = arg;
	const char *k = it->string, *v;
	char err[256];
	int ret;

	if (!strcmp(k, "cap") || !strcmp(k, "expires") || !strcmp(k, "until")) {
		ret = want_string(c, it, &v);
		if (ret)
			return ret;
		if (!strcmp(k, "cap")) {
			te->cap = policy_cap_from_name(v);
			if (te->cap < 0) {
				policy_cap_error(v, err, sizeof(err));
				return fail(c, "%s", err);
			}
		} else if (!strcmp(k, "expires")) {
			te->has_expires = true;
			if (caps_parse_duration(v, &te->expires_ns, err, sizeof(err)))
				return fail(c, "%s", err);
		} else {
			te->has_until = true;
			if (caps_parse_rfc3339(v, &te->until_wall_ns, err, sizeof(err)))
				return fail(c, "%s", err);
		}
		return 0;
	}
	return unknown_key(c, k, "cap, expires, until");
}

static int temp_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct temp_entry te = { .vm = arg, .cap = -1 };
	int ret;

	(void)i;
	if (!cJSON_IsObject(j))
		return fail(c, "expected an object such as {\"cap\": \"CAP_NETWORK\", "
			    "\"expires\": \"30m\"}, got %s", type_name(j));
	ret = for_each_field(c, j, temp_field, &te);
	if (ret)
		return ret;
	if (te.cap < 0)
		return fail(c, "entry has no \"cap\"");
	if (te.has_expires && te.has_until)
		return fail(c, "give \"expires\" or \"until\", not both");
	if (te.vm->temp_expires_ns[te.cap] || te.vm->temp_until_wall_ns[te.cap])
		return fail(c, "duplicate capability \"%s\"", policy_cap_name(te.cap));
	if (te.has_until)
		te.vm->temp_until_wall_ns[te.cap] = te.until_wall_ns ?: 1;
	else
		te.vm->temp_expires_ns[te.cap] = te.has_expires ? te.expires_ns
								 : CAPS_TEMP_DEFAULT_NS;
	return 0;
}

/* One "delegations" entry: {"to", "cap", "expires" | "until"}. */
struct deleg_entry {
	struct policy_deleg d;
	bool has_to, has_cap, has_expires, has_until;
};

static int deleg_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct deleg_entry *de = arg;
	const char *k = it->string, *v;
	char err[256];
	uint64_t to;
	int ret;

	if (!strcmp(k, "to")) {
		ret = want_uint(c, it, "to", 1, UINT32_MAX, &to);
		de->d.to = (uint32_t)to;
		de->has_to = !ret;
		return ret;
	}
	if (strcmp(k, "cap") && strcmp(k, "expires") && strcmp(k, "until"))
		return unknown_key(c, k, "to, cap, expires, until");
	ret = want_string(c, it, &v);
	if (ret)
		return ret;
	if (!strcmp(k, "cap")) {
		ret = policy_cap_from_name(v);
		if (ret < 0) {
			policy_cap_error(v, err, sizeof(err));
			return fail(c, "%s", err);
		}
		de->d.cap = (uint32_t)ret;
		de->has_cap = true;
	} else if (!strcmp(k, "expires")) {
		de->has_expires = true;
		if (caps_parse_duration(v, &de->d.expires_ns, err, sizeof(err)))
			return fail(c, "%s", err);
	} else {
		de->has_until = true;
		if (caps_parse_rfc3339(v, &de->d.until_wall_ns, err, sizeof(err)))
			return fail(c, "%s", err);
		de->d.until_wall_ns = de->d.until_wall_ns ?: 1;
	}
	return 0;
}

static int deleg_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct policy_vm *vm = arg;
	struct deleg_entry de = {};
	int ret;

	(void)i;
	if (!cJSON_IsObject(j))
		return fail(c, "expected an object such as {\"to\": 1001, \"cap\": "
			    "\"CAP_DISK_READ\", \"expires\": \"30m\"}, got %s", type_name(j));
	ret = for_each_field(c, j, deleg_field, &de);
	if (ret)
		return ret;
	if (!de.has_to || !de.has_cap)
		return fail(c, "entry needs \"to\" (a VM id) and \"cap\"");
	if (de.has_expires && de.has_until)
		return fail(c, "give \"expires\" or \"until\", not both");
	for (size_t k = 0; k < vm->nr_deleg; k++)
		if (vm->deleg[k].to == de.d.to && vm->deleg[k].cap == de.d.cap)
			return fail(c, "duplicate entry: %s to VM %u", policy_cap_name(de.d.cap),
				    de.d.to);
	if (vm->nr_deleg >= POLICY_MAX_DELEG)
		return fail(c, "more than %d delegations", POLICY_MAX_DELEG);
	vm->deleg[vm->nr_deleg++] = de.d;
	return 0;
}

/* ---- capability_limits --------------------------------------------------- */

/* "allow_ports": "443,80" or [443, 80, "8000-8100"]. */
static int limit_ports_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct caps_ports *all = arg, one;
	char buf[32], err[256];

	(void)i;
	if (cJSON_IsNumber(j)) {
		if (j->valuedouble != (double)(int)j->valuedouble || j->valuedouble < 1 ||
		    j->valuedouble > 65535)
			return fail(c, "port %g is out of range: ports are 1..65535", j->valuedouble);
		snprintf(buf, sizeof(buf), "%d", (int)j->valuedouble);
	} else if (cJSON_IsString(j)) {
		snprintf(buf, sizeof(buf), "%s", j->valuestring);
		if (strlen(j->valuestring) >= sizeof(buf) || strchr(buf, ','))
			return fail(c, "\"%s\" is not one port or range lo-hi", j->valuestring);
	} else {
		return fail(c, "expected a port (integer) or a range \"lo-hi\", got %s",
			    type_name(j));
	}
	if (caps_parse_ports(buf, &one, err, sizeof(err)))
		return fail(c, "%s", err);
	if (caps_ports_add(all, one.r[0].lo, one.r[0].hi) || all->nr > CAPS_MAX_LIST_RANGES)
		return fail(c, "more than %d separate port ranges; merge some",
			    CAPS_MAX_LIST_RANGES);
	return 0;
}

static int limit_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct caps_limits *l = arg;
	const char *k = it->string, *v;
	char err[256];
	int ret;

	if (!strcmp(k, "allow_ports")) {
		l->has_ports = true;
		if (cJSON_IsString(it))
			return caps_parse_ports(it->valuestring, &l->ports, err, sizeof(err))
			       ? fail(c, "%s", err) : 0;
		if (cJSON_IsArray(it) && !cJSON_GetArraySize(it))
			return fail(c, "empty port list: list ports, or remove \"allow_ports\" "
				    "(to refuse every port, revoke CAP_NETWORK)");
		return for_each_elem(c, it, limit_ports_elem, &l->ports);
	}
	if (!strcmp(k, "max_bandwidth")) {
		ret = want_string(c, it, &v);
		if (!ret && caps_parse_rate(v, &l->rate_bytes, err, sizeof(err)))
			ret = fail(c, "%s", err);
		return ret;
	}
	if (!strcmp(k, "nodes")) {
		const cJSON *n;

		if (!cJSON_IsArray(it) || !cJSON_GetArraySize(it))
			return fail(c, "\"nodes\" is a non-empty array of \"MAJOR:MINOR\" DRI "
				    "nodes such as \"226:128\"");
		l->has_nodes = true;
		cJSON_ArrayForEach(n, it) {
			struct caps_node node;

			if (!cJSON_IsString(n))
				return fail(c, "node: expected a string \"226:MINOR\", got %s",
					    type_name(n));
			if (caps_parse_node(n->valuestring, &node, err, sizeof(err)))
				return fail(c, "%s", err);
			if (node.major != 226)
				return fail(c, "node \"%s\" is not a DRI node (major 226): CAP_GPU "
					    "grants nothing else", n->valuestring);
			if (caps_nodes_add(l, node))
				return fail(c, "more than %d nodes", CAPS_MAX_NODES);
		}
		return 0;
	}
	if (!strcmp(k, "disks")) {
		const cJSON *n;

		if (!cJSON_IsArray(it) || !cJSON_GetArraySize(it))
			return fail(c, "\"disks\" is a non-empty array of the VM's disk paths "
				    "(as its \"disks\" spell them)");
		l->has_disks[CAPS_DISK_READ] = true;	/* the caller moves it where it belongs */
		cJSON_ArrayForEach(n, it) {
			struct caps_disk_id id;

			if (!cJSON_IsString(n) || n->valuestring[0] != '/')
				return fail(c, "disk: expected an absolute path, got %s",
					    cJSON_IsString(n) ? n->valuestring : type_name(n));
			caps_disk_id(n->valuestring, &id);
			if (caps_disks_add(&l->disks[CAPS_DISK_READ], &id))
				return fail(c, "more than %d disks", CAPS_MAX_DISKS);
		}
		return 0;
	}
	return unknown_key(c, k, "allow_ports, max_bandwidth, nodes, disks");
}

/* "capability_limits": {"CAP_NETWORK": {"allow_ports", "max_bandwidth"},
 * "CAP_GPU": {"nodes"}, "CAP_DISK_READ"/"CAP_DISK_WRITE": {"disks"}}. */
static int limits_cap_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_vm *rv = arg;
	struct caps_limits *l = &rv->vm.policy_limits, one = { 0 };
	int cap = policy_cap_from_name(it->string), ret;
	const cJSON *k;
	bool disk = cap == RAYOS_CAP_DISK_READ || cap == RAYOS_CAP_DISK_WRITE;

	if (cap < 0)
		return fail(c, "unknown capability \"%s\"", it->string);
	if (cap != RAYOS_CAP_NETWORK && cap != RAYOS_CAP_GPU && !disk)
		return fail(c, "%s takes no limits (CAP_NETWORK: allow_ports, max_bandwidth; "
			    "CAP_GPU: nodes; CAP_DISK_READ, CAP_DISK_WRITE: disks)", it->string);
	ret = for_each_field(c, it, limit_field, &one);
	if (ret)
		return ret;
	if (caps_limits_empty(&one))
		return fail(c, "no limits given for %s", it->string);
	cJSON_ArrayForEach(k, it) {
		bool net = !strcmp(k->string, "allow_ports") || !strcmp(k->string, "max_bandwidth");
		bool nodes = !strcmp(k->string, "nodes"), disks = !strcmp(k->string, "disks");
		bool fits = cap == RAYOS_CAP_NETWORK ? net : cap == RAYOS_CAP_GPU ? nodes : disks;

		if (!fits && (net || nodes || disks))	/* others: x- comments */
			return fail(c, "\"%s\" does not limit %s (CAP_NETWORK: allow_ports, "
				    "max_bandwidth; CAP_GPU: nodes; CAP_DISK_READ, CAP_DISK_WRITE: "
				    "disks)", k->string, it->string);
	}
	if (cap == RAYOS_CAP_NETWORK) {
		l->has_ports = one.has_ports;
		l->ports = one.ports;
		l->rate_bytes = one.rate_bytes;
	} else if (cap == RAYOS_CAP_GPU) {
		l->has_nodes = one.has_nodes;
		l->nr_nodes = one.nr_nodes;
		memcpy(l->nodes, one.nodes, sizeof(l->nodes));
	} else {
		int kind = cap == RAYOS_CAP_DISK_READ ? CAPS_DISK_READ : CAPS_DISK_WRITE;

		const cJSON *n;

		l->has_disks[kind] = true;
		l->disks[kind] = one.disks[CAPS_DISK_READ];	/* where limit_field put it */
		cJSON_ArrayForEach(n, cJSON_GetObjectItemCaseSensitive(it, "disks")) {
			char *copy;

			if (rv->nr_limit_disks[kind] == CAPS_MAX_DISKS)
				break;	/* limit_field refused more already */
			copy = strdup(n->valuestring);	/* freed with the document */
			if (!copy)
				return -ENOMEM;
			rv->limit_disks[kind][rv->nr_limit_disks[kind]++] = copy;
		}
	}
	return 0;
}

static int vm_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_vm *rv = arg;
	const char *k = it->string;
	int ret;

	ret = vm_identity_field(c, it, &rv->vm);
	if (ret <= 0)
		return ret;
	ret = settings_field(c, it, &rv->s);
	if (ret <= 0)
		return ret;
	if (!strcmp(k, "description"))
		return description_field(c, it);
	if (!strcmp(k, "temporary_capabilities"))
		return for_each_elem(c, it, temp_elem, &rv->vm);
	if (!strcmp(k, "capability_limits")) {
		ret = for_each_field(c, it, limits_cap_field, rv);
		rv->vm.limits = rv->vm.policy_limits;
		return ret;
	}
	if (!strcmp(k, "delegations"))
		return for_each_elem(c, it, deleg_elem, &rv->vm);
	return unknown_key(c, k, "id, name, group, interface, bridge, mac, ipv4, ipv6, "
			   "ipv6_link_local, description, capabilities, temporary_capabilities, "
			   "capability_limits, delegations, firewall, host, bandwidth, "
			   "control_rates, devices, disks");
}

static int vm_elem(struct pctx *c, const cJSON *j, int i, void *arg)
{
	struct raw_doc *doc = arg;
	struct raw_vm *rv = &doc->vms[i];
	int ret;

	ret = for_each_field(c, j, vm_field, rv);
	if (ret)
		return ret;
	if (!rv->vm.id)
		return fail(c, "VM has no \"id\" (an integer 1..4294967295)");
	if (!rv->vm.name[0])
		return fail(c, "VM has no \"name\"");
	snprintf(rv->vm.source, sizeof(rv->vm.source), "%s", doc->file);
	return 0;
}

static int group_entry(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_doc *doc = arg;
	struct raw_group *g = &doc->groups[doc->nr_groups];
	int ret;

	ret = check_name(c, it->string, "group name", g->name);
	if (!ret)
		ret = for_each_field(c, it, group_field, g);
	doc->nr_groups++;	/* counted even on error: its rules need freeing */
	return ret;
}

static int top_field(struct pctx *c, const cJSON *it, void *arg)
{
	struct raw_doc *doc = arg;
	const char *k = it->string;
	const char *s;

	if (!strcmp(k, "version"))
		return 0;	/* checked first, by parse_root */
	if (!strcmp(k, "defaults"))
		return for_each_field(c, it, defaults_field, &doc->defaults);
	if (!strcmp(k, "groups")) {
		if (!cJSON_IsObject(it))
			return fail(c, "expected an object of groups by name, got %s", type_name(it));
		doc->groups = calloc((size_t)cJSON_GetArraySize(it) ?: 1, sizeof(*doc->groups));
		return doc->groups ? for_each_field(c, it, group_entry, doc) : -ENOMEM;
	}
	if (!strcmp(k, "vms")) {
		if (!cJSON_IsArray(it))
			return fail(c, "expected an array of VMs, got %s", type_name(it));
		doc->nr_vms = (size_t)cJSON_GetArraySize(it);
		doc->vms = calloc(doc->nr_vms ?: 1, sizeof(*doc->vms));
		return doc->vms ? for_each_elem(c, it, vm_elem, doc) : -ENOMEM;
	}
	if (!strcmp(k, "dhcp")) {
		/* Its fields are the DHCP server's (policies/DHCP.md); it checks
		 * them against the whole set once the set is linked. */
		if (!cJSON_IsObject(it))
			return fail(c, "expected an object (see policies/DHCP.md), got %s",
				    type_name(it));
		doc->dhcp = cJSON_Duplicate(it, 1);
		return doc->dhcp ? 0 : -ENOMEM;
	}
	if (!strcmp(k, "description") || !strcmp(k, "$schema"))
		return want_string(c, it, &s);
	return unknown_key(c, k, "version, defaults, groups, vms, dhcp, description, $schema");
}

static int parse_root(struct pctx *c, const cJSON *root, struct raw_doc *doc)
{
	const cJSON *ver;
	uint64_t v;
	int ret;

	if (!cJSON_IsObject(root))
		return fail(c, "a policy file must be a JSON object, not %s", type_name(root));
	ver = cJSON_GetObjectItemCaseSensitive(root, "version");
	if (!ver)
		return fail(c, "\"version\" is required (add \"version\": %d)", POLICY_FORMAT_VERSION);
	push_key(c, "version");
	ret = want_uint(c, ver, "version", 0, UINT32_MAX, &v);
	if (!ret && v != POLICY_FORMAT_VERSION)
		ret = fail(c, "unsupported version %llu (this agent reads version %d)",
			   (unsigned long long)v, POLICY_FORMAT_VERSION);
	pop(c);
	return ret ?: for_each_field(c, root, top_field, doc);
}

static void free_rules(struct fw_rule *rules, size_t nr)
{
	size_t i;

	for (i = 0; i < nr; i++) {
		free(rules[i].ports);
		free(rules[i].cidrs);
		free(rules[i].comment);
	}
	free(rules);
}

static void free_settings(struct raw_settings *s)
{
	size_t i;
	int d;

	for (d = 0; d < RAYOS_FW_DIRS; d++)
		free_rules(s->dir[d].rules, s->dir[d].nr_rules);
	free(s->dev_allow);
	free(s->dev_deny);
	for (i = 0; s->disks && i < s->nr_disks; i++)
		free((char *)s->disks[i].path);
	free(s->disks);
}

static void free_doc(struct raw_doc *doc)
{
	size_t i;

	if (!doc)
		return;
	free_settings(&doc->defaults);
	for (i = 0; i < doc->nr_groups; i++)
		free_settings(&doc->groups[i].s);
	for (i = 0; i < doc->nr_vms; i++) {
		free_settings(&doc->vms[i].s);
		for (int k = 0; k < CAPS_DISK_KINDS; k++)
			for (uint32_t d = 0; d < doc->vms[i].nr_limit_disks[k]; d++)
				free((char *)doc->vms[i].limit_disks[k][d]);
	}
	free(doc->groups);
	free(doc->vms);
	cJSON_Delete(doc->dhcp);
	free(doc->text);
	free(doc->file);
	free(doc);
}

static int parse_doc(const struct policy_source *src, struct raw_doc **out,
		     struct policy_error *err)
{
	struct raw_doc *doc;
	struct pctx c = { .err = err };
	cJSON *root = NULL;
	int ret;

	if (src->len > POLICY_MAX_FILE_SIZE)
		return fail_file(err, src->file, 0, "file is %zu bytes; policy files are limited "
				 "to 1 MiB (%u bytes)", src->len, POLICY_MAX_FILE_SIZE);
	doc = calloc(1, sizeof(*doc));
	if (!doc)
		return -ENOMEM;
	doc->file = strdup(src->file);
	doc->text = malloc(src->len + 1);
	if (!doc->file || !doc->text) {
		ret = -ENOMEM;
		goto out;
	}
	memcpy(doc->text, src->buf, src->len);
	doc->text[src->len] = '\0';
	doc->len = src->len;
	if (memchr(src->buf, '\0', src->len)) {
		ret = fail_file(err, src->file, line_of(doc->text, doc->text + strlen(doc->text)),
				"file contains a NUL byte: not a JSON text file");
		goto out;
	}
	ret = check_syntax(doc, err);
	if (ret)
		goto out;
	root = cJSON_ParseWithLength(doc->text, doc->len);
	if (!root) {
		ret = -ENOMEM;	/* the syntax is known good */
		goto out;
	}
	c.doc = doc;
	ret = parse_root(&c, root, doc);
out:
	cJSON_Delete(root);
	if (ret)
		free_doc(doc);
	else
		*out = doc;
	return ret;
}

/* ---- linking: groups across documents, uniqueness, precedence ---------- */

struct group_ref {
	const struct raw_group *g;
	const struct raw_doc *doc;
	size_t doc_idx;
	long parent;		/* index into the sorted refs, -1 for a root */
};

struct vm_ref {
	const struct raw_vm *rv;
	const struct raw_doc *doc;
	size_t doc_idx, vm_idx;
};

struct linker {
	struct raw_doc *const *docs;
	size_t nr_docs;
	struct group_ref *groups;	/* sorted by name */
	size_t nr_groups;
	struct vm_ref *vms;
	size_t nr_vms;
	struct policy_error *err;
};

static int cmp_group_ref(const void *a, const void *b)
{
	const struct group_ref *x = a, *y = b;
	int r = strcmp(x->g->name, y->g->name);

	return r ?: (x->doc_idx > y->doc_idx) - (x->doc_idx < y->doc_idx);
}

static long find_group(const struct linker *l, const char *name)
{
	size_t lo = 0, hi = l->nr_groups;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		int r = strcmp(name, l->groups[mid].g->name);

		if (!r)
			return (long)mid;
		if (r < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return -1;
}

/* Path of a group (groups.NAME[.key]) in its document, for errors. */
static void group_ctx(struct pctx *c, const struct group_ref *gr, const char *key)
{
	c->doc = gr->doc;
	c->depth = 0;
	push_key(c, "groups");
	push_key(c, gr->g->name);
	if (key)
		push_key(c, key);
}

static void vm_ctx(struct pctx *c, const struct vm_ref *vr, const char *key)
{
	c->doc = vr->doc;
	c->depth = 0;
	push_key(c, "vms");
	push_index(c, (int)vr->vm_idx);
	if (key)
		push_key(c, key);
}

static int collect_groups(struct linker *l)
{
	struct pctx c = { .err = l->err };
	size_t d, i, n = 0;

	for (d = 0; d < l->nr_docs; d++)
		n += l->docs[d]->nr_groups;
	l->groups = calloc(n ?: 1, sizeof(*l->groups));
	if (!l->groups)
		return -ENOMEM;
	for (d = 0; d < l->nr_docs; d++)
		for (i = 0; i < l->docs[d]->nr_groups; i++)
			l->groups[l->nr_groups++] = (struct group_ref){
				.g = &l->docs[d]->groups[i], .doc = l->docs[d], .doc_idx = d,
			};
	qsort(l->groups, l->nr_groups, sizeof(*l->groups), cmp_group_ref);
	for (i = 1; i < l->nr_groups; i++)
		if (!strcmp(l->groups[i].g->name, l->groups[i - 1].g->name)) {
			group_ctx(&c, &l->groups[i], NULL);
			return fail(&c, "group \"%s\" is also defined in %s", l->groups[i].g->name,
				    l->groups[i - 1].doc->file);
		}
	return 0;
}

static int report_cycle(struct linker *l, size_t start)
{
	struct pctx c = { .err = l->err };
	char msg[sizeof(l->err->msg)];
	size_t first = start, i, off;

	/* Name the cycle from its alphabetically first group: stable messages. */
	for (i = (size_t)l->groups[start].parent; i != start; i = (size_t)l->groups[i].parent)
		if (i < first)
			first = i;
	off = (size_t)snprintf(msg, sizeof(msg), "group cycle: %s", l->groups[first].g->name);
	i = first;
	do {
		i = (size_t)l->groups[i].parent;
		if (off < sizeof(msg))
			off += (size_t)snprintf(msg + off, sizeof(msg) - off, " -> %s",
						l->groups[i].g->name);
	} while (i != first);
	group_ctx(&c, &l->groups[first], "parent");
	return fail(&c, "%s", msg);
}

static int resolve_parents(struct linker *l)
{
	struct pctx c = { .err = l->err };
	size_t i, step;
	long p;

	for (i = 0; i < l->nr_groups; i++) {
		const struct raw_group *g = l->groups[i].g;

		l->groups[i].parent = g->parent[0] ? find_group(l, g->parent) : -1;
		if (g->parent[0] && l->groups[i].parent < 0) {
			group_ctx(&c, &l->groups[i], "parent");
			return fail(&c, "unknown parent group \"%s\"", g->parent);
		}
	}
	/* A chain longer than the number of groups must revisit one. */
	for (i = 0; i < l->nr_groups; i++) {
		for (p = (long)i, step = 0; p >= 0 && step <= l->nr_groups; step++)
			p = l->groups[p].parent;
		if (p >= 0) {
			for (step = 0; step < l->nr_groups; step++)
				p = l->groups[p].parent;	/* now on the cycle */
			return report_cycle(l, (size_t)p);
		}
	}
	return 0;
}

static int cmp_load_order(const struct vm_ref *x, const struct vm_ref *y)
{
	if (x->doc_idx != y->doc_idx)
		return x->doc_idx < y->doc_idx ? -1 : 1;
	return (x->vm_idx > y->vm_idx) - (x->vm_idx < y->vm_idx);
}

/* Ties in load order, so the later of two duplicates is the one reported. */
static int cmp_vm_id(const void *a, const void *b)
{
	const struct vm_ref *x = a, *y = b;

	if (x->rv->vm.id != y->rv->vm.id)
		return x->rv->vm.id < y->rv->vm.id ? -1 : 1;
	return cmp_load_order(x, y);
}

static int cmp_vm_name(const void *a, const void *b)
{
	const struct vm_ref *x = a, *y = b;
	int r = strcmp(x->rv->vm.name, y->rv->vm.name);

	return r ?: cmp_load_order(x, y);
}

/* "vms[0]" or "a.json vms[0]": where the first of two duplicates is. */
static void where(const struct vm_ref *first, const struct vm_ref *second, char *buf, size_t len)
{
	snprintf(buf, len, "%s%svms[%zu]", first->doc == second->doc ? "" : first->doc->file,
		 first->doc == second->doc ? "" : " ", first->vm_idx);
}

static int check_unique_vms(struct linker *l)
{
	struct pctx c = { .err = l->err };
	char loc[PATH_MAX + 32];
	size_t i;

	qsort(l->vms, l->nr_vms, sizeof(*l->vms), cmp_vm_name);
	for (i = 1; i < l->nr_vms; i++)
		if (!strcmp(l->vms[i].rv->vm.name, l->vms[i - 1].rv->vm.name)) {
			where(&l->vms[i - 1], &l->vms[i], loc, sizeof(loc));
			vm_ctx(&c, &l->vms[i], "name");
			return fail(&c, "duplicate VM name \"%s\" (also in %s)",
				    l->vms[i].rv->vm.name, loc);
		}
	qsort(l->vms, l->nr_vms, sizeof(*l->vms), cmp_vm_id);
	for (i = 1; i < l->nr_vms; i++)
		if (l->vms[i].rv->vm.id == l->vms[i - 1].rv->vm.id) {
			where(&l->vms[i - 1], &l->vms[i], loc, sizeof(loc));
			vm_ctx(&c, &l->vms[i], "id");
			return fail(&c, "duplicate VM id %u (also in %s)", l->vms[i].rv->vm.id, loc);
		}
	return 0;
}

/* Settings from most to least specific: VM, its group, the group's parents,
 * the file defaults.  The built-in defaults come after all of them. */
static size_t settings_chain(const struct linker *l, const struct vm_ref *vr, long group,
			     const struct raw_settings **chain)
{
	size_t n = 0;

	chain[n++] = &vr->rv->s;
	for (; group >= 0; group = l->groups[group].parent)
		chain[n++] = &l->groups[group].g->s;
	chain[n++] = &vr->doc->defaults;
	return n;
}

static int flatten_dir(struct pctx *c, const struct raw_settings *const *chain, size_t n,
		       int dir, struct fw_dir *out)
{
	size_t i, total = 0;
	bool has_default = false, has_bw = false;

	out->default_action = dir == RAYOS_DIR_IN ? BUILTIN_DEFAULT_IN :
			      dir == RAYOS_DIR_OUT ? BUILTIN_DEFAULT_OUT : BUILTIN_DEFAULT_HOST;
	for (i = 0; i < n; i++) {
		const struct raw_dir *d = &chain[i]->dir[dir];

		total += d->nr_rules;
		if (d->has_default && !has_default) {
			has_default = true;
			out->default_action = d->default_action;
		}
		if (d->has_bandwidth && !has_bw) {
			has_bw = true;
			out->rate_bytes = d->rate_bytes;
			out->burst_bytes = d->burst_bytes;
		}
	}
	if (total > RAYOS_MAX_RULES)
		return fail(c, "%zu \"%s\" %srules after adding the rules of its groups and the "
			    "file defaults; at most %d", total, dir == RAYOS_DIR_IN ? "in" :
			    dir == RAYOS_DIR_OUT ? "out" : "host", dir == RAYOS_FW_HOST ? "" :
			    "firewall ", RAYOS_MAX_RULES);
	out->rules = calloc(total ?: 1, sizeof(*out->rules));
	if (!out->rules)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		const struct raw_dir *d = &chain[i]->dir[dir];

		if (d->nr_rules)
			memcpy(out->rules + out->nr_rules, d->rules, d->nr_rules * sizeof(*d->rules));
		out->nr_rules += d->nr_rules;
	}
	return 0;
}

static void free_vm_rules(struct policy_vm *vm)
{
	int d;

	/* The rules' ports, cidrs and comments belong to the documents. */
	for (d = 0; d < RAYOS_FW_DIRS; d++)
		free(vm->fw[d].rules);
}

static int flatten_vm(struct linker *l, const struct vm_ref *vr, struct policy_vm *out)
{
	const struct raw_settings **chain;
	struct pctx c = { .err = l->err };
	long group = -1;
	size_t n, i;
	int d, ret = 0;

	*out = vr->rv->vm;
	if (out->group[0]) {
		group = find_group(l, out->group);
		if (group < 0) {
			vm_ctx(&c, vr, "group");
			return fail(&c, "unknown group \"%s\"", out->group);
		}
	}
	chain = calloc(l->nr_groups + 2, sizeof(*chain));
	if (!chain)
		return -ENOMEM;
	n = settings_chain(l, vr, group, chain);
	for (i = 0; i < n; i++)
		if (chain[i]->has_caps) {
			out->caps = chain[i]->caps;
			break;
		}
	for (d = 0; d < RAYOS_CAP_COUNT; d++)
		if ((out->temp_expires_ns[d] || out->temp_until_wall_ns[d]) &&
		    (out->caps & (1ULL << d))) {
			free(chain);
			vm_ctx(&c, vr, "temporary_capabilities");
			return fail(&c, "%s is also a permanent capability of this VM (its "
				    "\"capabilities\" or its group's): a temporary grant of it "
				    "would mean nothing", policy_cap_name(d));
		}
	/* devices and disks: each whole, from the strongest level, like caps */
	for (i = 0; i < n; i++)
		if (chain[i]->has_devices) {
			out->nr_dev_allow = chain[i]->nr_dev_allow;
			out->dev_allow = chain[i]->dev_allow;
			out->nr_dev_deny = chain[i]->nr_dev_deny;
			out->dev_deny = chain[i]->dev_deny;
			break;
		}
	for (i = 0; i < n; i++)
		if (chain[i]->has_disks) {
			out->nr_disks = chain[i]->nr_disks;
			out->disks = chain[i]->disks;
			break;
		}
	/* A disk limit names disks of the VM, which a typo must not turn into
	 * a silent "none". */
	for (d = 0; d < CAPS_DISK_KINDS; d++)
		for (uint32_t k = 0; k < vr->rv->nr_limit_disks[d]; k++) {
			const char *want = vr->rv->limit_disks[d][k];
			bool found = false;

			for (i = 0; i < out->nr_disks && !found; i++)
				found = !strcmp(out->disks[i].path, want);
			if (!found) {
				free(chain);
				vm_ctx(&c, vr, "capability_limits");
				return fail(&c, "%s lists %s, which is not one of this VM's \"disks\" "
					    "(%zu): name each by its \"path\" there",
					    d == CAPS_DISK_READ ? "CAP_DISK_READ" : "CAP_DISK_WRITE",
					    want, out->nr_disks);
			}
		}
	/* control_rates: each kind from the strongest level that sets it */
	for (int k = 0; k < RAYOS_CTL_MAX; k++) {
		out->ctl_rate[k] = builtin_ctl_rate[k];
		for (i = 0; i < n; i++)
			if (chain[i]->has_ctl[k]) {
				out->ctl_rate[k] = chain[i]->ctl[k];
				break;
			}
	}
	vm_ctx(&c, vr, NULL);
	for (d = 0; !ret && d < RAYOS_FW_DIRS; d++)
		ret = flatten_dir(&c, chain, n, d, &out->fw[d]);
	free(chain);
	return ret;
}

/*
 * The "delegations" of the whole set, as `cap delegate` would check them
 * one by one: the target is a VM of the set, the giver holds CAP_ADMIN and
 * the capability (its "capabilities", its "temporary_capabilities", or
 * another entry that reaches one), no VM gives itself anything, no cycle,
 * no chain deeper than RAYOS_CAP_MAX_DEPTH.  Entries are taken in passes,
 * each one once its giver holds the capability, so their order in the files
 * does not matter; the first that never can is the error.
 */
struct deleg_own_ctx {
	const struct policy_vm *vms;
	size_t n;
};

static const struct policy_vm *vm_by_id(const struct policy_vm *vms, size_t n, uint32_t id)
{
	for (size_t i = 0; i < n; i++)
		if (vms[i].id == id)
			return &vms[i];
	return NULL;
}

static bool policy_own(void *ctx, uint32_t vm, uint32_t cap)
{
	const struct deleg_own_ctx *oc = ctx;
	const struct policy_vm *v = vm_by_id(oc->vms, oc->n, vm);

	return v && cap < RAYOS_CAP_COUNT && ((v->caps & (1ULL << cap)) ||
		    v->temp_expires_ns[cap] || v->temp_until_wall_ns[cap]);
}

static int check_delegations(struct linker *l, const struct policy_vm *vms, size_t n)
{
	struct deleg_own_ctx oc = { vms, n };
	struct pctx c = { .err = l->err };
	struct deleg_set set = {};
	size_t total = 0, placed = 0;
	bool *done = NULL;
	char why[256];
	int ret = 0;

	for (size_t i = 0; i < n; i++)
		total += vms[i].nr_deleg;
	if (!total)
		return 0;
	done = calloc(n * POLICY_MAX_DELEG, sizeof(*done));
	if (!done)
		return -ENOMEM;
	for (size_t i = 0; i < n && !ret; i++) {
		for (size_t k = 0; k < vms[i].nr_deleg; k++) {
			const struct policy_deleg *d = &vms[i].deleg[k];

			if (!vm_by_id(vms, n, d->to)) {
				vm_ctx(&c, &l->vms[i], "delegations");
				ret = fail(&c, "unknown VM %u: \"to\" must be a VM of the policy",
					   d->to);
				break;
			}
			if (!policy_own(&oc, vms[i].id, RAYOS_CAP_ADMIN)) {
				vm_ctx(&c, &l->vms[i], "delegations");
				ret = fail(&c, "VM %u does not hold CAP_ADMIN, which delegating "
					   "takes", vms[i].id);
				break;
			}
		}
	}
	for (bool progress = true; !ret && progress && placed < total;) {
		progress = false;
		for (size_t i = 0; i < n && !ret; i++)
			for (size_t k = 0; k < vms[i].nr_deleg && !ret; k++) {
				const struct policy_deleg *d = &vms[i].deleg[k];
				struct deleg_link dl = { .from = vms[i].id, .to = d->to,
							 .cap = d->cap };

				if (done[i * POLICY_MAX_DELEG + k] ||
				    !deleg_holds(&set, dl.from, dl.cap, 0, policy_own, &oc))
					continue;
				if (deleg_check(&set, dl.from, dl.to, dl.cap, policy_own, &oc, why,
						sizeof(why))) {
					vm_ctx(&c, &l->vms[i], "delegations");
					ret = fail(&c, "%s to VM %u: %s", policy_cap_name(d->cap),
						   d->to, why);
					break;
				}
				ret = deleg_put(&set, &dl);
				done[i * POLICY_MAX_DELEG + k] = true;
				placed++;
				progress = true;
			}
	}
	/* What is left: a giver that never holds the capability (nothing
	 * reaches a grant of its own, or a cycle without one). */
	for (size_t i = 0; i < n && !ret && placed < total; i++)
		for (size_t k = 0; k < vms[i].nr_deleg; k++) {
			const struct policy_deleg *d = &vms[i].deleg[k];

			if (done[i * POLICY_MAX_DELEG + k])
				continue;
			deleg_check(&set, vms[i].id, d->to, d->cap, policy_own, &oc, why,
				    sizeof(why));
			vm_ctx(&c, &l->vms[i], "delegations");
			ret = fail(&c, "%s to VM %u: %s", policy_cap_name(d->cap), d->to, why);
			break;
		}
	deleg_set_free(&set);
	free(done);
	return ret;
}

static void free_vms(struct policy_vm *vms, size_t nr)
{
	size_t i;

	for (i = 0; i < nr; i++)
		free_vm_rules(&vms[i]);
	free(vms);
}

/* All documents -> flattened VMs sorted by id, or an error naming the spot. */
static int link_docs(struct raw_doc *const *docs, size_t nr_docs, struct policy_vm **out,
		     size_t *nr_out, struct policy_error *err)
{
	struct linker l = { .docs = docs, .nr_docs = nr_docs, .err = err };
	struct policy_vm *vms = NULL;
	size_t d, i, n = 0;
	int ret;

	ret = collect_groups(&l);
	if (!ret)
		ret = resolve_parents(&l);
	if (ret)
		goto out;
	for (d = 0; d < nr_docs; d++)
		n += docs[d]->nr_vms;
	l.vms = calloc(n ?: 1, sizeof(*l.vms));
	vms = calloc(n ?: 1, sizeof(*vms));
	if (!l.vms || !vms) {
		ret = -ENOMEM;
		goto out;
	}
	for (d = 0; d < nr_docs; d++)
		for (i = 0; i < docs[d]->nr_vms; i++)
			l.vms[l.nr_vms++] = (struct vm_ref){
				.rv = &docs[d]->vms[i], .doc = docs[d], .doc_idx = d, .vm_idx = i,
			};
	ret = check_unique_vms(&l);
	for (i = 0; !ret && i < n; i++)
		ret = flatten_vm(&l, &l.vms[i], &vms[i]);
	if (!ret)
		ret = check_delegations(&l, vms, n);
out:
	if (ret) {
		free_vms(vms, n);
	} else {
		*out = vms;
		*nr_out = n;
	}
	free(l.vms);
	free(l.groups);
	return ret;
}

/* ---- sets ----------------------------------------------------------------- */

struct policy_set *policy_set_new(void)
{
	struct policy_set *set = calloc(1, sizeof(*set));

	if (!set)
		return NULL;
	set->docs = calloc(1, sizeof(*set->docs));
	if (!set->docs) {
		free(set);
		return NULL;
	}
	return set;
}

void policy_set_free(struct policy_set *set)
{
	size_t i;

	if (!set)
		return;
	free_vms(set->vms, set->nr_vms);
	for (i = 0; i < set->nr_files; i++)
		free(set->files[i]);
	free(set->files);
	if (set->docs) {
		for (i = 0; i < set->docs->nr; i++)
			free_doc(set->docs->docs[i]);
		free(set->docs->docs);
		free(set->docs);
	}
	free(set);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Grows files by the new documents' names; all or nothing. */
static int add_file_names(struct policy_set *set, struct raw_doc *const *docs, size_t nr)
{
	char **files;
	size_t i;

	files = realloc(set->files, (set->nr_files + nr) * sizeof(*files) ?: 1);
	if (!files)
		return -ENOMEM;
	set->files = files;
	for (i = 0; i < nr; i++) {
		files[set->nr_files + i] = strdup(docs[i]->file);
		if (!files[set->nr_files + i]) {
			while (i--)
				free(files[set->nr_files + i]);
			return -ENOMEM;
		}
	}
	set->nr_files += nr;
	qsort(files, set->nr_files, sizeof(*files), cmp_str);
	return 0;
}

/* The DHCP server has one configuration: one file of the set holds it. */
static int one_dhcp(struct raw_doc **docs, size_t nr, struct policy_error *err)
{
	const struct raw_doc *first = NULL;

	for (size_t i = 0; i < nr; i++) {
		if (!docs[i]->dhcp)
			continue;
		if (first)
			return fail_file(err, docs[i]->file, 0, "\"dhcp\" is also defined in %s: "
					 "keep the DHCP settings in one file", first->file);
		first = docs[i];
	}
	return 0;
}

const cJSON *policy_set_dhcp(const struct policy_set *set)
{
	for (size_t i = 0; set && i < set->docs->nr; i++)
		if (set->docs->docs[i]->dhcp)
			return set->docs->docs[i]->dhcp;
	return NULL;
}

int policy_set_add_sources(struct policy_set *set, const struct policy_source *src,
			   size_t nr, struct policy_error *err)
{
	struct policy_docs *pd = set->docs;
	struct raw_doc **docs;
	struct policy_vm *vms = NULL;
	size_t i, nr_parsed = 0, nr_vms = 0;
	int ret;

	memset(err, 0, sizeof(*err));
	/* The new documents go after the old ones, in the same array. */
	docs = realloc(pd->docs, (pd->nr + nr) * sizeof(*docs) ?: 1);
	if (!docs)
		return -ENOMEM;
	pd->docs = docs;
	for (; nr_parsed < nr; nr_parsed++) {
		ret = parse_doc(&src[nr_parsed], &docs[pd->nr + nr_parsed], err);
		if (ret)
			goto out;
	}
	ret = link_docs(docs, pd->nr + nr, &vms, &nr_vms, err);
	if (!ret)
		ret = one_dhcp(docs, pd->nr + nr, err);
	if (!ret)
		ret = add_file_names(set, docs + pd->nr, nr);
	if (ret)
		goto out;
	free_vms(set->vms, set->nr_vms);
	set->vms = vms;
	set->nr_vms = nr_vms;
	pd->nr += nr;
	return 0;
out:
	free_vms(vms, nr_vms);
	for (i = 0; i < nr_parsed; i++)
		free_doc(docs[pd->nr + i]);
	return ret;
}

int policy_set_add_json(struct policy_set *set, const char *file, const char *buf,
			size_t len, struct policy_error *err)
{
	struct policy_source src = { .file = file, .buf = buf, .len = len };

	return policy_set_add_sources(set, &src, 1, err);
}

const struct policy_vm *policy_set_find(const struct policy_set *set, uint32_t id)
{
	size_t lo = 0, hi = set->nr_vms;

	while (lo < hi) {
		size_t mid = (lo + hi) / 2;

		if (set->vms[mid].id == id)
			return &set->vms[mid];
		if (set->vms[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

static int cmp_quarantined(const void *a, const void *b)
{
	uint32_t x = ((const struct policy_quarantined *)a)->id;
	uint32_t y = ((const struct policy_quarantined *)b)->id;

	return x < y ? -1 : x > y;
}

int policy_set_add_quarantined(struct policy_set *set, struct policy_quarantined *q,
			       size_t nr)
{
	struct policy_vm *grown;
	size_t i, j, k;

	if (!nr)
		return 0;
	qsort(q, nr, sizeof(*q), cmp_quarantined);
	for (j = 0; j < nr; j++)
		if (policy_set_find(set, q[j].id) || (j && q[j].id == q[j - 1].id))
			return -EEXIST;
	grown = realloc(set->vms, (set->nr_vms + nr) * sizeof(*grown));
	if (!grown)
		return -ENOMEM;
	set->vms = grown;
	/* Merge from the end: each VM moves once. */
	i = set->nr_vms;
	k = set->nr_vms + nr;
	for (j = nr; j > 0;) {
		struct policy_vm *vm;

		if (i > 0 && grown[i - 1].id > q[j - 1].id) {
			grown[--k] = grown[--i];
			continue;
		}
		vm = &grown[--k];
		j--;
		memset(vm, 0, sizeof(*vm));
		vm->id = q[j].id;
		vm->quarantined = true;
		snprintf(vm->name, sizeof(vm->name), "%s", q[j].name ? q[j].name : "");
		snprintf(vm->iface, sizeof(vm->iface), "%s", q[j].iface ? q[j].iface : "");
		vm->fw[RAYOS_DIR_IN].default_action = RAYOS_ACT_DENY;
		vm->fw[RAYOS_DIR_OUT].default_action = RAYOS_ACT_DENY;
		snprintf(vm->source, sizeof(vm->source),
			 "(quarantine: no policy file names VM %u)", vm->id);
	}
	set->nr_vms += nr;
	return 0;
}

bool policy_set_remove(struct policy_set *set, uint32_t id)
{
	struct policy_vm *vm = (struct policy_vm *)policy_set_find(set, id);
	size_t at;

	if (!vm)
		return false;
	at = (size_t)(vm - set->vms);
	free_vm_rules(vm);
	memmove(vm, vm + 1, (set->nr_vms - at - 1) * sizeof(*vm));
	set->nr_vms--;
	return true;
}

/* ---- files ----------------------------------------------------------------- */

static int errno_fail(struct policy_error *err, const char *file, const char *what, int e)
{
	fail_file(err, file, 0, "%s: %s", what, strerror(e));
	return -e;
}

/* Reads at most POLICY_MAX_FILE_SIZE + 1 bytes: enough to tell it is too big. */
static int read_policy_file(int dirfd, const char *name, const char *file, char **buf,
			    size_t *len, struct policy_error *err)
{
	size_t cap = POLICY_MAX_FILE_SIZE + 1, off = 0;
	struct stat st;
	char *data;
	ssize_t n;
	int fd, ret = 0;

	fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno_fail(err, file, "cannot open", errno);
	if (fstat(fd, &st)) {
		ret = errno_fail(err, file, "cannot stat", errno);
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		ret = fail_file(err, file, 0, "not a regular file");
		goto out;
	}
	if ((uint64_t)st.st_size > POLICY_MAX_FILE_SIZE) {
		ret = fail_file(err, file, 0, "file is %lld bytes; policy files are limited to "
				"1 MiB (%u bytes)", (long long)st.st_size, POLICY_MAX_FILE_SIZE);
		goto out;
	}
	data = malloc(cap);
	if (!data) {
		ret = -ENOMEM;
		goto out;
	}
	while (off < cap && (n = read(fd, data + off, cap - off)) != 0) {
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = errno_fail(err, file, "cannot read", errno);
			free(data);
			goto out;
		}
		off += (size_t)n;
	}
	*buf = data;
	*len = off;	/* a file that grew past the limit fails in parse_doc */
out:
	close(fd);
	return ret;
}

int policy_load_file(const char *file, struct policy_set **out, struct policy_error *err)
{
	struct policy_source src = { .file = file };
	struct policy_set *set = NULL;
	char *buf = NULL;
	int ret;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	ret = read_policy_file(AT_FDCWD, file, file, &buf, &src.len, err);
	if (ret)
		goto out;
	set = policy_set_new();
	if (!set) {
		ret = -ENOMEM;
		goto out;
	}
	src.buf = buf;
	ret = policy_set_add_json(set, file, buf, src.len, err);
	if (!ret) {
		*out = set;
		set = NULL;
	}
out:
	policy_set_free(set);
	free(buf);
	return ret;
}

/* Policy files are "*.json" without a leading dot, which also leaves out
 * editor files such as ".web.json.swp", "web.json~" and "web.json.tmp". */
static bool is_policy_name(const char *name)
{
	size_t n = strlen(name);

	return name[0] != '.' && n > 5 && !strcmp(name + n - 5, ".json");
}

struct name_list {
	size_t nr;
	char **names;
};

static void free_names(struct name_list *nl)
{
	while (nl->nr)
		free(nl->names[--nl->nr]);
	free(nl->names);
}

/* The names are listed from dirfd, the directory the files are then read
 * from: a directory (or a symlink to one) replaced meanwhile cannot mix two
 * sets. */
static int list_policy_files(int dirfd, const char *dir, struct name_list *nl,
			     struct policy_error *err)
{
	struct dirent *de;
	int fd = dup(dirfd);
	DIR *d;
	int ret = 0;

	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		ret = errno_fail(err, dir, "cannot open directory", errno);
		if (fd >= 0)
			close(fd);
		return ret;
	}
	while ((errno = 0, de = readdir(d))) {
		char **names;

		if (!is_policy_name(de->d_name))
			continue;
		names = realloc(nl->names, (nl->nr + 1) * sizeof(*names));
		if (!names) {
			ret = -ENOMEM;
			goto out;
		}
		nl->names = names;
		names[nl->nr] = strdup(de->d_name);
		if (!names[nl->nr]) {
			ret = -ENOMEM;
			goto out;
		}
		nl->nr++;
	}
	if (errno)
		ret = errno_fail(err, dir, "cannot read directory", errno);
	else if (nl->nr)
		qsort(nl->names, nl->nr, sizeof(*nl->names), cmp_str);
out:
	closedir(d);
	return ret;
}

int policy_load_dir(const char *dir, struct policy_set **out, struct policy_error *err)
{
	struct name_list nl = { 0 };
	struct policy_source *src = NULL;
	struct policy_set *set = NULL;
	size_t i, nr_read = 0;
	int dirfd = -1, ret;

	*out = NULL;
	memset(err, 0, sizeof(*err));
	dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dirfd < 0) {
		ret = errno_fail(err, dir, "cannot open directory", errno);
		goto out;
	}
	ret = list_policy_files(dirfd, dir, &nl, err);
	if (ret)
		goto out;
	src = calloc(nl.nr ?: 1, sizeof(*src));
	set = policy_set_new();
	if (!src || !set) {
		ret = -ENOMEM;
		goto out;
	}
	for (; nr_read < nl.nr; nr_read++) {
		char *path, *buf;

		if (asprintf(&path, "%s/%s", dir, nl.names[nr_read]) < 0) {
			ret = -ENOMEM;
			goto out;
		}
		src[nr_read].file = path;
		ret = read_policy_file(dirfd, nl.names[nr_read], path, &buf, &src[nr_read].len, err);
		if (ret) {
			free(path);
			goto out;
		}
		src[nr_read].buf = buf;
	}
	ret = policy_set_add_sources(set, src, nl.nr, err);
	if (!ret) {
		*out = set;
		set = NULL;
	}
out:
	policy_set_free(set);
	for (i = 0; i < nr_read; i++) {
		free((char *)src[i].file);
		free((char *)src[i].buf);
	}
	free(src);
	if (dirfd >= 0)
		close(dirfd);
	free_names(&nl);
	return ret;
}
