/* writer.c — see writer.h. */
#include "format/writer.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static uint64_t align_up(uint64_t x) { return (x + SPQR_ALIGN - 1) & ~(uint64_t)(SPQR_ALIGN - 1); }

/* Writes n bytes, then zeros up to `to` (the next section's offset). */
static bool put(int fd, uint64_t *pos, const void *p, uint64_t n, uint64_t to) {
    static const uint8_t zeros[SPQR_ALIGN];
    const uint8_t *b = p;
    while (n) {
        ssize_t k = write(fd, b, n > (1u << 30) ? (1u << 30) : (size_t)n);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        b += k;
        n -= (uint64_t)k;
        *pos += (uint64_t)k;
    }
    while (*pos < to) {
        uint64_t z = to - *pos < SPQR_ALIGN ? to - *pos : SPQR_ALIGN;
        ssize_t k = write(fd, zeros, (size_t)z);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return false;
        *pos += (uint64_t)k;
    }
    return true;
}

spqr_status spqr_file_write(const char *path, const char *meta_json, const void *tok, uint64_t tok_size, spqr_wtensor *ts, uint32_t n,
                            uint64_t *file_size, spqr_error *err) {
    spqr_file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, SPQR_FILE_MAGIC, 8);
    h.version = SPQR_FORMAT_VERSION;
    h.n_tensors = n;
    h.meta_off = sizeof h;
    h.meta_size = strlen(meta_json);
    h.tok_off = align_up(h.meta_off + h.meta_size);
    h.tok_size = tok ? tok_size : 0;
    h.dir_off = align_up(h.tok_off + h.tok_size);
    uint64_t off = align_up(h.dir_off + (uint64_t)n * sizeof(spqr_file_tensor));
    spqr_file_tensor *dir = calloc(n ? n : 1, sizeof *dir);
    if (!dir) return spqr_set_err(err, SPQR_E_NOMEM, "out of memory");
    for (uint32_t i = 0; i < n; i++) {
        dir[i] = ts[i].entry;
        dir[i].data_off = off;
        dir[i].data_crc = spqr_crc32(ts[i].data, dir[i].data_size);
        off = align_up(off + dir[i].data_size);
    }
    h.file_size = off;
    h.meta_crc = spqr_crc32(meta_json, h.meta_size);
    h.tok_crc = spqr_crc32(tok, h.tok_size);
    h.dir_crc = spqr_crc32(dir, (uint64_t)n * sizeof *dir);
    h.header_crc = spqr_crc32(&h, offsetof(spqr_file_header, header_crc));

    size_t pl = strlen(path);
    char *tmp = malloc(pl + 32);
    if (!tmp) { free(dir); return spqr_set_err(err, SPQR_E_NOMEM, "out of memory"); }
    snprintf(tmp, pl + 32, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        spqr_status st = spqr_set_err(err, SPQR_E_IO, "%s: cannot create: %s", tmp, strerror(errno));
        free(tmp);
        free(dir);
        return st;
    }
    uint64_t pos = 0;
    bool ok = put(fd, &pos, &h, sizeof h, h.meta_off) && put(fd, &pos, meta_json, h.meta_size, h.tok_off) &&
              put(fd, &pos, tok, h.tok_size, h.dir_off) && put(fd, &pos, dir, (uint64_t)n * sizeof *dir, n ? dir[0].data_off : off);
    for (uint32_t i = 0; ok && i < n; i++) ok = put(fd, &pos, ts[i].data, dir[i].data_size, i + 1 < n ? dir[i + 1].data_off : off);
    int e = errno;
    if (ok && fsync(fd) != 0) { ok = false; e = errno; }
    if (close(fd) != 0 && ok) { ok = false; e = errno; }
    if (ok && rename(tmp, path) != 0) { ok = false; e = errno; }
    spqr_status st = SPQR_OK;
    if (!ok) {
        unlink(tmp);
        st = spqr_set_err(err, SPQR_E_IO, "%s: write failed: %s", path, strerror(e));
    } else {
        char *dname = spqr_path_dir(path);
        int dfd = dname ? open(dname, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
        if (dfd >= 0) { fsync(dfd); close(dfd); } /* make the rename durable */
        free(dname);
        if (file_size) *file_size = off;
    }
    free(tmp);
    free(dir);
    return st;
}

void spqr_config_json(spqr_sb *b, const spqr_config *c, int sliding_window) {
    static const char *scal[] = {"none", "linear", "llama3"};
    spqr_sb_printf(b, "{\"arch\":");
    spqr_sb_json_str(b, c->arch);
    spqr_sb_printf(b,
                   ",\"source\":\"%s\",\"dim\":%d,\"hidden_dim\":%d,\"n_layers\":%d,\"n_heads\":%d,\"n_kv_heads\":%d,\"head_dim\":%d,"
                   "\"vocab_size\":%d,\"max_seq_len\":%d,\"norm_eps\":%.9g,\"rope_theta\":%.9g,\"rope_style\":\"%s\",\"rope_scaling\":\"%s\","
                   "\"rope_factor\":%.9g,\"rope_low_freq_factor\":%.9g,\"rope_high_freq_factor\":%.9g,\"rope_orig_max_pos\":%d,"
                   "\"tied_embeddings\":%s,\"attn_bias\":%s,\"bos_id\":%d,\"eos_id\":%d,\"sliding_window\":%d}",
                   c->source == SPQR_SOURCE_LLAMA2C ? "llama2c" : "hf", c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                   c->head_dim, c->vocab_size, c->max_seq_len, c->norm_eps, c->rope_theta,
                   c->rope_style == SPQR_ROPE_INTERLEAVED ? "interleaved" : "half", scal[c->rope_scaling], c->rope_factor,
                   c->rope_low_freq_factor, c->rope_high_freq_factor, c->rope_orig_max_pos, c->tied_embeddings ? "true" : "false",
                   c->attn_bias ? "true" : "false", c->bos_id, c->eos_id, sliding_window);
}
