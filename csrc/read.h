/*
 * read.h - lock-free reads of one stripe (seqlock style).
 */
#ifndef SHMDICT_READ_H
#define SHMDICT_READ_H

#include "index.h"

SD_MUST_USE sd_status stripe_get(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, sd_value_out *out);

bool stripe_still_current(sd_stripe *s, uint32_t hash, uint64_t seq);

SD_MUST_USE sd_status stripe_get_stale(sd_stripe *s, const void *key,
                                       size_t klen, uint32_t hash,
                                       sd_value_out *out, int *stale);

SD_MUST_USE sd_status stripe_ttl(sd_stripe *s, const void *key, size_t klen,
                                 uint32_t hash, int64_t *ns_left);

SD_MUST_USE sd_status stripe_count(sd_stripe *s, uint64_t *n);

#endif /* SHMDICT_READ_H */
