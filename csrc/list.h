/*
 * list.h - list values of one stripe: push, pop, length, items.
 */
#ifndef SHMDICT_LIST_H
#define SHMDICT_LIST_H

#include "room.h"

SD_MUST_USE sd_status stripe_push(sd_stripe *s, const void *key, size_t klen,
                                  uint32_t hash, int left,
                                  const sd_value_in *v, uint64_t *len);

SD_MUST_USE sd_status stripe_list_pop(sd_stripe *s, const void *key,
                                      size_t klen, uint32_t hash, int left,
                                      sd_value_out *out);

SD_MUST_USE sd_status stripe_llen(sd_stripe *s, const void *key, size_t klen,
                                  uint32_t hash, uint64_t *len);

SD_MUST_USE sd_status stripe_list_items(sd_stripe *s, const void *key,
                                        size_t klen, uint32_t hash, void *buf,
                                        size_t cap, size_t *used,
                                        uint64_t *count);

#endif /* SHMDICT_LIST_H */
