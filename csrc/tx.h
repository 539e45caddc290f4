/*
 * tx.h - transactions on one stripe: begin (take the lock), commit, abort,
 * end (release), the rollback, and the recovery from a dead holder.
 */
#ifndef SHMDICT_TX_H
#define SHMDICT_TX_H

#include "lock.h"
#include "undo.h"

/* Lock the stripe and open a transaction. Lock state: not held by this
 * thread; on SD_OK it is held and the sequence counter is odd, with a dead
 * holder's change repaired first (rollback, or a redone flush). Errors
 * (lock not held): SD_TIMEDOUT (the lock timeout, or what is left of the
 * thread's span, ran out), SD_INTERRUPTED (the interrupt hook said stop),
 * SD_CORRUPT (a damaged lock), SD_TORN or SD_NOSPACE (the guard repaired a
 * fault in this mapping). Block hooks: block_end is owed by sd_tx_end. */
SD_MUST_USE sd_status sd_tx_begin(sd_stripe *s, sd_tx *t);

/* sd_tx_begin for a caller that owns the sd_wait (a call over several
 * stripes): block_end is left to the caller (w->blocked says if it is
 * owed), even on failure. Also returns SD_BUSY_HOLDING when w->holding and
 * the wait lasted a slice. */
SD_MUST_USE sd_status sd_tx_begin_wait(sd_stripe *s, sd_tx *t, sd_wait *w);

/* Make the open transaction's changes permanent: free the queued blocks,
 * then the commit point (log_n = 0). Lock state: held, and it stays held
 * and the transaction open for more. If the undo log overflowed (or the
 * guard repaired a fault), nothing is committed: t->overflow stays set and
 * sd_tx_end rolls it all back. */
void sd_tx_commit_work(sd_tx *t);

/* sd_tx_commit inline: a transaction with nothing queued or logged (a
 * write committed already, a store alone) only passes the commit's crash
 * points; the call is made only when there is work. */
static inline void sd_tx_commit(sd_tx *t)
{
    if (t->npending || t->overflow || LD(&t->s->lock->log_n) ||
        sd_guard_state(t->s->guard)) {
        sd_tx_commit_work(t);
        return;
    }
    SD_CRASH_POINT();
    COMPILER_BARRIER();
    SD_CRASH_POINT();
}

/* Undo the open transaction and forget its queued frees. Lock state: held,
 * and stays held; the transaction stays open, now empty. */
void sd_tx_abort(sd_tx *t);

/* Queue block idx to be freed at the commit (see sd_tx). Lock state: held.
 * SD_CORRUPT for an index outside the heap, SD_INTERNAL when the queue is
 * full (callers checkpoint long before). */
SD_MUST_USE sd_status sd_free_deferred(sd_tx *t, uint32_t idx);

/* Replay the undo log backwards and empty it. Lock state: held (recovery,
 * sd_tx_begin finding a leftover log, sd_tx_abort). Records that point
 * outside the loggable areas are skipped, never stored. */
void sd_tx_rollback_locked(sd_stripe *s);

/* Empty the stripe: index, summary, heap. Lock state: held. Not made of
 * logged stores: it runs with flush_pending set, so a holder that dies in
 * it has the next locker run it again from the start (recovery, here in
 * tx.c). Commits nothing itself: it leaves log_n at 0. */
void sd_flush_raw_locked(sd_stripe *s);

/* End the open transaction and release the lock: commit it (or roll it back
 * if the log overflowed), unlock, call block_end. Returns `rc`, or in its
 * place SD_INTERNAL (log overflow: everything was undone), SD_TORN or
 * SD_NOSPACE (the guard repaired a fault: everything was undone), or
 * SD_NOSPACE for an SD_NOMEM caused by the filesystem. Lock state after:
 * not held. */
SD_MUST_USE sd_status sd_tx_end(sd_tx *t, sd_status rc);

#endif /* SHMDICT_TX_H */
