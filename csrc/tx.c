/*
 * tx.c - transactions, the undo log's replay, and recovery.
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
 * counter was even and unchanged around the copy (see read.c).
 *
 * The raw flush lives here, below every operation, because recovery must
 * be able to run it again: it is the one change not made by logged
 * stores, and a holder that dies in it leaves flush_pending set.
 */
#define _GNU_SOURCE
#include "heap.h"
#include "tx.h"

/* ---- undo log ----------------------------------------------------------- */

/* Only three areas of a stripe ever have words logged: its state page,
 * its bucket array and its heap. Never the lock area: a replayed record
 * that landed in the mutex we hold would corrupt glibc's robust list. */
static bool within(uint64_t off, unsigned width, uint64_t start, uint64_t len)
{
    /* Written so that no sum can wrap, whatever `off` a damaged log holds. */
    return off >= start && len >= width && off - start <= len - width;
}

/* Whether a logged word of `width` bytes at off lies in one of the areas a
 * transaction may change. */
static bool loggable(const sd_stripe *s, uint64_t off, unsigned width)
{
    return off % width == 0 &&
           (within(off, width, s->off, sizeof(sd_pstate)) ||
            within(off, width, s->index_off, s->nbuckets * 4) ||
            within(off, width, s->heap_off, s->heap_size));
}

void sd_tx_rollback_locked(sd_stripe *s)
{
    sd_lock *l = s->lock;
    uint32_t n = LD(&l->log_n);
    if (n > SD_LOG_CAP)
        n = SD_LOG_CAP; /* damaged count: replay what the log can hold */
    for (uint32_t i = n; i-- > 0;) {
        uint64_t where = LD(&l->log[i].where);
        uint64_t old = LD(&l->log[i].old);
        bool wide = where & 1;
        uint64_t off = where & ~UINT64_C(1);
        /* A damaged record must not become a wild store. */
        if (!loggable(s, off, wide ? 8 : 4))
            continue; /* a damaged record must not become a wild store */
        if (wide)
            ST((_Atomic uint64_t *)(void *)(s->base + off), old);
        else
            ST((_Atomic uint32_t *)(void *)(s->base + off), (uint32_t)old);
        COMPILER_BARRIER();
        SD_CRASH_POINT();
    }
    ST(&l->log_n, 0u);
    COMPILER_BARRIER();
}

/* ---- flush -------------------------------------------------------------- */

/* Zero the index pages the summary marks, and their CLOCK marks. The
 * unmarked ones hold only zeros already (verify checks it) and may be
 * holes, which a store would have to allocate. */
static void wipe_index(sd_stripe *s)
{
    for (uint64_t b = sd_next_used_bucket(s, 0); b < s->nbuckets;
         b = sd_next_used_bucket(s, b + SD_BUCKETS_PER_PAGE)) {
        uint64_t n = s->nbuckets - b < SD_BUCKETS_PER_PAGE
                         ? s->nbuckets - b
                         : SD_BUCKETS_PER_PAGE;
        memset((char *)(void *)&s->buckets[b], 0, n * sizeof(uint32_t));
        if (s->evict)
            memset((char *)(void *)&s->refs[b], 0, n);
    }
}

/* Empty the dict. Runs with flush_pending set, so that a holder that dies
 * here has the next locker run it again from the start. The pages stay
 * reserved: giving them back (MADV_REMOVE) would let a reader that still
 * follows an old offset fault in a page the filesystem may no longer
 * have. */
void sd_flush_raw_locked(sd_stripe *s)
{
    sd_lock *l = s->lock;
    ST(&l->flush_pending, 1u);
    sd_note_all(s); /* every entry goes */
    COMPILER_BARRIER();
    SD_CRASH_POINT();
    wipe_index(s);
    SD_CRASH_POINT();
    memset(s->base + s->summary_off, 0, s->summary_bytes); /* after them */
    SD_CRASH_POINT();
    /* Zero the reserved heap and its last page (the rest was never
     * touched): no byte of a flushed value stays in the file, and a
     * flushed dict is byte for byte a new one, so what a write logs never
     * depends on what was there before (a store of the value a word
     * already holds is skipped). */
    uint64_t backed = (uint64_t)LD(&s->st->backed_pages) * SD_PAGE;
    uint64_t last = (s->heap_size - 8) & ~(uint64_t)(SD_PAGE - 1);
    if (backed > last)
        backed = last;
    memset(s->base + s->heap_off, 0, backed);
    memset(s->base + s->heap_off + last, 0, s->heap_size - last);
    SD_CRASH_POINT();
    sd_heap_init(s);
    SD_CRASH_POINT();
    ST(&s->st->count, UINT64_C(0));
    ST(&s->st->n_expiring, UINT64_C(0));
    ST(&s->st->gc_head, 0u);
    ST(&s->st->clock_hand, UINT64_C(0));
    ST(&l->log_n, 0u);
    COMPILER_BARRIER();
    ST(&l->flush_pending, 0u);
    COMPILER_BARRIER();
}

/* ---- recovery ----------------------------------------------------------- */

/* Called with the mutex held after EOWNERDEAD: finish or undo what the
 * dead holder left half done. */
static void recover_locked(sd_stripe *s)
{
    sd_lock *l = s->lock;
    if (LD(&l->flush_pending)) {
        ST(&l->log_n, 0u);
        sd_flush_raw_locked(s); /* clears flush_pending when done */
    } else {
        sd_tx_rollback_locked(s);
        sd_note_all(s); /* (readers kept nothing it changed, but be sure) */
    }
    atomic_fetch_add_explicit(&l->recoveries, 1, memory_order_relaxed);
}

/* ---- transactions ------------------------------------------------------- */

void sd_tx_commit_work(sd_tx *t)
{
    /* A handle whose mapping the guard repaired has written into private
     * pages: nothing of it may be committed (guard.c). Undo it all. */
    if (SD_UNLIKELY(sd_guard_state(t->s->guard)))
        t->overflow = true;
    for (unsigned i = 0; i < t->npending; i++)
        /* Damage that makes a free fail: verify() names it. */
        SD_IGNORE(sd_free_locked(t, t->pending[i]));
    t->npending = 0;
    if (t->overflow)
        return;
    SD_CRASH_POINT();
    COMPILER_BARRIER();
    /* Skipped when already 0 (a write that logged nothing): one store less
     * on the lock's cache line. */
    if (LD(&t->s->lock->log_n))
        ST(&t->s->lock->log_n, 0u);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
}

void sd_tx_abort(sd_tx *t)
{
    t->npending = 0;
    sd_tx_rollback_locked(t->s);
    t->overflow = false;
}

SD_MUST_USE sd_status sd_free_deferred(sd_tx *t, uint32_t idx)
{
    if (!sd_idx_ok(t->s, idx))
        return SD_CORRUPT;
    if (t->npending == SD_PENDING_CAP)
        return SD_INTERNAL; /* callers checkpoint long before this */
    t->pending[t->npending++] = idx;
    return SD_OK;
}

SD_MUST_USE sd_status sd_tx_begin(sd_stripe *s, sd_tx *t)
{
    sd_wait w = {.token = NULL, .blocked = false, .holding = false};
    sd_status rc = sd_tx_begin_wait(s, t, &w);
    if (rc == SD_OK) {
        t->token = w.token;
        t->blocked = w.blocked; /* sd_tx_end calls block_end */
    } else if (w.blocked && s->block_end) {
        s->block_end(w.token);
    }
    return rc;
}

SD_MUST_USE sd_status sd_tx_begin_wait(sd_stripe *s, sd_tx *t, sd_wait *w)
{
    sd_lock *l = s->lock;
    t->s = s;
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
    t->stored_idx = 0;
    bool owner_died;
    sd_status rc = sd_lock_acquire(s, w, &t->waited, &owner_died);
    if (rc != SD_OK)
        return rc;
    if (SD_UNLIKELY(owner_died)) {
        uint64_t seq = LD(&l->seq);
        if (!(seq & 1))
            ST(&l->seq, seq + 1); /* readers must not trust the repair */
        atomic_thread_fence(memory_order_release);
        recover_locked(s);
        pthread_mutex_consistent(&l->mutex);
    }
    uint64_t seq = LD(&l->seq);
    if (!(seq & 1))
        seq += 1;
    ST(&l->seq, seq);
    atomic_thread_fence(memory_order_release);
    t->seq = seq;
    if (SD_UNLIKELY(LD(&l->log_n) != 0)) {
        sd_tx_rollback_locked(s); /* a damaged or leftover log */
        sd_note_all(s);           /* it may change what readers kept */
    }
    return SD_OK;
}

SD_MUST_USE sd_status sd_tx_end(sd_tx *t, sd_status rc)
{
    sd_stripe *s = t->s;
    sd_lock *l = s->lock;
    if (!t->overflow)
        sd_tx_commit(t); /* may overflow while freeing */
    if (SD_UNLIKELY(t->overflow)) {
        sd_tx_abort(t);
        int g = sd_guard_state(s->guard);
        rc = g == SD_GUARD_TORN ? SD_TORN : g ? SD_NOSPACE : SD_INTERNAL;
    } else if (SD_UNLIKELY(rc == SD_NOMEM && t->nospace)) {
        rc = SD_NOSPACE; /* the heap had room; the filesystem did not */
    }
    atomic_store_explicit(&l->seq, t->seq + 1, memory_order_release);
    sd_lock_release(s);
    if (t->blocked && s->block_end)
        s->block_end(t->token);
    t->blocked = false;
    return rc;
}
