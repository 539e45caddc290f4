/*
 * room.h - making room in a full stripe: the gc chain of dead list items,
 * the drain of the quick lists, the expiry sweep and CLOCK eviction; and
 * the end of a write, which pays off a little of the gc chain.
 */
#ifndef SHMDICT_ROOM_H
#define SHMDICT_ROOM_H

#include "heap.h"
#include "index.h"
#include "tx.h"

/* Free up to `max` list items waiting on the gc chain, committing after
 * each. Lock state: held, in an open transaction that holds nothing the
 * caller wants undoable: it is committed (or rolled back on damage) with
 * the first item. */
void sd_gc_commits(sd_tx *t, uint64_t max);

/* Merge every quick-listed block back into the TLSF lists, committing after
 * each. Lock state: held, in an open transaction holding nothing the caller
 * wants undoable. O(blocks on quick lists). */
void sd_quick_drain_commits(sd_tx *t);

/* Called by a write before it allocates a block for `payload`, with
 * nothing uncommitted that it would mind being committed (at most the drop
 * of an expired entry). A block too big for any quick list first has the
 * quick blocks merged back, as dlmalloc consolidates its fastbins before a
 * large request: otherwise small blocks kept whole would stay as holes
 * that a run of bigger entries fills around, and a dict emptied of small
 * entries and refilled with bigger ones would hold ~10% fewer. The drain
 * is paid for by the frees that filled the lists. */

static inline void sd_before_alloc_commits(sd_tx *t, uint64_t payload)
{
    if (sd_quick_held(t->s) && sd_block_size_for(payload) >= SD_SMALL_LIMIT)
        sd_quick_drain_commits(t);
}

/* Roll the open transaction back, then make room for a block of `payload`
 * bytes and allocate it into *idx: drain the quick lists, free the gc
 * chain, sweep expired entries and (on an evicting dict, unless `noevict`)
 * evict any key but `key`, the one being written. Each reclaimed item is
 * committed on its own; the allocation is left uncommitted. Lock state:
 * held, in an open transaction whose own changes the caller gives up. Adds
 * the live items evicted to *evicted. SD_OK, SD_NOMEM, SD_CORRUPT. */
SD_MUST_USE sd_status sd_alloc_room_commits(sd_tx *t, uint64_t payload,
                                            bool noevict, const void *key,
                                            size_t klen, uint32_t hash,
                                            uint32_t *idx, uint64_t *evicted);

/* Whether sd_alloc_room_commits could free anything: an evicting dict,
 * items on the gc chain or the quick lists, or expiries that may have
 * passed. Lock state: any (a hint). */
bool sd_can_make_room(sd_stripe *s);

/* End a write and release the lock: undo the transaction if rc is an error
 * (so errors change nothing), commit it if not, free up to 16 items of the
 * gc chain (each committed), then sd_tx_end. Returns rc or what sd_tx_end
 * puts in its place (SD_INTERNAL, SD_TORN, SD_NOSPACE). */
SD_MUST_USE static inline sd_status sd_tx_end_write(sd_tx *t, sd_status rc)
{
    if (rc != SD_OK)
        sd_tx_abort(t);
    else if (!t->overflow)
        sd_tx_commit(t);
    if (!t->overflow && LD(&t->s->st->gc_head))
        sd_gc_commits(t, 16);
    return sd_tx_end(t, rc);
}

/* Free up to `max` expired entries of the stripe (0: all) into *freed, a
 * slice of the table per hold of the lock. Lock state: takes and releases
 * the stripe's lock itself. SD_OK, or the status of a lock taken or ended
 * (then *freed says what was done). */
SD_MUST_USE sd_status stripe_flush_expired(sd_stripe *s, uint64_t max,
                                           uint64_t *freed);

#endif /* SHMDICT_ROOM_H */
