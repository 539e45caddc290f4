/*
 * read.c - reads without the lock: get, get_stale, ttl, and the count.
 *
 * Reads (get, ttl, contains, the entry count) take no lock. They follow the
 * optimistic pattern of a seqlock: note the stripe's sequence counter, walk
 * the chain and copy the answer out, then check the counter again. Every
 * offset and length read on the way is checked against the process-local
 * layout before use, and every chain walk is bounded, so a reader racing a
 * writer, or reading a damaged file, can see nonsense but never leaves the
 * mapping or loops forever; nonsense is then thrown away because the
 * counter moved. After a few failed tries, or if the counter stays odd (a
 * writer is busy or died), the reader takes the lock, which also repairs a
 * dead writer's half-done change.
 */
#define _GNU_SOURCE /* CLOCK_MONOTONIC_COARSE */
#include <time.h>

#include "read.h"
#include "tx.h"

#define OPTIMISTIC_TRIES 8

#define OPTIMISTIC_CHAIN 1024u

#define ODD_SPINS 2000

/* The coarse clock's resolution in ms, rounded up, plus the slack: an
 * expiry closer than this to the coarse clock is checked with the precise
 * one. 0 until the first read. */
static _Atomic int64_t coarse_margin_ms;

/* An upper bound of sd_now_ms(), from CLOCK_MONOTONIC_COARSE (a few ns
 * through the vDSO; it lags CLOCK_MONOTONIC by up to a tick, more on a
 * busy VM: measured up to 14 ms with a 4 ms tick, hence the slack). */
static int64_t coarse_now_bound_ms(void)
{
    struct timespec ts;
    int64_t m = LD(&coarse_margin_ms);
    if (SD_UNLIKELY(!m)) {
        struct timespec res;
        if (clock_getres(CLOCK_MONOTONIC_COARSE, &res) != 0 || res.tv_sec > 1)
            return INT64_MAX;
        m = (int64_t)res.tv_sec * 1000 + (res.tv_nsec + 999999) / 1000000 +
            SD_NEAR_CLOCK_SLACK_MS;
        ST(&coarse_margin_ms, m);
    }
    if (clock_gettime(CLOCK_MONOTONIC_COARSE, &ts) != 0)
        return INT64_MAX;
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000 + m;
}

/* What a read-only operation wants from the entry. */
typedef struct peek {
    sd_value_out *out; /* NULL: don't copy the value */
    uint64_t meta;
    bool stale_ok; /* return an expired entry that is still stored */
    bool stale;    /* out: it had expired */
    uint32_t bucket;
    uint32_t idx; /* out: the entry's block */
    uint64_t seq; /* out: the even sequence value a lock-free read held */
    /* out: ns slept waiting for the lock */
    int64_t waited;
} peek;

/* A read found the key: mark it used for CLOCK, count the hit. */
static inline void note_hit(sd_stripe *s, uint32_t hash, bool count)
{
    _Atomic uint8_t *ref = &s->refs[hash & (s->nbuckets - 1)];
    if (s->evict && !LD(ref))
        ST(ref, (uint8_t)1); /* only when clear: no line ping-pong */
    if (count)
        sd_slot_inc(&sd_my_slot(s)->hits);
}

/* One lookup for a reader. Returns SD_OK, SD_NOTFOUND, SD_TOOBIG,
 * SD_WRONGTYPE, or SD_CORRUPT when something read can't be right (the
 * caller decides whether that's a race or damage). */
SD_MUST_USE static sd_status peek_once(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       uint64_t max_steps, peek *p)
{
    /* An unmarked page holds no key, and may not even be backed. */
    uint32_t idx = sd_bucket_marked(s, hash) ? LD(sd_bucket_of(s, hash)) : 0;
    sd_view v;
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > max_steps || !sd_read_entry(s, idx, &v))
            return SD_CORRUPT;
        if (sd_key_eq(&v, hash, key, klen)) {
            /* The precise clock only when the coarse one can't tell. */
            uint64_t exp = sd_meta_exp(v.meta);
            p->stale = exp && (int64_t)exp <= coarse_now_bound_ms() &&
                       sd_expired(v.meta, sd_now_ms());
            if (p->stale && !p->stale_ok)
                return SD_NOTFOUND;
            p->meta = v.meta;
            p->idx = idx;
            if (sd_is_list(v.meta))
                return p->out ? SD_WRONGTYPE : SD_OK;
            return p->out ? sd_copy_value(&v, p->out) : SD_OK;
        }
        idx = v.next;
    }
    return SD_NOTFOUND;
}

/* Look a key up for a reader: up to OPTIMISTIC_TRIES lock-free tries (a try
 * counts when the sequence counter is even and unchanged around it), then
 * under the lock. Counts a hit or a miss when p->out is set. Statuses of
 * peek_once, or of taking the lock. */
SD_MUST_USE static sd_status peek_key(sd_stripe *s, const void *key,
                                      size_t klen, uint32_t hash, peek *p)
{
    _Atomic uint64_t *seq = &s->lock->seq;
    sd_status rc = SD_CORRUPT;
    bool done = false;
    for (int tries = 0, spins = 0; tries < OPTIMISTIC_TRIES;) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        if (s1 & 1) {
            if (++spins > ODD_SPINS)
                break; /* a writer is slow or dead: go and lock */
            sd_cpu_relax();
            continue;
        }
        rc = peek_once(s, key, klen, hash, OPTIMISTIC_CHAIN, p);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(seq, memory_order_relaxed) == s1 &&
            rc != SD_CORRUPT) {
            done = true;
            p->seq = s1;
            break;
        }
        tries++;
    }
    if (!done) {
        sd_tx t;
        rc = sd_tx_begin(s, &t);
        p->waited = t.waited;
        if (rc)
            return rc;
        rc = peek_once(s, key, klen, hash, s->max_chain, p);
        rc = sd_tx_end(&t, rc);
    }
    if (p->out) {
        if (rc == SD_OK || rc == SD_TOOBIG)
            note_hit(s, hash, rc == SD_OK);
        else if (rc == SD_NOTFOUND)
            sd_slot_inc(&sd_my_slot(s)->misses);
    }
    return rc;
}

SD_MUST_USE sd_status stripe_get(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, sd_value_out *out)
{
    peek p = {.out = out};
    sd_status rc = peek_key(s, key, klen, hash, &p);
    /* What was read without the lock (a value, or that there is none) is
     * the stripe's current state until the sequence counter moves: every
     * lock holder moves it, whatever it does. Only a clock can change it
     * otherwise, by expiring the value. */
    out->seq = p.seq;
    out->waited_ns += p.waited;
    out->exp = rc == SD_OK ? sd_meta_exp(p.meta) : 0;
    out->idx = rc == SD_OK ? p.idx : 0;
    out->expiring = out->exp != 0;
    out->part = s->index;
    out->hash = hash;
    return rc;
}

bool stripe_still_current(sd_stripe *s, uint32_t hash, uint64_t seq)
{
    if (!seq ||
        atomic_load_explicit(&s->lock->seq, memory_order_acquire) != seq)
        return false;
    note_hit(s, hash, true);
    return true;
}

/* ---- the near cache's check ---------------------------------------------
 * A caller that keeps values it was given (the binding's near cache) asks
 * whether one is still the key's value, as of the stripe's counter value
 * n->seq at which it was last known to be. From the cheapest answer on:
 *
 * 1. The counter hasn't moved: nothing in the stripe has changed. One
 *    load, of the lock's first line.
 * 2. It has, but the key's write group (sd_pstate.groups) was last written
 *    before n->seq: the lock holders since wrote other keys. One more
 *    load, of a line only writers of that group (and three others) write.
 *    (A group is the keys of 64 buckets, about as many keys. The group
 *    being written, sd_lock.hot_group, counts as written now: its
 *    `wrote` is only brought up to date once another group is.)
 * 3. Otherwise the kept value is compared with the stored one's bytes:
 *    the same type, flags and bytes make the same object, so the kept one
 *    is still the answer whatever was written meanwhile (another key of
 *    the group, this key with the same value). Where the stored value is:
 *    if no lock hold since n->seq unlinked an entry of the group (the
 *    group's `dropped`), the key's entry is still the one in block n->idx:
 *    only its unlinking frees its block, and only a freed block is reused.
 *    That entry is read directly, and a value longer than SD_INPLACE_MAX
 *    is not even compared: only a new block gets one (entry.h), so the
 *    bytes are those it had at n->seq. Otherwise the key is looked up as
 *    stripe_get does, and the bytes compared. Both are seqlock
 *    reads like peek_key's, so what they see was the stripe's state at one
 *    moment; any doubt (a writer in, a counter that moved again, a chain
 *    or entry that can't be right) answers "not sure", and the caller
 *    reads.
 *
 * Why 2 holds while a writer is in: writers note a key's group before
 * they touch the key (sd_find_live_locked, sd_drop_locked), so a writer
 * whose change this reader could have to see has noted it; one that has
 * not yet noted it has not changed the key, and the read comes before its
 * write. The group is loaded after the counter (acquire), so a write that
 * finished before the counter value read is seen noted. */

/* Whether the checked entry v holds the value n describes. */
static bool near_value_same(const sd_view *v, const sd_near *n)
{
    if ((v->meta & (SD_META_TYPE | SD_META_FLAGS)) !=
        (n->meta & (SD_META_TYPE | SD_META_FLAGS)))
        return false;
    switch (n->meta & SD_META_TYPE) {
    case SD_T_NONE:
    case SD_T_FALSE:
    case SD_T_TRUE:
        return true;
    case SD_T_INT:
    case SD_T_FLOAT:
        return LD(sd_val_word(v, 0)) == n->word;
    case SD_T_STR:
    case SD_T_BYTES:
        return v->vlen == n->word && n->data &&
               memcmp(v->val, n->data, v->vlen) == 0;
    default:
        return false;
    }
}

/* Whether v, the entry n->idx still holds (no unlinking since n->seq),
 * holds n's bytes without comparing them: a value too long to have been
 * rewritten in place, of the type, flags and length n's had. */
static bool near_bytes_kept(const sd_view *v, const sd_near *n)
{
    return v->vlen > SD_INPLACE_MAX && v->vlen == n->word &&
           (v->meta & (SD_META_TYPE | SD_META_FLAGS)) ==
               (n->meta & (SD_META_TYPE | SD_META_FLAGS));
}

/* Whether key's entry, in the stripe as it is now (the caller checks the
 * counter around the call), holds the value n describes; *v: the entry. */
static bool near_same(sd_stripe *s, const void *key, size_t klen,
                      const sd_near *n, bool direct, sd_view *v)
{
    if (direct)
        return sd_read_entry(s, n->idx, v) &&
               sd_key_eq(v, n->hash, key, klen) &&
               (near_bytes_kept(v, n) || near_value_same(v, n));
    uint32_t idx =
        sd_bucket_marked(s, n->hash) ? LD(sd_bucket_of(s, n->hash)) : 0;
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > OPTIMISTIC_CHAIN || !sd_read_entry(s, idx, v))
            return false;
        if (sd_key_eq(v, n->hash, key, klen))
            return near_value_same(v, n);
        idx = v->next;
    }
    return false;
}

int stripe_near_check(sd_stripe *s, const void *key, size_t klen, sd_near *n)
{
    sd_lock *l = s->lock;
    uint64_t s1 = atomic_load_explicit(&l->seq, memory_order_acquire);
    int checked = 1;
    /* (n->seq is even, what writers note odd: below it means before it) */
    if (s1 != n->seq && !sd_bucket_marked(s, n->hash))
        return 0; /* flushed: no key there (and the groups not backed) */
    sd_group *g = sd_group_of(s, n->hash);
    if (s1 != n->seq &&
        atomic_load_explicit(&l->hot_group, memory_order_acquire) !=
            sd_group_index(s, n->hash) + 1 &&
        LD(&g->wrote) < n->seq) {
        /* The lock holders since wrote other keys only (a holder now in
         * too: it noted the group before touching a key of it). */
        if (!(s1 & 1))
            n->seq = s1;
    } else if (SD_UNLIKELY(s1 != n->seq)) {
        if (s1 & 1)
            return 0; /* a writer is in: let sd_get wait for it */
        bool direct = n->idx && LD(&g->dropped) < n->seq;
        sd_view v;
        bool same = near_same(s, key, klen, n, direct, &v);
        atomic_thread_fence(memory_order_acquire);
        if (!same || atomic_load_explicit(&l->seq, memory_order_relaxed) != s1)
            return 0;
        n->seq = s1;
        n->meta = v.meta;
        n->idx = v.idx;
        checked = 2;
    }
    uint64_t exp = sd_meta_exp(n->meta);
    if (exp && (int64_t)exp <= coarse_now_bound_ms())
        return 0; /* it may have expired: sd_get reads the precise clock */
    note_hit(s, n->hash, true);
    return checked;
}

SD_MUST_USE sd_status stripe_get_stale(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       sd_value_out *out, int *stale)
{
    peek p = {.out = out, .stale_ok = true};
    sd_status rc = peek_key(s, key, klen, hash, &p);
    *stale = p.stale;
    out->waited_ns += p.waited;
    return rc;
}

SD_MUST_USE sd_status stripe_ttl(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, int64_t *ns_left)
{
    peek p = {.out = NULL};
    sd_status rc = peek_key(s, key, klen, hash, &p);
    if (rc)
        return rc;
    uint64_t exp = sd_meta_exp(p.meta);
    if (!exp) {
        *ns_left = 0;
        return SD_OK;
    }
    if (exp > (uint64_t)INT64_MAX / 1000000) {
        *ns_left = INT64_MAX; /* beyond 292 years: say so, don't overflow */
        return SD_OK;
    }
    int64_t left = (int64_t)exp * 1000000 - sd_now_ns();
    if (left <= 0)
        return SD_NOTFOUND; /* expired between the lookup and now */
    *ns_left = left;
    return SD_OK;
}

SD_MUST_USE sd_status stripe_count(sd_stripe *s, uint64_t *n)
{
    _Atomic uint64_t *seq = &s->lock->seq;
    for (int tries = 0; tries < OPTIMISTIC_TRIES; tries++) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        uint64_t count = LD(&s->st->count);
        uint64_t expiring = LD(&s->st->n_expiring);
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1) &&
            atomic_load_explicit(seq, memory_order_relaxed) == s1) {
            /* A count no heap could hold is damage: count for real. */
            if (!expiring && count <= s->heap_size / SD_MIN_BLOCK) {
                *n = count;
                return SD_OK;
            }
            break;
        }
        sd_cpu_relax();
    }
    /* Some entries may have expired: count the live ones, a slice of the
     * table per lock hold. */
    uint64_t live = 0;
    for (uint64_t b = 0; b < s->nbuckets;) {
        sd_tx t;
        sd_status rc = sd_tx_begin(s, &t);
        if (rc)
            return rc;
        int64_t now = sd_tx_now(&t);
        uint64_t end = b + SD_SCAN_SLICE;
        for (; (b = sd_next_used_bucket(s, b)) < end && b < s->nbuckets; b++) {
            uint32_t idx = LD(&s->buckets[b]);
            for (uint64_t steps = 0; idx; steps++) {
                sd_view v;
                if (steps > s->max_chain || !sd_read_entry(s, idx, &v) ||
                    !sd_in_bucket(s, &v, b))
                    return sd_tx_end(&t, SD_CORRUPT);
                live += !sd_expired(v.meta, now);
                idx = v.next;
            }
        }
        if ((rc = sd_tx_end(&t, SD_OK)) != SD_OK)
            return rc; /* a torn or full file: the count can't be trusted */
    }
    *n = live;
    return SD_OK;
}
