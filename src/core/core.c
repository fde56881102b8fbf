/* core.c — error messages, allocation, half floats, file mapping, paths, time. */
#include "core.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

const char *spqr_status_str(spqr_status s) {
    switch (s) {
    case SPQR_OK: return "ok";
    case SPQR_E_IO: return "i/o error";
    case SPQR_E_FORMAT: return "format error";
    case SPQR_E_UNSUPPORTED: return "unsupported";
    case SPQR_E_NOMEM: return "out of memory";
    case SPQR_E_ARG: return "invalid argument";
    case SPQR_E_RANGE: return "out of range";
    }
    return "unknown status";
}

void spqr_free(void *p) { free(p); }

spqr_status spqr_set_err(spqr_error *err, spqr_status code, const char *fmt, ...) {
    if (err) {
        err->code = code;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        /* one line: names and strings taken from files may hold control characters */
        for (char *p = err->msg; *p; p++)
            if ((unsigned char)*p < 0x20 || *p == 0x7f) *p = '?';
    }
    return code;
}

void *spqr_calloc_array(size_t n, size_t size) {
    uint64_t total;
    if (!spqr_mul_ok(n, size, &total) || total > (uint64_t)SIZE_MAX) return NULL;
    return calloc(n ? n : 1, size ? size : 1);
}

void *spqr_aligned_alloc(size_t n, size_t size) {
    uint64_t total;
    if (!spqr_mul_ok(n, size, &total) || total > (uint64_t)SIZE_MAX - 64) return NULL;
    total = (total + 63) & ~(uint64_t)63;
    if (total == 0) total = 64;
    void *p = NULL;
    if (posix_memalign(&p, 64, (size_t)total) != 0) return NULL;
    memset(p, 0, (size_t)total);
    return p;
}

void spqr_aligned_free(void *p) { free(p); }

char *spqr_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

float spqr_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    uint32_t u;
    if (exp == 0) {
        if (man == 0) {
            u = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (man << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

spqr_status spqr_map_open(spqr_map *m, const char *path, spqr_error *err) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO must not block: rejected below */
    if (fd < 0) return spqr_set_err(err, SPQR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return spqr_set_err(err, SPQR_E_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return spqr_set_err(err, SPQR_E_IO, "%s: not a regular file", path);
    }
    m->size = (uint64_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, (size_t)m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            return spqr_set_err(err, SPQR_E_IO, "%s: cannot mmap: %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    m->path = spqr_strdup(path);
    if (!m->path) {
        spqr_map_close(m);
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path);
    }
    return SPQR_OK;
}

void spqr_map_close(spqr_map *m) {
    if (!m) return;
    if (m->data && m->size) munmap((void *)m->data, (size_t)m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

spqr_status spqr_read_file(const char *path, uint64_t max_size, char **data, size_t *len, spqr_error *err) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0) return spqr_set_err(err, SPQR_E_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return spqr_set_err(err, SPQR_E_IO, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > max_size) {
        close(fd);
        return spqr_set_err(err, SPQR_E_FORMAT, "%s: file is %lld bytes, more than the %llu allowed", path,
                            (long long)st.st_size, (unsigned long long)max_size);
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) {
        close(fd);
        return spqr_set_err(err, SPQR_E_NOMEM, "%s: out of memory", path);
    }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            free(buf);
            close(fd);
            return spqr_set_err(err, SPQR_E_IO, "%s: short read", path);
        }
        got += (size_t)r;
    }
    close(fd);
    buf[n] = 0;
    *data = buf;
    *len = n;
    return SPQR_OK;
}

char *spqr_path_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return spqr_strdup(".");
    if (slash == path) return spqr_strdup("/");
    size_t n = (size_t)(slash - path);
    char *d = malloc(n + 1);
    if (!d) return NULL;
    memcpy(d, path, n);
    d[n] = 0;
    return d;
}

char *spqr_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

bool spqr_path_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool spqr_path_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

void spqr_sb_printf(spqr_sb *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->n : NULL, b->s ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) { b->oom = true; return; }
        if (b->s && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t nc = (b->cap ? b->cap : 256);
        while (nc <= b->n + (size_t)k) nc *= 2;
        char *p = realloc(b->s, nc);
        if (!p) { b->oom = true; return; }
        b->s = p;
        b->cap = nc;
    }
}

void spqr_sb_json_str(spqr_sb *b, const char *s) {
    spqr_sb_printf(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') spqr_sb_printf(b, "\\%c", *p);
        else if (*p < 0x20) spqr_sb_printf(b, "\\u%04x", *p);
        else spqr_sb_printf(b, "%c", *p);
    }
    spqr_sb_printf(b, "\"");
}

void spqr_sb_free(spqr_sb *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

double spqr_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
