/* main.c — runs every test suite, or those whose name contains argv[1]. */
#include "harness.h"
#include "spqr.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Every suite is a NULL-terminated array defined in its own file. */
extern const th_test suite_core[];
extern const th_test suite_tokenizer[];
extern const th_test suite_loaders[];
extern const th_test suite_hostile[];
extern const th_test suite_model[];
extern const th_test suite_quant[];
extern const th_test suite_kernels[];
extern const th_test suite_kernels_random[];

#ifdef SPQR_TESTS_KERNELS_ONLY /* the cross-compiled kernel check (make test-neon): no BLAS needed */
static const th_test *const suites[] = {suite_kernels_random};
#else
static const th_test *const suites[] = {suite_core,  suite_tokenizer, suite_loaders, suite_hostile,
                                        suite_model, suite_quant,     suite_kernels, suite_kernels_random};
#endif

static int cur_failures, cur_skipped;
static char skip_reason[256];
static char tmp_root[256];

void th_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    FAIL %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    cur_failures++;
}

void th_skip(const char *why) {
    cur_skipped = 1;
    snprintf(skip_reason, sizeof skip_reason, "%s", why);
}

const char *th_shared(void) {
    static char root[1024];
    const char *env = getenv("SPQR_SHARED");
    snprintf(root, sizeof root, "%s", env && *env ? env : "../shared");
    struct stat st;
    return (stat(root, &st) == 0 && S_ISDIR(st.st_mode)) ? root : NULL;
}

const char *th_asset(const char *rel) {
    static char buf[2048];
    const char *r = th_shared();
    snprintf(buf, sizeof buf, "%s/%s", r ? r : "../shared", rel);
    return buf;
}

const char *th_tmpdir(void) {
    if (!tmp_root[0]) {
        snprintf(tmp_root, sizeof tmp_root, "/tmp/spqr-test-XXXXXX");
        if (!mkdtemp(tmp_root)) { perror("mkdtemp"); exit(2); }
    }
    return tmp_root;
}

static void cleanup(void) {
    if (tmp_root[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_root);
        if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp_root);
    }
}

int main(int argc, char **argv) {
#ifndef SPQR_TESTS_KERNELS_ONLY
    /* OpenBLAS's generic kernels on a CPU newer than it: re-execute with the right ones (spqr.h) */
    const char *want = getenv("OPENBLAS_CORETYPE") ? NULL : spqr_blas_core_advice();
    if (want) {
        setenv("OPENBLAS_CORETYPE", want, 1);
        execv("/proc/self/exe", argv);
    }
#endif
    const char *filter = argc > 1 ? argv[1] : NULL;
    atexit(cleanup);
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!th_shared())
        printf("WARNING: shared assets not found at %s: tests that need them are SKIPPED\n",
               getenv("SPQR_SHARED") ? getenv("SPQR_SHARED") : "../shared (set SPQR_SHARED)");
    int passed = 0, failed = 0, skipped = 0;
    for (size_t s = 0; s < sizeof suites / sizeof suites[0]; s++) {
        for (const th_test *t = suites[s]; t->name; t++) {
            if (filter && !strstr(t->name, filter)) continue;
            cur_failures = 0;
            cur_skipped = 0;
            t->fn();
            if (cur_failures) {
                printf("FAIL  %s\n", t->name);
                failed++;
            } else if (cur_skipped) {
                printf("SKIP  %s (%s)\n", t->name, skip_reason);
                skipped++;
            } else {
                printf("ok    %s\n", t->name);
                passed++;
            }
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    return failed ? 1 : 0;
}
