/*
 * core.h — internal helpers shared by every module: error reporting, overflow-checked sizes,
 * half-precision conversion, read-only file mappings, timing.
 */
#ifndef SPQR_CORE_H
#define SPQR_CORE_H

#include "spqr.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__GNUC__)
#define SPQR_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define SPQR_PRINTF(a, b)
#endif

/* Sets *err (if not NULL) to `code` and a formatted message; returns `code`. */
spqr_status spqr_set_err(spqr_error *err, spqr_status code, const char *fmt, ...) SPQR_PRINTF(3, 4);

/* a * b and a + b with overflow detection: return false on overflow. */
static inline bool spqr_mul_ok(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_mul_overflow(a, b, out); }
static inline bool spqr_add_ok(uint64_t a, uint64_t b, uint64_t *out) { return !__builtin_add_overflow(a, b, out); }

/* Allocation that fails cleanly (returns NULL) on size overflow. Zeroed. */
void *spqr_calloc_array(size_t n, size_t size);
/* 64-byte aligned allocation of n * size bytes (overflow-checked), zeroed; free with spqr_aligned_free. */
void *spqr_aligned_alloc(size_t n, size_t size);
void spqr_aligned_free(void *p);
char *spqr_strdup(const char *s);

/* IEEE half and bfloat16 to float (exact). */
static inline float spqr_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
float spqr_f16_to_f32(uint16_t h);

/* Read-only mapping of a whole file. */
typedef struct spqr_map {
    char *path;
    const uint8_t *data;
    uint64_t size;
} spqr_map;

spqr_status spqr_map_open(spqr_map *m, const char *path, spqr_error *err);
void spqr_map_close(spqr_map *m);
/* Reads a whole (small) file into a NUL-terminated heap buffer; *len excludes the NUL. */
spqr_status spqr_read_file(const char *path, uint64_t max_size, char **data, size_t *len, spqr_error *err);

/* Path helpers: dir of `path` (heap), join (heap), is-directory, exists. */
char *spqr_path_dir(const char *path);
char *spqr_path_join(const char *dir, const char *name);
bool spqr_path_is_dir(const char *path);
bool spqr_path_exists(const char *path);

/* Growable string for building JSON; on allocation failure `oom` is set and appends are dropped. */
typedef struct spqr_sb {
    char *s;
    size_t n, cap;
    bool oom;
} spqr_sb;
void spqr_sb_printf(spqr_sb *b, const char *fmt, ...) SPQR_PRINTF(2, 3);
/* Appends s as a JSON string literal (quoted, escaped). */
void spqr_sb_json_str(spqr_sb *b, const char *s);
void spqr_sb_free(spqr_sb *b);

/* CRC-32 (zlib's polynomial) of n bytes, any n. */
uint32_t spqr_crc32(const void *p, uint64_t n);

/* Monotonic seconds. */
double spqr_now(void);

#endif
