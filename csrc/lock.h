/*
 * lock.h - a stripe's robust mutex: set-up, the sanity check, and taking
 * it (spin, then timed waits in slices inside the call's span).
 */
#ifndef SHMDICT_LOCK_H
#define SHMDICT_LOCK_H

#include <errno.h>
#include <pthread.h>

#include "core.h"

/* How one call waits for its locks: a call that takes several stripes
 * passes the same one to each sd_tx_begin_wait, so that block_begin is
 * called once for all of them. */
typedef struct sd_wait {
    void *token;  /* what block_begin returned */
    bool blocked; /* block_begin was called: block_end is owed */
    /* The caller holds another stripe's lock. Then no code outside the
     * core may run (no interrupt hook), and a wait that lasts one slice
     * gives up with SD_BUSY_HOLDING, so the caller can let go of what it
     * holds before it waits on. */
    bool holding;
} sd_wait;

/* Never returned by the API: see sd_wait.holding. */
#define SD_BUSY_HOLDING ((sd_status)(SD_STATUS_COUNT + 1))

/* Set up a new stripe's lock area (creation only). */
void sd_lock_init(sd_lock *l);
/* glibc's __kind of a healthy robust mutex of ours, or -1 where it can't
 * be read; sd_lock_acquire refuses a mutex whose kind differs. */
int sd_mutex_kind_of_new(void);

/* What sd_lock_wait returns besides 0 and errno values. */
#define SD_WAIT_INTERRUPTED (-1) /* the interrupt hook said stop */
#define SD_WAIT_GAVE_UP (-2)     /* w->holding, and one slice passed */

/* The wait of sd_lock_acquire when the first try fails: spin, then sleep
 * in slices. Returns 0, EOWNERDEAD, or an error mapped as below. */
int sd_lock_wait(sd_stripe *s, sd_wait *w, int64_t *waited_ns, int rc);

/* Whether the mutex's kind still reads as the one a healthy mutex of ours
 * has (glibc only): a damaged one is refused with SD_CORRUPT, not waited
 * on. */
static inline bool sd_mutex_looks_sane(const sd_stripe *s)
{
#ifdef __GLIBC__
    if (s->mutex_kind >= 0) {
        const volatile int *kind = &s->lock->mutex.__data.__kind;
        return *kind == s->mutex_kind;
    }
#endif
    (void)s;
    return true;
}

/* Take the stripe's mutex. Lock state: not held by this thread. Returns
 * SD_OK holding it, with *owner_died set when its last holder died
 * holding it (the caller must repair the stripe, then call
 * pthread_mutex_consistent); *waited_ns gets the ns slept. Errors (not
 * held): SD_TORN or SD_NOSPACE (the guard repaired a fault), SD_CORRUPT
 * (a damaged mutex), SD_TIMEDOUT, SD_INTERRUPTED, SD_BUSY_HOLDING (see
 * sd_wait.holding). Inline: the uncontended path is one trylock. */
SD_MUST_USE static inline sd_status
sd_lock_acquire(sd_stripe *s, sd_wait *w, int64_t *waited_ns, bool *owner_died)
{
    sd_lock *l = s->lock;
    *owner_died = false;
    /* Touch the file's last page: if anyone shrank the file, this faults
     * here, before the lock, and the guard marks the handle torn. One load
     * of a line that is rarely written. */
    (void)LD((_Atomic uint64_t *)(void *)(s->base + s->file_size - SD_PAGE));
    if (SD_UNLIKELY(sd_guard_state(s->guard)))
        return sd_guard_state(s->guard) == SD_GUARD_TORN ? SD_TORN
                                                         : SD_NOSPACE;
    if (!sd_mutex_looks_sane(s))
        return SD_CORRUPT;
    int rc = pthread_mutex_trylock(&l->mutex);
    if (SD_UNLIKELY(rc == EBUSY))
        rc = sd_lock_wait(s, w, waited_ns, rc);
    if (rc == EOWNERDEAD) {
        *owner_died = true;
        rc = 0;
    }
    if (rc != 0)
        return rc == SD_WAIT_INTERRUPTED        ? SD_INTERRUPTED
               : rc == SD_WAIT_GAVE_UP          ? SD_BUSY_HOLDING
               : rc == ETIMEDOUT || rc == EBUSY ? SD_TIMEDOUT
                                                : SD_CORRUPT;
    return SD_OK;
}

/* Release the stripe's mutex. A mutex whose page the guard replaced while
 * we held it is zeros now: its unlock fails, or (its kind read as a plain
 * mutex) succeeds without taking it off this thread's robust list. Either
 * way the guard must keep that page mapped (guard.c). */
static inline void sd_lock_release(sd_stripe *s)
{
    if (SD_UNLIKELY(pthread_mutex_unlock(&s->lock->mutex) != 0 ||
                    sd_guard_state(s->guard)))
        sd_guard_note_dangling(s->guard);
}

#endif /* SHMDICT_LOCK_H */
