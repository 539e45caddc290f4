/*
 * room.c - making room: what a write does when the heap has no block for
 * it. In order: put the quick lists' blocks back (merged), free the list
 * items waiting on the gc chain, sweep the expired entries, and, in an
 * evicting dict, run the CLOCK hand over the buckets. Each reclaimed item
 * is committed on its own, so a crash loses at most one reclaim.
 */
#include "room.h"
#include "tx.h"

/* ---- the gc chain and the quick lists ----------------------------------- */

void sd_gc_commits(sd_tx *t, uint64_t max)
{
    sd_stripe *s = t->s;
    for (uint64_t n = 0; n < max; n++) {
        uint32_t idx = LD(&s->st->gc_head);
        sd_view v;
        if (!idx)
            return;
        if (!sd_read_item(s, idx, &v) || (v.next && !sd_idx_ok(s, v.next))) {
            sd_w32(t, &s->st->gc_head, 0); /* drop a damaged chain */
            sd_tx_commit(t);
            return;
        }
        sd_w32(t, &s->st->gc_head, v.next);
        if (sd_free_locked(t, idx) != SD_OK || t->overflow) {
            sd_tx_abort(t);
            return;
        }
        sd_tx_commit(t);
    }
}

void sd_quick_drain_commits(sd_tx *t)
{
    for (;;) {
        int moved = sd_quick_unlist_one_locked(t);
        if (moved < 0) {
            sd_tx_abort(t);
            return; /* damage: verify() names it */
        }
        sd_tx_commit(t);
        if (!moved)
            return;
    }
}

/* ---- expiry and eviction ------------------------------------------------ */

/* A key that making room must not evict: the one being written. */
typedef struct protect {
    const void *key;
    size_t klen;
    uint32_t hash;
} protect;

/* Whether v is the key that making room must not evict. */
static bool is_protected(const protect *pk, const sd_view *v)
{
    return pk && pk->key && sd_key_eq(v, pk->hash, pk->key, pk->klen);
}

/* Reclaim entries of bucket b, at most `limit` (0: no limit). Expired
 * ones always go; with `evict`, live ones too, CLOCK style: a bucket whose
 * reference mark is set gets it cleared and is passed over once. Each
 * removal is committed on its own. Returns how many were removed and adds
 * the live ones to *evicted. */
static uint64_t reclaim_bucket_commits(sd_tx *t, uint64_t b, bool evict,
                                       const protect *pk, uint64_t limit,
                                       uint64_t *evicted)
{
    sd_stripe *s = t->s;
    int64_t now = sd_tx_now(t);
    bool referenced = evict && LD(&s->refs[b]);
    if (referenced)
        ST(&s->refs[b], (uint8_t)0);
    _Atomic uint32_t *link = &s->buckets[b];
    uint32_t idx = LD(link);
    uint64_t freed = 0;
    for (uint64_t steps = 0; idx && steps <= s->max_chain; steps++) {
        sd_found f;
        if (!sd_read_entry(s, idx, &f.v))
            break; /* verify() will name it; don't touch it */
        bool dead = sd_expired(f.v.meta, now);
        if ((dead || (evict && !referenced)) && !is_protected(pk, &f.v) &&
            (!limit || freed < limit)) {
            f.link = link;
            if (sd_drop_locked(t, &f) != SD_OK || t->overflow) {
                sd_tx_abort(t);
                break;
            }
            sd_tx_commit(t);
            freed++;
            if (dead) {
                atomic_fetch_add_explicit(&s->st->expirations, 1,
                                          memory_order_relaxed);
            } else {
                atomic_fetch_add_explicit(&s->st->evictions, 1,
                                          memory_order_relaxed);
                (*evicted)++;
            }
            idx = LD(link);
            continue;
        }
        link = &f.v.e->next;
        idx = f.v.next;
    }
    return freed;
}

/* Free every expired entry. O(buckets in use + entries). Skipped while no
 * expiry can have passed: next_expiry is a lower bound on every stored
 * expiry, lowered by each write of a TTL and raised by a full sweep. */
static uint64_t sweep_expired_commits(sd_tx *t, const protect *pk)
{
    sd_stripe *s = t->s;
    uint64_t freed = 0, evicted = 0;
    if (!LD(&s->st->n_expiring) ||
        (uint64_t)sd_tx_now(t) < LD(&s->st->next_expiry))
        return 0;
    for (uint64_t b = sd_next_used_bucket(s, 0); b < s->nbuckets;
         b = sd_next_used_bucket(s, b + 1))
        freed += reclaim_bucket_commits(t, b, false, pk, 0, &evicted);
    /* What is left expires later than now; the exact minimum would cost a
     * second pass, so the bound moves only to now + 1 ms. */
    ST(&s->st->next_expiry, (uint64_t)sd_tx_now(t) + 1);
    return freed;
}

SD_MUST_USE static sd_status make_room_commits(sd_tx *t, uint64_t payload,
                                               bool noevict, const protect *pk,
                                               uint32_t *idx,
                                               uint64_t *evicted);

SD_MUST_USE static sd_status
alloc_room_commits(sd_tx *t, uint64_t payload, bool noevict, const protect *pk,
                   uint32_t *idx, uint64_t *evicted)
{
    sd_tx_abort(t);
    /* Space made here must be able to serve any size: frees merge. */
    t->merge_frees = true;
    sd_status rc = make_room_commits(t, payload, noevict, pk, idx, evicted);
    t->merge_frees = false;
    return rc;
}

SD_MUST_USE static sd_status make_room_commits(sd_tx *t, uint64_t payload,
                                               bool noevict, const protect *pk,
                                               uint32_t *idx,
                                               uint64_t *evicted)
{
    sd_stripe *s = t->s;
    if (sd_quick_held(s)) {
        sd_quick_drain_commits(t);
        sd_status rc = sd_alloc_locked(t, payload, idx);
        if (rc != SD_NOMEM)
            return rc;
    }
    if (LD(&s->st->gc_head)) {
        sd_gc_commits(t, UINT64_MAX);
        sd_status rc = sd_alloc_locked(t, payload, idx);
        if (rc != SD_NOMEM)
            return rc;
    }
    /* Expired items go first, evicting or not. */
    if (sweep_expired_commits(t, pk)) {
        sd_status rc = sd_alloc_locked(t, payload, idx);
        if (rc != SD_NOMEM || !s->evict || noevict)
            return rc;
    }
    if (!s->evict || noevict)
        return SD_NOMEM;
    /* Evicting dict: run the clock until the block fits, at most twice
     * round the table (the first pass may only clear marks). */
    uint64_t hand = LD(&s->st->clock_hand) % s->nbuckets;
    uint64_t visited = 0;
    while (visited < 2 * s->nbuckets) {
        uint64_t b = sd_next_used_bucket(s, hand);
        if (b >= s->nbuckets) {
            visited += s->nbuckets - hand;
            hand = 0;
            b = sd_next_used_bucket(s, 0);
            if (b >= s->nbuckets)
                break; /* nothing stored at all */
        }
        visited += b - hand + 1;
        hand = b + 1 == s->nbuckets ? 0 : b + 1;
        ST(&s->st->clock_hand, hand);
        if (reclaim_bucket_commits(t, b, true, pk, 0, evicted)) {
            if (LD(&s->st->gc_head)) /* an evicted list's items */
                sd_gc_commits(t, UINT64_MAX);
            sd_status rc = sd_alloc_locked(t, payload, idx);
            if (rc != SD_NOMEM)
                return rc;
        }
    }
    return SD_NOMEM;
}

SD_MUST_USE sd_status sd_alloc_room_commits(sd_tx *t, uint64_t payload,
                                            bool noevict, const void *key,
                                            size_t klen, uint32_t hash,
                                            uint32_t *idx, uint64_t *evicted)
{
    protect pk = {key, klen, hash};
    return alloc_room_commits(t, payload, noevict, &pk, idx, evicted);
}

bool sd_can_make_room(sd_stripe *s)
{
    return s->evict || LD(&s->st->gc_head) || sd_quick_held(s) ||
           (LD(&s->st->n_expiring) &&
            (uint64_t)sd_now_ms() >= LD(&s->st->next_expiry));
}

SD_MUST_USE sd_status stripe_flush_expired(sd_stripe *s, uint64_t max,
                                           uint64_t *freed)
{
    *freed = 0;
    if (!LD(&s->st->n_expiring))
        return SD_OK;
    for (uint64_t b = 0; b < s->nbuckets && (!max || *freed < max);) {
        sd_tx t;
        sd_status rc = sd_tx_begin(s, &t);
        if (rc)
            return rc;
        uint64_t end = b + SD_SCAN_SLICE, evicted = 0;
        for (; (b = sd_next_used_bucket(s, b)) < end && b < s->nbuckets &&
               (!max || *freed < max);
             b++)
            *freed += reclaim_bucket_commits(&t, b, false, NULL,
                                             max ? max - *freed : 0, &evicted);
        /* What was reclaimed is committed; this only ends the hold (and
         * may fail with SD_INTERNAL, SD_TORN or SD_NOSPACE). */
        if ((rc = sd_tx_end_write(&t, SD_OK)) != SD_OK)
            return rc;
    }
    return SD_OK;
}
