/*
 * index.h - the hash index of a stripe: buckets, chains, finding, linking
 * and unlinking a key, the entry counts, and the summary and CLOCK bits.
 */
#ifndef SHMDICT_INDEX_H
#define SHMDICT_INDEX_H

#include "entry.h"
#include "tx.h"

/* A key found under the lock, and the word that links to it. */
typedef struct sd_found {
    _Atomic uint32_t *link;
    sd_view v;
} sd_found;

/* The bucket head of `hash`. */
static inline _Atomic uint32_t *sd_bucket_of(const sd_stripe *s, uint32_t hash)
{
    return &s->buckets[hash & (s->nbuckets - 1)];
}

/* Whether the checked entry holds this key. */
static inline bool sd_key_eq(const sd_view *v, uint32_t hash, const void *key,
                             size_t klen)
{
    return v->hash == hash && v->klen == klen &&
           sd_bytes_eq(v->e->data, key, klen);
}

/* Does the entry belong in bucket b? A scan that only lists entries of
 * their own bucket lists each at most once, even in a damaged index. */
static inline bool sd_in_bucket(const sd_stripe *s, const sd_view *v,
                                uint64_t b)
{
    return (v->hash & (s->nbuckets - 1)) == b;
}

/* Find a key. Lock state: held (reads only). SD_OK with f filled (expired
 * or not), SD_NOTFOUND, or SD_CORRUPT for a chain that leaves the heap or
 * never ends. */
SD_MUST_USE sd_status sd_find_locked(sd_stripe *s, const void *key,
                                     size_t klen, uint32_t hash, sd_found *f);

/* Find a live key for a write. Lock state: held, in an open transaction. An
 * expired entry found is dropped in the transaction (not committed) and
 * SD_NOTFOUND returned. SD_OK, SD_NOTFOUND, SD_CORRUPT, SD_INTERNAL. Every
 * write of a key starts here, and so this is where its group is noted
 * written (sd_note_write): the writes that don't (evictions, the reclaim
 * of expired entries) drop the key, and sd_drop_locked notes it. */
SD_MUST_USE sd_status sd_find_live_locked(sd_tx *t, const void *key,
                                          size_t klen, uint32_t hash,
                                          sd_found *f);

/* Take the stripe's lock, open a transaction and find a live key. *open
 * says whether the transaction was opened: if so, end it with
 * sd_tx_end_write whatever the status. The drop of an expired entry it met
 * is committed at once when the key is then absent. Returns the status of
 * sd_tx_begin (with *open false) or of sd_find_live_locked. */
SD_MUST_USE static inline sd_status
sd_find_and_lock(sd_stripe *s, sd_tx *t, const void *key, size_t klen,
                 uint32_t hash, sd_found *f, bool *open)
{
    sd_status rc = sd_tx_begin(s, t);
    *open = rc == SD_OK;
    if (!*open)
        return rc;
    rc = sd_find_live_locked(t, key, klen, hash, f);
    if (rc == SD_NOTFOUND)
        sd_tx_commit(t); /* keep the reclaim of an expired entry */
    return rc;
}

/* Unlink a found entry, count it gone and release it (sd_release_locked).
 * Lock state: held, in an open transaction. SD_OK, SD_CORRUPT, SD_INTERNAL. */
SD_MUST_USE sd_status sd_drop_locked(sd_tx *t, sd_found *f);

/* Change the stripe's entry and expiring-entry counts (logged). Lock state:
 * held, in an open transaction. sd_count_add is the inline test for no
 * change, so that the common overwrite makes no call. */
void sd_count_change(sd_tx *t, int64_t entries, int64_t expiring);

/* sd_count_change when something changes; no call otherwise. */
static inline void sd_count_add(sd_tx *t, int64_t entries, int64_t expiring)
{
    if (entries || expiring)
        sd_count_change(t, entries, expiring);
}

/* Write a new entry into block idx and link it at the head of its bucket's
 * chain (logged), counting it. Lock state: held, in an open transaction;
 * the caller made the bucket's page ready (sd_bucket_ready_locked) before
 * it changed anything. */
void sd_link_new_locked(sd_tx *t, uint32_t idx, uint32_t hash, uint64_t meta,
                        const void *key, size_t klen, const sd_value_in *v);

/* Back the index page (and CLOCK marks) of `hash`'s bucket and mark it in
 * the summary, before a key is linked there. Lock state: held. Not logged:
 * a stale summary bit only costs a scan a page read. SD_OK or SD_NOSPACE. */
SD_MUST_USE sd_status sd_bucket_ready_locked(sd_stripe *s, uint32_t hash);

/* Mark the key's bucket used for CLOCK (evicting dicts only). */
static inline void sd_mark_used(sd_stripe *s, uint32_t hash)
{
    if (s->evict)
        ST(&s->refs[hash & (s->nbuckets - 1)], (uint8_t)1);
}

#endif /* SHMDICT_INDEX_H */
