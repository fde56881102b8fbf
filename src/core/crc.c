/* crc.c — CRC-32 through zlib (the checksums of the .spqr container). */
#include "core/core.h"

#include <zlib.h>

uint32_t spqr_crc32(const void *p, uint64_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    const uint8_t *b = p;
    while (n) { /* zlib takes uInt lengths */
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, b, k);
        b += k;
        n -= k;
    }
    return (uint32_t)c;
}
