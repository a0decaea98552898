/*
 * sha256.h - SHA-256 (FIPS 180-4), used to check that a model file is the
 * one its model.json describes.
 *
 * Streaming use: sha256_init(), any number of sha256_update(), then
 * sha256_final(). The context is a plain value on the caller's stack; it
 * holds no resources.
 */
#ifndef DF_SHA256_H
#define DF_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define SHA256_DIGEST_LEN 32
#define SHA256_HEX_LEN 64 /* characters, without the terminating NUL */

typedef struct sha256_ctx {
	uint32_t state[8];
	uint64_t bytes;      /* message length so far */
	uint8_t block[64];   /* pending partial block */
	size_t fill;         /* bytes used in block, 0..63 */
} sha256_ctx;

void sha256_init(sha256_ctx *c);
void sha256_update(sha256_ctx *c, const void *data, size_t len);
/* Writes the digest; c must be re-initialized before reuse. */
void sha256_final(sha256_ctx *c, uint8_t digest[SHA256_DIGEST_LEN]);

/* One-shot digest of a buffer. */
void sha256_buf(const void *data, size_t len,
		uint8_t digest[SHA256_DIGEST_LEN]);

/* Lowercase hex of a digest into hex (SHA256_HEX_LEN + 1 bytes). */
void sha256_hex(const uint8_t digest[SHA256_DIGEST_LEN],
		char hex[SHA256_HEX_LEN + 1]);

/* Hex digest of a whole file, read in chunks. Errors name the path. */
df_err sha256_file(const char *path, char hex[SHA256_HEX_LEN + 1]);

#endif
