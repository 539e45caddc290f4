/*
 * write.h - the single-key writes of one stripe.
 */
#ifndef SHMDICT_WRITE_H
#define SHMDICT_WRITE_H

#include "room.h"

/* Store v under key as one step of the open transaction, which the
 * caller commits; SD_NOMEM when it doesn't fit as things are. */
sd_status sd_set_locked(sd_tx *t, const void *key, size_t klen, uint32_t hash,
                        const sd_value_in *v, int64_t ttl_ms, unsigned flags);

/* sd_set_locked, retried after making room (which commits as it goes). */
sd_status sd_set_with_room_locked(sd_tx *t, const void *key, size_t klen,
                                  uint32_t hash, const sd_value_in *v,
                                  int64_t ttl_ms, unsigned flags,
                                  uint64_t *evicted);

sd_status part_set_ex(sd_part *h, const void *key, size_t klen, uint32_t hash,
                      const sd_value_in *v, int64_t ttl_ms, unsigned flags,
                      uint64_t *evicted);

sd_status part_delete(sd_part *h, const void *key, size_t klen, uint32_t hash);

sd_status part_incr_init(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, const sd_value_in *delta, int ttl_mode,
                         int64_t ttl_ms, const sd_value_in *init,
                         int64_t init_ttl_ms, sd_value_out *out);

sd_status part_expire(sd_part *h, const void *key, size_t klen, uint32_t hash,
                      int64_t ttl_ms);

sd_status part_cas(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   const sd_value_in *expected, const sd_value_in *nv,
                   int ttl_mode, int64_t ttl_ms);

sd_status part_pop(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   sd_value_out *out);

sd_status part_setdefault(sd_part *h, const void *key, size_t klen,
                          uint32_t hash, const sd_value_in *dflt,
                          sd_value_out *out);

#endif /* SHMDICT_WRITE_H */
