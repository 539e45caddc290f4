/*
 * api.c - the public API: pick a key's stripe, or work across stripes.
 *
 * A dict is split into nparts stripes (a power of two), each with its own
 * lock, undo log, index and heap, so that writers of different keys
 * rarely meet on a lock or a cache line. The top bits of a key's 32-bit
 * hash choose its stripe and the low bits its bucket there.
 *
 * Single-key calls lock one stripe. Calls over several keys or the whole
 * dict (batches, flush_all) take the stripes they need in ascending order,
 * which keeps them deadlock-free, and hold them together, so no other
 * process sees part of the call. Scans (keys, counting, expiry sweeps)
 * visit one stripe slice at a time instead. A call that takes locks more
 * than once does so inside a span, so that all its waits together last at
 * most one lock timeout.
 */
#include <stdio.h>
#include <sys/stat.h>

#include "internal.h"

static inline uint32_t hash_of(const sd_handle *d, const void *key,
                               size_t klen)
{
    uint64_t x = sd_hash_bytes(key, klen, d->hash_seed);
    return (uint32_t)(x ^ (x >> 32));
}

static inline sd_part *part_of(const sd_handle *d, uint32_t hash)
{
    return &d->parts[d->part_shift >= 32 ? 0 : hash >> d->part_shift];
}

/* Once the guard has repaired a fault in the mapping (guard.c), no answer
 * of this handle can be trusted: every call says why instead. */
static inline sd_status guarded(const sd_handle *d, sd_status rc)
{
    int g = sd_guard_state(d->guard);
    return SD_LIKELY(!g) ? rc : g == SD_GUARD_TORN ? SD_TORN : SD_NOSPACE;
}

static inline bool key_ok(size_t klen)
{
    return klen != 0 && klen <= SD_MAX_KEY;
}

#define ROUTE(call)                                                           \
    if (!key_ok(klen))                                                        \
        return SD_BADARG;                                                     \
    uint32_t hash = hash_of(d, key, klen);                                    \
    return guarded(d, call)

/* ---- single keys -----------------------------------------------------------
 */

sd_status sd_get(sd_handle *d, const void *key, size_t klen, sd_value_out *out)
{
    ROUTE(part_get(part_of(d, hash), key, klen, hash, out));
}

int sd_still_current(sd_handle *d, uint32_t part, uint32_t hash, uint64_t seq)
{
    return part < d->nparts && !sd_guard_state(d->guard) &&
           part_still_current(&d->parts[part], hash, seq);
}

uint64_t sd_part_seq(const sd_handle *d, unsigned part)
{
    return part < d->nparts ? atomic_load_explicit(&d->parts[part].lock->seq,
                                                   memory_order_acquire)
                            : 1;
}

sd_status sd_get_stale(sd_handle *d, const void *key, size_t klen,
                       sd_value_out *out, int *stale)
{
    ROUTE(part_get_stale(part_of(d, hash), key, klen, hash, out, stale));
}

sd_status sd_ttl(sd_handle *d, const void *key, size_t klen, int64_t *ns_left)
{
    ROUTE(part_ttl(part_of(d, hash), key, klen, hash, ns_left));
}

sd_status sd_set_ex(sd_handle *d, const void *key, size_t klen,
                    const sd_value_in *v, int64_t ttl_ms, unsigned flags,
                    uint64_t *evicted)
{
    ROUTE(part_set_ex(part_of(d, hash), key, klen, hash, v, ttl_ms, flags,
                      evicted));
}

sd_status sd_set(sd_handle *d, const void *key, size_t klen,
                 const sd_value_in *v, int64_t ttl_ms)
{
    return sd_set_ex(d, key, klen, v, ttl_ms, SD_MODE_SET, NULL);
}

sd_status sd_delete(sd_handle *d, const void *key, size_t klen)
{
    ROUTE(part_delete(part_of(d, hash), key, klen, hash));
}

sd_status sd_incr_init(sd_handle *d, const void *key, size_t klen,
                       const sd_value_in *delta, int ttl_mode, int64_t ttl_ms,
                       const sd_value_in *init, int64_t init_ttl_ms,
                       sd_value_out *out)
{
    ROUTE(part_incr_init(part_of(d, hash), key, klen, hash, delta, ttl_mode,
                         ttl_ms, init, init_ttl_ms, out));
}

sd_status sd_incr(sd_handle *d, const void *key, size_t klen,
                  const sd_value_in *delta, int ttl_mode, int64_t ttl_ms,
                  sd_value_out *out)
{
    return sd_incr_init(d, key, klen, delta, ttl_mode, ttl_ms, NULL, 0, out);
}

sd_status sd_expire(sd_handle *d, const void *key, size_t klen, int64_t ttl_ms)
{
    ROUTE(part_expire(part_of(d, hash), key, klen, hash, ttl_ms));
}

sd_status sd_cas(sd_handle *d, const void *key, size_t klen,
                 const sd_value_in *expected, const sd_value_in *nv,
                 int ttl_mode, int64_t ttl_ms)
{
    ROUTE(part_cas(part_of(d, hash), key, klen, hash, expected, nv, ttl_mode,
                   ttl_ms));
}

sd_status sd_pop(sd_handle *d, const void *key, size_t klen, sd_value_out *out)
{
    ROUTE(part_pop(part_of(d, hash), key, klen, hash, out));
}

sd_status sd_setdefault(sd_handle *d, const void *key, size_t klen,
                        const sd_value_in *dflt, sd_value_out *out)
{
    ROUTE(part_setdefault(part_of(d, hash), key, klen, hash, dflt, out));
}

sd_status sd_push(sd_handle *d, const void *key, size_t klen, int left,
                  const sd_value_in *v, uint64_t *len)
{
    ROUTE(part_push(part_of(d, hash), key, klen, hash, left, v, len));
}

sd_status sd_list_pop(sd_handle *d, const void *key, size_t klen, int left,
                      sd_value_out *out)
{
    ROUTE(part_list_pop(part_of(d, hash), key, klen, hash, left, out));
}

sd_status sd_list_items(sd_handle *d, const void *key, size_t klen, void *buf,
                        size_t cap, size_t *used, uint64_t *count)
{
    ROUTE(part_list_items(part_of(d, hash), key, klen, hash, buf, cap, used,
                          count));
}

sd_status sd_llen(sd_handle *d, const void *key, size_t klen, uint64_t *len)
{
    ROUTE(part_llen(part_of(d, hash), key, klen, hash, len));
}

/* ---- several stripes at once
 * ------------------------------------------------ */

typedef struct multi {
    sd_tx t[SD_MAX_PARTS];
    bool held[SD_MAX_PARTS];
    sd_handle *d;
    sd_wait w; /* one for all the stripes: block_begin is called once */
} multi;

static void release_parts(multi *m)
{
    for (unsigned j = m->d->nparts; j-- > 0;)
        if (m->held[j]) {
            sd_tx_end(&m->t[j], SD_OK); /* nothing changed yet */
            m->held[j] = false;
        }
}

/* Take the stripes in `want` (all if NULL), in ascending order, waiting
 * at most one lock timeout in all.
 *
 * No code outside the core may run while this thread holds a stripe (the
 * interrupt hook runs Python's signal handlers, which may call this dict),
 * so a wait for a stripe while others are held is not interruptible. It
 * doesn't last: after one slice the wait gives up, the stripes held are
 * let go (unchanged), the busy one is waited for alone, where the hook is
 * asked between slices, and then let go too, and the call starts over.
 * Letting go also frees those stripes for others meanwhile. */
static sd_status lock_parts(sd_handle *d, const bool *want, multi *m)
{
    m->d = d;
    m->w = (sd_wait){.token = NULL, .blocked = false, .holding = false};
    for (unsigned i = 0; i < d->nparts; i++)
        m->held[i] = false;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    sd_status rc = SD_BUSY_HOLDING;
    while (rc == SD_BUSY_HOLDING) {
        unsigned i = 0;
        bool any = false;
        for (rc = SD_OK; i < d->nparts; i++) {
            if (want && !want[i])
                continue;
            m->w.holding = any;
            rc = sd_tx_begin_wait(&d->parts[i], &m->t[i], &m->w);
            if (rc != SD_OK)
                break;
            m->held[i] = any = true;
        }
        if (rc == SD_OK)
            break;
        release_parts(m);
        if (rc == SD_BUSY_HOLDING) { /* wait for stripe i alone */
            sd_tx t;
            m->w.holding = false;
            sd_status r = sd_tx_begin_wait(&d->parts[i], &t, &m->w);
            if (r == SD_OK)
                sd_tx_end(&t, SD_OK); /* and start over */
            else
                rc = r;
        }
    }
    sd_span_leave(&span);
    if (rc != SD_OK && m->w.blocked && d->parts[0].block_end) {
        d->parts[0].block_end(m->w.token);
        m->w.blocked = false;
    }
    return rc;
}

/* Finish every held stripe (commit, or undo if rc is an error) and
 * release them. */
static sd_status unlock_parts(multi *m, sd_status rc)
{
    sd_handle *d = m->d;
    for (unsigned i = d->nparts; i-- > 0;) {
        if (!m->held[i])
            continue;
        sd_status r = sd_end_write(&m->t[i], rc);
        if ((rc == SD_OK && r != SD_OK) || (rc == SD_NOMEM && r == SD_NOSPACE))
            rc = r; /* say it was the filesystem, if it was */
    }
    if (m->w.blocked && d->parts[0].block_end)
        d->parts[0].block_end(m->w.token);
    return rc;
}

static sd_status check_keys(size_t n, const size_t *klens)
{
    for (size_t i = 0; i < n; i++)
        if (!key_ok(klens[i]))
            return SD_BADARG;
    return SD_OK;
}

sd_status sd_get_many(sd_handle *d, size_t n, const char *const *keys,
                      const size_t *klens, void *buf, size_t cap, size_t *need)
{
    if (check_keys(n, klens))
        return guarded(d, SD_BADARG);
    multi m;
    sd_status rc = lock_parts(d, NULL, &m);
    if (rc)
        return guarded(d, rc);
    unsigned char *out = buf;
    size_t pos = 0;
    int64_t now = sd_now_ms();
    for (size_t i = 0; i < n && rc == SD_OK; i++) {
        uint32_t hash = hash_of(d, keys[i], klens[i]);
        sd_found f;
        sd_status r =
            sd_find_locked(part_of(d, hash), keys[i], klens[i], hash, &f);
        if (r == SD_CORRUPT) {
            rc = r;
            break;
        }
        unsigned char *at = pos < cap ? out + pos : NULL;
        size_t room = pos < cap ? cap - pos : 0;
        if (r == SD_OK && !sd_expired(f.v.meta, now)) {
            if ((f.v.meta & SD_META_TYPE) == SD_T_LIST) {
                rc = SD_WRONGTYPE;
                break;
            }
            pos += sd_put_record(at, room, &f.v);
        } else { /* missing: a record of zeros */
            if (room >= 8)
                memset(at, 0, 8);
            pos += 8;
        }
    }
    if (rc == SD_OK && pos > cap) {
        *need = pos;
        rc = SD_TOOBIG;
    }
    sd_status r = unlock_parts(&m, SD_OK);
    return guarded(d, rc != SD_OK ? rc : r);
}

/* Commit every held stripe: a checkpoint of a batch. */
static void commit_parts(multi *m)
{
    for (unsigned i = 0; i < m->d->nparts; i++)
        if (m->held[i])
            sd_tx_commit(&m->t[i]);
}

/* Does any held stripe's transaction need a checkpoint before the next
 * item? (its undo log or its queue of frees is nearly full) */
/* The most one item can log: a 4 KiB block written word by word (see
 * set_locked's full-dict path) plus the allocator's and index's words. */
#define BATCH_LOG_RESERVE 640u

static bool needs_checkpoint(multi *m)
{
    for (unsigned i = 0; i < m->d->nparts; i++)
        if (m->held[i] && (LD(&m->d->parts[i].lock->log_n) >
                               SD_LOG_CAP - BATCH_LOG_RESERVE ||
                           m->t[i].npending > SD_PENDING_CAP - 8))
            return true;
    return false;
}

sd_status sd_set_many(sd_handle *d, size_t n, const char *const *keys,
                      const size_t *klens, const sd_value_in *vals,
                      int64_t ttl_ms, size_t *done, uint64_t *evicted)
{
    *done = 0;
    *evicted = 0;
    if (check_keys(n, klens))
        return guarded(d, SD_BADARG);
    uint64_t biggest = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sd_check_value(&vals[i]))
            return guarded(d, SD_BADARG);
        uint64_t need = sd_entry_need(klens[i], sd_value_len(&vals[i]));
        biggest = need > biggest ? need : biggest;
    }
    multi m;
    sd_status rc = lock_parts(d, NULL, &m);
    if (rc)
        return guarded(d, rc);
    for (unsigned j = 0; j < d->nparts; j++)
        sd_before_alloc_locked(&m.t[j], biggest);
    /* Fast path: the whole batch in one transaction per stripe, with a
     * checkpoint of all of them whenever one log nears its end, so a
     * batch that fits is all or nothing. */
    size_t committed = 0, i = 0;
    for (; i < n && rc == SD_OK; i++) {
        if (needs_checkpoint(&m)) {
            commit_parts(&m);
            committed = i;
        }
        uint32_t hash = hash_of(d, keys[i], klens[i]);
        sd_part *p = part_of(d, hash);
        rc = sd_set_locked(&m.t[p - d->parts], keys[i], klens[i], hash,
                           &vals[i], ttl_ms, SD_MODE_SET);
        if (rc == SD_OK && m.t[p - d->parts].overflow)
            rc = SD_INTERNAL;  /* can't happen with the reserve above */
        sd_mark_used(p, hash); /* see the slow path below */
    }
    bool room = false;
    for (unsigned j = 0; rc == SD_NOMEM && j < d->nparts; j++)
        room = room || sd_can_make_room(&d->parts[j]);
    if (rc == SD_NOMEM && room) {
        /* Slow path: undo back to the checkpoint, then store item by item,
         * making room as needed (which commits as it goes). A dict that
         * can't make room skips this and is left as the checkpoint was. */
        for (unsigned j = 0; j < d->nparts; j++)
            if (m.held[j])
                sd_tx_abort(&m.t[j]);
        rc = SD_OK;
        for (i = committed; i < n && rc == SD_OK; i++) {
            uint64_t ev = 0;
            uint32_t hash = hash_of(d, keys[i], klens[i]);
            sd_tx *t = &m.t[part_of(d, hash) - d->parts];
            rc = sd_set_with_room_locked(t, keys[i], klens[i], hash, &vals[i],
                                         ttl_ms, SD_MODE_SET, &ev);
            *evicted += ev;
            if (rc == SD_OK) {
                sd_tx_commit(t);
                committed = i + 1;
                /* A new key comes unmarked; mark the batch's keys so that
                 * making room for its later items passes them over. A
                 * mark left by an undone write costs nothing but that. */
                sd_mark_used(t->h, hash);
            }
        }
    }
    *done = rc == SD_OK ? n : committed;
    return guarded(d, unlock_parts(&m, rc));
}

sd_status sd_delete_many(sd_handle *d, size_t n, const char *const *keys,
                         const size_t *klens, size_t *deleted)
{
    *deleted = 0;
    if (check_keys(n, klens))
        return guarded(d, SD_BADARG);
    multi m;
    sd_status rc = lock_parts(d, NULL, &m);
    if (rc)
        return guarded(d, rc);
    for (size_t i = 0; i < n && rc == SD_OK; i++) {
        uint32_t hash = hash_of(d, keys[i], klens[i]);
        sd_tx *t = &m.t[part_of(d, hash) - d->parts];
        sd_found f;
        rc = sd_find_live_locked(t, keys[i], klens[i], hash, &f);
        if (rc == SD_OK) {
            rc = sd_drop_locked(t, &f);
            if (rc == SD_OK)
                ++*deleted;
        } else if (rc == SD_NOTFOUND) {
            rc = SD_OK;
        }
        if (rc == SD_OK) /* each delete stands on its own */
            sd_tx_commit(t);
    }
    return guarded(d, unlock_parts(&m, rc));
}

sd_status sd_flush_all(sd_handle *d)
{
    multi m;
    sd_status rc = lock_parts(d, NULL, &m);
    if (rc)
        return guarded(d, rc);
    /* Mark every stripe first: a holder killed half way leaves the rest
     * marked, and their next lockers finish the flush. */
    for (unsigned i = 0; i < d->nparts; i++)
        ST(&d->parts[i].lock->flush_pending, 1u);
    COMPILER_BARRIER();
    for (unsigned i = 0; i < d->nparts; i++)
        sd_flush_locked_raw(&d->parts[i]);
    return guarded(d, unlock_parts(&m, SD_OK));
}

/* ---- whole-dict scans, one stripe at a time
 * --------------------------------- */

sd_status sd_flush_expired(sd_handle *d, uint64_t max, uint64_t *freed)
{
    *freed = 0;
    sd_status rc = SD_OK;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nparts && (!max || *freed < max) && !rc; i++) {
        uint64_t n = 0;
        rc = part_flush_expired(&d->parts[i], max ? max - *freed : 0, &n);
        *freed += n;
    }
    sd_span_leave(&span);
    return guarded(d, rc);
}

/* The cursor is part * nbuckets + bucket, so it stays below 2^63. */
sd_status sd_keys_chunk(sd_handle *d, uint64_t *cursor, void *buf, size_t cap,
                        size_t *used, size_t *need)
{
    uint64_t nb = d->parts[0].nbuckets;
    uint64_t part = *cursor / nb, local = *cursor % nb;
    *used = 0;
    *need = 0;
    if (part >= d->nparts) {
        *cursor = 0;
        return guarded(d, SD_OK);
    }
    sd_status rc =
        part_keys_chunk(&d->parts[part], &local, buf, cap, used, need);
    if (rc == SD_TOOBIG) {
        *cursor = part * nb + local; /* retry that bucket, bigger buffer */
        return guarded(d, rc);
    }
    if (rc)
        return guarded(d, rc);
    if (local == 0) /* that stripe is done */
        *cursor = part + 1 < d->nparts ? (part + 1) * nb : 0;
    else
        *cursor = part * nb + local;
    return guarded(d, SD_OK);
}

sd_status sd_count(sd_handle *d, uint64_t *n)
{
    *n = 0;
    sd_status rc = SD_OK;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nparts && !rc; i++) {
        uint64_t c = 0;
        rc = part_count(&d->parts[i], &c);
        *n += c;
    }
    sd_span_leave(&span);
    return guarded(d, rc);
}

uint64_t sd_max_item(const sd_handle *d)
{
    /* A block takes the whole heap but its 16 reserved bytes and the
     * block header; the entry header comes out of the rest. */
    uint64_t heap = d->parts[0].heap_size;
    return heap > SD_UNIT + 8 + SD_ENTRY_HDR
               ? heap - SD_UNIT - 8 - SD_ENTRY_HDR
               : 0;
}

void sd_space(sd_handle *d, uint64_t *capacity, uint64_t *free_bytes)
{
    *capacity = *free_bytes = 0;
    for (unsigned i = 0; i < d->nparts; i++) {
        uint64_t c, f;
        part_space(&d->parts[i], &c, &f);
        *capacity += c;
        *free_bytes += f;
    }
}

sd_status sd_verify(sd_handle *d, char *buf, size_t cap, size_t *problems)
{
    *problems = 0;
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    const sd_header *hd = d->hdr;
    if (hd->magic != SD_MAGIC || hd->version != SD_VERSION ||
        hd->format != SD_FORMAT_WORD || hd->file_size != d->file_size ||
        hd->nparts != d->nparts || hd->heap_size != d->parts[0].heap_size ||
        hd->nbuckets != d->parts[0].nbuckets) {
        ++*problems;
        len +=
            (size_t)snprintf(buf, cap, "header: identity or layout changed\n");
    }
    sd_status rc = SD_OK;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nparts && !rc; i++) {
        size_t p = 0;
        char *at = len < cap ? buf + len : NULL;
        rc = part_verify(&d->parts[i], at, at ? cap - len : 0, &p);
        *problems += p;
        if (at)
            len += strlen(at);
    }
    sd_span_leave(&span);
    return guarded(d, rc);
}

sd_status sd_get_stats(sd_handle *d, sd_stats *st)
{
    memset(st, 0, sizeof *st);
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nparts; i++) {
        sd_stats s;
        sd_status rc = part_get_stats(&d->parts[i], &s);
        if (rc) {
            sd_span_leave(&span);
            return guarded(d, rc);
        }
        st->count += s.count;
        st->n_expiring += s.n_expiring;
        st->used_bytes += s.used_bytes;
        st->heap_size += s.heap_size;
        st->nbuckets += s.nbuckets;
        st->recoveries += s.recoveries;
        st->lock_waits += s.lock_waits;
        st->evictions += s.evictions;
        st->expirations += s.expirations;
        st->pending_free += s.pending_free;
        st->evict = s.evict;
    }
    sd_span_leave(&span);
    const sd_slot *slots = d->parts[0].slots;
    for (unsigned i = 0; i < SD_NSLOTS; i++) {
        st->hits += LD(&slots[i].hits);
        st->misses += LD(&slots[i].misses);
        st->sets += LD(&slots[i].sets);
    }
    st->nparts = d->nparts;
    st->reserved = d->parts[0].reserved;
    struct stat fst;
    if (fstat(d->guard->fd, &fst) == 0)
        st->reserved_bytes = (uint64_t)fst.st_blocks * 512;
    return guarded(d, SD_OK);
}
