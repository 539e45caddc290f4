/*
 * read.h - lock-free reads of one stripe (seqlock style).
 */
#ifndef SHMDICT_READ_H
#define SHMDICT_READ_H

#include "index.h"

/* Copy the key's value into *out, without the lock when a try of the
 * seqlock succeeds, else under it. out->seq is the even sequence value a
 * lock-free read held (0 if read under the lock). SD_OK, SD_NOTFOUND,
 * SD_TOOBIG (out->len says how big), SD_WRONGTYPE (a list), SD_CORRUPT, or
 * the status of taking the lock. Lock state: none needed; takes it only
 * when the lock-free tries fail. */
SD_MUST_USE sd_status stripe_get(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, sd_value_out *out);

/* Whether a value stripe_get gave out with sequence value `seq` is still
 * the current one (no lock holder has touched the stripe since); counts a
 * hit if so. Lock-free: one load. */
bool stripe_still_current(sd_stripe *s, uint32_t hash, uint64_t seq);

/* sd_near_check (shmdict.h) on the key's stripe s: 0 (not sure), 1 (still
 * current: the counter hasn't moved), or 2 (still the value, found by a
 * lookup, which read entries of the heap). Lock-free. */
int stripe_near_check(sd_stripe *s, const void *key, size_t klen, sd_near *n);

/* stripe_get that also returns an expired value still stored, with *stale =
 * 1. */
SD_MUST_USE sd_status stripe_get_stale(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       sd_value_out *out, int *stale);

/* The key's remaining time in ns into *ns_left (0: never expires; INT64_MAX
 * beyond 292 years). As stripe_get for the lock; SD_OK, SD_NOTFOUND,
 * SD_CORRUPT, or the status of taking the lock. */
SD_MUST_USE sd_status stripe_ttl(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, int64_t *ns_left);

/* The number of live keys into *n: the stored count when a lock-free read
 * of it is consistent and nothing can have expired, else a count of the
 * live entries, a slice of the table per hold of the lock. SD_OK,
 * SD_CORRUPT, or the status of a lock taken or ended. */
SD_MUST_USE sd_status stripe_count(sd_stripe *s, uint64_t *n);

#endif /* SHMDICT_READ_H */
