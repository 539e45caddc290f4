/*
 * api.h - what the public entry points (api.c, batch.c) share: the
 * stripe of a hash, and the guard's verdict on an answer.
 */
#ifndef SHMDICT_API_H
#define SHMDICT_API_H

#include "core.h"

/* The stripe of a key's hash: its top bits. */
static inline sd_stripe *sd_stripe_of(const sd_handle *d, uint32_t hash)
{
    return &d->stripes[d->stripe_shift >= 32 ? 0 : hash >> d->stripe_shift];
}

/* Once the guard has repaired a fault in the mapping (guard.c), no answer
 * of this handle can be trusted: every call says why instead. */
SD_MUST_USE static inline sd_status sd_guarded(const sd_handle *d,
                                               sd_status rc)
{
    int g = sd_guard_state(d->guard);
    return SD_LIKELY(!g) ? rc : g == SD_GUARD_TORN ? SD_TORN : SD_NOSPACE;
}

/* Whether a key length is valid (1..SD_MAX_KEY): the only key check of the
 * C side. */
static inline bool sd_key_ok(size_t klen)
{
    return klen != 0 && klen <= SD_MAX_KEY;
}

#endif /* SHMDICT_API_H */
