/*
 * lock.c - robust locking, transactions and the undo log.
 *
 * How a change survives a crash
 * -----------------------------
 * Every writer holds the stripe's robust, process-shared mutex. Before it
 * changes any word that other processes can reach (a bucket, a chain link,
 * an allocator list head, a block header, an entry field), it appends the
 * word's offset and old value to the stripe's undo log and bumps the log's
 * count; only then does it store the new value. Bytes inside a block it has
 * just allocated are written without logging: nothing can reach them until
 * a logged store links the block in, and undoing that store makes them
 * unreachable again. The commit point is a single store: log_n = 0.
 *
 * A single-key write that changes one word of an existing entry (an incr,
 * a set of a number or a flag, a new expiry) logs nothing: it stores that
 * word in place. One aligned store is its own commit point: a crash leaves
 * it done or not done, which is all a log could give.
 *
 * If the holder dies at any instruction, the kernel marks the mutex
 * owner-dead and the next locker gets EOWNERDEAD. It then replays the undo
 * log backwards, which puts every logged word back as it was before the
 * transaction began, and marks the mutex consistent. Replaying is
 * idempotent, so a recoverer that dies mid-replay leaves a log that the
 * next one replays again. Only program order matters here: a killed
 * process's executed stores all reach memory before the kernel hands its
 * mutex on, so compiler barriers between the log and the data suffice.
 *
 * flush_all is the other change not made by logged stores (it releases whole
 * pages). It sets flush_pending first and clears it last, and a recoverer
 * that finds it set runs the flush again from the start.
 *
 * The same log gives aborts for free: an operation that finds it can't
 * finish (no room for the new value after freeing the old one) rolls its
 * own transaction back before it unlocks.
 *
 * Readers don't lock. The stripe's sequence counter is odd while a writer
 * works; a reader copies what it needs and keeps the copy only if the
 * counter was even and unchanged around the copy (see dict.c).
 *
 * Waiting is bounded: the lock is taken with pthread_mutex_timedlock, so a
 * lock word damaged into "held by some live thread" costs the caller one
 * timeout, not its life. The wait goes in slices of 20 ms, and between
 * slices it asks the handle's interrupt hook whether to stop (the binding
 * runs Python's signal handlers there, so Ctrl-C ends a wait). That hook
 * is called only while the waiting thread holds no stripe's lock: code
 * outside the core may do anything, including calls on this dict that
 * need a lock this thread holds. A batch kept waiting while it holds
 * stripes lets them go after one slice instead (see lock_parts in api.c).
 * All the waits of one call share one timeout (spans, below).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

/* ---- crash points ------------------------------------------------------ */

int sd_crash_countdown;
static int crash_signal = SIGKILL;

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

/* ---- process id ----------------------------------------------------------
 */

_Atomic int sd_pid_cache;
static pthread_once_t pid_once = PTHREAD_ONCE_INIT;

static void forget_pid(void)
{
    atomic_store(&sd_pid_cache, 0);
}

static void register_atfork(void)
{
    pthread_atfork(NULL, NULL, forget_pid);
}

int sd_self_pid_slow(void)
{
    pthread_once(&pid_once, register_atfork);
    int pid = (int)getpid();
    atomic_store(&sd_pid_cache, pid);
    return pid;
}

/* ---- clock ------------------------------------------------------------- */

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

/* ---- mutex setup -------------------------------------------------------- */

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

static bool mutex_looks_sane(const sd_part *h)
{
#ifdef __GLIBC__
    if (h->mutex_kind >= 0) {
        const volatile int *kind = &h->lock->mutex.__data.__kind;
        return *kind == h->mutex_kind;
    }
#endif
    (void)h;
    return true;
}

/* Whether the mutex's lock word reads as free: a plain load, which leaves
 * the holder's cache line shared where a trylock would take it away. Where
 * the word can't be read (not glibc), it always says yes. */
static bool mutex_looks_free(const sd_part *h)
{
#ifdef __GLIBC__
    return __atomic_load_n(&h->lock->mutex.__data.__lock, __ATOMIC_RELAXED) ==
           0;
#else
    (void)h;
    return true;
#endif
}

/* ---- undo log ----------------------------------------------------------- */

/* Only three areas of a stripe ever have words logged: its state page,
 * its bucket array and its heap. Never the lock area: a replayed record
 * that landed in the mutex we hold would corrupt glibc's robust list. */
static bool within(uint64_t off, unsigned width, uint64_t start, uint64_t len)
{
    /* Written so that no sum can wrap, whatever `off` a damaged log holds. */
    return off >= start && len >= width && off - start <= len - width;
}

static bool loggable(const sd_part *h, uint64_t off, unsigned width)
{
    return off % width == 0 &&
           (within(off, width, h->part_off, sizeof(sd_pstate)) ||
            within(off, width, h->index_off, h->nbuckets * 4) ||
            within(off, width, h->heap_off, h->heap_size));
}

void sd_tx_rollback_locked(sd_part *h)
{
    sd_lock *l = h->lock;
    uint32_t n = LD(&l->log_n);
    if (n > SD_LOG_CAP)
        n = SD_LOG_CAP; /* damaged count: replay what the log can hold */
    for (uint32_t i = n; i-- > 0;) {
        uint64_t where = LD(&l->log[i].where);
        uint64_t old = LD(&l->log[i].old);
        bool wide = where & 1;
        uint64_t off = where & ~UINT64_C(1);
        /* A damaged record must not become a wild store. */
        if (!loggable(h, off, wide ? 8 : 4))
            continue; /* a damaged record must not become a wild store */
        if (wide)
            ST((_Atomic uint64_t *)(void *)(h->base + off), old);
        else
            ST((_Atomic uint32_t *)(void *)(h->base + off), (uint32_t)old);
        COMPILER_BARRIER();
        SD_CRASH_POINT();
    }
    ST(&l->log_n, 0u);
    COMPILER_BARRIER();
}

/* Called with the mutex held after EOWNERDEAD: finish or undo what the
 * dead holder left half done. */
static void recover_locked(sd_part *h)
{
    sd_lock *l = h->lock;
    if (LD(&l->flush_pending)) {
        ST(&l->log_n, 0u);
        sd_flush_locked_raw(h); /* clears flush_pending when done */
    } else {
        sd_tx_rollback_locked(h);
    }
    atomic_fetch_add_explicit(&l->recoveries, 1, memory_order_relaxed);
}

/* ---- transactions ------------------------------------------------------- */

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
static int64_t timeout_ns(const sd_part *h)
{
    int64_t ms = h->lock_timeout_ms;
    if (ms < 0 || ms > SD_MAX_TIMEOUT_MS)
        return -1;
    return ms * 1000000;
}

void sd_span_enter(const sd_handle *d, sd_span *s)
{
    if (span.on) {
        s->state |= SPAN_INNER; /* the outer span counts */
        return;
    }
    if (!(s->state & SPAN_STARTED)) {
        int64_t all = timeout_ns(&d->parts[0]);
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
static int64_t wait_budget(const sd_part *h)
{
    return span.on ? span.left_ns : timeout_ns(h);
}

/* Whether the interrupt hook says stop. What the hook runs (a Python
 * signal handler, say) is a call of its own, so the span is put aside
 * meanwhile: calls made there have their own timeouts. */
static bool interrupted(const sd_part *h, const sd_wait *w)
{
    if (!h->interrupted)
        return false;
    bool on = span.on;
    int64_t left = span.left_ns;
    span.on = false;
    int stop = h->interrupted(w->token);
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
 * Returns 0, an errno value, WAIT_INTERRUPTED or WAIT_GAVE_UP. */
#define WAIT_SLICE_NS INT64_C(20000000) /* 20 ms */
#define WAIT_INTERRUPTED (-1)
#define WAIT_GAVE_UP (-2)
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

static int timed_lock(sd_part *h, pthread_mutex_t *m, const sd_wait *w,
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
            rc = WAIT_GAVE_UP;
            break;
        }
        if (!first && interrupted(h, w)) {
            rc = WAIT_INTERRUPTED;
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

void sd_tx_commit(sd_tx *t)
{
    /* A handle whose mapping the guard repaired has written into private
     * pages: nothing of it may be committed (guard.c). Undo it all. */
    if (SD_UNLIKELY(sd_guard_state(t->h->guard)))
        t->overflow = true;
    for (unsigned i = 0; i < t->npending; i++)
        (void)sd_free_locked(t, t->pending[i]); /* damage: verify() names it */
    t->npending = 0;
    if (t->overflow)
        return;
    SD_CRASH_POINT();
    COMPILER_BARRIER();
    /* Skipped when already 0 (a write that logged nothing): one store less
     * on the lock's cache line. */
    if (LD(&t->h->lock->log_n))
        ST(&t->h->lock->log_n, 0u);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
}

void sd_tx_abort(sd_tx *t)
{
    t->npending = 0;
    sd_tx_rollback_locked(t->h);
    t->overflow = false;
}

sd_status sd_free_deferred(sd_tx *t, uint32_t idx)
{
    if (!sd_idx_ok(t->h, idx))
        return SD_CORRUPT;
    if (t->npending == SD_PENDING_CAP)
        return SD_INTERNAL; /* callers checkpoint long before this */
    t->pending[t->npending++] = idx;
    return SD_OK;
}

sd_status sd_tx_begin(sd_part *h, sd_tx *t)
{
    sd_wait w = {.token = NULL, .blocked = false, .holding = false};
    sd_status rc = sd_tx_begin_wait(h, t, &w);
    if (rc == SD_OK) {
        t->token = w.token;
        t->blocked = w.blocked; /* sd_tx_end calls block_end */
    } else if (w.blocked && h->block_end) {
        h->block_end(w.token);
    }
    return rc;
}

sd_status sd_tx_begin_wait(sd_part *h, sd_tx *t, sd_wait *w)
{
    sd_lock *l = h->lock;
    t->h = h;
    t->npending = 0;
    t->log_all = false;
    t->merge_frees = false;
    t->one_write = false;
    t->nospace = false;
    t->prefer = 0;
    t->token = NULL;
    t->blocked = false;
    t->overflow = false;
    t->now_ms = -1;
    t->waited = 0;
    /* Touch the file's last page: if anyone shrank the file, this faults
     * here, before the lock, and the guard marks the handle torn. One load
     * of a line that is rarely written. */
    (void)LD((_Atomic uint64_t *)(void *)(h->base + h->file_size - SD_PAGE));
    if (SD_UNLIKELY(sd_guard_state(h->guard)))
        return sd_guard_state(h->guard) == SD_GUARD_TORN ? SD_TORN
                                                         : SD_NOSPACE;
    if (!mutex_looks_sane(h))
        return SD_CORRUPT;
    /* Spin a little before sleeping, reading the lock word and trying
     * only when it reads free: each trylock is a locked write that pulls the
     * line to this core, and the holder, which stores to that line (seq,
     * log_n, the unlock) several times per write, would have to fetch it
     * back each time. */
    int rc = pthread_mutex_trylock(&l->mutex);
    for (int spin = 0; rc == EBUSY && spin < 200; spin++) {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#endif
        if (mutex_looks_free(h))
            rc = pthread_mutex_trylock(&l->mutex);
    }
    if (rc == EBUSY) {
        atomic_fetch_add_explicit(&l->lock_waits, 1, memory_order_relaxed);
        int64_t budget = wait_budget(h);
        if (budget != 0) { /* 0: the tries above were all */
            if (!w->blocked && h->block_begin) {
                w->token = h->block_begin();
                w->blocked = true;
            }
            int64_t start = sd_now_ns();
            rc = timed_lock(h, &l->mutex, w, budget);
            t->waited = sd_now_ns() - start;
        }
    }
    if (rc == EOWNERDEAD) {
        uint64_t s = LD(&l->seq);
        if (!(s & 1))
            ST(&l->seq, s + 1); /* readers must not trust the repair */
        atomic_thread_fence(memory_order_release);
        recover_locked(h);
        pthread_mutex_consistent(&l->mutex);
        rc = 0;
    }
    if (rc != 0)
        return rc == WAIT_INTERRUPTED           ? SD_INTERRUPTED
               : rc == WAIT_GAVE_UP             ? SD_BUSY_HOLDING
               : rc == ETIMEDOUT || rc == EBUSY ? SD_TIMEDOUT
                                                : SD_CORRUPT;
    uint64_t s = LD(&l->seq);
    if (!(s & 1))
        s += 1;
    ST(&l->seq, s);
    atomic_thread_fence(memory_order_release);
    t->seq = s;
    if (SD_UNLIKELY(LD(&l->log_n) != 0))
        sd_tx_rollback_locked(h); /* a damaged or leftover log */
    return SD_OK;
}

sd_status sd_tx_end(sd_tx *t, sd_status rc)
{
    sd_part *h = t->h;
    sd_lock *l = h->lock;
    if (!t->overflow)
        sd_tx_commit(t); /* may overflow while freeing */
    if (SD_UNLIKELY(t->overflow)) {
        sd_tx_abort(t);
        int g = sd_guard_state(h->guard);
        rc = g == SD_GUARD_TORN ? SD_TORN : g ? SD_NOSPACE : SD_INTERNAL;
    } else if (SD_UNLIKELY(rc == SD_NOMEM && t->nospace)) {
        rc = SD_NOSPACE; /* the heap had room; the filesystem did not */
    }
    atomic_store_explicit(&l->seq, t->seq + 1, memory_order_release);
    /* A mutex whose page the guard replaced while we held it is zeros now:
     * its unlock fails, or (its kind read as a plain mutex) succeeds without
     * taking it off this thread's robust list. Either way the guard must
     * keep that page mapped (guard.c). */
    if (SD_UNLIKELY(pthread_mutex_unlock(&l->mutex) != 0 ||
                    sd_guard_state(h->guard)))
        sd_guard_note_dangling(h->guard);
    if (t->blocked && h->block_end)
        h->block_end(t->token);
    t->blocked = false;
    return rc;
}
