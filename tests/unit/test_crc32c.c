/*
 * Unit tests for crc32c.c: the standard check value, the RFC 3720 (iSCSI)
 * appendix B.4 vectors, and agreement of the hardware path, the slice-by-8
 * path and a bit-at-a-time reference on every length and alignment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "crc32c.h"

/* The definition, one bit at a time. */
static uint32_t crc_bitwise(const unsigned char *p, size_t n)
{
	uint32_t c = 0xFFFFFFFFu;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

static void check_value(void **state)
{
	(void)state;
	assert_int_equal(crc32c("123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c_update_portable(0, "123456789", 9), 0xE3069283u);
	assert_int_equal(crc32c(NULL, 0), 0);
	assert_int_equal(crc32c("", 0), 0);
	/* "a" is a second widely published value. */
	assert_int_equal(crc32c("a", 1), 0xC1D04330u);
}

static void rfc3720_vectors(void **state)
{
	(void)state;
	unsigned char b[48];

	memset(b, 0, 32);
	assert_int_equal(crc32c(b, 32), 0x8A9136AAu);
	assert_int_equal(crc32c_update_portable(0, b, 32), 0x8A9136AAu);
	memset(b, 0xFF, 32);
	assert_int_equal(crc32c(b, 32), 0x62A8AB43u);
	assert_int_equal(crc32c_update_portable(0, b, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)i;
	assert_int_equal(crc32c(b, 32), 0x46DD794Eu);
	assert_int_equal(crc32c_update_portable(0, b, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		b[i] = (unsigned char)(31 - i);
	assert_int_equal(crc32c(b, 32), 0x113FDB5Cu);
	assert_int_equal(crc32c_update_portable(0, b, 32), 0x113FDB5Cu);

	/* An iSCSI SCSI Read (10) command PDU. */
	static const unsigned char pdu[48] = {
		0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,
		0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,
		0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
		0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	};
	assert_int_equal(crc32c(pdu, sizeof pdu), 0xD9963A56u);
	assert_int_equal(crc32c_update_portable(0, pdu, sizeof pdu), 0xD9963A56u);
}

static void all_paths_agree_on_every_length_and_alignment(void **state)
{
	(void)state;
	enum { N = 600 };
	unsigned char *buf = malloc(N + 16);
	assert_non_null(buf);
	uint32_t x = 0x12345678u;
	for (size_t i = 0; i < N + 16; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}
	for (size_t off = 0; off < 9; off++)
		for (size_t len = 0; len <= N; len++) {
			uint32_t ref = crc_bitwise(buf + off, len);
			if (crc32c(buf + off, len) != ref ||
			    crc32c_update_portable(0, buf + off, len) != ref)
				fail_msg("mismatch at offset %zu length %zu (hw %d)",
					 off, len, (int)crc32c_hw_available());
		}
	free(buf);
}

/* Long buffers take the interleaved hardware path (three blocks of 8 KB,
 * then of 256 bytes, combined): it must agree with the portable one around
 * every block boundary, at every alignment, and incrementally. */
static void long_buffers_agree(void **state)
{
	(void)state;
	enum { N = 3 * 8192 * 2 + 3 * 256 * 3 + 100 };
	unsigned char *buf = malloc(N + 16);
	assert_non_null(buf);
	uint32_t x = 0xCAFEF00Du;
	for (size_t i = 0; i < N + 16; i++) {
		x = x * 1103515245u + 12345u;
		buf[i] = (unsigned char)(x >> 16);
	}
	static const size_t lens[] = {
		3 * 256 - 1, 3 * 256, 3 * 256 + 1, 3 * 256 + 8, 6 * 256 + 7,
		3 * 8192 - 8, 3 * 8192 - 1, 3 * 8192, 3 * 8192 + 1,
		3 * 8192 + 3 * 256, 3 * 8192 + 3 * 256 + 5, 6 * 8192, N};
	for (size_t off = 0; off < 9; off++)
		for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
			size_t len = lens[i];
			uint32_t ref = crc32c_update_portable(0, buf + off, len);
			if (crc32c(buf + off, len) != ref)
				fail_msg("mismatch at offset %zu length %zu (hw %d)", off,
					 len, (int)crc32c_hw_available());
			size_t cut = (len * 5) / 7;
			uint32_t c = crc32c(buf + off, cut);
			assert_int_equal(crc32c_update(c, buf + off + cut, len - cut), ref);
		}
	/* The bitwise reference on one long buffer, to tie both to it. */
	assert_int_equal(crc32c(buf, N), crc_bitwise(buf, N));
	free(buf);
}

static void update_is_incremental(void **state)
{
	(void)state;
	unsigned char buf[1000];
	for (size_t i = 0; i < sizeof buf; i++)
		buf[i] = (unsigned char)(i * 7 + 3);
	uint32_t whole = crc32c(buf, sizeof buf);
	for (size_t cut = 0; cut <= sizeof buf; cut += 37) {
		uint32_t c = crc32c(buf, cut);
		assert_int_equal(crc32c_update(c, buf + cut, sizeof buf - cut),
				 whole);
		c = crc32c_update_portable(0, buf, cut);
		assert_int_equal(crc32c_update_portable(c, buf + cut,
							sizeof buf - cut),
				 whole);
	}
	/* Updating with nothing leaves the value alone. */
	assert_int_equal(crc32c_update(whole, buf, 0), whole);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(check_value),
		cmocka_unit_test(rfc3720_vectors),
		cmocka_unit_test(all_paths_agree_on_every_length_and_alignment),
		cmocka_unit_test(long_buffers_agree),
		cmocka_unit_test(update_is_incremental),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
