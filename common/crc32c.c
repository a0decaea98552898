/*
 * crc32c.c - CRC-32C two ways.
 *
 * Portable: slice-by-8. table[0] is the classic byte-at-a-time table;
 * table[k][b] is the CRC contribution of byte b followed by k zero bytes, so
 * eight input bytes fold into the register with eight lookups. Words are
 * assembled from bytes, so the code is independent of host byte order.
 *
 * Hardware: SSE4.2's crc32 instruction implements exactly this polynomial
 * (reflected, no pre/post inversion, which we apply around it). It is used
 * when __builtin_cpu_supports("sse4.2") says so; the choice and the tables
 * are set up once under pthread_once. One crc32 instruction has a latency
 * of three cycles but a throughput of one, so long buffers are cut into
 * three blocks whose CRCs are computed interleaved, then combined: the
 * register after block A followed by block B (of length L) is the
 * register after A advanced over L zero bytes, XOR the CRC of B from a
 * zero register (CRC is linear). Advancing over L zeros is a fixed linear
 * map of the 32-bit register; crc_zeros_long / crc_zeros_short tabulate it
 * byte by byte for L = CRC_HW_LONG and CRC_HW_SHORT (Mark Adler's
 * construction, as in zlib's crc32_combine()).
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CRC32C_X86 1
#include <nmmintrin.h>
#endif

#define CRC32C_POLY 0x82F63B78u

static uint32_t crc_table[8][256];
static bool crc_use_hw;

#ifdef CRC32C_X86
#define CRC_HW_LONG  8192 /* bytes per interleaved block, long buffers */
#define CRC_HW_SHORT 256  /* and the rest */
static uint32_t crc_zeros_long[4][256];
static uint32_t crc_zeros_short[4][256];

/* mat (32 columns) times vec over GF(2). */
static uint32_t gf2_times(const uint32_t *mat, uint32_t vec)
{
	uint32_t sum = 0;
	for (; vec; vec >>= 1, mat++)
		if (vec & 1)
			sum ^= *mat;
	return sum;
}

static void gf2_square(uint32_t *square, const uint32_t *mat)
{
	for (int n = 0; n < 32; n++)
		square[n] = gf2_times(mat, mat[n]);
}

/* Tables advancing a raw register over len zero bytes (len a power of
 * two, at least 1), one per byte of the register. */
static void crc_zeros_init(uint32_t zeros[4][256], size_t len)
{
	uint32_t op[32], sq[32];
	/* One zero bit: the register shifts right, the polynomial enters
	 * when the low bit falls out. */
	op[0] = CRC32C_POLY;
	for (int n = 1; n < 32; n++)
		op[n] = 1u << (n - 1);
	/* Square three times: one zero byte; then once per doubling. */
	for (size_t bits = 1; bits < 8 * len; bits *= 2) {
		gf2_square(sq, op);
		memcpy(op, sq, sizeof op);
	}
	for (uint32_t n = 0; n < 256; n++)
		for (int k = 0; k < 4; k++)
			zeros[k][n] = gf2_times(op, n << (8 * k));
}

static uint32_t crc_shift(const uint32_t zeros[4][256], uint32_t crc)
{
	return zeros[0][crc & 0xff] ^ zeros[1][(crc >> 8) & 0xff] ^
	       zeros[2][(crc >> 16) & 0xff] ^ zeros[3][crc >> 24];
}
#endif
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1) ? (c >> 1) ^ CRC32C_POLY : c >> 1;
		crc_table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int k = 1; k < 8; k++) {
			uint32_t prev = crc_table[k - 1][i];
			crc_table[k][i] = (prev >> 8) ^ crc_table[0][prev & 0xff];
		}
#ifdef CRC32C_X86
	__builtin_cpu_init();
	crc_use_hw = __builtin_cpu_supports("sse4.2") != 0;
	crc_zeros_init(crc_zeros_long, CRC_HW_LONG);
	crc_zeros_init(crc_zeros_short, CRC_HW_SHORT);
#endif
}

static uint32_t load_le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
	       (uint32_t)p[3] << 24;
}

/* crc is the raw register (already inverted). */
static uint32_t crc_sw(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n >= 8) {
		uint32_t lo = crc ^ load_le32(p);
		uint32_t hi = load_le32(p + 4);
		crc = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^
		      crc_table[5][(lo >> 16) & 0xff] ^ crc_table[4][lo >> 24] ^
		      crc_table[3][hi & 0xff] ^ crc_table[2][(hi >> 8) & 0xff] ^
		      crc_table[1][(hi >> 16) & 0xff] ^ crc_table[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		crc = crc_table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return crc;
}

#ifdef CRC32C_X86
__attribute__((target("sse4.2"))) static uint32_t
crc_hw(uint32_t crc, const unsigned char *p, size_t n)
{
	while (n > 0 && ((uintptr_t)p & 7) != 0) {
		crc = _mm_crc32_u8(crc, *p++);
		n--;
	}
	uint64_t c = crc;
	/* Three interleaved streams over blocks of `block` bytes. */
	for (size_t block = CRC_HW_LONG; block >= CRC_HW_SHORT;
	     block = block == CRC_HW_LONG ? CRC_HW_SHORT : 0) {
		const uint32_t(*zeros)[256] = block == CRC_HW_LONG
			? (const uint32_t(*)[256])crc_zeros_long
			: (const uint32_t(*)[256])crc_zeros_short;
		while (n >= 3 * block) {
			uint64_t c1 = 0, c2 = 0;
			for (size_t i = 0; i < block; i += 8) {
				uint64_t w0, w1, w2;
				memcpy(&w0, p + i, sizeof w0);
				memcpy(&w1, p + block + i, sizeof w1);
				memcpy(&w2, p + 2 * block + i, sizeof w2);
				c = _mm_crc32_u64(c, w0);
				c1 = _mm_crc32_u64(c1, w1);
				c2 = _mm_crc32_u64(c2, w2);
			}
			c = crc_shift(zeros, (uint32_t)c) ^ (uint32_t)c1;
			c = crc_shift(zeros, (uint32_t)c) ^ (uint32_t)c2;
			p += 3 * block;
			n -= 3 * block;
		}
	}
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, p, sizeof w);
		c = _mm_crc32_u64(c, w);
		p += 8;
		n -= 8;
	}
	crc = (uint32_t)c;
	while (n--)
		crc = _mm_crc32_u8(crc, *p++);
	return crc;
}
#endif

uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	if (len == 0)
		return crc;
	pthread_once(&crc_once, crc_init);
#ifdef CRC32C_X86
	if (crc_use_hw)
		return ~crc_hw(~crc, buf, len);
#endif
	return ~crc_sw(~crc, buf, len);
}

uint32_t crc32c_update_portable(uint32_t crc, const void *buf, size_t len)
{
	if (len == 0)
		return crc;
	pthread_once(&crc_once, crc_init);
	return ~crc_sw(~crc, buf, len);
}

uint32_t crc32c(const void *buf, size_t len)
{
	return crc32c_update(0, buf, len);
}

bool crc32c_hw_available(void)
{
	pthread_once(&crc_once, crc_init);
	return crc_use_hw;
}
