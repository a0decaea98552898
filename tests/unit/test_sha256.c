/*
 * Unit tests for sha256.c: the FIPS 180-2 / NIST example vectors, the same
 * digests when the message arrives in arbitrary pieces, padding edge cases
 * (lengths around 55/56/64 bytes), and files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"

static void hex_of(const void *data, size_t len, char hex[SHA256_HEX_LEN + 1])
{
	uint8_t d[SHA256_DIGEST_LEN];
	sha256_buf(data, len, d);
	sha256_hex(d, hex);
}

static void fips_180_vectors(void **state)
{
	(void)state;
	static const char *const cases[][2] = {
		{"abc",
		 "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
		{"",
		 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
		{"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		 "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
		{"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
		 "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
		 "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
	};
	char hex[SHA256_HEX_LEN + 1];
	for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
		hex_of(cases[i][0], strlen(cases[i][0]), hex);
		assert_string_equal(hex, cases[i][1]);
	}
}

static void one_million_a(void **state)
{
	(void)state;
	char *a = malloc(1000000);
	assert_non_null(a);
	memset(a, 'a', 1000000);
	char hex[SHA256_HEX_LEN + 1];
	hex_of(a, 1000000, hex);
	assert_string_equal(
		hex,
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	/* fed in uneven pieces */
	sha256_ctx c;
	uint8_t d[SHA256_DIGEST_LEN];
	sha256_init(&c);
	size_t off = 0, step = 1;
	while (off < 1000000) {
		size_t n = step < 1000000 - off ? step : 1000000 - off;
		sha256_update(&c, a + off, n);
		off += n;
		step = step * 7 % 997 + 1;
	}
	sha256_final(&c, d);
	sha256_hex(d, hex);
	assert_string_equal(
		hex,
		"cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
	free(a);
}

static void every_split_point_gives_the_same_digest(void **state)
{
	(void)state;
	uint8_t msg[200];
	for (size_t i = 0; i < sizeof msg; i++)
		msg[i] = (uint8_t)(i * 131 + 7);
	/* lengths around the padding boundaries */
	static const size_t lens[] = {0, 1, 55, 56, 57, 63, 64, 65, 119, 120,
				      127, 128, 129, 200};
	for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
		uint8_t want[SHA256_DIGEST_LEN], got[SHA256_DIGEST_LEN];
		sha256_buf(msg, lens[l], want);
		for (size_t cut = 0; cut <= lens[l]; cut++) {
			sha256_ctx c;
			sha256_init(&c);
			sha256_update(&c, msg, cut);
			sha256_update(&c, msg + cut, 0);
			sha256_update(&c, msg + cut, lens[l] - cut);
			sha256_final(&c, got);
			assert_memory_equal(got, want, sizeof want);
		}
	}
	/* 55 and 56 bytes pad to one and two blocks; known digests of
	 * 'a' * 55 and 'a' * 56 (Python hashlib). */
	char hex[SHA256_HEX_LEN + 1];
	memset(msg, 'a', 64);
	hex_of(msg, 55, hex);
	assert_string_equal(
		hex,
		"9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
	hex_of(msg, 56, hex);
	assert_string_equal(
		hex,
		"b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
	hex_of(msg, 64, hex);
	assert_string_equal(
		hex,
		"ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

static void hashes_files(void **state)
{
	(void)state;
	char tmpl[] = "/tmp/df_sha_XXXXXX";
	int fd = mkstemp(tmpl);
	assert_true(fd >= 0);
	/* bigger than the 64 KiB read buffer */
	size_t n = 200000;
	char *buf = malloc(n);
	for (size_t i = 0; i < n; i++)
		buf[i] = (char)(i % 251);
	assert_int_equal(write(fd, buf, n), (ssize_t)n);
	close(fd);
	char want[SHA256_HEX_LEN + 1], got[SHA256_HEX_LEN + 1];
	hex_of(buf, n, want);
	assert_int_equal(sha256_file(tmpl, got), DF_OK);
	assert_string_equal(got, want);
	unlink(tmpl);
	free(buf);
	assert_int_equal(sha256_file("/nonexistent/model.onnx", got), DF_ENOENT);
	assert_non_null(strstr(df_err_msg(), "/nonexistent/model.onnx"));
	assert_int_equal(sha256_file("/tmp", got), DF_EIO);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(fips_180_vectors),
		cmocka_unit_test(one_million_a),
		cmocka_unit_test(every_split_point_gives_the_same_digest),
		cmocka_unit_test(hashes_files),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
