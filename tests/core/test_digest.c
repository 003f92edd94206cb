// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * agent/core/digest.c, the libcrypto wrapper: the FIPS 180-4 / NIST CAVP
 * vectors through the one-shot, streamed and fd paths, updates split at
 * every offset, a failing read and a stop request surface as errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent/core/digest.h"
#include "tests/lib/tap.h"

static void hex(const uint8_t d[32], char out[65])
{
	sha256_hex(d, out);
}

static void check_vector(const char *name, const void *msg, size_t len, const char *want)
{
	uint8_t d[32];
	char got[65];

	sha256(msg, len, d);
	hex(d, got);
	ASSERT_STREQ(got, want, name);
}

static void test_vectors(void)
{
	static const char two_blocks[] =
		"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
	static const char four_blocks[] =
		"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
		"hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";

	check_vector("empty message", "", 0,
		     "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
	check_vector("\"abc\"", "abc", 3,
		     "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	check_vector("448-bit message", two_blocks, strlen(two_blocks),
		     "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
	check_vector("896-bit message", four_blocks, strlen(four_blocks),
		     "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void)
{
	struct sha256_ctx ctx;
	uint8_t chunk[1000], d[32];
	char got[65];
	int i;

	memset(chunk, 'a', sizeof(chunk));
	sha256_init(&ctx);
	for (i = 0; i < 1000; i++)
		sha256_update(&ctx, chunk, sizeof(chunk));
	ASSERT_EQ(sha256_final(&ctx, d), 0, "streamed digest: no error");
	hex(d, got);
	ASSERT_STREQ(got, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
		     "one million 'a' in 1000-byte updates");
}

/* Every split point across block and padding boundaries (55, 56, 63, 64...). */
static void test_incremental(void)
{
	uint8_t msg[200], whole[32], part[32];
	struct sha256_ctx ctx;
	size_t len, cut, bad = 0;

	for (len = 0; len < sizeof(msg); len++)
		msg[len] = (uint8_t)(len * 7 + 3);
	for (len = 0; len <= sizeof(msg); len++) {
		sha256(msg, len, whole);
		for (cut = 0; cut <= len; cut++) {
			sha256_init(&ctx);
			sha256_update(&ctx, msg, cut);
			sha256_update(&ctx, msg + cut, 0);
			sha256_update(&ctx, msg + cut, len - cut);
			sha256_final(&ctx, part);
			if (memcmp(whole, part, 32))
				bad++;
		}
	}
	ASSERT_EQ(bad, 0, "split updates equal one-shot for lengths 0..200");
}

/* A file through sha256_fd: same digest as one-shot; a stop request and a
 * read error come back as errors, not as a digest. */
static void test_fd(void)
{
	char path[] = "/tmp/rayos-digest.XXXXXX", got[65], want[65];
	static uint8_t buf[200000];
	uint8_t d[32];
	atomic_bool stop = false;
	int fd;

	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	fd = mkstemp(path);
	if (!ASSERT_TRUE(fd >= 0, "temporary file"))
		return;
	unlink(path);
	ASSERT_EQ(write(fd, buf, sizeof(buf)), (ssize_t)sizeof(buf), "200,000 bytes written");
	sha256(buf, sizeof(buf), d);
	hex(d, want);
	lseek(fd, 0, SEEK_SET);
	ASSERT_EQ(sha256_fd(fd, &stop, d), 0, "sha256_fd over several chunks: no error");
	hex(d, got);
	ASSERT_STREQ(got, want, "sha256_fd equals the one-shot digest");
	lseek(fd, 0, SEEK_SET);
	stop = true;
	ASSERT_EQ(sha256_fd(fd, &stop, d), -ECANCELED, "a stop request ends sha256_fd with -ECANCELED");
	close(fd);
	fd = open("/tmp", O_RDONLY | O_DIRECTORY);
	ASSERT_EQ(sha256_fd(fd, NULL, d), -EISDIR, "a read error (a directory) is returned, no digest");
	close(fd);
}

int main(void)
{
	test_vectors();
	test_million_a();
	test_incremental();
	test_fd();
	return tap_done();
}
