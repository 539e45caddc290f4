/*
 * api.c - the public API: pick a key's stripe, or work across stripes.
 *
 * A dict is split into nstripes stripes (a power of two), each with its own
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

#include "api.h"
#include "list.h"
#include "read.h"
#include "room.h"
#include "scan.h"
#include "verify.h"
#include "write.h"

#define ROUTE(call)                                                           \
    if (!sd_key_ok(klen))                                                     \
        return SD_BADARG;                                                     \
    uint32_t hash = sd_key_hash(d->hash_seed, key, klen);                     \
    return sd_guarded(d, call)

/* ---- single keys -------------------------------------------------------- */

SD_MUST_USE sd_status sd_get(sd_handle *d, const void *key, size_t klen,
                             sd_value_out *out)
{
    ROUTE(stripe_get(sd_stripe_of(d, hash), key, klen, hash, out));
}

int sd_still_current(sd_handle *d, uint32_t stripe, uint32_t hash,
                     uint64_t seq)
{
    return stripe < d->nstripes && !sd_guard_state(d->guard) &&
           stripe_still_current(&d->stripes[stripe], hash, seq);
}

int sd_near_check(sd_handle *d, const void *key, size_t klen, sd_near *n)
{
    /* The guard once before (a repaired mapping answers nothing) and, if
     * the heap was read, once after (a fault repaired meanwhile may have
     * fed the check zeros). */
    if (sd_guard_state(d->guard))
        return 0;
    int r = stripe_near_check(sd_stripe_of(d, n->hash), key, klen, n);
    return r == 1 || (r == 2 && !sd_guard_state(d->guard));
}

uint32_t sd_stripe_index(const sd_handle *d, uint32_t hash)
{
    return (uint32_t)(sd_stripe_of(d, hash) - d->stripes);
}

uint64_t sd_part_seq(const sd_handle *d, unsigned stripe)
{
    return stripe < d->nstripes
               ? atomic_load_explicit(&d->stripes[stripe].lock->seq,
                                      memory_order_acquire)
               : 1;
}

SD_MUST_USE sd_status sd_get_stale(sd_handle *d, const void *key, size_t klen,
                                   sd_value_out *out, int *stale)
{
    ROUTE(
        stripe_get_stale(sd_stripe_of(d, hash), key, klen, hash, out, stale));
}

SD_MUST_USE sd_status sd_ttl(sd_handle *d, const void *key, size_t klen,
                             int64_t *ns_left)
{
    ROUTE(stripe_ttl(sd_stripe_of(d, hash), key, klen, hash, ns_left));
}

SD_MUST_USE sd_status sd_set_ex(sd_handle *d, const void *key, size_t klen,
                                const sd_value_in *v, int64_t ttl_ms,
                                unsigned flags, uint64_t *evicted)
{
    ROUTE(stripe_set_ex(sd_stripe_of(d, hash), key, klen, hash, v, ttl_ms,
                        flags, evicted, NULL));
}

SD_MUST_USE sd_status sd_set_near(sd_handle *d, const void *key, size_t klen,
                                  const sd_value_in *v, int64_t ttl_ms,
                                  unsigned flags, uint64_t *evicted,
                                  sd_near *kept)
{
    ROUTE(stripe_set_ex(sd_stripe_of(d, hash), key, klen, hash, v, ttl_ms,
                        flags, evicted, kept));
}

SD_MUST_USE sd_status sd_set(sd_handle *d, const void *key, size_t klen,
                             const sd_value_in *v, int64_t ttl_ms)
{
    return sd_set_ex(d, key, klen, v, ttl_ms, SD_MODE_SET, NULL);
}

SD_MUST_USE sd_status sd_delete(sd_handle *d, const void *key, size_t klen)
{
    ROUTE(stripe_delete(sd_stripe_of(d, hash), key, klen, hash));
}

SD_MUST_USE sd_status sd_incr_init(sd_handle *d, const void *key, size_t klen,
                                   const sd_value_in *delta, int ttl_mode,
                                   int64_t ttl_ms, const sd_value_in *init,
                                   int64_t init_ttl_ms, sd_value_out *out)
{
    ROUTE(stripe_incr_init(sd_stripe_of(d, hash), key, klen, hash, delta,
                           ttl_mode < 0 ? SD_KEEPTTL : 0, ttl_ms, init,
                           init_ttl_ms, out));
}

SD_MUST_USE sd_status sd_incr(sd_handle *d, const void *key, size_t klen,
                              const sd_value_in *delta, int ttl_mode,
                              int64_t ttl_ms, sd_value_out *out)
{
    return sd_incr_init(d, key, klen, delta, ttl_mode, ttl_ms, NULL, 0, out);
}

SD_MUST_USE sd_status sd_expire(sd_handle *d, const void *key, size_t klen,
                                int64_t ttl_ms)
{
    ROUTE(stripe_expire(sd_stripe_of(d, hash), key, klen, hash, ttl_ms));
}

SD_MUST_USE sd_status sd_cas(sd_handle *d, const void *key, size_t klen,
                             const sd_value_in *expected,
                             const sd_value_in *nv, int ttl_mode,
                             int64_t ttl_ms)
{
    ROUTE(stripe_cas(sd_stripe_of(d, hash), key, klen, hash, expected, nv,
                     ttl_mode < 0 ? SD_KEEPTTL : 0, ttl_ms));
}

SD_MUST_USE sd_status sd_pop(sd_handle *d, const void *key, size_t klen,
                             sd_value_out *out)
{
    ROUTE(stripe_pop(sd_stripe_of(d, hash), key, klen, hash, out));
}

SD_MUST_USE sd_status sd_setdefault(sd_handle *d, const void *key, size_t klen,
                                    const sd_value_in *dflt, sd_value_out *out)
{
    ROUTE(
        stripe_setdefault(sd_stripe_of(d, hash), key, klen, hash, dflt, out));
}

SD_MUST_USE sd_status sd_push(sd_handle *d, const void *key, size_t klen,
                              int left, const sd_value_in *v, uint64_t *len)
{
    ROUTE(stripe_push(sd_stripe_of(d, hash), key, klen, hash, left, v, len));
}

SD_MUST_USE sd_status sd_list_pop(sd_handle *d, const void *key, size_t klen,
                                  int left, sd_value_out *out)
{
    ROUTE(stripe_list_pop(sd_stripe_of(d, hash), key, klen, hash, left, out));
}

SD_MUST_USE sd_status sd_list_items(sd_handle *d, const void *key, size_t klen,
                                    void *buf, size_t cap, size_t *used,
                                    uint64_t *count)
{
    ROUTE(stripe_list_items(sd_stripe_of(d, hash), key, klen, hash, buf, cap,
                            used, count));
}

SD_MUST_USE sd_status sd_llen(sd_handle *d, const void *key, size_t klen,
                              uint64_t *len)
{
    ROUTE(stripe_llen(sd_stripe_of(d, hash), key, klen, hash, len));
}

/* ---- whole-dict scans, one stripe at a time ----------------------------- */

SD_MUST_USE sd_status sd_flush_expired(sd_handle *d, uint64_t max,
                                       uint64_t *freed)
{
    *freed = 0;
    sd_status rc = SD_OK;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nstripes && (!max || *freed < max) && !rc;
         i++) {
        uint64_t n = 0;
        rc = stripe_flush_expired(&d->stripes[i], max ? max - *freed : 0, &n);
        *freed += n;
    }
    sd_span_leave(&span);
    return sd_guarded(d, rc);
}

/* The cursor is stripe * nbuckets + bucket, so it stays below 2^63. */
SD_MUST_USE sd_status sd_keys_chunk(sd_handle *d, uint64_t *cursor, void *buf,
                                    size_t cap, size_t *used, size_t *need)
{
    uint64_t nb = d->stripes[0].nbuckets;
    uint64_t stripe = *cursor / nb, local = *cursor % nb;
    *used = 0;
    *need = 0;
    if (stripe >= d->nstripes) {
        *cursor = 0;
        return sd_guarded(d, SD_OK);
    }
    sd_status rc =
        stripe_keys_chunk(&d->stripes[stripe], &local, buf, cap, used, need);
    if (rc == SD_TOOBIG) {
        *cursor = stripe * nb + local; /* retry that bucket, bigger buffer */
        return sd_guarded(d, rc);
    }
    if (rc)
        return sd_guarded(d, rc);
    if (local == 0) /* that stripe is done */
        *cursor = stripe + 1 < d->nstripes ? (stripe + 1) * nb : 0;
    else
        *cursor = stripe * nb + local;
    return sd_guarded(d, SD_OK);
}

SD_MUST_USE sd_status sd_count(sd_handle *d, uint64_t *n)
{
    *n = 0;
    sd_status rc = SD_OK;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nstripes && !rc; i++) {
        uint64_t c = 0;
        rc = stripe_count(&d->stripes[i], &c);
        *n += c;
    }
    sd_span_leave(&span);
    return sd_guarded(d, rc);
}

uint64_t sd_max_item(const sd_handle *d)
{
    /* A block takes the whole heap but its 16 reserved bytes and the
     * block header; the entry header comes out of the rest. */
    uint64_t heap = d->stripes[0].heap_size;
    return heap > SD_UNIT + 8 + SD_ENTRY_HDR
               ? heap - SD_UNIT - 8 - SD_ENTRY_HDR
               : 0;
}

void sd_space(sd_handle *d, uint64_t *capacity, uint64_t *free_bytes)
{
    *capacity = *free_bytes = 0;
    for (unsigned i = 0; i < d->nstripes; i++) {
        uint64_t c, f;
        stripe_space(&d->stripes[i], &c, &f);
        *capacity += c;
        *free_bytes += f;
    }
}

SD_MUST_USE sd_status sd_verify(sd_handle *d, char *buf, size_t cap,
                                size_t *problems)
{
    *problems = 0;
    size_t len = 0;
    if (cap)
        buf[0] = '\0';
    const sd_header *fh = d->hdr;
    if (fh->magic != SD_MAGIC || fh->version != SD_VERSION ||
        fh->format != SD_FORMAT_WORD || fh->file_size != d->file_size ||
        fh->nparts != d->nstripes ||
        fh->heap_size != d->stripes[0].heap_size ||
        fh->nbuckets != d->stripes[0].nbuckets) {
        ++*problems;
        len +=
            (size_t)snprintf(buf, cap, "header: identity or layout changed\n");
    }
    sd_status rc = SD_OK;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nstripes && !rc; i++) {
        size_t p = 0;
        char *at = len < cap ? buf + len : NULL;
        rc = stripe_verify(&d->stripes[i], at, at ? cap - len : 0, &p);
        *problems += p;
        if (at)
            len += strlen(at);
    }
    sd_span_leave(&span);
    return sd_guarded(d, rc);
}

SD_MUST_USE sd_status sd_get_stats(sd_handle *d, sd_stats *st)
{
    memset(st, 0, sizeof *st);
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    for (unsigned i = 0; i < d->nstripes; i++) {
        sd_stats s;
        sd_status rc = stripe_get_stats(&d->stripes[i], &s);
        if (rc) {
            sd_span_leave(&span);
            return sd_guarded(d, rc);
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
    const sd_slot *slots = d->stripes[0].slots;
    for (unsigned i = 0; i < SD_NSLOTS; i++) {
        st->hits += LD(&slots[i].hits);
        st->misses += LD(&slots[i].misses);
        st->sets += LD(&slots[i].sets);
    }
    st->nparts = d->nstripes;
    st->reserved = d->stripes[0].reserved;
    struct stat fst;
    if (fstat(d->guard->fd, &fst) == 0)
        st->reserved_bytes = (uint64_t)fst.st_blocks * 512;
    return sd_guarded(d, SD_OK);
}

/* A static English text for a status (shmdict.h). */
const char *sd_strstatus(sd_status s)
{
    static const char *const text[SD_STATUS_COUNT] = {
        [SD_OK] = "ok",
        [SD_NOTFOUND] = "no such key",
        [SD_NOMEM] = "no memory: the dict is full",
        [SD_NOTNUM] = "the value is not a number",
        [SD_OVERFLOW] = "integer overflow: result is outside 64 bits",
        [SD_TOOBIG] = "buffer too small",
        [SD_BADARG] = "argument out of range",
        [SD_CORRUPT] = "the dict is damaged",
        [SD_FORMAT] = "not a shmdict dict of this format",
        [SD_TIMEDOUT] = "timed out waiting for the dict's lock",
        [SD_SYSERR] = "system call failed",
        [SD_INTERNAL] = "internal error: undo log overflow",
        [SD_EXISTS] = "the key exists, or its value differs",
        [SD_WRONGTYPE] = "wrong type: a list where a scalar is wanted, or "
                         "the reverse",
        [SD_NOSPACE] = "the shared-memory filesystem is full",
        [SD_TORN] = "the dict's file was truncated under this handle "
                    "(reopen it to go on)",
        [SD_INTERRUPTED] = "interrupted while waiting for the dict's lock",
    };
    return (unsigned)s < SD_STATUS_COUNT && text[s] ? text[s]
                                                    : "unknown status";
}
