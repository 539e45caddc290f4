/*
 * list.h - list values of one stripe: push, pop, length, items.
 */
#ifndef SHMDICT_LIST_H
#define SHMDICT_LIST_H

#include "room.h"

/* Push v at the left or right end of the list at key (made if missing);
 * *len gets the new length. SD_OK, SD_WRONGTYPE, SD_BADARG, SD_NOMEM, and
 * the statuses of a write. Lock state: takes and releases the stripe's lock
 * itself. `hash` is sd_key_hash of the key, which api.c has checked
 * (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_push(sd_stripe *s, const void *key, size_t klen,
                                  uint32_t hash, int left,
                                  const sd_value_in *v, uint64_t *len);

/* Pop an item from one end into *out; the last item's pop deletes the key.
 * SD_OK, SD_NOTFOUND, SD_WRONGTYPE, SD_TOOBIG, SD_CORRUPT, and the statuses
 * of a write. Lock state: takes and releases the stripe's lock itself.
 * `hash` is sd_key_hash of the key, which api.c has checked (1..SD_MAX_KEY
 * bytes). */
SD_MUST_USE sd_status stripe_list_pop(sd_stripe *s, const void *key,
                                      size_t klen, uint32_t hash, int left,
                                      sd_value_out *out);

/* The list's length into *len (0 when missing). SD_OK, SD_NOTFOUND,
 * SD_WRONGTYPE. Lock state: takes and releases the stripe's lock itself.
 * `hash` is sd_key_hash of the key, which api.c has checked (1..SD_MAX_KEY
 * bytes). */
SD_MUST_USE sd_status stripe_llen(sd_stripe *s, const void *key, size_t klen,
                                  uint32_t hash, uint64_t *len);

/* Every item, as records (the format of sd_get_many), into buf; *used and
 * *count say how many bytes and items. SD_OK, SD_TOOBIG (*used is the size
 * needed), SD_NOTFOUND, SD_WRONGTYPE, SD_CORRUPT. Lock state: takes and
 * releases the stripe's lock itself. `hash` is sd_key_hash of the key,
 * which api.c has checked (1..SD_MAX_KEY bytes). */
SD_MUST_USE sd_status stripe_list_items(sd_stripe *s, const void *key,
                                        size_t klen, uint32_t hash, void *buf,
                                        size_t cap, size_t *used,
                                        uint64_t *count);

#endif /* SHMDICT_LIST_H */
