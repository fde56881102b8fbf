/* cpu.c — run-time choice of the kernels; see cpu.h. */
#include "kernels/cpu.h"

#include <stdlib.h>
#include <string.h>

#if !defined(__x86_64__)
const spqr_cpu_kernels *spqr_cpu_kernels_avx2(void) { return NULL; }
const spqr_cpu_kernels *spqr_cpu_kernels_avx512(void) { return NULL; }
#endif
#if !defined(__aarch64__)
const spqr_cpu_kernels *spqr_cpu_kernels_neon(void) { return NULL; }
#endif

const spqr_cpu_kernels *spqr_cpu_select(void) {
    const spqr_cpu_kernels *best = spqr_cpu_kernels_avx512();
    if (!best) best = spqr_cpu_kernels_avx2();
    if (!best) best = spqr_cpu_kernels_neon();
    if (!best) best = spqr_cpu_kernels_generic();
    const char *want = getenv("SPQR_CPU");
    if (want && *want) {
        const spqr_cpu_kernels *k = !strcmp(want, "generic") ? spqr_cpu_kernels_generic()
                                    : !strcmp(want, "avx2")  ? spqr_cpu_kernels_avx2()
                                    : !strcmp(want, "avx512") ? spqr_cpu_kernels_avx512()
                                    : !strcmp(want, "neon")   ? spqr_cpu_kernels_neon()
                                                              : NULL;
        if (k) best = k;
    }
    return best;
}
