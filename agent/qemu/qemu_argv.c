// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * QEMU command-line rewriting for rayos-qemu (see qemu_argv.h): image paths
 * to fd sets, read-only drives marked so, the sandbox option found.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/qemu/qemu_argv.h"

bool qargv_has_opt(char *const argv[], const char *opt)
{
	for (; *argv; argv++) {
		const char *a = *argv;

		if (a[0] == '-' && a[1] == '-')
			a++;
		if (!strcmp(a, opt))
			return true;
	}
	return false;
}

/* A growing string; on allocation failure len stays and ok goes false. */
struct sbuf {
	char *s;
	size_t len, cap;
	bool ok;
};

static void sb_add(struct sbuf *b, const char *p, size_t n)
{
	if (!b->ok)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = (b->len + n + 1) * 2;
		char *s = realloc(b->s, cap);

		if (!s) {
			b->ok = false;
			return;
		}
		b->s = s;
		b->cap = cap;
	}
	memcpy(b->s + b->len, p, n);
	b->len += n;
	b->s[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
	sb_add(b, s, strlen(s));
}

/* The disk whose path equals the n bytes at p with ",," read as ",". */
static struct qemu_disk_fd *disk_of(const char *p, size_t n, struct qemu_disk_fd *d,
				    size_t nr)
{
	for (size_t i = 0; i < nr; i++) {
		const char *path = d[i].path;
		size_t j = 0, k = 0;

		while (j < n && path[k]) {
			if (p[j] != path[k])
				break;
			j += p[j] == ',' ? 2 : 1;	/* ",," in the option is one "," */
			k++;
		}
		if (j == n && !path[k])
			return &d[i];
	}
	return NULL;
}

static void fdset_path(char *buf, size_t len, const struct qemu_disk_fd *d)
{
	snprintf(buf, len, "/dev/fdset/%d", d->set);
}

/* {"filename": "PATH"}: every quoted occurrence of a disk path. */
static int subst_json(const char *arg, struct qemu_disk_fd *d, size_t nr, char **out)
{
	struct sbuf b = { .ok = true };
	const char *p = arg;
	bool changed = false;

	while (*p) {
		struct qemu_disk_fd *hit = NULL;
		size_t plen = 0;

		if (*p == '"') {
			for (size_t i = 0; i < nr && !hit; i++) {
				plen = strlen(d[i].path);
				if (!strncmp(p + 1, d[i].path, plen) && p[1 + plen] == '"')
					hit = &d[i];
			}
		}
		if (hit) {
			char fs[32];

			fdset_path(fs, sizeof(fs), hit);
			sb_str(&b, "\"");
			sb_str(&b, fs);
			sb_str(&b, "\"");
			p += plen + 2;
			hit->used = changed = true;
			continue;
		}
		sb_add(&b, p, 1);
		p++;
	}
	if (!b.ok) {
		free(b.s);
		return -ENOMEM;
	}
	if (!changed) {
		free(b.s);
		b.s = NULL;
	}
	*out = b.s;
	return 0;
}

static bool is_false(const char *v, size_t n)
{
	return (n == 3 && !strncmp(v, "off", 3)) || (n == 2 && !strncmp(v, "no", 2)) ||
	       (n == 5 && !strncmp(v, "false", 5));
}

int qargv_subst_disks(const char *prev, const char *arg, struct qemu_disk_fd *disks,
		      size_t nr, char **out, char *err, size_t errlen)
{
	bool drive = prev && (!strcmp(prev, "-drive") || !strcmp(prev, "--drive"));
	struct qemu_disk_fd *ro_disk = NULL;
	struct sbuf b = { .ok = true };
	bool changed = false, ro_set = false, ro_off = false;
	const char *p = arg;

	*out = NULL;
	if (arg[0] == '{')
		return subst_json(arg, disks, nr, out);
	/* Items separated by single commas; ",," belongs to the item. */
	while (true) {
		const char *item = p, *eq, *val;
		struct qemu_disk_fd *hit;
		size_t n, vlen;

		while (*p && !(p[0] == ',' && p[1] != ',')) {
			if (p[0] == ',')
				p++;	/* the first of ",," */
			p++;
		}
		n = (size_t)(p - item);
		eq = memchr(item, '=', n);
		val = eq ? eq + 1 : item;
		vlen = n - (size_t)(val - item);
		if (eq && ((eq - item == 8 && !strncmp(item, "readonly", 8)) ||
			   (eq - item == 9 && !strncmp(item, "read-only", 9)))) {
			ro_set = true;
			ro_off = is_false(val, vlen);
		} else if (!eq && ((n == 8 && !strncmp(item, "readonly", 8)) ||
				   (n == 9 && !strncmp(item, "read-only", 9)))) {
			ro_set = true;	/* a bare boolean option means on */
		}
		/* A whole item may be a path with "=" in it: try that first. */
		hit = n ? disk_of(item, n, disks, nr) : NULL;
		if (hit)
			val = item;
		else if (vlen)
			hit = disk_of(val, vlen, disks, nr);
		if (hit) {
			char fs[32];

			fdset_path(fs, sizeof(fs), hit);
			sb_add(&b, item, (size_t)(val - item));
			sb_str(&b, fs);
			hit->used = changed = true;
			if (!hit->writable)
				ro_disk = hit;
		} else {
			sb_add(&b, item, n);
		}
		if (!*p)
			break;
		sb_add(&b, p, 1);	/* the separating comma */
		p++;
	}
	if (drive && ro_disk) {
		if (ro_off) {
			snprintf(err, errlen, "disk %s is granted read-only, but its -drive "
				 "says readonly=off", ro_disk->path);
			free(b.s);
			return -EINVAL;
		}
		if (!ro_set)
			sb_str(&b, ",readonly=on");
	}
	if (!b.ok) {
		free(b.s);
		return -ENOMEM;
	}
	if (!changed) {
		free(b.s);
		return 0;
	}
	*out = b.s;
	return 0;
}

size_t qargv_fds(char *const argv[], int *out, size_t max)
{
	static const char *const keys[] = { "fd=", "fds=", "vhostfd=", "vhostfds=" };
	size_t n = 0;

	for (; *argv; argv++) {
		for (const char *p = *argv; *p;) {
			size_t len = strcspn(p, ",");

			for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
				size_t kl = strlen(keys[k]);
				const char *v = p + kl;

				if (len <= kl || strncmp(p, keys[k], kl))
					continue;
				/* N or N:M:...; anything else is a name, not a number */
				while (v < p + len) {
					char *end;
					long fd = strtol(v, &end, 10);

					if (end == v || fd < 0 || fd > INT_MAX ||
					    (end < p + len && *end != ':'))
						break;
					if (n < max)
						out[n] = (int)fd;
					n++;
					v = end + (end < p + len);
				}
			}
			p += len + (p[len] == ',');
		}
	}
	return n;
}
