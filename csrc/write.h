/*
 * write.h - the single-key writes of one stripe.
 */
#ifndef SHMDICT_WRITE_H
#define SHMDICT_WRITE_H

#include "room.h"

/* Store v under key in the open transaction. Lock state: held, in an open
 * transaction; the stripe's lock stays held. Usually adds to the
 * transaction without committing; but a value that only fits in the old
 * value's place, once that is freed, commits the transaction (and so what
 * it held before, the earlier items of a batch), see
 * set_in_old_place_commits. SD_OK, SD_EXISTS (SD_MODE_ADD), SD_NOTFOUND
 * (SD_MODE_REPLACE), SD_NOMEM (it doesn't fit as things are: the caller may
 * make room and retry), SD_NOSPACE, SD_CORRUPT, SD_INTERNAL. */
SD_MUST_USE sd_status sd_set_commits(sd_tx *t, const void *key, size_t klen,
                                     uint32_t hash, const sd_value_in *v,
                                     int64_t ttl_ms, unsigned flags);

/* sd_set_commits, after a pre-allocation drain of the quick lists and, on
 * SD_NOMEM, retried after making room (sd_alloc_room_commits), all of which
 * commit as they go. Lock state: held, in an open transaction holding
 * nothing the caller wants undoable. Adds the items evicted to *evicted.
 * Statuses as sd_set_commits. */
SD_MUST_USE sd_status sd_set_room_commits(sd_tx *t, const void *key,
                                          size_t klen, uint32_t hash,
                                          const sd_value_in *v, int64_t ttl_ms,
                                          unsigned flags, uint64_t *evicted);

/* Store v with the mode and options in `flags` (shmdict.h). SD_OK,
 * SD_BADARG (a bad value), SD_EXISTS, SD_NOTFOUND, SD_NOMEM, SD_NOSPACE,
 * SD_CORRUPT, SD_INTERNAL, or the status of taking the lock. Lock state:
 * takes and releases the stripe's lock itself. `hash` is sd_key_hash of the
 * key, which api.c has checked (1..SD_MAX_KEY bytes). `kept` (may be NULL):
 * see sd_set_near. */
SD_MUST_USE sd_status stripe_set_ex(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash, const sd_value_in *v,
                                    int64_t ttl_ms, unsigned flags,
                                    uint64_t *evicted, sd_near *kept);

/* SD_OK, SD_NOTFOUND, SD_CORRUPT, SD_INTERNAL, or the status of taking the
 * lock. Lock state: takes and releases the stripe's lock itself. `hash` is
 * sd_key_hash of the key, which api.c has checked (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_delete(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash);

/* Add delta to a number, keeping its expiry if flags has SD_KEEPTTL, else
 * setting ttl_ms; a missing key with `init` stores init + delta (expiry
 * init_ttl_ms, else as above). SD_OK with the sum in *out, SD_NOTFOUND,
 * SD_NOTNUM, SD_WRONGTYPE, SD_OVERFLOW, SD_BADARG, and the statuses of a
 * write. Lock state: takes and releases the stripe's lock itself. `hash` is
 * sd_key_hash of the key, which api.c has checked (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_incr_init(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       const sd_value_in *delta,
                                       unsigned flags, int64_t ttl_ms,
                                       const sd_value_in *init,
                                       int64_t init_ttl_ms, sd_value_out *out);

/* Set the key's expiry (ttl_ms 0: none). SD_OK, SD_NOTFOUND, and the
 * statuses of a write. Lock state: takes and releases the stripe's lock
 * itself. `hash` is sd_key_hash of the key, which api.c has checked
 * (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_expire(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash, int64_t ttl_ms);

/* Store nv if the value equals `expected`, keeping the expiry if flags has
 * SD_KEEPTTL. SD_OK, SD_EXISTS (it differed), SD_NOTFOUND, SD_WRONGTYPE,
 * SD_BADARG, and the statuses of a write. Lock state: takes and releases
 * the stripe's lock itself. `hash` is sd_key_hash of the key, which api.c
 * has checked (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_cas(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, const sd_value_in *expected,
                                 const sd_value_in *nv, unsigned flags,
                                 int64_t ttl_ms);

/* Copy the value into *out and delete the key. SD_OK, SD_NOTFOUND,
 * SD_TOOBIG (left in place), SD_WRONGTYPE, and the statuses of a write.
 * Lock state: takes and releases the stripe's lock itself. `hash` is
 * sd_key_hash of the key, which api.c has checked (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_pop(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, sd_value_out *out);

/* Copy the value into *out (SD_OK), or store dflt and return SD_NOTFOUND
 * once that is committed. SD_BADARG, SD_TOOBIG, SD_WRONGTYPE, and the
 * statuses of a write. Lock state: takes and releases the stripe's lock
 * itself. `hash` is sd_key_hash of the key, which api.c has checked
 * (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_setdefault(sd_stripe *s, const void *key,
                                        size_t klen, uint32_t hash,
                                        const sd_value_in *dflt,
                                        sd_value_out *out);

#endif /* SHMDICT_WRITE_H */
