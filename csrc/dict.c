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

/* ---- hashing -------------------------------------------------------------- */

static inline uint64_t rotl64(uint64_t x, unsigned r)
{
    return (x << r) | (x >> (64 - r));
}

static inline uint64_t fmix64(uint64_t k)
{
    k ^= k >> 33;
    k *= UINT64_C(0xff51afd7ed558ccd);
    k ^= k >> 33;
    k *= UINT64_C(0xc4ceb9fe1a85ec53);
    k ^= k >> 33;
    return k;
}

/* A keyed multiply-rotate hash over 8-byte words; the tail is read as one
 * partial word. Not cryptographic: the seed only keeps chains short against
 * keys chosen without access to the file. */
uint64_t sd_hash_bytes(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *s = p;
    const uint64_t k1 = UINT64_C(0x9e3779b97f4a7c15);
    const uint64_t k2 = UINT64_C(0xbf58476d1ce4e5b9);
    uint64_t h = seed ^ ((uint64_t)n * k1);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = rotl64(h ^ (w * k2), 29) * k1;
        s += 8;
        n -= 8;
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, s, n);
        h = rotl64(h ^ (w * k2), 29) * k1;
    }
    return fmix64(h);
}

static inline uint32_t key_hash(const sd_handle *h, const void *key,
                                size_t klen)
{
    uint64_t x = sd_hash_bytes(key, klen, h->hash_seed);
    return (uint32_t)(x ^ (x >> 32));
}

static inline _Atomic uint32_t *bucket_of(const sd_handle *h, uint32_t hash)
{
    return &h->buckets[hash & (h->nbuckets - 1)];
}

/* ---- entries ---------------------------------------------------------------- */

/* A checked copy of an entry's header. */
typedef struct view {
    uint32_t idx, next, hash, klen, vlen;
    uint64_t meta;
    uint64_t payload; /* bytes the block offers */
    sd_entry *e;
    unsigned char *val;
} view;

static inline uint64_t meta_exp(uint64_t meta) { return meta >> SD_META_EXP_SHIFT; }

static inline bool expired(uint64_t meta, int64_t now_ms)
{
    uint64_t exp = meta_exp(meta);
    return exp != 0 && exp <= (uint64_t)now_ms;
}

/* Read and check the entry at idx. False if any field can't be right. */
static bool read_entry(const sd_handle *h, uint32_t idx, view *v)
{
    if (!sd_idx_ok(h, idx))
        return false;
    uint64_t hdr = LD(sd_blk_hdr(h, idx));
    uint64_t size = hdr & ~SD_BLK_FLAGS;
    if ((hdr & SD_BLK_FREE) || size < SD_MIN_BLOCK ||
        ((uint64_t)idx << SD_UNIT_SHIFT) + size > h->heap_size)
        return false;
    sd_entry *e = sd_blk_entry(h, idx);
    v->idx = idx;
    v->e = e;
    v->next = LD(&e->next);
    v->hash = LD(&e->hash);
    v->meta = LD(&e->meta);
    v->klen = LD(&e->klen);
    v->vlen = LD(&e->vlen);
    v->payload = size - 8;
    unsigned type = v->meta & SD_META_TYPE;
    if (v->klen == 0 || v->klen > SD_MAX_KEY || type == 0 || type > SD_T_MAX ||
        sd_entry_need(v->klen, v->vlen) > v->payload)
        return false;
    if ((type == SD_T_INT || type == SD_T_FLOAT) && v->vlen != 8)
        return false;
    v->val = e->data + sd_pad8(v->klen);
    return true;
}

static inline bool key_eq(const view *v, uint32_t hash, const void *key,
                          size_t klen)
{
    return v->hash == hash && v->klen == klen &&
           memcmp(v->e->data, key, klen) == 0;
}

static inline _Atomic uint64_t *val_word(const view *v, size_t i)
{
    return (_Atomic uint64_t *)(void *)(v->val + 8 * i);
}

/* Copy the value of a checked entry into out. */
static sd_status copy_value(const view *v, sd_value_out *out)
{
    unsigned type = v->meta & SD_META_TYPE;
    out->type = (uint8_t)type;
    out->ascii = (v->meta & SD_META_ASCII) != 0;
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
    }
    return SD_OK;
}

/* ---- lookup ------------------------------------------------------------------ */

typedef struct found {
    _Atomic uint32_t *link; /* the word that points at the entry */
    view v;
} found;

/* Find a key while holding the lock. SD_OK with f filled, SD_NOTFOUND, or
 * SD_CORRUPT for a chain that leaves the heap or never ends. */
static sd_status find_locked(sd_handle *h, const void *key, size_t klen,
                             uint32_t hash, found *f)
{
    _Atomic uint32_t *link = bucket_of(h, hash);
    uint32_t idx = LD(link);
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > h->max_chain || !read_entry(h, idx, &f->v))
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
} peek;

/* One lookup for a reader. Returns SD_OK, SD_NOTFOUND, SD_TOOBIG, or
 * SD_CORRUPT when something read can't be right (the caller decides
 * whether that's a race or damage). */
static sd_status peek_once(sd_handle *h, const void *key, size_t klen,
                           uint32_t hash, uint64_t max_steps, peek *p)
{
    uint32_t idx = LD(bucket_of(h, hash));
    view v;
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > max_steps || !read_entry(h, idx, &v))
            return SD_CORRUPT;
        if (key_eq(&v, hash, key, klen)) {
            if (meta_exp(v.meta) && expired(v.meta, sd_now_ms()))
                return SD_NOTFOUND;
            p->meta = v.meta;
            return p->out ? copy_value(&v, p->out) : SD_OK;
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

static sd_status peek_key(sd_handle *h, const void *key, size_t klen,
                          peek *p)
{
    if (klen == 0 || klen > SD_MAX_KEY)
        return SD_BADARG;
    uint32_t hash = key_hash(h, key, klen);
    _Atomic uint64_t *seq = &h->lock->seq;
    for (int tries = 0, spins = 0; tries < OPTIMISTIC_TRIES;) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        if (s1 & 1) {
            if (++spins > ODD_SPINS)
                break; /* a writer is slow or dead: go and lock */
            cpu_relax();
            continue;
        }
        sd_status rc = peek_once(h, key, klen, hash, OPTIMISTIC_CHAIN, p);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(seq, memory_order_relaxed) == s1 &&
            rc != SD_CORRUPT)
            return rc;
        tries++;
    }
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    rc = peek_once(h, key, klen, hash, h->max_chain, p);
    return sd_tx_end(&t, rc);
}

sd_status sd_get(sd_handle *h, const void *key, size_t klen,
                 sd_value_out *out)
{
    peek p = {.out = out};
    return peek_key(h, key, klen, &p);
}

sd_status sd_ttl(sd_handle *h, const void *key, size_t klen,
                 int64_t *ns_left)
{
    peek p = {.out = NULL};
    sd_status rc = peek_key(h, key, klen, &p);
    if (rc)
        return rc;
    uint64_t exp = meta_exp(p.meta);
    if (!exp) {
        *ns_left = 0;
        return SD_OK;
    }
    int64_t left = (int64_t)exp * 1000000 - sd_now_ns();
    if (left <= 0)
        return SD_NOTFOUND; /* expired between the lookup and now */
    *ns_left = left;
    return SD_OK;
}

/* ---- writes ------------------------------------------------------------------ */

static uint64_t value_len(const sd_value_in *v)
{
    switch (v->type) {
    case SD_T_INT:
    case SD_T_FLOAT:
        return 8;
    case SD_T_STR:
    case SD_T_BYTES:
        return v->len;
    default:
        return 0;
    }
}

static uint64_t make_meta(const sd_value_in *v, uint64_t exp)
{
    uint64_t m = v->type;
    if (v->type == SD_T_STR && v->ascii)
        m |= SD_META_ASCII;
    return m | (exp << SD_META_EXP_SHIFT);
}

/* The value's bytes as the file stores them, padded with zeros to whole
 * words, for the in-place path (at most INPLACE_MAX bytes). */
static void value_words(const sd_value_in *v, uint64_t *w, size_t nwords)
{
    memset(w, 0, nwords * 8);
    if (v->type == SD_T_INT)
        memcpy(w, &v->i, 8);
    else if (v->type == SD_T_FLOAT)
        memcpy(w, &v->f, 8);
    else if (v->type == SD_T_STR || v->type == SD_T_BYTES)
        memcpy(w, v->data, v->len);
}

static uint64_t expiry_for(sd_tx *t, int64_t ttl_ms)
{
    if (ttl_ms <= 0)
        return 0;
    uint64_t exp = (uint64_t)sd_tx_now(t) + (uint64_t)ttl_ms;
    return exp > SD_MAX_EXPIRY_MS ? SD_MAX_EXPIRY_MS : exp;
}

static void count_add(sd_tx *t, int64_t entries, int64_t expiring)
{
    sd_header *hd = t->h->hdr;
    if (entries)
        sd_w64(t, &hd->count, LD(&hd->count) + (uint64_t)entries);
    if (expiring)
        sd_w64(t, &hd->n_expiring, LD(&hd->n_expiring) + (uint64_t)expiring);
}

/* Fill a freshly allocated block. The header words are logged because
 * they overlay the free block's list links, and the block's last word is
 * saved because it may be the free block's footer; the rest is unreachable
 * until linked, so it is written plainly. */
static void write_entry(sd_tx *t, uint32_t idx, uint32_t next, uint32_t hash,
                        uint64_t meta, const void *key, size_t klen,
                        const sd_value_in *v)
{
    sd_handle *h = t->h;
    sd_entry *e = sd_blk_entry(h, idx);
    uint64_t bsize = LD(sd_blk_hdr(h, idx)) & ~SD_BLK_FLAGS;
    uint64_t vlen = value_len(v);
    sd_save64(t, (_Atomic uint64_t *)(void *)(sd_blk(h, idx) + bsize - 8));
    sd_w32(t, &e->next, next);
    sd_w32(t, &e->hash, hash);
    sd_w64(t, &e->meta, meta);
    sd_w32(t, &e->klen, (uint32_t)klen);
    sd_w32(t, &e->vlen, (uint32_t)vlen);
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

/* Unlink a found entry and free its block. */
static sd_status drop_locked(sd_tx *t, found *f)
{
    sd_w32(t, f->link, f->v.next);
    count_add(t, -1, meta_exp(f->v.meta) ? -1 : 0);
    return sd_free_locked(t, f->v.idx);
}

static sd_status set_locked(sd_tx *t, const void *key, size_t klen,
                            uint32_t hash, const sd_value_in *v,
                            int64_t ttl_ms)
{
    sd_handle *h = t->h;
    found f;
    sd_status rc = find_locked(h, key, klen, hash, &f);
    if (rc == SD_CORRUPT)
        return rc;
    bool have = rc == SD_OK;
    uint64_t exp = expiry_for(t, ttl_ms);
    uint64_t meta = make_meta(v, exp);
    uint64_t vlen = value_len(v);
    uint64_t need = sd_entry_need(klen, vlen);
    int64_t exp_delta = exp ? 1 : 0;

    if (have && vlen <= INPLACE_MAX && need <= f.v.payload) {
        /* Overwrite in place: every word goes through the undo log. */
        uint64_t w[INPLACE_MAX / 8];
        size_t nw = (size_t)(sd_pad8(vlen) / 8);
        value_words(v, w, nw);
        for (size_t i = 0; i < nw; i++)
            sd_w64(t, val_word(&f.v, i), w[i]);
        sd_w32(t, &f.v.e->vlen, (uint32_t)vlen);
        sd_w64(t, &f.v.e->meta, meta);
        count_add(t, 0, exp_delta - (meta_exp(f.v.meta) ? 1 : 0));
        return SD_OK;
    }
    uint32_t idx;
    rc = sd_alloc_locked(t, need, &idx);
    if (rc == SD_NOMEM && have) {
        /* Maybe it fits once the old value is gone. If not, the caller
         * rolls this back and the old value reappears. */
        if ((rc = drop_locked(t, &f)))
            return rc;
        have = false;
        rc = sd_alloc_locked(t, need, &idx);
    }
    if (rc)
        return rc;
    if (have) {
        write_entry(t, idx, f.v.next, hash, meta, key, klen, v);
        sd_w32(t, f.link, idx);
        count_add(t, 0, exp_delta - (meta_exp(f.v.meta) ? 1 : 0));
        return sd_free_locked(t, f.v.idx);
    }
    _Atomic uint32_t *b = bucket_of(h, hash);
    uint32_t head = LD(b);
    if (!head) {
        /* Mark the bucket's page before it holds anything. Not logged: a
         * stale set bit only costs a scan a page read. */
        uint64_t page = (hash & (h->nbuckets - 1)) / SD_BUCKETS_PER_PAGE;
        atomic_fetch_or_explicit(&h->summary[page / 32], 1u << (page % 32),
                                 memory_order_relaxed);
        COMPILER_BARRIER();
    }
    write_entry(t, idx, head, hash, meta, key, klen, v);
    sd_w32(t, b, idx);
    count_add(t, 1, exp_delta);
    return SD_OK;
}

/* Free every expired entry, committing after each so the undo log never
 * fills. Returns how many were freed. O(buckets + entries). */
static uint64_t sweep_expired_locked(sd_tx *t)
{
    sd_handle *h = t->h;
    if (!LD(&h->hdr->n_expiring))
        return 0;
    int64_t now = sd_tx_now(t);
    uint64_t freed = 0;
    for (uint64_t b = sd_next_used_bucket(h, 0); b < h->nbuckets;
         b = sd_next_used_bucket(h, b + 1)) {
        _Atomic uint32_t *link = &h->buckets[b];
        uint32_t idx = LD(link);
        for (uint64_t steps = 0; idx && steps <= h->max_chain; steps++) {
            found f;
            if (!read_entry(h, idx, &f.v))
                break; /* verify() will name it; don't touch it */
            if (expired(f.v.meta, now)) {
                f.link = link;
                if (drop_locked(t, &f) != SD_OK || t->overflow) {
                    sd_tx_rollback_locked(h);
                    t->overflow = false;
                    return freed;
                }
                sd_tx_commit(t);
                freed++;
                idx = LD(link);
                continue;
            }
            link = &f.v.e->next;
            idx = f.v.next;
        }
    }
    return freed;
}

/* Finish a write: undo a failed one, so errors change nothing. */
static sd_status end_write(sd_tx *t, sd_status rc)
{
    if (rc != SD_OK && rc != SD_NOTFOUND)
        sd_tx_rollback_locked(t->h);
    return sd_tx_end(t, rc);
}

static sd_status check_key(size_t klen)
{
    return klen == 0 || klen > SD_MAX_KEY ? SD_BADARG : SD_OK;
}

sd_status sd_set(sd_handle *h, const void *key, size_t klen,
                 const sd_value_in *v, int64_t ttl_ms)
{
    if (check_key(klen) || v->type == 0 || v->type > SD_T_MAX ||
        value_len(v) > UINT32_MAX)
        return SD_BADARG;
    if (sd_entry_need(klen, value_len(v)) + 8 > h->heap_size)
        return SD_NOMEM;
    uint32_t hash = key_hash(h, key, klen);
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    rc = set_locked(&t, key, klen, hash, v, ttl_ms);
    if (rc == SD_NOMEM) {
        sd_tx_rollback_locked(h);
        if (sweep_expired_locked(&t))
            rc = set_locked(&t, key, klen, hash, v, ttl_ms);
    }
    return end_write(&t, rc);
}

/* Look a key up for a write, reclaiming it if it has expired. */
static sd_status find_live_locked(sd_tx *t, const void *key, size_t klen,
                                  found *f)
{
    uint32_t hash = key_hash(t->h, key, klen);
    sd_status rc = find_locked(t->h, key, klen, hash, f);
    if (rc == SD_OK && expired(f->v.meta, sd_tx_now(t))) {
        rc = drop_locked(t, f);
        return rc ? rc : SD_NOTFOUND;
    }
    return rc;
}

sd_status sd_delete(sd_handle *h, const void *key, size_t klen)
{
    if (check_key(klen))
        return SD_BADARG;
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    found f;
    rc = find_live_locked(&t, key, klen, &f);
    if (rc == SD_OK)
        rc = drop_locked(&t, &f);
    return end_write(&t, rc);
}

static sd_status add_numbers(const view *v, const sd_value_in *d,
                             sd_value_out *out)
{
    unsigned type = v->meta & SD_META_TYPE;
    uint64_t bits = LD(val_word(v, 0));
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

sd_status sd_incr(sd_handle *h, const void *key, size_t klen,
                  const sd_value_in *delta, int ttl_mode, int64_t ttl_ms,
                  sd_value_out *out)
{
    if (check_key(klen) ||
        (delta->type != SD_T_INT && delta->type != SD_T_FLOAT))
        return SD_BADARG;
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    found f;
    rc = find_live_locked(&t, key, klen, &f);
    if (rc == SD_OK) {
        unsigned type = f.v.meta & SD_META_TYPE;
        if (type != SD_T_INT && type != SD_T_FLOAT)
            rc = SD_NOTNUM;
        else
            rc = add_numbers(&f.v, delta, out);
    }
    if (rc == SD_OK) {
        uint64_t exp = ttl_mode < 0 ? meta_exp(f.v.meta) : expiry_for(&t, ttl_ms);
        uint64_t bits;
        if (out->type == SD_T_INT)
            memcpy(&bits, &out->i, 8);
        else
            memcpy(&bits, &out->f, 8);
        sd_w64(&t, val_word(&f.v, 0), bits);
        sd_w64(&t, &f.v.e->meta, (uint64_t)out->type | (exp << SD_META_EXP_SHIFT));
        count_add(&t, 0, (exp ? 1 : 0) - (meta_exp(f.v.meta) ? 1 : 0));
    }
    return end_write(&t, rc);
}

sd_status sd_expire(sd_handle *h, const void *key, size_t klen,
                    int64_t ttl_ms)
{
    if (check_key(klen))
        return SD_BADARG;
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    found f;
    rc = find_live_locked(&t, key, klen, &f);
    if (rc == SD_OK) {
        uint64_t exp = expiry_for(&t, ttl_ms);
        uint64_t meta = (f.v.meta & 0xffu) | (exp << SD_META_EXP_SHIFT);
        sd_w64(&t, &f.v.e->meta, meta);
        count_add(&t, 0, (exp ? 1 : 0) - (meta_exp(f.v.meta) ? 1 : 0));
    }
    return end_write(&t, rc);
}

/* ---- flush ------------------------------------------------------------------- */

/* Zero [off, off+len) of the file, giving whole pages back to the kernel. */
static void wipe(sd_handle *h, uint64_t off, uint64_t len)
{
    char *p = h->base + off;
    uint64_t head = (SD_PAGE - off % SD_PAGE) % SD_PAGE;
    if (head > len)
        head = len;
    memset(p, 0, head);
    uint64_t pages = (len - head) / SD_PAGE * SD_PAGE;
    if (pages && madvise(p + head, pages, MADV_REMOVE) != 0)
        memset(p + head, 0, pages);
    memset(p + head + pages, 0, len - head - pages);
}

/* Empty the dict. Runs with flush_pending set, so that a holder that dies
 * here has the next locker run it again from the start. */
void sd_flush_locked_raw(sd_handle *h)
{
    sd_lock *l = h->lock;
    ST(&l->flush_pending, 1u);
    COMPILER_BARRIER();
    SD_CRASH_POINT();
    wipe(h, h->index_off, h->nbuckets * sizeof(uint32_t));
    SD_CRASH_POINT();
    wipe(h, h->summary_off, h->summary_bytes); /* after the buckets */
    SD_CRASH_POINT();
    /* The heap's bytes don't matter; release its pages past the first. */
    if (h->heap_size > 2 * SD_PAGE)
        wipe(h, h->heap_off + SD_PAGE, h->heap_size - 2 * SD_PAGE);
    SD_CRASH_POINT();
    sd_heap_init(h);
    SD_CRASH_POINT();
    ST(&h->hdr->count, UINT64_C(0));
    ST(&h->hdr->n_expiring, UINT64_C(0));
    ST(&l->log_n, 0u);
    COMPILER_BARRIER();
    ST(&l->flush_pending, 0u);
    COMPILER_BARRIER();
}

sd_status sd_flush_all(sd_handle *h)
{
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    sd_flush_locked_raw(h);
    return sd_tx_end(&t, SD_OK);
}

/* ---- scans ------------------------------------------------------------------- */

sd_status sd_keys_chunk(sd_handle *h, uint64_t *cursor, void *buf,
                        size_t cap, size_t *used, size_t *need)
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
            if (steps > h->max_chain || !read_entry(h, idx, &v)) {
                rc = SD_CORRUPT;
                break;
            }
            if (!expired(v.meta, now)) {
                size_t rec = 4 + (size_t)v.klen;
                bucket_bytes += rec;
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

sd_status sd_count(sd_handle *h, uint64_t *n)
{
    _Atomic uint64_t *seq = &h->lock->seq;
    for (int tries = 0; tries < OPTIMISTIC_TRIES; tries++) {
        uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
        uint64_t count = LD(&h->hdr->count);
        uint64_t expiring = LD(&h->hdr->n_expiring);
        atomic_thread_fence(memory_order_acquire);
        if (!(s1 & 1) && atomic_load_explicit(seq, memory_order_relaxed) == s1) {
            if (!expiring) {
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
                if (steps > h->max_chain || !read_entry(h, idx, &v))
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

/* ---- verify ------------------------------------------------------------------ */

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

sd_status sd_verify(sd_handle *h, char *buf, size_t cap, size_t *problems)
{
    report_buf r = {buf, cap, 0, 0};
    char msg[200];
    if (cap)
        buf[0] = '\0';
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    sd_header *hd = h->hdr;
    if (hd->magic != SD_MAGIC || hd->version != SD_VERSION ||
        hd->format != SD_FORMAT_WORD || hd->file_size != h->file_size ||
        hd->heap_off != h->heap_off || hd->heap_size != h->heap_size ||
        hd->index_off != h->index_off || hd->nbuckets != h->nbuckets)
        report(&r, "header: identity or layout fields changed");
    uint64_t entries = 0, expiring = 0;
    /* Pages whose summary bit is clear are not read (that would commit the
     * whole index of a sparse dict); an entry hidden behind a wrongly clear
     * bit still shows, as a block in use that no chain reaches. */
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
            if (!read_entry(h, idx, &v)) {
                snprintf(msg, sizeof msg,
                         "index: bucket %llu links to a bad entry at block %u",
                         (unsigned long long)b, idx);
                report(&r, msg);
                break;
            }
            if ((v.hash & (h->nbuckets - 1)) != b ||
                key_hash(h, v.e->data, v.klen) != v.hash) {
                snprintf(msg, sizeof msg,
                         "index: entry at block %u is in the wrong bucket or "
                         "has a wrong hash",
                         idx);
                report(&r, msg);
            }
            entries++;
            expiring += meta_exp(v.meta) != 0;
            idx = v.next;
        }
    }
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
    uint64_t used_blocks = 0;
    sd_verify_heap(h, report, &r, &used_blocks);
    if (used_blocks != entries) {
        snprintf(msg, sizeof msg,
                 "heap: %llu blocks in use, %llu entries reachable (leak)",
                 (unsigned long long)used_blocks, (unsigned long long)entries);
        report(&r, msg);
    }
    *problems = r.problems;
    return sd_tx_end(&t, SD_OK);
}

sd_status sd_get_stats(sd_handle *h, sd_stats *st)
{
    sd_tx t;
    sd_status rc = sd_tx_begin(h, &t);
    if (rc)
        return rc;
    st->count = LD(&h->hdr->count);
    st->n_expiring = LD(&h->hdr->n_expiring);
    st->used_bytes = LD(&h->hdr->used_bytes);
    st->heap_size = h->heap_size - SD_UNIT;
    st->nbuckets = h->nbuckets;
    st->recoveries = LD(&h->lock->recoveries);
    st->lock_waits = LD(&h->lock->lock_waits);
    return sd_tx_end(&t, SD_OK);
}
