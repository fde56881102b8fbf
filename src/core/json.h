/*
 * json.h — a strict RFC 8259 JSON reader (DOM) for config.json, tokenizer.json, safetensors headers.
 * Hostile input is expected: depth is limited, numbers keep their text so integers are read exactly
 * with overflow checks, strings are unescaped (\uXXXX with surrogate pairs) into UTF-8.
 */
#ifndef SPQR_JSON_H
#define SPQR_JSON_H

#include "core/core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum spqr_json_type {
    SPQR_JSON_NULL,
    SPQR_JSON_BOOL,
    SPQR_JSON_NUMBER,
    SPQR_JSON_STRING,
    SPQR_JSON_ARRAY,
    SPQR_JSON_OBJECT,
} spqr_json_type;

typedef struct spqr_json spqr_json;
struct spqr_json {
    spqr_json_type type;
    bool boolean;
    double number;     /* NUMBER */
    char *str;         /* STRING: unescaped, NUL-terminated (may contain NUL: use len); NUMBER: its text */
    size_t len;        /* STRING/NUMBER: bytes in str */
    size_t n;          /* ARRAY/OBJECT: number of items / members */
    spqr_json *items;  /* ARRAY: n values; OBJECT: n values, keys in `keys` */
    spqr_json *keys;   /* OBJECT: n STRING keys, in file order */
};

/* Parses len bytes. On error returns NULL and writes "line L, column C: reason" into msg. */
spqr_json *spqr_json_parse(const char *text, size_t len, char *msg, size_t msg_cap);
void spqr_json_free(spqr_json *j);
/* Reads and parses a file of at most max_size bytes; errors name the file. */
spqr_status spqr_json_read_file(const char *path, uint64_t max_size, spqr_json **out, spqr_error *err);

/* Member `key` of an object (the last one if repeated); NULL if absent or j is not an object. */
const spqr_json *spqr_json_get(const spqr_json *j, const char *key);
/* Exact integer readers: false if not a NUMBER holding an integer in range. */
bool spqr_json_u64(const spqr_json *j, uint64_t *out);
bool spqr_json_i64(const spqr_json *j, int64_t *out);
/* Any NUMBER as double; false otherwise. */
bool spqr_json_num(const spqr_json *j, double *out);
/* STRING value or NULL. */
const char *spqr_json_str(const spqr_json *j);

#endif
