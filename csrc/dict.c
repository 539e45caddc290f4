/*
 * dict.c - the hash index and the dictionary operations.
 *
 * The index is an array of 32-bit bucket heads, one per 64 bytes of file,
 * each the block index of the first entry of a chain; entries link to the
 * next through their own `next` field. Chains stay short because there is a
 * bucket for every minimum-size entry, and a per-file random seed keys the
 * hash, so keys can't be chosen to pile into one chain without reading the
 * file first.
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
 *
 * Writes take the lock and run as one transaction (lock.c). Expired entries
 * are reclaimed when a write touches them, and all at once when an
 * allocation fails.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <sys/mman.h>

#include "internal.h"

#define OPTIMISTIC_TRIES 8
#define OPTIMISTIC_CHAIN 1024u
#define ODD_SPINS 2000
#define KEYS_CHUNK_BUCKETS 4096u
#define INPLACE_MAX 64u /* values up to this size are overwritten in place */
#define LOGGED_BLOCK_MAX 4096u /* blocks this small can be written logged */

/* ---- hashing --------------------------------------------------------------
 */

static inline uint32_t key_hash(const sd_part *h, const void *key, size_t klen)
{
    uint64_t x = sd_hash_bytes(key, klen, h->hash_seed);
    return (uint32_t)(x ^ (x >> 32));
}

static inline _Atomic uint32_t *bucket_of(const sd_part *h, uint32_t hash)
{
    return &h->buckets[hash & (h->nbuckets - 1)];
}

uint32_t sd_key_hash(const sd_part *h, const void *key, size_t klen)
{
    return key_hash(h, key, klen);
}

/* ---- entries
 * ---------------------------------------------------------------- */

typedef sd_view view;
typedef sd_found found;
#define meta_exp sd_meta_exp
#define expired sd_expired
#define val_word sd_val_word

static inline bool key_eq(const view *v, uint32_t hash, const void *key,
                          size_t klen)
{
    return v->hash == hash && v->klen == klen &&
           sd_bytes_eq(v->e->data, key, klen);
}

sd_status sd_copy_value(const view *v, sd_value_out *out)
{
    unsigned type = v->meta & SD_META_TYPE;
    out->type = (uint8_t)type;
    out->ascii = (v->meta & SD_META_ASCII) != 0;
    out->tag = (v->meta & SD_META_TAG) != 0;
    out->len = v->vlen;
    if (type == SD_T_INT) {
        out->i = (int64_t)LD(val_word(v, 0));
    } else if (type == SD_T_FLOAT) {
        uint64_t bits = LD(val_word(v, 0));
        memcpy(&out->f, &bits, 8);
    } else if (type == SD_T_STR || type == SD_T_BYTES) {
        if (v->vlen > out->cap)
            return SD_TOOBIG;
        memcpy(out->buf, v->val, v->vlen);
    } else if (type == SD_T_LIST) {
        return SD_WRONGTYPE;
    }
    return SD_OK;
}

/* ---- lookup
 * ------------------------------------------------------------------ */

/* Find a key while holding the lock. SD_OK with f filled, SD_NOTFOUND, or
 * SD_CORRUPT for a chain that leaves the heap or never ends. */
sd_status sd_find_locked(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, found *f)
{
    _Atomic uint32_t *link = bucket_of(h, hash);
    uint32_t idx = sd_bucket_marked(h, hash) ? LD(link) : 0;
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > h->max_chain || !sd_read_entry(h, idx, &f->v))
            return SD_CORRUPT;
        if (key_eq(&f->v, hash, key, klen)) {
            f->link = link;
            return SD_OK;
        }
        link = &f->v.e->next;
        idx = f->v.next;
    }
    return SD_NOTFOUND;
}

/* What a read-only operation wants from the entry. */
typedef struct peek {
    sd_value_out *out; /* NULL: don't copy the value */
    uint64_t meta;
    bool stale_ok; /* return an expired entry that is still stored */
    bool stale;    /* out: it had expired */
    uint32_t bucket;
    uint64_t seq; /* out: the even sequence value a lock-free read held */
    /* out: ns slept waiting for the lock */
    int64_t waited;
} peek;

static inline sd_slot *my_slot(const sd_part *h)
{
    return &h->slots[(uint32_t)sd_self_pid() % SD_NSLOTS];
}

/* Statistics only: a plain load and store, no locked instruction. Threads
 * of one process, or processes whose pids share a slot, may lose a count
 * now and then. */
static inline void slot_inc(_Atomic uint64_t *c)
{
    ST(c, LD(c) + 1);
}

/* A read found the key: mark it used for CLOCK, count the hit. */
static inline void note_hit(sd_part *h, uint32_t hash, bool count)
{
    _Atomic uint8_t *ref = &h->refs[hash & (h->nbuckets - 1)];
    if (h->evict && !LD(ref))
        ST(ref, (uint8_t)1); /* only when clear: no line ping-pong */
    if (count)
        slot_inc(&my_slot(h)->hits);
}

/* One lookup for a reader. Returns SD_OK, SD_NOTFOUND, SD_TOOBIG,
 * SD_WRONGTYPE, or SD_CORRUPT when something read can't be right (the
 * caller decides whether that's a race or damage). */
static sd_status peek_once(sd_part *h, const void *key, size_t klen,
                           uint32_t hash, uint64_t max_steps, peek *p)
{
    /* An unmarked page holds no key, and may not even be backed. */
    uint32_t idx = sd_bucket_marked(h, hash) ? LD(bucket_of(h, hash)) : 0;
    view v;
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > max_steps || !sd_read_entry(h, idx, &v))
            return SD_CORRUPT;
        if (key_eq(&v, hash, key, klen)) {
            p->stale = meta_exp(v.meta) && expired(v.meta, sd_now_ms());
            if (p->stale && !p->stale_ok)
                return SD_NOTFOUND;
            p->meta = v.meta;
            if ((v.meta & SD_META_TYPE) == SD_T_LIST)
                return p->out ? SD_WRONGTYPE : SD_OK;
            return p->out ? sd_copy_value(&v, p->out) : SD_OK;
        }
        idx = v.next;
    }
    return SD_NOTFOUND;
}

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static sd_status peek_key(sd_part *h, const void *key, size_t klen,
                          uint32_t hash, peek *p)
{
    if (klen == 0 || klen > SD_MAX_KEY)
        return SD_BADARG;
    _Atomic uint64_t *seq = &h->lock->seq;
    sd_status rc = SD_CORRUPT;
    bool done = false;
    for (int tries = 0, spins = 0; tries < OPTIMISTIC_TRIES;) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        if (s1 & 1) {
            if (++spins > ODD_SPINS)
                break; /* a writer is slow or dead: go and lock */
            cpu_relax();
            continue;
        }
        rc = peek_once(h, key, klen, hash, OPTIMISTIC_CHAIN, p);
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
        rc = sd_tx_begin(h, &t);
        p->waited = t.waited;
        if (rc)
            return rc;
        rc = peek_once(h, key, klen, hash, h->max_chain, p);
        rc = sd_tx_end(&t, rc);
    }
    if (p->out) {
        if (rc == SD_OK || rc == SD_TOOBIG)
            note_hit(h, hash, rc == SD_OK);
        else if (rc == SD_NOTFOUND)
            slot_inc(&my_slot(h)->misses);
    }
    return rc;
}

sd_status part_get(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   sd_value_out *out)
{
    peek p = {.out = out};
    sd_status rc = peek_key(h, key, klen, hash, &p);
    /* What was read without the lock (a value, or that there is none) is
     * the stripe's current state until the sequence counter moves: every
     * lock holder moves it, whatever it does. Only a clock can change it
     * otherwise, by expiring the value. */
    out->seq = p.seq;
    out->waited_ns += p.waited;
    out->expiring = rc == SD_OK && meta_exp(p.meta) != 0;
    out->part = h->part_index;
    out->hash = hash;
    return rc;
}

bool part_still_current(sd_part *h, uint32_t hash, uint64_t seq)
{
    if (!seq ||
        atomic_load_explicit(&h->lock->seq, memory_order_acquire) != seq)
        return false;
    note_hit(h, hash, true);
    return true;
}

sd_status part_get_stale(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, sd_value_out *out, int *stale)
{
    peek p = {.out = out, .stale_ok = true};
    sd_status rc = peek_key(h, key, klen, hash, &p);
    *stale = p.stale;
    out->waited_ns += p.waited;
    return rc;
}

sd_status part_ttl(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   int64_t *ns_left)
{
    peek p = {.out = NULL};
    sd_status rc = peek_key(h, key, klen, hash, &p);
    if (rc)
        return rc;
    uint64_t exp = meta_exp(p.meta);
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

/* ---- writes
 * ------------------------------------------------------------------ */

uint64_t sd_value_len(const sd_value_in *v)
{
    switch (v->type) {
    case SD_T_INT:
    case SD_T_FLOAT:
        return 8;
    case SD_T_STR:
    case SD_T_BYTES:
        return v->len;
    case SD_T_LIST:
        return 16;
    default:
        return 0;
    }
}

uint64_t sd_make_meta(const sd_value_in *v, uint64_t exp)
{
    uint64_t m = v->type;
    if (v->type == SD_T_STR && v->ascii)
        m |= SD_META_ASCII;
    if (v->type == SD_T_BYTES && v->tag)
        m |= SD_META_TAG;
    return m | (exp << SD_META_EXP_SHIFT);
}

/* The value's bytes as the file stores them, padded with zeros to whole
 * words, for the in-place path (at most INPLACE_MAX bytes). */
static void value_words(const sd_value_in *v, uint64_t *w, size_t nwords)
{
    if (v->type == SD_T_INT) {
        memcpy(w, &v->i, 8);
    } else if (v->type == SD_T_FLOAT) {
        memcpy(w, &v->f, 8);
    } else if (v->type == SD_T_STR || v->type == SD_T_BYTES) {
        const unsigned char *s = v->data;
        for (size_t i = 0; i < nwords; i++, s += 8) {
            size_t left = v->len - i * 8;
            if (left >= 8) {
                w[i] = sd_rd64(s);
            } else {
                w[i] = 0;
                memcpy(&w[i], s, left);
            }
        }
    }
}

/* In a one-write transaction (sd_may_store_alone), if at most one word
 * would change, among the n value words at `words` (to w[i]) and the meta
 * word at meta_p (to meta; none if meta_p is NULL), store that one alone,
 * unlogged, and return true. Otherwise change nothing and return false:
 * the caller then makes its logged stores. */
static inline bool store_if_one_change(sd_tx *t, _Atomic uint64_t *words,
                                       const uint64_t *w, size_t n,
                                       _Atomic uint64_t *meta_p, uint64_t meta)
{
    if (!sd_may_store_alone(t))
        return false;
    _Atomic uint64_t *only = NULL;
    uint64_t word = 0;
    if (meta_p && LD(meta_p) != meta) {
        only = meta_p;
        word = meta;
    }
    for (size_t i = 0; i < n; i++) {
        if (LD(&words[i]) == w[i])
            continue;
        if (only)
            return false; /* a second word changes */
        only = &words[i];
        word = w[i];
    }
    if (only)
        sd_store_alone(only, word);
    return true;
}

void sd_count_change(sd_tx *t, int64_t entries, int64_t expiring)
{
    sd_pstate *hd = t->h->st;
    if (entries)
        sd_w64(t, &hd->count, LD(&hd->count) + (uint64_t)entries);
    if (expiring)
        sd_w64(t, &hd->n_expiring, LD(&hd->n_expiring) + (uint64_t)expiring);
}

uint64_t sd_expiry_for(sd_tx *t, int64_t ttl_ms)
{
    if (ttl_ms <= 0)
        return 0;
    uint64_t exp = (uint64_t)sd_tx_now(t) + (uint64_t)ttl_ms;
    if (exp > SD_MAX_EXPIRY_MS)
        exp = SD_MAX_EXPIRY_MS;
    /* Keep next_expiry a lower bound (a hint: not logged, only ever
     * lowered here, so a rollback can leave it low, never high). */
    if (exp < LD(&t->h->st->next_expiry))
        ST(&t->h->st->next_expiry, exp);
    return exp;
}

/* Fill a freshly allocated block. The words that held the free block's
 * list links and footer are saved to the log first; the rest is
 * unreachable until linked, so it is written plainly. */
void sd_write_entry(sd_tx *t, uint32_t idx, uint32_t next, uint32_t hash,
                    uint64_t meta, const void *key, size_t klen,
                    const sd_value_in *v)
{
    sd_part *h = t->h;
    if (t->overflow)
        return; /* the allocation was not made: write nothing unlogged */
    sd_entry *e = sd_blk_entry(h, idx);
    uint64_t bsize = LD(sd_blk_hdr(h, idx)) & ~SD_BLK_FLAGS;
    uint64_t vlen = sd_value_len(v);
    if (t->log_all && bsize > LOGGED_BLOCK_MAX) {
        t->overflow = true; /* can't log it all: undo the transaction */
        return;
    }
    if (t->log_all) {
        /* The block may hold bytes a rollback must bring back: build the
         * payload aside and store it word by word through the log. */
        uint64_t words[LOGGED_BLOCK_MAX / 8];
        unsigned char *p = (unsigned char *)words;
        size_t n = (size_t)(bsize - 8) / 8;
        memset(words, 0, n * 8);
        memcpy(p + 24, key, klen);
        if (v->type == SD_T_INT)
            memcpy(p + 24 + sd_pad8(klen), &v->i, 8);
        else if (v->type == SD_T_FLOAT)
            memcpy(p + 24 + sd_pad8(klen), &v->f, 8);
        else if (vlen)
            memcpy(p + 24 + sd_pad8(klen), v->data, vlen);
        _Atomic uint64_t *dst = (_Atomic uint64_t *)(void *)e;
        for (size_t i = 3; i < n; i++)
            sd_w64(t, &dst[i], words[i]);
        sd_w32(t, &e->next, next);
        sd_w32(t, &e->hash, hash);
        sd_w64(t, &e->meta, meta);
        sd_w32(t, &e->klen, (uint32_t)klen);
        sd_w32(t, &e->vlen, (uint32_t)vlen);
        SD_CRASH_POINT();
        return;
    }
    /* A free block keeps its structure in two words: the first of its
     * payload (list links) and its last (a TLSF block's footer; in a
     * 32-byte block that is where klen and vlen go). The rest is garbage
     * to it, so saving those two is all a rollback needs. */
    sd_save64(t, (_Atomic uint64_t *)(void *)(sd_blk(h, idx) + bsize - 8));
    sd_save64(t, (_Atomic uint64_t *)(void *)e);
    if (SD_UNLIKELY(t->overflow))
        return;
    ST(&e->next, next);
    ST(&e->hash, hash);
    ST(&e->meta, meta);
    ST(&e->klen, (uint32_t)klen);
    ST(&e->vlen, (uint32_t)vlen);
    unsigned char *d = e->data;
    memcpy(d, key, klen);
    memset(d + klen, 0, sd_pad8(klen) - klen);
    d += sd_pad8(klen);
    if (v->type == SD_T_INT)
        memcpy(d, &v->i, 8);
    else if (v->type == SD_T_FLOAT)
        memcpy(d, &v->f, 8);
    else if (vlen)
        memcpy(d, v->data, vlen);
    SD_CRASH_POINT();
}

void sd_link_new_locked(sd_tx *t, uint32_t idx, uint32_t hash, uint64_t meta,
                        const void *key, size_t klen, const sd_value_in *v)
{
    sd_part *h = t->h;
    _Atomic uint32_t *b = bucket_of(h, hash);
    /* Callers made the page ready before they changed anything; this only
     * covers one that did not (the guard is the net if it fails). */
    if (SD_UNLIKELY(!sd_bucket_marked(h, hash)))
        (void)sd_bucket_ready_locked(h, hash);
    uint32_t head = LD(b);
    sd_write_entry(t, idx, head, hash, meta, key, klen, v);
    sd_w32(t, b, idx);
    sd_count_add(t, 1, meta_exp(meta) ? 1 : 0);
    /* A new key is not marked (as in SIEVE): it earns its second chance
     * with a read or a write. Marking it would leave every bucket marked
     * under a stream of inserts, and the hand would then go full circle
     * clearing marks and evict whatever it met next, a hot key included. */
}

sd_status sd_bucket_ready_locked(sd_part *h, uint32_t hash)
{
    uint64_t b = hash & (h->nbuckets - 1), page = b / SD_BUCKETS_PER_PAGE;
    _Atomic uint32_t *word = &h->summary[page / 32];
    uint32_t bit = 1u << (page % 32);
    if (SD_LIKELY(LD(word) & bit))
        return SD_OK;
    if (!h->reserved) {
        sd_status rc = sd_reserve(h, h->index_off + page * SD_PAGE, SD_PAGE);
        if (rc == SD_OK && h->evict) /* the page of its CLOCK marks */
            rc = sd_reserve(h, (h->refs_off + b) & ~(uint64_t)(SD_PAGE - 1),
                            SD_PAGE);
        if (rc != SD_OK)
            return rc;
    }
    /* Marked once backed, and before the page holds anything. Not
     * logged: a stale set bit only costs a scan a page read. */
    atomic_fetch_or_explicit(word, bit, memory_order_relaxed);
    COMPILER_BARRIER();
    return SD_OK;
}

/* Give back what an unlinked entry holds: a list's items go to the gc
 * chain (two stores, however long the list), the block is freed at the
 * commit. */
static sd_status release_locked(sd_tx *t, const view *v)
{
    if ((v->meta & SD_META_TYPE) == SD_T_LIST) {
        _Atomic uint32_t *hl = (_Atomic uint32_t *)(void *)v->val;
        uint32_t head = LD(&hl[0]), tail = LD(&hl[1]);
        if (head) {
            if (!sd_idx_ok(t->h, tail))
                return SD_CORRUPT;
            sd_w32(t, &sd_blk_entry(t->h, tail)->next, LD(&t->h->st->gc_head));
            sd_w32(t, &t->h->st->gc_head, head);
        }
    }
    return sd_free_deferred(t, v->idx);
}

sd_status sd_drop_locked(sd_tx *t, found *f)
{
    sd_w32(t, f->link, f->v.next);
    sd_count_add(t, -1, meta_exp(f->v.meta) ? -1 : 0);
    return release_locked(t, &f->v);
}

/* Would a block for `payload` fit where block idx is, once it is freed and
 * merged with free neighbours? */
static bool fits_after_free(sd_part *h, uint32_t idx, uint64_t payload)
{
    uint64_t hdr = LD(sd_blk_hdr(h, idx));
    uint64_t size = hdr & ~SD_BLK_FLAGS;
    uint64_t want = sd_block_size_for(payload);
    uint64_t nx = idx + (size >> SD_UNIT_SHIFT);
    if ((nx << SD_UNIT_SHIFT) < h->heap_size) {
        uint64_t nh = LD(sd_blk_hdr(h, nx)), ns = nh & ~SD_BLK_FLAGS;
        if ((nh & SD_BLK_FREE) && ns <= h->heap_size)
            size += ns;
    }
    if (hdr & SD_BLK_PREV_FREE) {
        uint64_t ps = LD((_Atomic uint64_t *)(void *)(sd_blk(h, idx) - 8));
        if (ps <= h->heap_size) /* damaged sizes must not wrap the sum */
            size += ps;
    }
    return size >= want;
}

sd_status sd_open_find(sd_part *h, sd_tx *t, const void *key, size_t klen,
                       uint32_t hash, found *f, bool *open)
{
    sd_status rc = sd_tx_begin(h, t);
    *open = rc == SD_OK;
    if (!*open)
        return rc;
    rc = sd_find_live_locked(t, key, klen, hash, f);
    if (rc == SD_NOTFOUND)
        sd_tx_commit(t); /* keep the reclaim of an expired entry */
    return rc;
}

sd_status sd_find_live_locked(sd_tx *t, const void *key, size_t klen,
                              uint32_t hash, found *f)
{
    sd_status rc = sd_find_locked(t->h, key, klen, hash, f);
    if (rc == SD_OK && meta_exp(f->v.meta) &&
        expired(f->v.meta, sd_tx_now(t))) {
        atomic_fetch_add_explicit(&t->h->st->expirations, 1,
                                  memory_order_relaxed);
        rc = sd_drop_locked(t, f);
        return rc ? rc : SD_NOTFOUND;
    }
    return rc;
}

/* set_locked's own flag: every other way to make room has been tried
 * (sd_set_with_room_locked's last try). Above the public flags. */
#define SET_LAST_RESORT (1u << 30)

/* The allocation for a new value failed and the key holds an old one: it
 * may fit where the old value is, once that is freed (and merged with its
 * free neighbours). Overwriting succeeds whenever it does, at any size.
 *
 * A block freed in a transaction may only be reused in that transaction if
 * every byte written into it is logged (see sd_tx). The undo log can do
 * that for a block up to LOGGED_BLOCK_MAX: then the old value is dropped,
 * the new one written word by word through the log and both committed as
 * one, so a crash leaves the old value or the new one.
 *
 * A bigger value has no crash-safe way into the old one's place: the old
 * bytes would have to live somewhere meanwhile. So it takes two commits:
 * the old value is dropped, its block freed and that committed; then the
 * new block is allocated (from the space just verified to fit: the heap
 * promises that a payload that fits in a free block is never refused),
 * written unlogged and linked by a logged store, and that committed. A
 * crash (SIGKILL) before the first commit leaves the old value, after the
 * second the new one, and in between the key absent: losing the old value
 * to a crash is acceptable, refusing a write that fits is not. Never a
 * damaged dict nor a half-written value: each step is an ordinary
 * transaction. Readers never see the gap (the stripe's sequence counter
 * stays odd until the lock is released). Without a crash, nothing can fail
 * after the first commit but damage to the heap, which verify() names.
 *
 * Dropping the key's own old value to replace it is not an eviction: no
 * other key is touched, the evictions counter doesn't move, and it is
 * allowed under SD_NOEVICT (safe_set: "never evict other items"). Since it
 * opens that window, a big value takes this way only when the alternative
 * is worse or gone: at once in a dict free to evict (the key's own old
 * value goes before any other key), when nothing could be reclaimed
 * (sd_can_make_room), or as the last try of sd_set_with_room_locked, after
 * expired entries, the gc chain and the quick lists were reclaimed. Until
 * then it says SD_NOMEM and changes nothing, so the caller makes room
 * first.
 *
 * Both ways commit the transaction, and so whatever it held before (the
 * earlier items of a batch). */
static sd_status set_in_old_place_locked(sd_tx *t, found *f, const void *key,
                                         size_t klen, uint32_t hash,
                                         const sd_value_in *v, uint64_t meta,
                                         uint64_t need, unsigned flags)
{
    sd_part *h = t->h;
    if (!fits_after_free(h, f->v.idx, need))
        return SD_NOMEM;
    /* The block found may be up to one minimum block bigger than asked (a
     * remainder too small to split off stays with it). */
    bool logged = sd_block_size_for(need) + SD_MIN_BLOCK <= LOGGED_BLOCK_MAX;
    if (!logged && !(flags & SET_LAST_RESORT) &&
        !(h->evict && !(flags & SD_NOEVICT)) && sd_can_make_room(h))
        return SD_NOMEM; /* make room first; the caller tries again */
    /* The new block will start where the merged free block does: at the
     * old block, or at a free block just before it. Reserve the pages it
     * will cover now, before anything changes, so that nothing can fail
     * once the old value's drop is committed. */
    uint32_t start = f->v.idx;
    if (LD(sd_blk_hdr(h, start)) & SD_BLK_PREV_FREE) {
        uint64_t ps = LD((_Atomic uint64_t *)(void *)(sd_blk(h, start) - 8));
        if (ps >= SD_MIN_BLOCK && ps % SD_UNIT == 0 &&
            (ps >> SD_UNIT_SHIFT) < start)
            start -= (uint32_t)(ps >> SD_UNIT_SHIFT);
    }
    uint64_t end =
        ((uint64_t)start << SD_UNIT_SHIFT) + sd_block_size_for(need) + SD_UNIT;
    if (end > (uint64_t)LD(&h->st->backed_pages) * SD_PAGE &&
        sd_heap_reserve_locked(h, end) != SD_OK) {
        t->nospace = true;
        return SD_NOMEM;
    }
    sd_w32(t, f->link, f->v.next);
    sd_count_add(t, -1, meta_exp(f->v.meta) ? -1 : 0);
    sd_status rc = release_locked(t, &f->v);
    if (rc)
        return rc;
    t->npending--; /* free the old block now, not at the commit */
    if ((rc = sd_free_merge_locked(t, f->v.idx)))
        return rc;
    if (!logged) {
        if (t->overflow)
            return SD_INTERNAL; /* nothing is committed: the old value stays */
        sd_tx_commit(t);        /* the old value is gone: the key is absent */
    }
    uint32_t idx;
    t->prefer = start; /* that block, not the best fit elsewhere */
    rc = sd_alloc_locked(t, need, &idx);
    t->prefer = 0;
    if (rc)
        return rc;
    t->log_all = logged;
    sd_link_new_locked(t, idx, hash, meta, key, klen, v);
    t->log_all = false;
    /* Commit now: what is left of the freed space is free again, and a
     * later allocation of this transaction (a batch) would write into it
     * unlogged, bytes a rollback would have to bring back. */
    sd_tx_commit(t);
    return SD_OK;
}

/* Store v under key as one transaction step (the caller commits). */
static sd_status set_locked(sd_tx *t, const void *key, size_t klen,
                            uint32_t hash, const sd_value_in *v,
                            int64_t ttl_ms, unsigned flags);

sd_status sd_set_locked(sd_tx *t, const void *key, size_t klen, uint32_t hash,
                        const sd_value_in *v, int64_t ttl_ms, unsigned flags)
{
    sd_status rc = set_locked(t, key, klen, hash, v, ttl_ms, flags);
    if (rc == SD_OK)
        slot_inc(&my_slot(t->h)->sets); /* once per store, not per retry */
    return rc;
}

static sd_status set_locked(sd_tx *t, const void *key, size_t klen,
                            uint32_t hash, const sd_value_in *v,
                            int64_t ttl_ms, unsigned flags)
{
    sd_part *h = t->h;
    found f;
    sd_status rc = sd_find_live_locked(t, key, klen, hash, &f);
    if (rc == SD_CORRUPT)
        return rc;
    bool have = rc == SD_OK;
    unsigned mode = flags & SD_MODE_MASK;
    if (mode == SD_MODE_ADD && have)
        return SD_EXISTS;
    if (mode == SD_MODE_REPLACE && !have)
        return SD_NOTFOUND;
    if (!have && (rc = sd_bucket_ready_locked(h, hash)))
        return rc;
    uint64_t exp = (flags & SD_KEEPTTL) && have ? meta_exp(f.v.meta)
                   : ttl_ms > 0                 ? sd_expiry_for(t, ttl_ms)
                                                : 0;
    uint64_t meta = sd_make_meta(v, exp);
    uint64_t vlen = sd_value_len(v);
    uint64_t need = sd_entry_need(klen, vlen);
    int64_t exp_delta = (exp ? 1 : 0) - (have && meta_exp(f.v.meta) ? 1 : 0);
    bool old_list = have && (f.v.meta & SD_META_TYPE) == SD_T_LIST;

    if (have && !old_list && vlen <= INPLACE_MAX && need <= f.v.payload) {
        /* Overwrite in place: every word goes through the undo log, unless
         * only one word changes (a number, a flag, a new expiry). */
        uint64_t w[INPLACE_MAX / 8];
        size_t nw = (size_t)(sd_pad8(vlen) / 8);
        value_words(v, w, nw);
        if (exp_delta == 0 && vlen == f.v.vlen &&
            store_if_one_change(t, val_word(&f.v, 0), w, nw, &f.v.e->meta,
                                meta)) {
            sd_mark_used(h, hash);
            return SD_OK;
        }
        for (size_t i = 0; i < nw; i++)
            sd_w64(t, val_word(&f.v, i), w[i]);
        sd_w32(t, &f.v.e->vlen, (uint32_t)vlen);
        sd_w64(t, &f.v.e->meta, meta);
        sd_count_add(t, 0, exp_delta);
        sd_mark_used(h, hash);
        return SD_OK;
    }
    uint32_t idx;
    rc = sd_alloc_locked(t, need, &idx);
    if (rc == SD_NOMEM && have)
        return set_in_old_place_locked(t, &f, key, klen, hash, v, meta, need,
                                       flags);
    if (rc)
        return rc;
    if (!have) {
        sd_link_new_locked(t, idx, hash, meta, key, klen, v);
        return SD_OK;
    }
    sd_write_entry(t, idx, f.v.next, hash, meta, key, klen, v);
    sd_w32(t, f.link, idx);
    sd_count_add(t, 0, exp_delta);
    sd_mark_used(h, hash);
    return release_locked(t, &f.v);
}

/* ---- making room
 * ------------------------------------------------------------- */

void sd_gc_locked(sd_tx *t, uint64_t max)
{
    sd_part *h = t->h;
    for (uint64_t n = 0; n < max; n++) {
        uint32_t idx = LD(&h->st->gc_head);
        view v;
        if (!idx)
            return;
        if (!sd_read_item(h, idx, &v) || (v.next && !sd_idx_ok(h, v.next))) {
            sd_w32(t, &h->st->gc_head, 0); /* drop a damaged chain */
            sd_tx_commit(t);
            return;
        }
        sd_w32(t, &h->st->gc_head, v.next);
        if (sd_free_locked(t, idx) != SD_OK || t->overflow) {
            sd_tx_abort(t);
            return;
        }
        sd_tx_commit(t);
    }
}

/* A key that making room must not evict: the one being written. */
typedef struct protect {
    const void *key;
    size_t klen;
    uint32_t hash;
} protect;

static bool is_protected(const protect *pk, const view *v)
{
    return pk && pk->key && key_eq(v, pk->hash, pk->key, pk->klen);
}

/* Reclaim entries of bucket b, at most `limit` (0: no limit). Expired
 * ones always go; with `evict`, live ones too, CLOCK style: a bucket whose
 * reference mark is set gets it cleared and is passed over once. Each
 * removal is committed on its own. Returns how many were removed and adds
 * the live ones to *evicted. */
static uint64_t reclaim_bucket_locked(sd_tx *t, uint64_t b, bool evict,
                                      const protect *pk, uint64_t limit,
                                      uint64_t *evicted)
{
    sd_part *h = t->h;
    int64_t now = sd_tx_now(t);
    bool referenced = evict && LD(&h->refs[b]);
    if (referenced)
        ST(&h->refs[b], (uint8_t)0);
    _Atomic uint32_t *link = &h->buckets[b];
    uint32_t idx = LD(link);
    uint64_t freed = 0;
    for (uint64_t steps = 0; idx && steps <= h->max_chain; steps++) {
        found f;
        if (!sd_read_entry(h, idx, &f.v))
            break; /* verify() will name it; don't touch it */
        bool dead = expired(f.v.meta, now);
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
                atomic_fetch_add_explicit(&h->st->expirations, 1,
                                          memory_order_relaxed);
            } else {
                atomic_fetch_add_explicit(&h->st->evictions, 1,
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
static uint64_t sweep_expired_locked(sd_tx *t, const protect *pk)
{
    sd_part *h = t->h;
    uint64_t freed = 0, evicted = 0;
    if (!LD(&h->st->n_expiring) ||
        (uint64_t)sd_tx_now(t) < LD(&h->st->next_expiry))
        return 0;
    for (uint64_t b = sd_next_used_bucket(h, 0); b < h->nbuckets;
         b = sd_next_used_bucket(h, b + 1))
        freed += reclaim_bucket_locked(t, b, false, pk, 0, &evicted);
    /* What is left expires later than now; the exact minimum would cost a
     * second pass, so the bound moves only to now + 1 ms. */
    ST(&h->st->next_expiry, (uint64_t)sd_tx_now(t) + 1);
    return freed;
}

static sd_status make_room_locked(sd_tx *t, uint64_t payload, bool noevict,
                                  const protect *pk, uint32_t *idx,
                                  uint64_t *evicted);

static sd_status alloc_room_locked(sd_tx *t, uint64_t payload, bool noevict,
                                   const protect *pk, uint32_t *idx,
                                   uint64_t *evicted)
{
    sd_tx_abort(t);
    /* Space made here must be able to serve any size: frees merge. */
    t->merge_frees = true;
    sd_status rc = make_room_locked(t, payload, noevict, pk, idx, evicted);
    t->merge_frees = false;
    return rc;
}

static sd_status make_room_locked(sd_tx *t, uint64_t payload, bool noevict,
                                  const protect *pk, uint32_t *idx,
                                  uint64_t *evicted)
{
    sd_part *h = t->h;
    if (sd_quick_held(h)) {
        sd_quick_drain_locked(t);
        sd_status rc = sd_alloc_locked(t, payload, idx);
        if (rc != SD_NOMEM)
            return rc;
    }
    if (LD(&h->st->gc_head)) {
        sd_gc_locked(t, UINT64_MAX);
        sd_status rc = sd_alloc_locked(t, payload, idx);
        if (rc != SD_NOMEM)
            return rc;
    }
    /* Expired items go first, evicting or not. */
    if (sweep_expired_locked(t, pk)) {
        sd_status rc = sd_alloc_locked(t, payload, idx);
        if (rc != SD_NOMEM || !h->evict || noevict)
            return rc;
    }
    if (!h->evict || noevict)
        return SD_NOMEM;
    /* Evicting dict: run the clock until the block fits, at most twice
     * round the table (the first pass may only clear marks). */
    uint64_t hand = LD(&h->st->clock_hand) % h->nbuckets;
    uint64_t visited = 0;
    while (visited < 2 * h->nbuckets) {
        uint64_t b = sd_next_used_bucket(h, hand);
        if (b >= h->nbuckets) {
            visited += h->nbuckets - hand;
            hand = 0;
            b = sd_next_used_bucket(h, 0);
            if (b >= h->nbuckets)
                break; /* nothing stored at all */
        }
        visited += b - hand + 1;
        hand = b + 1 == h->nbuckets ? 0 : b + 1;
        ST(&h->st->clock_hand, hand);
        if (reclaim_bucket_locked(t, b, true, pk, 0, evicted)) {
            if (LD(&h->st->gc_head)) /* an evicted list's items */
                sd_gc_locked(t, UINT64_MAX);
            sd_status rc = sd_alloc_locked(t, payload, idx);
            if (rc != SD_NOMEM)
                return rc;
        }
    }
    return SD_NOMEM;
}

sd_status sd_alloc_room_locked(sd_tx *t, uint64_t payload, bool noevict,
                               const void *key, size_t klen, uint32_t hash,
                               uint32_t *idx, uint64_t *evicted)
{
    protect pk = {key, klen, hash};
    return alloc_room_locked(t, payload, noevict, &pk, idx, evicted);
}

bool sd_can_make_room(sd_part *h)
{
    return h->evict || LD(&h->st->gc_head) || sd_quick_held(h) ||
           (LD(&h->st->n_expiring) &&
            (uint64_t)sd_now_ms() >= LD(&h->st->next_expiry));
}

/* A set, retried after making room. The key itself is never evicted to
 * make room for its own new value. */
sd_status sd_set_with_room_locked(sd_tx *t, const void *key, size_t klen,
                                  uint32_t hash, const sd_value_in *v,
                                  int64_t ttl_ms, unsigned flags,
                                  uint64_t *evicted)
{
    uint64_t need = sd_entry_need(klen, sd_value_len(v));
    sd_before_alloc_locked(t, need);
    sd_status rc = sd_set_locked(t, key, klen, hash, v, ttl_ms, flags);
    if (rc != SD_NOMEM)
        return rc;
    protect pk = {key, klen, hash};
    for (int attempt = 0; attempt < 4 && rc == SD_NOMEM; attempt++) {
        uint32_t idx;
        /* Make room for a block of the size the set needs, give it back,
         * and try the set again (it may also free the old value). */
        rc =
            alloc_room_locked(t, need, flags & SD_NOEVICT, &pk, &idx, evicted);
        if (rc == SD_NOMEM) {
            /* Everything else that could go is gone: the value may still
             * fit in the key's own place, merged with what was freed. */
            return sd_set_locked(t, key, klen, hash, v, ttl_ms,
                                 flags | SET_LAST_RESORT);
        }
        if (rc != SD_OK)
            return rc;
        sd_tx_abort(t); /* the probe allocation only */
        rc = sd_set_locked(t, key, klen, hash, v, ttl_ms, flags);
    }
    return rc;
}

void sd_before_alloc_locked(sd_tx *t, uint64_t payload)
{
    if (sd_quick_held(t->h) && sd_block_size_for(payload) >= SD_SMALL_LIMIT)
        sd_quick_drain_locked(t);
}

/* Finish a write: undo a failed one, so errors change nothing. */
sd_status sd_end_write(sd_tx *t, sd_status rc)
{
    if (rc != SD_OK)
        sd_tx_abort(t);
    else if (!t->overflow)
        sd_tx_commit(t);
    if (!t->overflow && LD(&t->h->st->gc_head))
        sd_gc_locked(t, 16);
    return sd_tx_end(t, rc);
}

static sd_status check_key(size_t klen)
{
    return klen == 0 || klen > SD_MAX_KEY ? SD_BADARG : SD_OK;
}

static sd_status check_value(const sd_value_in *v)
{
    return v->type == 0 || v->type >= SD_T_LIST || sd_value_len(v) > UINT32_MAX
               ? SD_BADARG
               : SD_OK;
}

bool sd_check_value(const sd_value_in *v)
{
    return check_value(v) == SD_OK;
}

sd_status part_set_ex(sd_part *h, const void *key, size_t klen, uint32_t hash,
                      const sd_value_in *v, int64_t ttl_ms, unsigned flags,
                      uint64_t *evicted)
{
    uint64_t ev = 0;
    if (evicted)
        *evicted = 0;
    if (check_key(klen) || check_value(v))
        return SD_BADARG;
    if (sd_entry_need(klen, sd_value_len(v)) + 8 > h->heap_size)
        return SD_NOMEM;
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    t.one_write = true;
    rc = sd_set_with_room_locked(&t, key, klen, hash, v, ttl_ms, flags, &ev);
    if (evicted)
        *evicted = ev;
    return sd_end_write(&t, rc);
}

sd_status part_delete(sd_part *h, const void *key, size_t klen, uint32_t hash)
{
    sd_tx t;
    found f;
    bool open;
    sd_status rc = sd_open_find(h, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK)
        rc = sd_drop_locked(&t, &f);
    return sd_end_write(&t, rc);
}

static sd_status add_numbers(unsigned type, uint64_t bits,
                             const sd_value_in *d, sd_value_out *out)
{
    if (type == SD_T_INT && d->type == SD_T_INT) {
        int64_t r;
        if (__builtin_add_overflow((int64_t)bits, d->i, &r))
            return SD_OVERFLOW;
        out->type = SD_T_INT;
        out->i = r;
        return SD_OK;
    }
    double a, b;
    if (type == SD_T_INT)
        a = (double)(int64_t)bits;
    else
        memcpy(&a, &bits, 8);
    b = d->type == SD_T_INT ? (double)d->i : d->f;
    out->type = SD_T_FLOAT;
    out->f = a + b;
    return SD_OK;
}

static bool is_number(const sd_value_in *v)
{
    return v->type == SD_T_INT || v->type == SD_T_FLOAT;
}

sd_status part_incr_init(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, const sd_value_in *delta, int ttl_mode,
                         int64_t ttl_ms, const sd_value_in *init,
                         int64_t init_ttl_ms, sd_value_out *out)
{
    if (!is_number(delta) || (init && !is_number(init)))
        return SD_BADARG;
    sd_tx t;
    found f;
    bool open;
    sd_status rc = sd_open_find(h, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_NOTFOUND && init) {
        /* Start from init + delta, as one step. */
        uint64_t bits;
        memcpy(&bits,
               init->type == SD_T_INT ? (const void *)&init->i
                                      : (const void *)&init->f,
               8);
        rc = add_numbers(init->type, bits, delta, out);
        if (rc == SD_OK) {
            sd_value_in v = {.type = out->type, .i = out->i, .f = out->f};
            int64_t ttl = init_ttl_ms > 0 ? init_ttl_ms
                          : ttl_mode < 0  ? 0
                                          : ttl_ms;
            uint64_t ev = 0;
            rc = sd_set_with_room_locked(&t, key, klen, hash, &v, ttl,
                                         SD_MODE_ADD, &ev);
        }
        return sd_end_write(&t, rc);
    }
    if (rc == SD_OK) {
        unsigned type = f.v.meta & SD_META_TYPE;
        if (type == SD_T_LIST)
            rc = SD_WRONGTYPE;
        else if (type != SD_T_INT && type != SD_T_FLOAT)
            rc = SD_NOTNUM;
        else
            rc = add_numbers(type, LD(val_word(&f.v, 0)), delta, out);
    }
    if (rc == SD_OK) {
        uint64_t exp =
            ttl_mode < 0 ? meta_exp(f.v.meta) : sd_expiry_for(&t, ttl_ms);
        uint64_t bits;
        if (out->type == SD_T_INT)
            memcpy(&bits, &out->i, 8);
        else
            memcpy(&bits, &out->f, 8);
        uint64_t meta = (uint64_t)out->type | (exp << SD_META_EXP_SHIFT);
        _Atomic uint64_t *at = val_word(&f.v, 0);
        t.one_write = true;
        /* When only the value word changes, the counter's writes don't
         * move the log's cache line between processes. */
        if (!(meta == f.v.meta &&
              store_if_one_change(&t, at, &bits, 1, NULL, 0))) {
            sd_w64(&t, at, bits);
            sd_w64(&t, &f.v.e->meta, meta);
            sd_count_add(&t, 0, (exp ? 1 : 0) - (meta_exp(f.v.meta) ? 1 : 0));
        }
        sd_mark_used(h, hash);
    }
    return sd_end_write(&t, rc);
}

sd_status part_expire(sd_part *h, const void *key, size_t klen, uint32_t hash,
                      int64_t ttl_ms)
{
    sd_tx t;
    found f;
    bool open;
    sd_status rc = sd_open_find(h, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK) {
        uint64_t exp = sd_expiry_for(&t, ttl_ms);
        uint64_t meta = (f.v.meta & 0xffu) | (exp << SD_META_EXP_SHIFT);
        sd_w64(&t, &f.v.e->meta, meta);
        sd_count_add(&t, 0, (exp ? 1 : 0) - (meta_exp(f.v.meta) ? 1 : 0));
    }
    return sd_end_write(&t, rc);
}

/* Same type and same value; floats compare as numbers (0.0 == -0.0). */
static bool value_equals(const view *v, const sd_value_in *x)
{
    unsigned type = v->meta & SD_META_TYPE;
    if (type != x->type)
        return false;
    uint64_t bits;
    switch (type) {
    case SD_T_INT:
        return (int64_t)LD(val_word(v, 0)) == x->i;
    case SD_T_FLOAT: {
        double d;
        bits = LD(val_word(v, 0));
        memcpy(&d, &bits, 8);
        return d == x->f;
    }
    case SD_T_BYTES:
        if (!!(v->meta & SD_META_TAG) != !!x->tag)
            return false; /* tagged bytes equal no plain bytes */
        /* fall through */
    case SD_T_STR:
        return v->vlen == x->len && memcmp(v->val, x->data, x->len) == 0;
    default:
        return true; /* None, True, False: the type is the value */
    }
}

sd_status part_cas(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   const sd_value_in *expected, const sd_value_in *nv,
                   int ttl_mode, int64_t ttl_ms)
{
    if (check_value(expected) || check_value(nv))
        return SD_BADARG;
    sd_tx t;
    found f;
    bool open;
    sd_status rc = sd_open_find(h, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK && (f.v.meta & SD_META_TYPE) == SD_T_LIST)
        rc = SD_WRONGTYPE;
    else if (rc == SD_OK && !value_equals(&f.v, expected))
        rc = SD_EXISTS;
    if (rc == SD_OK) {
        uint64_t ev = 0;
        rc = sd_set_with_room_locked(
            &t, key, klen, hash, nv, ttl_ms,
            SD_MODE_REPLACE | (ttl_mode < 0 ? SD_KEEPTTL : 0), &ev);
    }
    return sd_end_write(&t, rc);
}

sd_status part_pop(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   sd_value_out *out)
{
    sd_tx t;
    found f;
    bool open;
    sd_status rc = sd_open_find(h, &t, key, klen, hash, &f, &open);
    out->waited_ns += t.waited;
    if (!open)
        return rc;
    if (rc == SD_OK)
        rc = sd_copy_value(&f.v, out);
    if (rc == SD_OK)
        rc = sd_drop_locked(&t, &f);
    return sd_end_write(&t, rc);
}

sd_status part_setdefault(sd_part *h, const void *key, size_t klen,
                          uint32_t hash, const sd_value_in *dflt,
                          sd_value_out *out)
{
    if (check_value(dflt))
        return SD_BADARG;
    sd_tx t;
    found f;
    bool open;
    sd_status rc = sd_open_find(h, &t, key, klen, hash, &f, &open);
    out->waited_ns += t.waited;
    if (!open)
        return rc;
    if (rc == SD_OK) {
        rc = sd_copy_value(&f.v, out);
    } else if (rc == SD_NOTFOUND) {
        uint64_t ev = 0;
        rc = sd_set_with_room_locked(&t, key, klen, hash, dflt, 0, SD_MODE_ADD,
                                     &ev);
        if (rc == SD_OK) {
            sd_end_write(&t, SD_OK);
            return SD_NOTFOUND; /* the default was stored */
        }
    }
    return sd_end_write(&t, rc);
}

/* Heap bytes in use: quick-listed blocks count in used_bytes, but are
 * free to the user. */
static uint64_t in_use(sd_part *h)
{
    uint64_t used = LD(&h->st->used_bytes), quick = LD(&h->st->quick_bytes);
    return used >= quick ? used - quick : 0;
}

void part_space(sd_part *h, uint64_t *capacity, uint64_t *free_bytes)
{
    uint64_t cap = h->heap_size - SD_UNIT;
    uint64_t used = in_use(h);
    *capacity = cap;
    *free_bytes = used < cap ? cap - used : 0;
}

/* ---- flush
 * ------------------------------------------------------------------- */

/* Zero the index pages the summary marks, and their CLOCK marks. The
 * unmarked ones hold only zeros already (verify checks it) and may be
 * holes, which a store would have to allocate. */
static void wipe_index(sd_part *h)
{
    for (uint64_t b = sd_next_used_bucket(h, 0); b < h->nbuckets;
         b = sd_next_used_bucket(h, b + SD_BUCKETS_PER_PAGE)) {
        uint64_t n = h->nbuckets - b < SD_BUCKETS_PER_PAGE
                         ? h->nbuckets - b
                         : SD_BUCKETS_PER_PAGE;
        memset((char *)(void *)&h->buckets[b], 0, n * sizeof(uint32_t));
        if (h->evict)
            memset((char *)(void *)&h->refs[b], 0, n);
    }
}

/* Empty the dict. Runs with flush_pending set, so that a holder that dies
 * here has the next locker run it again from the start. The pages stay
 * reserved: giving them back (MADV_REMOVE) would let a reader that still
 * follows an old offset fault in a page the filesystem may no longer
 * have. */
void sd_flush_locked_raw(sd_part *h)
{
    sd_lock *l = h->lock;
    ST(&l->flush_pending, 1u);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
    wipe_index(h);
    SD_CRASH_POINT();
    memset(h->base + h->summary_off, 0, h->summary_bytes); /* after them */
    SD_CRASH_POINT();
    /* Zero the reserved heap and its last page (the rest was never
     * touched): no byte of a flushed value stays in the file, and a
     * flushed dict is byte for byte a new one, so what a write logs never
     * depends on what was there before (a store of the value a word
     * already holds is skipped). */
    uint64_t backed = (uint64_t)LD(&h->st->backed_pages) * SD_PAGE;
    uint64_t last = (h->heap_size - 8) & ~(uint64_t)(SD_PAGE - 1);
    if (backed > last)
        backed = last;
    memset(h->base + h->heap_off, 0, backed);
    memset(h->base + h->heap_off + last, 0, h->heap_size - last);
    SD_CRASH_POINT();
    sd_heap_init(h);
    SD_CRASH_POINT();
    ST(&h->st->count, UINT64_C(0));
    ST(&h->st->n_expiring, UINT64_C(0));
    ST(&h->st->gc_head, 0u);
    ST(&h->st->clock_hand, UINT64_C(0));
    ST(&l->log_n, 0u);
    COMPILER_BARRIER();
    ST(&l->flush_pending, 0u);
    COMPILER_BARRIER();
}

/* Does the entry belong in bucket b? A scan that only lists entries of
 * their own bucket lists each at most once, even in a damaged index. */
static inline bool in_bucket(const sd_part *h, const view *v, uint64_t b)
{
    return (v->hash & (h->nbuckets - 1)) == b;
}

sd_status part_flush_expired(sd_part *h, uint64_t max, uint64_t *freed)
{
    *freed = 0;
    if (!LD(&h->st->n_expiring))
        return SD_OK;
    for (uint64_t b = 0; b < h->nbuckets && (!max || *freed < max);) {
        sd_tx t;
        sd_status rc = sd_tx_begin(h, &t);
        if (rc)
            return rc;
        uint64_t end = b + KEYS_CHUNK_BUCKETS, evicted = 0;
        for (; (b = sd_next_used_bucket(h, b)) < end && b < h->nbuckets &&
               (!max || *freed < max);
             b++)
            *freed += reclaim_bucket_locked(&t, b, false, NULL,
                                            max ? max - *freed : 0, &evicted);
        sd_end_write(&t, SD_OK);
    }
    return SD_OK;
}

/* ---- scans
 * ------------------------------------------------------------------- */

sd_status part_keys_chunk(sd_part *h, uint64_t *cursor, void *buf, size_t cap,
                          size_t *used, size_t *need)
{
    *used = 0;
    *need = 0;
    if (*cursor >= h->nbuckets) {
        *cursor = 0;
        return SD_OK;
    }
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    unsigned char *out = buf;
    uint64_t b = *cursor, end = b + KEYS_CHUNK_BUCKETS;
    if (end > h->nbuckets)
        end = h->nbuckets;
    int64_t now = sd_tx_now(&t);
    for (; (b = sd_next_used_bucket(h, b)) < end && rc == SD_OK; b++) {
        size_t start = *used, bucket_bytes = 0;
        uint32_t idx = LD(&h->buckets[b]);
        for (uint64_t steps = 0; idx; steps++) {
            view v;
            if (steps > h->max_chain || !sd_read_entry(h, idx, &v) ||
                !in_bucket(h, &v, b)) {
                rc = SD_CORRUPT;
                break;
            }
            if (!expired(v.meta, now)) {
                size_t rec = 4 + (size_t)v.klen;
                bucket_bytes += rec;
                if (bucket_bytes > h->heap_size) {
                    rc = SD_CORRUPT; /* more key bytes than the heap holds */
                    break;
                }
                if (*used + rec <= cap) {
                    memcpy(out + *used, &v.klen, 4);
                    memcpy(out + *used + 4, v.e->data, v.klen);
                    *used += rec;
                }
            }
            idx = v.next;
        }
        if (rc == SD_OK && start + bucket_bytes > cap) {
            /* This bucket didn't fit: stop before it. */
            *used = start;
            if (start == 0) {
                *need = bucket_bytes;
                rc = SD_TOOBIG;
            }
            break;
        }
    }
    *cursor = b >= h->nbuckets ? 0 : b;
    return sd_tx_end(&t, rc);
}

sd_status part_count(sd_part *h, uint64_t *n)
{
    _Atomic uint64_t *seq = &h->lock->seq;
    for (int tries = 0; tries < OPTIMISTIC_TRIES; tries++) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        uint64_t count = LD(&h->st->count);
        uint64_t expiring = LD(&h->st->n_expiring);
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1) &&
            atomic_load_explicit(seq, memory_order_relaxed) == s1) {
            /* A count no heap could hold is damage: count for real. */
            if (!expiring && count <= h->heap_size / SD_MIN_BLOCK) {
                *n = count;
                return SD_OK;
            }
            break;
        }
        cpu_relax();
    }
    /* Some entries may have expired: count the live ones, a slice of the
     * table per lock hold. */
    uint64_t live = 0;
    for (uint64_t b = 0; b < h->nbuckets;) {
        sd_tx t;
        sd_status rc = sd_tx_begin(h, &t);
        if (rc)
            return rc;
        int64_t now = sd_tx_now(&t);
        uint64_t end = b + KEYS_CHUNK_BUCKETS;
        for (; (b = sd_next_used_bucket(h, b)) < end && b < h->nbuckets; b++) {
            uint32_t idx = LD(&h->buckets[b]);
            for (uint64_t steps = 0; idx; steps++) {
                view v;
                if (steps > h->max_chain || !sd_read_entry(h, idx, &v) ||
                    !in_bucket(h, &v, b))
                    return sd_tx_end(&t, SD_CORRUPT);
                live += !expired(v.meta, now);
                idx = v.next;
            }
        }
        sd_tx_end(&t, SD_OK);
    }
    *n = live;
    return SD_OK;
}

/* ---- verify
 * ------------------------------------------------------------------ */

typedef struct report_buf {
    char *buf;
    size_t cap, len;
    size_t problems;
} report_buf;

static void report(void *ctx, const char *msg)
{
    report_buf *r = ctx;
    r->problems++;
    size_t n = strlen(msg);
    if (r->len + n + 2 <= r->cap) {
        memcpy(r->buf + r->len, msg, n);
        r->buf[r->len + n] = '\n';
        r->len += n + 1;
        r->buf[r->len] = '\0';
    }
}

/* A page of the index whose summary bit is clear must hold only empty
 * buckets: scans skip it, but lookups read its buckets all the same. Pages
 * never touched are holes in the file and read as zeros, so only the ones
 * in memory (mincore) are read, which keeps verify from committing the
 * whole index of a sparse dict. */
static void verify_clear_pages(sd_part *h, report_buf *r)
{
    uint64_t npages =
        (h->nbuckets + SD_BUCKETS_PER_PAGE - 1) / SD_BUCKETS_PER_PAGE;
    char *index = (char *)(void *)h->buckets;
    if ((uintptr_t)index % SD_PAGE)
        return; /* mincore needs a page boundary; the layout gives one */
    unsigned char vec[256];
    for (uint64_t p0 = 0; p0 < npages; p0 += sizeof vec) {
        uint64_t n = npages - p0 < sizeof vec ? npages - p0 : sizeof vec;
        if (mincore(index + p0 * SD_PAGE, n * SD_PAGE, vec) != 0)
            return; /* can't tell what is resident: read nothing */
        for (uint64_t i = 0; i < n; i++) {
            uint64_t page = p0 + i;
            if (!(vec[i] & 1) ||
                (LD(&h->summary[page / 32]) >> (page % 32)) & 1)
                continue;
            uint64_t b = page * SD_BUCKETS_PER_PAGE;
            uint64_t end = b + SD_BUCKETS_PER_PAGE;
            for (; b < end && b < h->nbuckets; b++) {
                uint32_t idx = LD(&h->buckets[b]);
                if (idx) {
                    char msg[160];
                    snprintf(msg, sizeof msg,
                             "index: bucket %llu holds block %u, but its "
                             "page is marked empty",
                             (unsigned long long)b, idx);
                    report(r, msg);
                    break; /* one report per page */
                }
            }
        }
    }
}

sd_status part_verify(sd_part *h, char *buf, size_t cap, size_t *problems)
{
    report_buf r = {buf, cap, 0, 0};
    char msg[200];
    if (cap)
        buf[0] = '\0';
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    sd_pstate *hd = h->st;
    uint64_t entries = 0, expiring = 0, items = 0;
    /* Chains are walked from the pages whose summary bit is set; the other
     * pages are checked to be empty by verify_clear_pages. */
    for (uint64_t b = sd_next_used_bucket(h, 0); b < h->nbuckets;
         b = sd_next_used_bucket(h, b + 1)) {
        uint32_t idx = LD(&h->buckets[b]);
        for (uint64_t steps = 0; idx; steps++) {
            view v;
            if (steps > h->max_chain) {
                snprintf(msg, sizeof msg, "index: bucket %llu chain is cyclic",
                         (unsigned long long)b);
                report(&r, msg);
                break;
            }
            if (!sd_read_entry(h, idx, &v)) {
                snprintf(msg, sizeof msg,
                         "index: bucket %llu links to a bad entry at block %u",
                         (unsigned long long)b, idx);
                report(&r, msg);
                break;
            }
            if ((v.hash & (h->nbuckets - 1)) != b ||
                (h->part_shift < 32 &&
                 v.hash >> h->part_shift != h->part_index) ||
                key_hash(h, v.e->data, v.klen) != v.hash) {
                snprintf(msg, sizeof msg,
                         "index: entry at block %u is in the wrong bucket or "
                         "has a wrong hash",
                         idx);
                report(&r, msg);
            }
            entries++;
            expiring += meta_exp(v.meta) != 0;
            if ((v.meta & SD_META_TYPE) == SD_T_LIST)
                items += sd_verify_list(h, &v, report, &r);
            idx = v.next;
        }
    }
    verify_clear_pages(h, &r);
    if (entries != LD(&hd->count)) {
        snprintf(msg, sizeof msg, "index: count says %llu, chains hold %llu",
                 (unsigned long long)LD(&hd->count),
                 (unsigned long long)entries);
        report(&r, msg);
    }
    if (expiring != LD(&hd->n_expiring)) {
        snprintf(msg, sizeof msg,
                 "index: n_expiring says %llu, chains hold %llu",
                 (unsigned long long)LD(&hd->n_expiring),
                 (unsigned long long)expiring);
        report(&r, msg);
    }
    items += sd_verify_gc(h, report, &r);
    uint64_t used_blocks = 0;
    sd_verify_heap(h, report, &r, &used_blocks);
    if (used_blocks != entries + items) {
        snprintf(msg, sizeof msg,
                 "heap: %llu blocks in use, %llu entries and %llu list items "
                 "reachable (leak)",
                 (unsigned long long)used_blocks, (unsigned long long)entries,
                 (unsigned long long)items);
        report(&r, msg);
    }
    *problems = r.problems;
    return sd_tx_end(&t, SD_OK);
}

sd_status part_get_stats(sd_part *h, sd_stats *st)
{
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    st->count = LD(&h->st->count);
    st->n_expiring = LD(&h->st->n_expiring);
    st->used_bytes = in_use(h);
    st->heap_size = h->heap_size - SD_UNIT;
    st->nbuckets = h->nbuckets;
    st->recoveries = LD(&h->lock->recoveries);
    st->lock_waits = LD(&h->lock->lock_waits);
    st->evictions = LD(&h->st->evictions);
    st->expirations = LD(&h->st->expirations);
    st->evict = h->evict;
    st->pending_free = 0;
    for (uint32_t idx = LD(&h->st->gc_head);
         idx && st->pending_free <= h->max_chain; st->pending_free++) {
        sd_view v;
        if (!sd_read_item(h, idx, &v))
            break;
        idx = v.next;
    }
    return sd_tx_end(&t, SD_OK);
}
