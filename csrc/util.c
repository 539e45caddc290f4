/*
 * util.c - the clock, the cached process id and the crash points.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

/* ---- crash points ------------------------------------------------------- */

int sd_crash_countdown;

static int crash_signal = SIGKILL;

/* Crash points: see util.h; the setters are in shmdict.h. */
void sd_crash_now(void)
{
    raise(crash_signal); /* SIGSTOP: returns once continued */
}

int sd_set_crash_signal(int sig)
{
    int old = crash_signal;
    crash_signal = sig;
    return old;
}

int sd_set_crash_countdown(int n)
{
    int left = sd_crash_countdown;
    sd_crash_countdown = n;
    return left;
}

int sd_crash_points_built(void)
{
#ifdef SD_CRASH_POINTS
    return 1;
#else
    return 0;
#endif
}

/* ---- process id --------------------------------------------------------- */

_Atomic int sd_pid_cache;

static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

/* A forked child must read its own pid again. */
static void forget_pid(void)
{
    atomic_store(&sd_pid_cache, 0);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

/* getpid(), cached for sd_self_pid. */
int sd_self_pid_slow(void)
{
    pthread_once(&pid_once, register_atfork);
    int pid = (int)getpid();
    atomic_store(&sd_pid_cache, pid);
    return pid;
}

/* ---- clock -------------------------------------------------------------- */

int64_t sd_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t sd_now_ms(void)
{
    return sd_now_ns() / 1000000;
}
