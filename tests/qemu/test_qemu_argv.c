// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * rayos-qemu's command-line rewriting (agent/qemu/qemu_argv.c) and /etc/subuid
 * parsing (agent/qemu/qemu_user.c), table-driven: which arguments become fd
 * sets, which drives get readonly=on, which fds QEMU keeps.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent/qemu/qemu_argv.h"
#include "agent/qemu/qemu_user.h"
#include "tests/lib/tap.h"

static struct qemu_disk_fd disks[] = {
	{ .path = "/img/ro.qcow2", .writable = false, .set = 1000, .fd_ro = 5, .fd_rw = -1 },
	{ .path = "/img/rw.raw", .writable = true, .set = 1001, .fd_ro = 6, .fd_rw = 7 },
	{ .path = "/img/a,b.raw", .writable = true, .set = 1002, .fd_ro = 8, .fd_rw = 9 },
};
#define NR_DISKS (sizeof(disks) / sizeof(disks[0]))

static const struct {
	const char *name, *prev, *arg, *want;	/* want NULL: unchanged */
	int rc;
} cases[] = {
	{ "-drive file= of a read-only image gets the set and readonly=on", "-drive",
	  "file=/img/ro.qcow2,format=qcow2,if=virtio",
	  "file=/dev/fdset/1000,format=qcow2,if=virtio,readonly=on", 0 },
	{ "-drive of a read-write image: the set, nothing added", "-drive",
	  "file=/img/rw.raw,format=raw", "file=/dev/fdset/1001,format=raw", 0 },
	{ "--drive counts as -drive", "--drive", "file=/img/ro.qcow2",
	  "file=/dev/fdset/1000,readonly=on", 0 },
	{ "readonly=on already there: not doubled", "-drive",
	  "file=/img/ro.qcow2,readonly=on", "file=/dev/fdset/1000,readonly=on", 0 },
	{ "a bare readonly means on", "-drive", "readonly,file=/img/ro.qcow2",
	  "readonly,file=/dev/fdset/1000", 0 },
	{ "readonly=off on a read-only grant is refused", "-drive",
	  "file=/img/ro.qcow2,readonly=off", NULL, -EINVAL },
	{ "read-only=no on a read-only grant is refused", "-drive",
	  "file=/img/ro.qcow2,read-only=no", NULL, -EINVAL },
	{ "-blockdev filename=: the set, no readonly added (not a -drive)", "-blockdev",
	  "driver=file,filename=/img/rw.raw,node-name=f0",
	  "driver=file,filename=/dev/fdset/1001,node-name=f0", 0 },
	{ "a whole argument (-cdrom PATH)", "-cdrom", "/img/ro.qcow2", "/dev/fdset/1000", 0 },
	{ "JSON -blockdev", "-blockdev",
	  "{\"driver\":\"file\",\"filename\":\"/img/rw.raw\",\"node-name\":\"f0\"}",
	  "{\"driver\":\"file\",\"filename\":\"/dev/fdset/1001\",\"node-name\":\"f0\"}", 0 },
	{ "a path with a comma, escaped as ,, in the option", "-drive",
	  "file=/img/a,,b.raw,format=raw", "file=/dev/fdset/1002,format=raw", 0 },
	{ "a longer path that starts like an image is not it", "-drive",
	  "file=/img/rw.raw.bak,format=raw", NULL, 0 },
	{ "a prefix of an image path is not it", "-drive", "file=/img/rw", NULL, 0 },
	{ "the path as a key is not a value", "-object", "/img/rw.raw=x", NULL, 0 },
	{ "another path with ./ is not rewritten (it is not the policy's)", "-drive",
	  "file=/img/./rw.raw", NULL, 0 },
	{ "arguments without images are left alone", "-m", "256", NULL, 0 },
	{ "two images in one argument", "-object",
	  "x,a=/img/ro.qcow2,b=/img/rw.raw", "x,a=/dev/fdset/1000,b=/dev/fdset/1001", 0 },
};

static void subst_cases(void)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *out = NULL, err[256] = "";
		int rc;

		rc = qargv_subst_disks(cases[i].prev, cases[i].arg, disks, NR_DISKS, &out, err,
				       sizeof(err));
		if (cases[i].rc) {
			tap_ok(rc == cases[i].rc && !out && strstr(err, "read-only"), "%s (%s)",
			       cases[i].name, err);
		} else if (!cases[i].want) {
			tap_ok(!rc && !out, "%s", cases[i].name);
		} else {
			char name[256];

			snprintf(name, sizeof(name), "%s", cases[i].name);
			ASSERT_STREQ(out, cases[i].want, name);
		}
		free(out);
	}
}

static void used_marks(void)
{
	char *out = NULL, err[64];

	for (size_t i = 0; i < NR_DISKS; i++)
		disks[i].used = false;
	qargv_subst_disks("-drive", "file=/img/rw.raw", disks, NR_DISKS, &out, err, sizeof(err));
	free(out);
	tap_ok(disks[1].used && !disks[0].used && !disks[2].used,
	       "only the image an argument names is marked used");
}

static void opts_and_fds(void)
{
	char *argv1[] = { "qemu", "-m", "1G", "--sandbox", "on", NULL };
	char *argv2[] = { "qemu", "-sandboxx", "-netdev", "tap,id=n,fd=7", NULL };
	char *argv3[] = { "qemu", "-add-fd", "fd=5,set=1000,opaque=ro", "-netdev",
			  "tap,id=n,fds=10:11:12,vhostfds=13:14", "-chardev",
			  "socket,id=c,fd=20", "-object", "x,fd=name", "-drive",
			  "file=/dev/fdset/1000", NULL };
	int fds[16], want[] = { 5, 10, 11, 12, 13, 14, 20 };
	size_t n;

	tap_ok(qargv_has_opt(argv1, "-sandbox"), "--sandbox is a -sandbox of the command line");
	tap_ok(!qargv_has_opt(argv2, "-sandbox"), "-sandboxx is not -sandbox");
	tap_ok(qargv_has_opt(argv2, "-netdev"), "-netdev is found");
	n = qargv_fds(argv3, fds, 16);
	ASSERT_EQ(n, sizeof(want) / sizeof(want[0]), "fd=, fds=N:M, vhostfds= are all counted");
	tap_ok(n == 7 && !memcmp(fds, want, sizeof(want)),
	       "the fds QEMU keeps: 5 10 11 12 13 14 20 (fd=name is not an fd)");
	ASSERT_EQ(qargv_fds(argv3, fds, 2), 7, "more fds than room: the count still says all");
}

static void subuid(void)
{
	static const struct {
		const char *name, *text;
		int rc;
		unsigned int first, count;
	} c[] = {
		{ "the user's line by name", "alice:100000:65536\nrayos-qemu:1879048192:65536\n",
		  0, 1879048192, 65536 },
		{ "by uid", "995:2000000:4096\n", 0, 2000000, 4096 },
		{ "the first of two lines", "rayos-qemu:300000:10\nrayos-qemu:400000:10\n", 0,
		  300000, 10 },
		{ "no line", "alice:100000:65536\n", -ENOENT, 0, 0 },
		{ "an empty range", "rayos-qemu:300000:0\n", -EINVAL, 0, 0 },
		{ "a range holding uid 0", "rayos-qemu:0:10\n", -EINVAL, 0, 0 },
		{ "a range past 2^32-2", "rayos-qemu:4294967290:10\n", -EINVAL, 0, 0 },
		{ "garbage lines are skipped", "###\n:::\nrayos-qemu:5000:5\n", 0, 5000, 5 },
	};

	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		FILE *f = fmemopen((void *)c[i].text, strlen(c[i].text), "r");
		uid_t first = 0;
		uint32_t count = 0;
		int rc = qemu_user_subuid_parse(f, "rayos-qemu", 995, &first, &count);

		fclose(f);
		tap_ok(rc == c[i].rc && (rc || (first == c[i].first && count == c[i].count)),
		       "/etc/subuid: %s (rc %d, %u+%u)", c[i].name, rc, (unsigned int)first,
		       (unsigned int)count);
	}
}

int main(void)
{
	subst_cases();
	used_marks();
	opts_and_fds();
	subuid();
	return tap_done();
}
