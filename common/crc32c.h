/*
 * crc32c.h - CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial
 * value and final xor 0xFFFFFFFF), the checksum of iSCSI, ext4 and SCTP.
 * crc32c("123456789") == 0xE3069283.
 *
 * On x86-64 CPUs with SSE4.2 the hardware instruction is used (detected at
 * run time); elsewhere a table-driven slice-by-8 loop. Both give identical
 * results; everything here is thread-safe.
 */
#ifndef DF_CRC32C_H
#define DF_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* CRC-32C of buf[0..len). buf may be NULL when len is 0 (result 0). */
uint32_t crc32c(const void *buf, size_t len);

/*
 * Extends crc, the CRC-32C of some earlier bytes (0 for none), over
 * buf[0..len): crc32c_update(crc32c(a, la), b, lb) == CRC-32C of a then b.
 */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);

/* Same as crc32c_update() but always the portable table-driven code; for
 * tests and benchmarks. */
uint32_t crc32c_update_portable(uint32_t crc, const void *buf, size_t len);

/* True when crc32c_update() uses the CPU's CRC32 instruction. */
bool crc32c_hw_available(void);

#endif
