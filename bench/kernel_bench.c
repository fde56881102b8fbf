/*
 * kernel_bench.c — the decode kernels of this CPU alone, on the matrices of a .spqr file: for each
 * quantized matrix of layer 0 and the output head, one thread runs the tile kernel (fp32
 * activations, and 8-bit ones where the CPU has them) over all rows, and the activation preparation
 * (permutation, group sums, 8-bit quantization), many times; the best time of 7 rounds is printed
 * as ns per call and weights per ns. A noisy shared machine moves means, not minima.
 *
 *   make build/kernel-bench && build/kernel-bench FILE.spqr [--reps N]
 */
#include "kernels/matmul.h"
#include "kernels/qtiles.h"
#include "model/model_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double best_ns(int reps, void (*fn)(void *), void *arg) {
    double best = 1e30;
    for (int round = 0; round < 7; round++) {
        const double t0 = spqr_now();
        for (int i = 0; i < reps; i++) fn(arg);
        const double ns = (spqr_now() - t0) * 1e9 / reps;
        best = ns < best ? ns : best;
    }
    return best;
}

typedef struct {
    const spqr_linear *L;
    const spqr_cpu_kernels *k;
    float *x, *xs, *gsum, *dx, *gq, *y;
    int8_t *xq;
} job;

static void run_prep(void *p) {
    job *j = p;
    const spqr_qview *q = j->L->q;
    for (uint32_t c = 0; c < q->cols; c++) j->xs[c] = j->x[q->perm ? (uint32_t)q->perm[c] : c];
    for (uint32_t g = 0, c0 = 0; c0 < q->cols; g++, c0 += q->groupsize) {
        float s = 0;
        for (uint32_t c = c0; c < c0 + q->groupsize && c < q->cols; c++) s += j->xs[c];
        j->gsum[g] = s;
    }
    spqr_act8_quantize(j->xs, q->cols, q->groupsize, j->xq, j->dx, j->gq);
}
static void run_f32(void *p) {
    job *j = p;
    j->k->qgemv_tiles(j->L->qt, 0, (uint32_t)j->L->rows, j->xs, j->gsum, j->y);
}
static void run_act8(void *p) {
    job *j = p;
    j->k->qgemv_tiles_act8(j->L->qt, 0, (uint32_t)j->L->rows, j->xq, j->dx, j->gq, j->xs, j->y);
}

int main(int argc, char **argv) {
    if (argc < 2) { fprintf(stderr, "usage: %s FILE.spqr [--reps N]\n", argv[0]); return 2; }
    const int scale = argc > 3 && !strcmp(argv[2], "--reps") ? atoi(argv[3]) : 1;
    spqr_model *m;
    spqr_error err;
    if (spqr_model_load(argv[1], NULL, &m, &err)) { fprintf(stderr, "kernel-bench: %s\n", err.msg); return 1; }
    const spqr_cpu_kernels *k = spqr_cpu_select();
    const spqr_layer *ly = &m->layers[0];
    const struct { const char *name; const spqr_linear *L; } mats[] = {
        {"q", &ly->wq}, {"k", &ly->wk}, {"o", &ly->wo}, {"gate", &ly->w_gate}, {"down", &ly->w_down}, {"head", &m->output}};
    printf("kernels %s; ns per call (best of 7), weights per ns\n%-6s %12s %10s %10s %10s %10s %10s\n", k->name, "matrix", "shape", "prep", "fp32",
           "w/ns", "act8", "w/ns");
    double tot[3] = {0, 0, 0};
    for (size_t i = 0; i < sizeof mats / sizeof mats[0]; i++) {
        const spqr_linear *L = mats[i].L;
        if (!L->q || !L->qt || !k->qgemv_tiles) continue;
        const uint32_t cols = (uint32_t)L->cols, G = (uint32_t)L->q->lay.groups;
        job j = {L, k, malloc(cols * 4), malloc(cols * 4), malloc(G * 4), malloc(G * 4), malloc(G * 4), malloc((size_t)L->rows * 4), malloc(cols)};
        uint64_t rs = 42;
        for (uint32_t c = 0; c < cols; c++) { rs = rs * 6364136223846793005ULL + 1; j.x[c] = (float)((rs >> 40) & 0xffff) / 32768.0f - 1.0f; }
        run_prep(&j);
        const int reps = scale * (int)(2e7 / ((double)L->rows * cols) + 1);
        const double tp = best_ns(reps, run_prep, &j), tf = best_ns(reps, run_f32, &j);
        const double ta = k->qgemv_tiles_act8 ? best_ns(reps, run_act8, &j) : 0;
        const double w = (double)L->rows * cols;
        printf("%-6s %5dx%-6d %10.0f %10.0f %10.2f %10.0f %10.2f\n", mats[i].name, L->rows, L->cols, tp, tf, w / tf, ta, ta ? w / ta : 0);
        tot[0] += tp; tot[1] += tf; tot[2] += ta;
        free(j.x); free(j.xs); free(j.gsum); free(j.dx); free(j.gq); free(j.y); free(j.xq);
    }
    printf("%-6s %12s %10.0f %10.0f %10s %10.0f\n", "sum", "", tot[0], tot[1], "", tot[2]);
    spqr_model_free(m);
    return 0;
}
