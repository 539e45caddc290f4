/*
 * write.c - set, delete, incr, expire, cas, pop and setdefault on one
 * stripe.
 *
 * Writes take the lock and run as one transaction (tx.c). Expired entries
 * are reclaimed when a write touches them, and all at once when an
 * allocation fails.
 */
#include <math.h>

#include "tx.h"
#include "write.h"

/* The value's bytes as the file stores them, padded with zeros to whole
 * words, for the in-place path (at most SD_INPLACE_MAX bytes). */
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

/* ---- set ---------------------------------------------------------------- */

/* store_commits's own flag: every other way to make room has been tried
 * (sd_set_room_commits's last try). Above the public flags. */
#define SET_LAST_RESORT (1u << 30)

/* Where a set left the key's value: for a caller that keeps the value it
 * stored (stripe_set_ex's `kept`). */
static inline void stored_at(sd_tx *t, uint32_t idx, uint64_t meta)
{
    t->stored_idx = idx;
    t->stored_meta = meta;
}

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
 * (sd_can_make_room), or as the last try of sd_set_room_commits, after
 * expired entries, the gc chain and the quick lists were reclaimed. Until
 * then it says SD_NOMEM and changes nothing, so the caller makes room
 * first.
 *
 * Both ways commit the transaction, and so whatever it held before (the
 * earlier items of a batch). */
SD_MUST_USE static sd_status
set_in_old_place_commits(sd_tx *t, sd_found *f, const void *key, size_t klen,
                         uint32_t hash, const sd_value_in *v, uint64_t meta,
                         uint64_t need, unsigned flags)
{
    sd_stripe *s = t->s;
    if (!sd_fits_after_free(s, f->v.idx, need))
        return SD_NOMEM;
    /* The block found may be up to one minimum block bigger than asked (a
     * remainder too small to split off stays with it). */
    bool logged = sd_block_size_for(need) + SD_MIN_BLOCK <= LOGGED_BLOCK_MAX;
    if (!logged && !(flags & SET_LAST_RESORT) &&
        !(s->evict && !(flags & SD_NOEVICT)) && sd_can_make_room(s))
        return SD_NOMEM; /* make room first; the caller tries again */
    /* The new block will start where the merged free block does: at the
     * old block, or at a free block just before it. Reserve the pages it
     * will cover now, before anything changes, so that nothing can fail
     * once the old value's drop is committed. */
    uint32_t start = f->v.idx;
    if (LD(sd_blk_hdr(s, start)) & SD_BLK_PREV_FREE) {
        uint64_t ps = LD((_Atomic uint64_t *)(void *)(sd_blk(s, start) - 8));
        if (ps >= SD_MIN_BLOCK && ps % SD_UNIT == 0 &&
            (ps >> SD_UNIT_SHIFT) < start)
            start -= (uint32_t)(ps >> SD_UNIT_SHIFT);
    }
    uint64_t end =
        ((uint64_t)start << SD_UNIT_SHIFT) + sd_block_size_for(need) + SD_UNIT;
    if (end > (uint64_t)LD(&s->st->backed_pages) * SD_PAGE &&
        sd_heap_reserve_locked(s, end) != SD_OK) {
        t->nospace = true;
        return SD_NOMEM;
    }
    sd_w32(t, f->link, f->v.next);
    sd_count_add(t, -1, sd_meta_exp(f->v.meta) ? -1 : 0);
    sd_status rc = sd_release_locked(t, &f->v);
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
    stored_at(t, idx, meta);
    /* Commit now: what is left of the freed space is free again, and a
     * later allocation of this transaction (a batch) would write into it
     * unlogged, bytes a rollback would have to bring back. */
    sd_tx_commit(t);
    return SD_OK;
}

/* sd_set_commits without the statistics: see write.h. */
SD_MUST_USE static sd_status store_commits(sd_tx *t, const void *key,
                                           size_t klen, uint32_t hash,
                                           const sd_value_in *v,
                                           int64_t ttl_ms, unsigned flags);

SD_MUST_USE sd_status sd_set_commits(sd_tx *t, const void *key, size_t klen,
                                     uint32_t hash, const sd_value_in *v,
                                     int64_t ttl_ms, unsigned flags)
{
    sd_status rc = store_commits(t, key, klen, hash, v, ttl_ms, flags);
    if (rc == SD_OK)
        sd_slot_inc(
            &sd_my_slot(t->s)->sets); /* once per store, not per retry */
    return rc;
}

/* The store of sd_set_commits; it commits only through
 * set_in_old_place_commits. */
SD_MUST_USE static sd_status store_commits(sd_tx *t, const void *key,
                                           size_t klen, uint32_t hash,
                                           const sd_value_in *v,
                                           int64_t ttl_ms, unsigned flags)
{
    sd_stripe *s = t->s;
    sd_found f;
    sd_status rc = sd_find_live_locked(t, key, klen, hash, &f);
    if (rc == SD_CORRUPT)
        return rc;
    bool have = rc == SD_OK;
    unsigned mode = flags & SD_MODE_MASK;
    if (mode == SD_MODE_ADD && have)
        return SD_EXISTS;
    if (mode == SD_MODE_REPLACE && !have)
        return SD_NOTFOUND;
    if (!have && (rc = sd_bucket_ready_locked(s, hash)))
        return rc;
    uint64_t exp = (flags & SD_KEEPTTL) && have ? sd_meta_exp(f.v.meta)
                   : ttl_ms > 0                 ? sd_expiry_for(t, ttl_ms)
                                                : 0;
    uint64_t meta = sd_make_meta(v, exp);
    uint64_t vlen = sd_value_len(v);
    uint64_t need = sd_entry_need(klen, vlen);
    int64_t exp_delta =
        (exp ? 1 : 0) - (have && sd_meta_exp(f.v.meta) ? 1 : 0);
    bool old_list = have && sd_is_list(f.v.meta);

    if (have && !old_list && vlen <= SD_INPLACE_MAX && need <= f.v.payload) {
        /* Overwrite in place: every word goes through the undo log, unless
         * only one word changes (a number, a flag, a new expiry). */
        uint64_t w[SD_INPLACE_MAX / 8];
        size_t nw = (size_t)(sd_pad8(vlen) / 8);
        value_words(v, w, nw);
        if (exp_delta == 0 && vlen == f.v.vlen &&
            store_if_one_change(t, sd_val_word(&f.v, 0), w, nw, &f.v.e->meta,
                                meta)) {
            sd_mark_used(s, hash);
            stored_at(t, f.v.idx, meta);
            return SD_OK;
        }
        for (size_t i = 0; i < nw; i++)
            sd_w64(t, sd_val_word(&f.v, i), w[i]);
        sd_w32(t, &f.v.e->vlen, (uint32_t)vlen);
        sd_w64(t, &f.v.e->meta, meta);
        sd_count_add(t, 0, exp_delta);
        sd_mark_used(s, hash);
        stored_at(t, f.v.idx, meta);
        return SD_OK;
    }
    uint32_t idx;
    rc = sd_alloc_locked(t, need, &idx);
    if (rc == SD_NOMEM && have)
        return set_in_old_place_commits(t, &f, key, klen, hash, v, meta, need,
                                        flags);
    if (rc)
        return rc;
    stored_at(t, idx, meta);
    if (!have) {
        sd_link_new_locked(t, idx, hash, meta, key, klen, v);
        return SD_OK;
    }
    sd_write_entry(t, idx, f.v.next, hash, meta, key, klen, v);
    sd_w32(t, f.link, idx);
    sd_count_add(t, 0, exp_delta);
    sd_mark_used(s, hash);
    return sd_release_locked(t, &f.v);
}

/* A set, retried after making room. The key itself is never evicted to
 * make room for its own new value. */
SD_MUST_USE sd_status sd_set_room_commits(sd_tx *t, const void *key,
                                          size_t klen, uint32_t hash,
                                          const sd_value_in *v, int64_t ttl_ms,
                                          unsigned flags, uint64_t *evicted)
{
    uint64_t need = sd_entry_need(klen, sd_value_len(v));
    sd_before_alloc_commits(t, need);
    sd_status rc = sd_set_commits(t, key, klen, hash, v, ttl_ms, flags);
    if (rc != SD_NOMEM)
        return rc;
    for (int attempt = 0; attempt < 4 && rc == SD_NOMEM; attempt++) {
        uint32_t idx;
        /* Make room for a block of the size the set needs, give it back,
         * and try the set again (it may also free the old value). */
        rc = sd_alloc_room_commits(t, need, flags & SD_NOEVICT, key, klen,
                                   hash, &idx, evicted);
        if (rc == SD_NOMEM) {
            /* Everything else that could go is gone: the value may still
             * fit in the key's own place, merged with what was freed. */
            return sd_set_commits(t, key, klen, hash, v, ttl_ms,
                                  flags | SET_LAST_RESORT);
        }
        if (rc != SD_OK)
            return rc;
        sd_tx_abort(t); /* the probe allocation only */
        rc = sd_set_commits(t, key, klen, hash, v, ttl_ms, flags);
    }
    return rc;
}

/* ---- one key, under the lock -------------------------------------------- */

SD_MUST_USE sd_status stripe_set_ex(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash, const sd_value_in *v,
                                    int64_t ttl_ms, unsigned flags,
                                    uint64_t *evicted, sd_near *kept)
{
    if (kept)
        kept->seq = 0;
    uint64_t ev = 0;
    if (evicted)
        *evicted = 0;
    if (!sd_check_value(v))
        return SD_BADARG;
    if (sd_entry_need(klen, sd_value_len(v)) + 8 > s->heap_size)
        return SD_NOMEM;
    sd_tx t;
    sd_status rc = sd_tx_begin(s, &t);
    if (rc)
        return rc;
    t.one_write = true;
    rc = sd_set_room_commits(&t, key, klen, hash, v, ttl_ms, flags, &ev);
    if (evicted)
        *evicted = ev;
    rc = sd_tx_end_write(&t, rc);
    if (kept && rc == SD_OK && t.stored_idx) {
        /* What the stripe held when this hold ended (sd_tx_end). */
        kept->seq = t.seq + 1;
        kept->meta = t.stored_meta;
        kept->idx = t.stored_idx;
        kept->hash = hash;
    }
    return rc;
}

SD_MUST_USE sd_status stripe_delete(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash)
{
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK)
        rc = sd_drop_locked(&t, &f);
    return sd_tx_end_write(&t, rc);
}

/* type/bits (the stored number) + d into *out: an int if both are ints
 * (SD_OVERFLOW past 64 bits), else a float. */
SD_MUST_USE static sd_status add_numbers(unsigned type, uint64_t bits,
                                         const sd_value_in *d,
                                         sd_value_out *out)
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

SD_MUST_USE sd_status stripe_incr_init(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       const sd_value_in *delta,
                                       unsigned flags, int64_t ttl_ms,
                                       const sd_value_in *init,
                                       int64_t init_ttl_ms, sd_value_out *out)
{
    if (!is_number(delta) || (init && !is_number(init)))
        return SD_BADARG;
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
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
            int64_t ttl = init_ttl_ms > 0        ? init_ttl_ms
                          : (flags & SD_KEEPTTL) ? 0
                                                 : ttl_ms;
            uint64_t ev = 0;
            rc = sd_set_room_commits(&t, key, klen, hash, &v, ttl, SD_MODE_ADD,
                                     &ev);
        }
        return sd_tx_end_write(&t, rc);
    }
    if (rc == SD_OK) {
        unsigned type = f.v.meta & SD_META_TYPE;
        if (type == SD_T_LIST)
            rc = SD_WRONGTYPE;
        else if (type != SD_T_INT && type != SD_T_FLOAT)
            rc = SD_NOTNUM;
        else
            rc = add_numbers(type, LD(sd_val_word(&f.v, 0)), delta, out);
    }
    if (rc == SD_OK) {
        uint64_t exp = (flags & SD_KEEPTTL) ? sd_meta_exp(f.v.meta)
                                            : sd_expiry_for(&t, ttl_ms);
        uint64_t bits;
        if (out->type == SD_T_INT)
            memcpy(&bits, &out->i, 8);
        else
            memcpy(&bits, &out->f, 8);
        uint64_t meta = (uint64_t)out->type | (exp << SD_META_EXP_SHIFT);
        _Atomic uint64_t *at = sd_val_word(&f.v, 0);
        t.one_write = true;
        /* When only the value word changes, the counter's writes don't
         * move the log's cache line between processes. */
        if (!(meta == f.v.meta &&
              store_if_one_change(&t, at, &bits, 1, NULL, 0))) {
            sd_w64(&t, at, bits);
            sd_w64(&t, &f.v.e->meta, meta);
            sd_count_add(&t, 0,
                         (exp ? 1 : 0) - (sd_meta_exp(f.v.meta) ? 1 : 0));
        }
        sd_mark_used(s, hash);
    }
    return sd_tx_end_write(&t, rc);
}

SD_MUST_USE sd_status stripe_expire(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash, int64_t ttl_ms)
{
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK) {
        uint64_t exp = sd_expiry_for(&t, ttl_ms);
        uint64_t meta = (f.v.meta & 0xffu) | (exp << SD_META_EXP_SHIFT);
        sd_w64(&t, &f.v.e->meta, meta);
        sd_count_add(&t, 0, (exp ? 1 : 0) - (sd_meta_exp(f.v.meta) ? 1 : 0));
    }
    return sd_tx_end_write(&t, rc);
}

/* Same type and same value; floats compare as numbers (0.0 == -0.0). */
static bool value_equals(const sd_view *v, const sd_value_in *x)
{
    unsigned type = v->meta & SD_META_TYPE;
    if (type != x->type)
        return false;
    uint64_t bits;
    switch (type) {
    case SD_T_INT:
        return (int64_t)LD(sd_val_word(v, 0)) == x->i;
    case SD_T_FLOAT: {
        double d;
        bits = LD(sd_val_word(v, 0));
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

SD_MUST_USE sd_status stripe_cas(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, const sd_value_in *expected,
                                 const sd_value_in *nv, unsigned flags,
                                 int64_t ttl_ms)
{
    if (!sd_check_value(expected) || !sd_check_value(nv))
        return SD_BADARG;
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK && sd_is_list(f.v.meta))
        rc = SD_WRONGTYPE;
    else if (rc == SD_OK && !value_equals(&f.v, expected))
        rc = SD_EXISTS;
    if (rc == SD_OK) {
        uint64_t ev = 0;
        rc = sd_set_room_commits(&t, key, klen, hash, nv, ttl_ms,
                                 SD_MODE_REPLACE | (flags & SD_KEEPTTL), &ev);
    }
    return sd_tx_end_write(&t, rc);
}

SD_MUST_USE sd_status stripe_pop(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, sd_value_out *out)
{
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    out->waited_ns += t.waited;
    if (!open)
        return rc;
    if (rc == SD_OK)
        rc = sd_copy_value(&f.v, out);
    if (rc == SD_OK)
        rc = sd_drop_locked(&t, &f);
    return sd_tx_end_write(&t, rc);
}

SD_MUST_USE sd_status stripe_setdefault(sd_stripe *s, const void *key,
                                        size_t klen, uint32_t hash,
                                        const sd_value_in *dflt,
                                        sd_value_out *out)
{
    if (!sd_check_value(dflt))
        return SD_BADARG;
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    out->waited_ns += t.waited;
    if (!open)
        return rc;
    if (rc == SD_OK) {
        rc = sd_copy_value(&f.v, out);
    } else if (rc == SD_NOTFOUND) {
        uint64_t ev = 0;
        rc = sd_set_room_commits(&t, key, klen, hash, dflt, 0, SD_MODE_ADD,
                                 &ev);
        if (rc == SD_OK) {
            /* The default is stored only if this commit holds. */
            rc = sd_tx_end_write(&t, SD_OK);
            return rc == SD_OK ? SD_NOTFOUND : rc;
        }
    }
    return sd_tx_end_write(&t, rc);
}
