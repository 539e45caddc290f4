/*
 * util.h - what every unit may use and that knows nothing of dicts: branch
 * hints, the clock, the cached process id, and the crash points the crash
 * tests die at.
 */
#ifndef SHMDICT_UTIL_H
#define SHMDICT_UTIL_H

#include <stdatomic.h>
#include <stdint.h>

#include "shmdict.h"

#define SD_LIKELY(x) __builtin_expect(!!(x), 1)
#define SD_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* ---- crash points ------------------------------------------------------- */

/* Test hook: when non-zero, every crash point counts it down and the
 * process kills itself with SIGKILL when it reaches zero. Tests use it to
 * die at each step of a write in turn and check the repair. Built only
 * with SD_CRASH_POINTS (development and CI builds, and the C tests): one
 * load and a branch per point, some 20 of them per write, which a release
 * build does without. A point is no barrier: the code that needs one has
 * COMPILER_BARRIER beside it. */
extern int sd_crash_countdown;

void sd_crash_now(void);

#ifdef SD_CRASH_POINTS
#define SD_CRASH_POINT()                                                      \
    do {                                                                      \
        if (SD_UNLIKELY(sd_crash_countdown) && --sd_crash_countdown == 0)     \
            sd_crash_now();                                                   \
    } while (0)
#else
#define SD_CRASH_POINT() ((void)0)
#endif

/* ---- process id and clock ----------------------------------------------- */

/* getpid(), cached and refreshed in a forked child. */
extern _Atomic int sd_pid_cache; /* 0 until read, and in a fresh child */
int sd_self_pid_slow(void);

static inline int sd_self_pid(void)
{
    int pid = atomic_load_explicit(&sd_pid_cache, memory_order_relaxed);
    return SD_LIKELY(pid) ? pid : sd_self_pid_slow();
}

/* CLOCK_MONOTONIC in ns and in ms. */
int64_t sd_now_ns(void);
int64_t sd_now_ms(void);

/* A pause for a spin loop. */
static inline void sd_cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

#endif /* SHMDICT_UTIL_H */
