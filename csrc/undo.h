/*
 * undo.h - an open transaction (sd_tx) and the undo log's inline
 * primitives: log a word and store it, store one word alone, save a word.
 * How the log makes a change crash-safe is told in tx.c.
 */
#ifndef SHMDICT_UNDO_H
#define SHMDICT_UNDO_H

#include "core.h"

#define SD_PENDING_CAP 64u

/* An open transaction: the lock is held and the sequence counter is odd.
 * Lives on the stack of the operation that opened it.
 *
 * Blocks that become free during a transaction are only queued in
 * `pending` and freed at the commit, after every allocation of the
 * transaction. Otherwise a later allocation in the same transaction could
 * hand out, and overwrite without logging, bytes that a rollback brings
 * back to life. */
typedef struct sd_tx {
    sd_stripe *s;
    void *token;      /* from block_begin, when the thread blocked */
    bool blocked;     /* block_end must be called after unlock */
    bool overflow;    /* the undo log filled up: the change must be undone */
    bool log_all;     /* log every word of new entries, not just headers */
    bool merge_frees; /* free into the TLSF lists, never a quick list */
    bool one_write;   /* a single-key write: see sd_store_alone */
    bool nospace;     /* an allocation failed for want of filesystem pages */
    uint32_t prefer;  /* a free block sd_alloc_locked takes if it fits */
    uint64_t seq;     /* the odd sequence value written at begin */
    uint32_t stored_idx;  /* the entry the last set stored into (0: none) */
    uint64_t stored_meta; /* and its meta word */
    int64_t now_ms;       /* cached clock, -1 until read */
    int64_t waited;       /* ns slept waiting for the lock */
    unsigned npending;
    uint32_t pending[SD_PENDING_CAP]; /* blocks to free at the commit */
} sd_tx;

/* The clock, read once per transaction. */
static inline int64_t sd_tx_now(sd_tx *t)
{
    if (t->now_ms < 0)
        t->now_ms = sd_now_ms();
    return t->now_ms;
}

/* The index of a key's write group (sd_group), and the stripe's count. */
static inline uint32_t sd_group_index(const sd_stripe *s, uint32_t hash)
{
    return (uint32_t)((hash & (s->nbuckets - 1)) / SD_GROUP_BUCKETS);
}

static inline uint64_t sd_group_count(const sd_stripe *s)
{
    return s->nbuckets < SD_GROUP_BUCKETS ? 1 : s->nbuckets / SD_GROUP_BUCKETS;
}

/* The write group of a key's hash. Read it only while the hash's bucket
 * page is marked (sd_bucket_marked): the page is backed. */
static inline sd_group *sd_group_of(const sd_stripe *s, uint32_t hash)
{
    return &s->groups[sd_group_index(s, hash)];
}

/* Note that this lock hold may change the key of `hash` (see sd_group):
 * before it does, so a reader that sees the change (once the counter is
 * even again) sees the note too. Only for a key that is in the index, or
 * is about to be, once its bucket's page is marked. */
static inline void sd_note_write(sd_tx *t, uint32_t hash)
{
    sd_lock *l = t->s->lock;
    uint32_t g = sd_group_index(t->s, hash) + 1;
    uint32_t hot = LD(&l->hot_group);
    if (hot == g)
        return; /* taken as written now until another group is */
    /* The group that stops being the hot one: its writes end now. (Its
     * index was ours when stored; a damaged one is not followed.) */
    if (hot && hot <= sd_group_count(t->s))
        ST(&t->s->groups[hot - 1].wrote, t->seq);
    atomic_store_explicit(&l->hot_group, g, memory_order_release);
}

/* Note that this lock hold unlinks the entry of the key of `hash`: before
 * it leaves its chain (and its block can be freed and reused). */
static inline void sd_note_drop(sd_tx *t, uint32_t hash)
{
    sd_group *g = sd_group_of(t->s, hash);
    if (LD(&g->dropped) != t->seq) {
        ST(&g->wrote, t->seq);
        ST(&g->dropped, t->seq);
    }
}

/* Every key of the stripe may have changed (a flush, a repair): note
 * every group of a marked bucket page (the others hold no key, and may
 * not be backed). Lock state: held, with the counter odd. */
static inline void sd_note_all(sd_stripe *s)
{
    uint64_t seq = LD(&s->lock->seq);
    ST(&s->lock->hot_group, 0u);
    for (uint64_t b = sd_next_used_bucket(s, 0); b < s->nbuckets;
         b = sd_next_used_bucket(s, b + SD_GROUP_BUCKETS)) {
        sd_group *g = &s->groups[b / SD_GROUP_BUCKETS];
        ST(&g->wrote, seq);
        ST(&g->dropped, seq);
    }
}

/* Log the word at p, then store v: undone on rollback. */
static inline void sd_log_word(sd_tx *t, const void *p, int wide, uint64_t old)
{
    sd_lock *l = t->s->lock;
    uint32_t n = LD(&l->log_n);
    if (SD_UNLIKELY(n >= SD_LOG_CAP)) {
        t->overflow = true;
        return;
    }
    uint64_t off = (uint64_t)((const char *)p - t->s->base);
    ST(&l->log[n].where, off | (uint64_t)(wide != 0));
    ST(&l->log[n].old, old);
    SD_CRASH_POINT();
    COMPILER_BARRIER();
    ST(&l->log_n, n + 1);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
}

/* Log the 32-bit word at p, then store v (nothing if it already holds v).
 * On overflow of the log the store is skipped and t->overflow set: the
 * transaction can then only be undone. */
static inline void sd_w32(sd_tx *t, _Atomic uint32_t *p, uint32_t v)
{
    uint32_t old = LD(p);
    if (old == v)
        return;
    sd_log_word(t, p, 0, old);
    if (SD_LIKELY(!t->overflow))
        ST(p, v);
    SD_CRASH_POINT();
}

/* sd_w32 for a 64-bit word. */
static inline void sd_w64(sd_tx *t, _Atomic uint64_t *p, uint64_t v)
{
    uint64_t old = LD(p);
    if (old == v)
        return;
    sd_log_word(t, p, 1, old);
    if (SD_LIKELY(!t->overflow))
        ST(p, v);
    SD_CRASH_POINT();
}

/* Store v at p without logging it. Only for a transaction of one write
 * (t->one_write) that has logged nothing and changes nothing else: one
 * aligned store is its own commit point, which a crash leaves either done
 * or not done, all that an undo record could give. */
static inline bool sd_may_store_alone(const sd_tx *t)
{
    return t->one_write && !t->overflow && LD(&t->s->lock->log_n) == 0;
}

/* The unlogged store itself, between two crash points. */
static inline void sd_store_alone(_Atomic uint64_t *p, uint64_t v)
{
    SD_CRASH_POINT();
    ST(p, v);
    SD_CRASH_POINT();
}

/* Log a word that unlogged writes are about to clobber. */
static inline void sd_save64(sd_tx *t, _Atomic uint64_t *p)
{
    sd_log_word(t, p, 1, LD(p));
}

#endif /* SHMDICT_UNDO_H */
