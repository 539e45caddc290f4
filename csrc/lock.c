/*
 * lock.c - a stripe's robust, process-shared mutex: its set-up, and the
 * slow path of taking it (spin, then timed waits), with the spans that
 * give all the waits of one call one timeout.
 *
 * Waiting is bounded: the lock is taken with pthread_mutex_timedlock, so a
 * lock word damaged into "held by some live thread" costs the caller one
 * timeout, not its life. The wait goes in slices of 20 ms, and between
 * slices it asks the handle's interrupt hook whether to stop (the binding
 * runs Python's signal handlers there, so Ctrl-C ends a wait). That hook
 * is called only while the waiting thread holds no stripe's lock: code
 * outside the core may do anything, including calls on this dict that
 * need a lock this thread holds. A batch kept waiting while it holds
 * stripes lets them go after one slice instead (see lock_stripes in batch.c).
 * All the waits of one call share one timeout (spans, below).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <time.h>

#include "lock.h"

/* ---- mutex set-up ------------------------------------------------------- */

static int init_mutex(pthread_mutex_t *m)
{
    pthread_mutexattr_t a;
    int rc = pthread_mutexattr_init(&a);
    if (rc)
        return rc;
    rc = pthread_mutexattr_setpshared(&a, PTHREAD_PROCESS_SHARED);
    if (!rc)
        rc = pthread_mutexattr_setrobust(&a, PTHREAD_MUTEX_ROBUST);
    if (!rc)
        rc = pthread_mutex_init(m, &a);
    pthread_mutexattr_destroy(&a);
    return rc;
}

void sd_lock_init(sd_lock *l)
{
    /* The page is fresh (zero) and not yet visible to anyone. */
    (void)init_mutex(&l->mutex);
    ST(&l->seq, UINT64_C(0));
    ST(&l->log_n, 0u);
    ST(&l->flush_pending, 0u);
}

/* glibc keeps the mutex type in a field that never changes after init. A
 * damaged value could send glibc down a path that asserts, so we compare it
 * with a freshly made mutex's before every lock. */
int sd_mutex_kind_of_new(void)
{
#ifdef __GLIBC__
    pthread_mutex_t m;
    memset(&m, 0, sizeof m);
    if (init_mutex(&m))
        return -1;
    int kind = m.__data.__kind;
    pthread_mutex_destroy(&m);
    return kind;
#else
    return -1;
#endif
}

/* Whether the mutex's lock word reads as free: a plain load, which leaves
 * the holder's cache line shared where a trylock would take it away. Where
 * the word can't be read (not glibc), it always says yes. */
static bool mutex_looks_free(const sd_stripe *s)
{
#ifdef __GLIBC__
    return __atomic_load_n(&s->lock->mutex.__data.__lock, __ATOMIC_RELAXED) ==
           0;
#else
    (void)s;
    return true;
#endif
}

/* ---- waiting ------------------------------------------------------------ */

/* The span this thread is in, if any: what is left of the lock timeout of
 * the call it makes (see sd_span_enter). Thread-local, so that the core
 * functions a span brackets need no extra argument; only a wait that
 * sleeps, and the span calls themselves, touch it. */
static _Thread_local struct {
    bool on;
    int64_t left_ns; /* < 0: no limit */
} span;

enum { SPAN_STARTED = 1, SPAN_INNER = 2, SPAN_CHARGED = 4 };

/* A stripe's lock timeout in ns: 0 don't wait, -1 no limit. */
static int64_t timeout_ns(const sd_stripe *s)
{
    int64_t ms = s->lock_timeout_ms;
    if (ms < 0 || ms > SD_MAX_TIMEOUT_MS)
        return -1;
    return ms * 1000000;
}

/* Spans: see shmdict.h. What is left of the span lives in a thread-local,
 * so the waits it brackets need no extra argument. */
void sd_span_enter(const sd_handle *d, sd_span *s)
{
    if (span.on) {
        s->state |= SPAN_INNER; /* the outer span counts */
        return;
    }
    if (!(s->state & SPAN_STARTED)) {
        int64_t all = timeout_ns(&d->stripes[0]);
        int64_t spent = s->state & SPAN_CHARGED ? s->left_ns : 0;
        s->left_ns = all < 0 ? -1 : all > spent ? all - spent : 0;
        s->state = SPAN_STARTED;
    }
    span.on = true;
    span.left_ns = s->left_ns;
}

void sd_span_charge(sd_span *s, int64_t spent_ns)
{
    s->left_ns = spent_ns; /* taken off the timeout at the first enter */
    s->state = SPAN_CHARGED;
}

void sd_span_leave(sd_span *s)
{
    if (s->state & SPAN_INNER) {
        s->state &= ~SPAN_INNER;
        return;
    }
    s->left_ns = span.left_ns;
    span.on = false;
}

/* How long the next wait may last: what the span has left, or else the
 * stripe's timeout. */
static int64_t wait_budget(const sd_stripe *s)
{
    return span.on ? span.left_ns : timeout_ns(s);
}

/* Whether the interrupt hook says stop. What the hook runs (a Python
 * signal handler, say) is a call of its own, so the span is put aside
 * meanwhile: calls made there have their own timeouts. */
static bool interrupted(const sd_stripe *s, const sd_wait *w)
{
    if (!s->interrupted)
        return false;
    bool on = span.on;
    int64_t left = span.left_ns;
    span.on = false;
    int stop = s->interrupted(w->token);
    span.on = on;
    span.left_ns = left;
    return stop != 0;
}

/* Wait for the mutex in short slices, up to `budget` ns (< 0: no limit).
 * Sleeping in one long futex wait is not safe with robust mutexes: if the
 * waiter an unlock wakes is killed before it takes the lock, and a third
 * process takes it on the fast path before the kernel cleans up the dead
 * one, the lock word loses its waiters bit and nobody wakes the rest
 * while the lock is free again. A slice bounds that stall. Between slices
 * the wait asks the interrupt hook whether to stop, or, if the caller
 * holds other stripes (w->holding), gives up: no code outside the core may
 * run then, and holding them while stuck would only stall others.
 * Returns 0, an errno value, SD_WAIT_INTERRUPTED or SD_WAIT_GAVE_UP. */

#define WAIT_SLICE_NS INT64_C(20000000) /* 20 ms */
/* ThreadSanitizer doesn't intercept pthread_mutex_clocklock (it would take
 * the mutex for unlocked): give it timedlock. */
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SD_TSAN 1
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define SD_TSAN 1
#endif
#if defined(__GLIBC__) && defined(__GLIBC_PREREQ) && !defined(SD_TSAN)
#if __GLIBC_PREREQ(2, 30)
#define HAVE_CLOCKLOCK 1
#endif
#endif

static int timed_lock(sd_stripe *s, pthread_mutex_t *m, const sd_wait *w,
                      int64_t budget)
{
    int64_t end = budget < 0 ? INT64_MAX : sd_now_ns() + budget;
    int rc;
    for (bool first = true;; first = false) {
        int64_t now = sd_now_ns();
        if (now >= end) {
            rc = ETIMEDOUT;
            break;
        }
        if (!first && w->holding) {
            rc = SD_WAIT_GAVE_UP;
            break;
        }
        if (!first && interrupted(s, w)) {
            rc = SD_WAIT_INTERRUPTED;
            break;
        }
        int64_t wait = end - now < WAIT_SLICE_NS ? end - now : WAIT_SLICE_NS;
        struct timespec ts;
#ifdef HAVE_CLOCKLOCK
        /* The monotonic clock: a step of the wall clock can't stretch a
         * slice (and so delay an interrupt). */
        clock_gettime(CLOCK_MONOTONIC, &ts);
#else
        clock_gettime(CLOCK_REALTIME, &ts);
#endif
        int64_t ns = ts.tv_nsec + wait;
        ts.tv_sec += (time_t)(ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
#ifdef HAVE_CLOCKLOCK
        rc = pthread_mutex_clocklock(m, CLOCK_MONOTONIC, &ts);
#else
        rc = pthread_mutex_timedlock(m, &ts);
#endif
        if (rc != ETIMEDOUT)
            break;
    }
    if (span.on && budget >= 0) {
        int64_t left = end - sd_now_ns();
        span.left_ns = left > 0 ? left : 0;
    }
    return rc;
}

int sd_lock_wait(sd_stripe *s, sd_wait *w, int64_t *waited_ns, int rc)
{
    sd_lock *l = s->lock;
    /* Spin a little before sleeping, reading the lock word and trying
     * only when it reads free: each trylock is a locked write that pulls the
     * line to this core, and the holder, which stores to that line (seq,
     * log_n, the unlock) several times per write, would have to fetch it
     * back each time. */
    for (int spin = 0; rc == EBUSY && spin < 200; spin++) {
        sd_cpu_relax();
        if (mutex_looks_free(s))
            rc = pthread_mutex_trylock(&l->mutex);
    }
    if (rc == EBUSY) {
        atomic_fetch_add_explicit(&l->lock_waits, 1, memory_order_relaxed);
        int64_t budget = wait_budget(s);
        if (budget != 0) { /* 0: the tries above were all */
            if (!w->blocked && s->block_begin) {
                w->token = s->block_begin();
                w->blocked = true;
            }
            int64_t start = sd_now_ns();
            rc = timed_lock(s, &l->mutex, w, budget);
            *waited_ns = sd_now_ns() - start;
        }
    }
    return rc;
}
