/*
 * tx.h - transactions on one stripe: begin (take the lock), commit, abort,
 * end (release), the rollback, and the recovery from a dead holder.
 */
#ifndef SHMDICT_TX_H
#define SHMDICT_TX_H

#include "lock.h"
#include "undo.h"

/* Lock the stripe and open a transaction. SD_TIMEDOUT when the lock
 * timeout (or what is left of the thread's span) runs out, SD_INTERRUPTED
 * when the interrupt hook says so, SD_CORRUPT for a damaged lock. */
SD_MUST_USE sd_status sd_tx_begin(sd_stripe *s, sd_tx *t);

/* sd_tx_begin for a caller that owns the sd_wait: block_end is left to
 * the caller (w->blocked says if it is owed), even on failure. */
SD_MUST_USE sd_status sd_tx_begin_wait(sd_stripe *s, sd_tx *t, sd_wait *w);

/* Free the queued blocks, then make the open transaction's changes
 * permanent (the commit point). If the undo log overflowed, nothing is
 * committed and sd_tx_end rolls it all back. */
void sd_tx_commit(sd_tx *t);

/* Undo the open transaction and forget its queued frees. */
void sd_tx_abort(sd_tx *t);

/* Queue a block to be freed at the commit (see sd_tx). */
SD_MUST_USE sd_status sd_free_deferred(sd_tx *t, uint32_t idx);

/* Replay the undo log (recovery, and sd_tx_abort). */
void sd_tx_rollback_locked(sd_stripe *s);

/* Empty the dict (dict.c); redone from the start by a recoverer. */
void sd_flush_raw_locked(sd_stripe *s);

/* Commit (or undo, if the log overflowed), release, and call block_end. */
SD_MUST_USE sd_status sd_tx_end(sd_tx *t, sd_status rc);

#endif /* SHMDICT_TX_H */
