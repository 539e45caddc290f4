/*
 * index.c - the hash index of a stripe.
 *
 * The index is an array of 32-bit bucket heads, one per 64 bytes of file,
 * each the block index of the first entry of a chain; entries link to the
 * next through their own `next` field. Chains stay short because there is a
 * bucket for every minimum-size entry, and a per-file random seed keys the
 * hash, so keys can't be chosen to pile into one chain without reading the
 * file first.
 */
#include "heap.h"
#include "index.h"
#include "tx.h"

/* Find a key while holding the lock. SD_OK with f filled, SD_NOTFOUND, or
 * SD_CORRUPT for a chain that leaves the heap or never ends. */
SD_MUST_USE sd_status sd_find_locked(sd_stripe *s, const void *key,
                                     size_t klen, uint32_t hash, sd_found *f)
{
    _Atomic uint32_t *link = sd_bucket_of(s, hash);
    uint32_t idx = sd_bucket_marked(s, hash) ? LD(link) : 0;
    for (uint64_t steps = 0; idx; steps++) {
        if (steps > s->max_chain || !sd_read_entry(s, idx, &f->v))
            return SD_CORRUPT;
        if (sd_key_eq(&f->v, hash, key, klen)) {
            f->link = link;
            return SD_OK;
        }
        link = &f->v.e->next;
        idx = f->v.next;
    }
    return SD_NOTFOUND;
}

SD_MUST_USE sd_status sd_find_live_locked(sd_tx *t, const void *key,
                                          size_t klen, uint32_t hash,
                                          sd_found *f)
{
    if (sd_bucket_marked(t->s, hash)) /* (else no key of it is stored) */
        sd_note_write(t, hash);       /* found to be written */
    sd_status rc = sd_find_locked(t->s, key, klen, hash, f);
    if (rc == SD_OK && sd_meta_exp(f->v.meta) &&
        sd_expired(f->v.meta, sd_tx_now(t))) {
        atomic_fetch_add_explicit(&t->s->st->expirations, 1,
                                  memory_order_relaxed);
        rc = sd_drop_locked(t, f);
        return rc ? rc : SD_NOTFOUND;
    }
    return rc;
}

SD_MUST_USE sd_status sd_drop_locked(sd_tx *t, sd_found *f)
{
    sd_note_drop(t, f->v.hash);
    sd_w32(t, f->link, f->v.next);
    sd_count_add(t, -1, sd_meta_exp(f->v.meta) ? -1 : 0);
    return sd_release_locked(t, &f->v);
}

void sd_count_change(sd_tx *t, int64_t entries, int64_t expiring)
{
    sd_pstate *ps = t->s->st;
    if (entries)
        sd_w64(t, &ps->count, LD(&ps->count) + (uint64_t)entries);
    if (expiring)
        sd_w64(t, &ps->n_expiring, LD(&ps->n_expiring) + (uint64_t)expiring);
}

void sd_link_new_locked(sd_tx *t, uint32_t idx, uint32_t hash, uint64_t meta,
                        const void *key, size_t klen, const sd_value_in *v)
{
    sd_stripe *s = t->s;
    _Atomic uint32_t *b = sd_bucket_of(s, hash);
    /* Callers made the page ready before they changed anything; this only
     * covers one that did not (the guard is the net if it fails). */
    if (SD_UNLIKELY(!sd_bucket_marked(s, hash)))
        SD_IGNORE(sd_bucket_ready_locked(s, hash));
    uint32_t head = LD(b);
    sd_write_entry(t, idx, head, hash, meta, key, klen, v);
    sd_w32(t, b, idx);
    sd_count_add(t, 1, sd_meta_exp(meta) ? 1 : 0);
    /* A new key is not marked (as in SIEVE): it earns its second chance
     * with a read or a write. Marking it would leave every bucket marked
     * under a stream of inserts, and the hand would then go full circle
     * clearing marks and evict whatever it met next, a hot key included. */
}

SD_MUST_USE sd_status sd_bucket_ready_locked(sd_stripe *s, uint32_t hash)
{
    uint64_t b = hash & (s->nbuckets - 1), page = b / SD_BUCKETS_PER_PAGE;
    _Atomic uint32_t *word = &s->summary[page / 32];
    uint32_t bit = 1u << (page % 32);
    if (SD_LIKELY(LD(word) & bit))
        return SD_OK;
    if (!s->reserved) {
        sd_status rc = sd_reserve(s, s->index_off + page * SD_PAGE, SD_PAGE);
        if (rc == SD_OK && s->evict) /* the page of its CLOCK marks */
            rc = sd_reserve(s, (s->refs_off + b) & ~(uint64_t)(SD_PAGE - 1),
                            SD_PAGE);
        if (rc == SD_OK) /* and of its write groups */
            rc = sd_reserve(
                s,
                (s->refs_off + s->nbuckets + b / SD_GROUP_BUCKETS * 16) &
                    ~(uint64_t)(SD_PAGE - 1),
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
