/*
 * safetensors.c — reads one .safetensors file into the model's tensor table.
 *
 *   [u64 N, little-endian][N bytes of JSON header][data ...]
 *   header: { "__metadata__": {...}?, "<name>": {"dtype": "BF16", "shape": [d0, ...],
 *             "data_offsets": [begin, end]}, ... }   offsets relative to the data section
 *
 * Everything is checked: N against the file size, the header as strict JSON, dtype, shape (each
 * dimension and their product, overflow-checked), end - begin == elements x dtype size, end within
 * the data section, and tensors not overlapping.
 */
#include "core/json.h"
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>

#define SAFETENSORS_MAX_HEADER (100u << 20) /* the reference implementation's limit */

static bool parse_dtype(const char *s, spqr_dtype *dt) {
    if (!s) return false;
    if (!strcmp(s, "F32")) *dt = SPQR_DTYPE_F32;
    else if (!strcmp(s, "F16")) *dt = SPQR_DTYPE_F16;
    else if (!strcmp(s, "BF16")) *dt = SPQR_DTYPE_BF16;
    else return false;
    return true;
}

typedef struct { uint64_t begin, end; int idx; } span;

static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin ? 1 : 0;
}

spqr_status spqr_load_safetensors(spqr_model *m, const char *path, spqr_error *err) {
    int fi;
    spqr_status st = spqr_model_add_map(m, path, &fi, err);
    if (st) return st;
    const spqr_map *map = &m->maps[fi];
    if (map->size < 8) return spqr_set_err(err, SPQR_E_FORMAT, "%s: %llu bytes, too short for a safetensors header", path, (unsigned long long)map->size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | map->data[i];
    if (n > map->size - 8)
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: header length %llu runs past the end of the file (%llu bytes)", path,
                            (unsigned long long)n, (unsigned long long)map->size);
    if (n > SAFETENSORS_MAX_HEADER) return spqr_set_err(err, SPQR_E_FORMAT, "%s: header length %llu is over 100 MiB", path, (unsigned long long)n);
    const uint64_t data_start = 8 + n, data_size = map->size - data_start;
    char jmsg[256];
    spqr_json *h = spqr_json_parse((const char *)map->data + 8, (size_t)n, jmsg, sizeof jmsg);
    if (!h) return spqr_set_err(err, SPQR_E_FORMAT, "%s: header is not valid JSON: %s", path, jmsg);
    if (h->type != SPQR_JSON_OBJECT) {
        spqr_json_free(h);
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: header is not a JSON object", path);
    }
    span *spans = spqr_calloc_array(h->n, sizeof *spans);
    if (!spans) { spqr_json_free(h); return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path); }
    size_t n_spans = 0;
    st = SPQR_OK;
    for (size_t i = 0; i < h->n && !st; i++) {
        const char *name = h->keys[i].str;
        const spqr_json *t = &h->items[i];
        if (!strcmp(name, "__metadata__")) continue;
        if (h->keys[i].len != strlen(name) || h->keys[i].len == 0) { st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor #%zu has an empty name or one with a NUL byte", path, i); break; }
        if (t->type != SPQR_JSON_OBJECT) { st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: entry is not an object", path, name); break; }
        spqr_dtype dt;
        const char *dts = spqr_json_str(spqr_json_get(t, "dtype"));
        if (!dts) { st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: no dtype", path, name); break; }
        if (!parse_dtype(dts, &dt)) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: tensor %s: dtype %s is not supported (F32, F16, BF16)", path, name, dts); break; }
        const spqr_json *shape = spqr_json_get(t, "shape"), *off = spqr_json_get(t, "data_offsets");
        if (!shape || shape->type != SPQR_JSON_ARRAY) { st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: shape is missing or not an array", path, name); break; }
        if (shape->n > SPQR_MAX_DIMS) { st = spqr_set_err(err, SPQR_E_UNSUPPORTED, "%s: tensor %s: %zu dimensions, at most %d supported", path, name, shape->n, SPQR_MAX_DIMS); break; }
        int64_t dims[SPQR_MAX_DIMS] = {0};
        for (size_t d = 0; d < shape->n; d++) {
            if (!spqr_json_i64(&shape->items[d], &dims[d]) || dims[d] < 0) { st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: dimension %zu is not a non-negative integer", path, name, d); break; }
        }
        if (st) break;
        uint64_t b, e;
        if (!off || off->type != SPQR_JSON_ARRAY || off->n != 2 || !spqr_json_u64(&off->items[0], &b) || !spqr_json_u64(&off->items[1], &e)) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: data_offsets must be two non-negative integers", path, name);
            break;
        }
        if (b > e || e > data_size) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: data_offsets [%llu, %llu] outside the %llu-byte data section", path, name,
                              (unsigned long long)b, (unsigned long long)e, (unsigned long long)data_size);
            break;
        }
        st = spqr_model_add_tensor(m, name, dt, (int)shape->n, dims, fi, data_start + b, err);
        if (st) break;
        const spqr_tensor *tt = &m->tensors[m->n_tensors - 1];
        if (tt->nbytes != e - b) {
            st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensor %s: shape and dtype need %llu bytes but data_offsets span %llu", path, name,
                              (unsigned long long)tt->nbytes, (unsigned long long)(e - b));
            break;
        }
        spans[n_spans++] = (span){b, e, m->n_tensors - 1};
    }
    if (!st) { /* no two tensors may share bytes */
        qsort(spans, n_spans, sizeof *spans, span_cmp);
        for (size_t i = 1; i < n_spans; i++)
            if (spans[i].begin < spans[i - 1].end) {
                st = spqr_set_err(err, SPQR_E_FORMAT, "%s: tensors %s and %s overlap", path, m->tensors[spans[i - 1].idx].name, m->tensors[spans[i].idx].name);
                break;
            }
    }
    free(spans);
    spqr_json_free(h);
    return st;
}
