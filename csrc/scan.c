/*
 * scan.c - the keys of one stripe, a slice of buckets per hold of the
 * lock.
 */
#include "index.h"
#include "scan.h"
#include "tx.h"

SD_MUST_USE sd_status stripe_keys_chunk(sd_stripe *s, uint64_t *cursor,
                                        void *buf, size_t cap, size_t *used,
                                        size_t *need)
{
    *used = 0;
    *need = 0;
    if (*cursor >= s->nbuckets) {
        *cursor = 0;
        return SD_OK;
    }
    sd_tx t;
    sd_status rc = sd_tx_begin(s, &t);
    if (rc)
        return rc;
    unsigned char *out = buf;
    uint64_t b = *cursor, end = b + SD_SCAN_SLICE;
    if (end > s->nbuckets)
        end = s->nbuckets;
    int64_t now = sd_tx_now(&t);
    for (; (b = sd_next_used_bucket(s, b)) < end && rc == SD_OK; b++) {
        size_t start = *used, bucket_bytes = 0;
        uint32_t idx = LD(&s->buckets[b]);
        for (uint64_t steps = 0; idx; steps++) {
            sd_view v;
            if (steps > s->max_chain || !sd_read_entry(s, idx, &v) ||
                !sd_in_bucket(s, &v, b)) {
                rc = SD_CORRUPT;
                break;
            }
            if (!sd_expired(v.meta, now)) {
                size_t rec = 4 + (size_t)v.klen;
                bucket_bytes += rec;
                if (bucket_bytes > s->heap_size) {
                    rc = SD_CORRUPT; /* more key bytes than the heap holds */
                    break;
                }
                if (*used + rec <= cap) {
                    memcpy(out + *used, &v.klen, 4);
                    memcpy(out + *used + 4, v.e->data, v.klen);
                    *used += rec;
                }
            }
            idx = v.next;
        }
        if (rc == SD_OK && start + bucket_bytes > cap) {
            /* This bucket didn't fit: stop before it. */
            *used = start;
            if (start == 0) {
                *need = bucket_bytes;
                rc = SD_TOOBIG;
            }
            break;
        }
    }
    *cursor = b >= s->nbuckets ? 0 : b;
    return sd_tx_end(&t, rc);
}
