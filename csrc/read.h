/*
 * read.h - lock-free reads of one stripe (seqlock style).
 */
#ifndef SHMDICT_READ_H
#define SHMDICT_READ_H

#include "index.h"

sd_status part_get(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   sd_value_out *out);

bool part_still_current(sd_part *h, uint32_t hash, uint64_t seq);

sd_status part_get_stale(sd_part *h, const void *key, size_t klen,
                         uint32_t hash, sd_value_out *out, int *stale);

sd_status part_ttl(sd_part *h, const void *key, size_t klen, uint32_t hash,
                   int64_t *ns_left);

sd_status part_count(sd_part *h, uint64_t *n);

#endif /* SHMDICT_READ_H */
