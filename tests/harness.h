/*
 * harness.h — the test framework: plain C, one binary, every test a function.
 * A test reports failures with CHECK*; a test that cannot run (assets absent) calls SKIP and
 * returns. main.c prints one line per test and the closing "N passed, N failed, N skipped".
 */
#ifndef SPQR_TEST_HARNESS_H
#define SPQR_TEST_HARNESS_H

#include <math.h>
#include <stdio.h>

typedef struct th_test {
    const char *name;
    void (*fn)(void);
} th_test;

void th_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void th_skip(const char *why);
/* Root of the shared assets: $SPQR_SHARED, else ../shared relative to the working directory.
 * Returns NULL (and the test should SKIP) when the folder is absent. */
const char *th_shared(void);
/* th_shared() joined with a relative path, in a static buffer overwritten on each call. */
const char *th_asset(const char *rel);
/* A fresh temporary directory for this test (removed at exit). */
const char *th_tmpdir(void);

#define CHECK(cond) do { if (!(cond)) th_fail(__FILE__, __LINE__, "%s", #cond); } while (0)
#define CHECKF(cond, ...) do { if (!(cond)) th_fail(__FILE__, __LINE__, __VA_ARGS__); } while (0)
#define CHECK_OK(expr, errp) \
    do { spqr_status s_ = (expr); if (s_ != SPQR_OK) th_fail(__FILE__, __LINE__, "%s -> %s: %s", #expr, spqr_status_str(s_), (errp)->msg); } while (0)
#define SKIP(why) do { th_skip(why); return; } while (0)
#define NEED_SHARED() do { if (!th_shared()) SKIP("shared assets not found (set SPQR_SHARED)"); } while (0)

#endif
