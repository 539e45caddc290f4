/*
 * write.h - the single-key writes of one stripe.
 */
#ifndef SHMDICT_WRITE_H
#define SHMDICT_WRITE_H

#include "room.h"

/* Store v under key as one step of the open transaction, which the
 * caller commits; SD_NOMEM when it doesn't fit as things are. */
SD_MUST_USE sd_status sd_set_commits(sd_tx *t, const void *key, size_t klen,
                                     uint32_t hash, const sd_value_in *v,
                                     int64_t ttl_ms, unsigned flags);

/* sd_set_commits, retried after making room (which commits as it goes). */
SD_MUST_USE sd_status sd_set_room_commits(sd_tx *t, const void *key,
                                          size_t klen, uint32_t hash,
                                          const sd_value_in *v, int64_t ttl_ms,
                                          unsigned flags, uint64_t *evicted);

SD_MUST_USE sd_status stripe_set_ex(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash, const sd_value_in *v,
                                    int64_t ttl_ms, unsigned flags,
                                    uint64_t *evicted);

SD_MUST_USE sd_status stripe_delete(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash);

SD_MUST_USE sd_status stripe_incr_init(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       const sd_value_in *delta,
                                       unsigned flags, int64_t ttl_ms,
                                       const sd_value_in *init,
                                       int64_t init_ttl_ms, sd_value_out *out);

SD_MUST_USE sd_status stripe_expire(sd_stripe *s, const void *key, size_t klen,
                                    uint32_t hash, int64_t ttl_ms);

SD_MUST_USE sd_status stripe_cas(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, const sd_value_in *expected,
                                 const sd_value_in *nv, unsigned flags,
                                 int64_t ttl_ms);

SD_MUST_USE sd_status stripe_pop(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, sd_value_out *out);

SD_MUST_USE sd_status stripe_setdefault(sd_stripe *s, const void *key,
                                        size_t klen, uint32_t hash,
                                        const sd_value_in *dflt,
                                        sd_value_out *out);

#endif /* SHMDICT_WRITE_H */
