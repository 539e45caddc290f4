/*
 * list.c - lists: a value that works as a shared queue.
 *
 * A list key is an entry of type SD_T_LIST whose value is
 * {u32 head, u32 tail, u64 count}. Each item is a block of its own, laid
 * out like an entry with klen 0: `next` links to the following item and
 * `hash` holds the previous one. Push and pop at either end are O(1) and,
 * like every write, go through the undo log, so a crash leaves the list
 * as it was before or after the operation.
 *
 * Deleting, overwriting, expiring or evicting a list moves its items to
 * the header's gc chain in two logged stores; later writes free them a few
 * at a time (sd_gc_commits), so no single write pays for a long list.
 */
#include "heap.h"
#include "list.h"
#include "tx.h"

/* Push v onto the list at key, making the list if the key is missing. Lock
 * state: held, in an open transaction; commits nothing. SD_OK,
 * SD_WRONGTYPE, SD_NOMEM (the caller makes room and retries), SD_NOSPACE,
 * SD_CORRUPT. */
SD_MUST_USE static sd_status push_locked(sd_tx *t, const void *key,
                                         size_t klen, uint32_t hash, int left,
                                         const sd_value_in *v, uint64_t *len)
{
    sd_stripe *s = t->s;
    sd_found f;
    sd_status rc = sd_find_live_locked(t, key, klen, hash, &f);
    if (rc == SD_NOTFOUND) {
        static const unsigned char empty[16];
        sd_value_in lv = {.type = SD_T_LIST, .data = empty, .len = 16};
        uint32_t e;
        if ((rc = sd_bucket_ready_locked(s, hash)))
            return rc;
        if ((rc = sd_alloc_locked(t, sd_entry_need(klen, 16), &e)))
            return rc;
        sd_link_new_locked(t, e, hash, sd_make_meta(&lv, 0), key, klen, &lv);
        rc = sd_find_locked(s, key, klen, hash, &f);
    }
    if (rc)
        return rc;
    if (!sd_is_list(f.v.meta))
        return SD_WRONGTYPE;
    _Atomic uint32_t *ends = sd_list_ends(&f.v);
    uint32_t head = LD(&ends[0]), tail = LD(&ends[1]);
    if ((head && !sd_idx_ok(s, head)) || (tail && !sd_idx_ok(s, tail)))
        return SD_CORRUPT;
    uint32_t n;
    if ((rc = sd_alloc_locked(t, sd_entry_need(0, sd_value_len(v)), &n)))
        return rc;
    if (left) {
        sd_write_entry(t, n, head, 0, sd_make_meta(v, 0), "", 0, v);
        if (head)
            sd_w32(t, &sd_blk_entry(s, head)->hash, n);
        else
            sd_w32(t, &ends[1], n);
        sd_w32(t, &ends[0], n);
    } else {
        sd_write_entry(t, n, 0, tail, sd_make_meta(v, 0), "", 0, v);
        if (tail)
            sd_w32(t, &sd_blk_entry(s, tail)->next, n);
        else
            sd_w32(t, &ends[0], n);
        sd_w32(t, &ends[1], n);
    }
    uint64_t count = LD(sd_list_count(&f.v)) + 1;
    sd_w64(t, sd_list_count(&f.v), count);
    *len = count;
    return SD_OK;
}

SD_MUST_USE sd_status stripe_push(sd_stripe *s, const void *key, size_t klen,
                                  uint32_t hash, int left,
                                  const sd_value_in *v, uint64_t *len)
{
    if (!sd_check_value(v))
        return SD_BADARG;
    sd_tx t;
    sd_status rc = sd_tx_begin(s, &t);
    if (rc)
        return rc;
    sd_before_alloc_commits(&t, sd_entry_need(0, sd_value_len(v)));
    rc = push_locked(&t, key, klen, hash, left, v, len);
    uint64_t need =
        sd_entry_need(klen, 16) + sd_entry_need(0, sd_value_len(v));
    for (int attempt = 0; attempt < 4 && rc == SD_NOMEM; attempt++) {
        uint32_t probe;
        uint64_t evicted = 0;
        rc = sd_alloc_room_commits(&t, need, false, key, klen, hash, &probe,
                                   &evicted);
        if (rc != SD_OK)
            break;
        sd_tx_abort(&t); /* the probe allocation only */
        rc = push_locked(&t, key, klen, hash, left, v, len);
    }
    return sd_tx_end_write(&t, rc);
}

SD_MUST_USE sd_status stripe_list_pop(sd_stripe *s, const void *key,
                                      size_t klen, uint32_t hash, int left,
                                      sd_value_out *out)
{
    sd_tx t;
    sd_found f;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    out->waited_ns += t.waited;
    if (!open)
        return rc;
    if (rc)
        return sd_tx_end_write(&t, rc);
    if (!sd_is_list(f.v.meta))
        return sd_tx_end_write(&t, SD_WRONGTYPE);
    _Atomic uint32_t *ends = sd_list_ends(&f.v);
    uint32_t idx = LD(&ends[left ? 0 : 1]);
    sd_view it;
    if (!sd_read_item(s, idx, &it))
        return sd_tx_end_write(&t, SD_CORRUPT);
    if ((rc = sd_copy_value(&it, out)))
        return sd_tx_end_write(&t, rc);
    uint32_t next = it.next, prev = it.hash;
    if ((next && !sd_idx_ok(s, next)) || (prev && !sd_idx_ok(s, prev)))
        return sd_tx_end_write(&t, SD_CORRUPT);
    if (left) {
        if (next)
            sd_w32(&t, &sd_blk_entry(s, next)->hash, 0);
        else
            sd_w32(&t, &ends[1], 0);
        sd_w32(&t, &ends[0], next);
    } else {
        if (prev)
            sd_w32(&t, &sd_blk_entry(s, prev)->next, 0);
        else
            sd_w32(&t, &ends[0], 0);
        sd_w32(&t, &ends[1], prev);
    }
    if ((rc = sd_free_deferred(&t, idx)))
        return sd_tx_end_write(&t, rc);
    uint64_t count = LD(sd_list_count(&f.v));
    if (count <= 1 || !LD(&ends[0]))
        rc = sd_drop_locked(&t, &f); /* an empty list is no key */
    else
        sd_w64(&t, sd_list_count(&f.v), count - 1);
    return sd_tx_end_write(&t, rc);
}

SD_MUST_USE sd_status stripe_llen(sd_stripe *s, const void *key, size_t klen,
                                  uint32_t hash, uint64_t *len)
{
    sd_tx t;
    sd_found f;
    *len = 0;
    bool open;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK) {
        if (!sd_is_list(f.v.meta))
            rc = SD_WRONGTYPE;
        else
            *len = LD(sd_list_count(&f.v));
    }
    return sd_tx_end_write(&t, rc);
}

SD_MUST_USE sd_status stripe_list_items(sd_stripe *s, const void *key,
                                        size_t klen, uint32_t hash, void *buf,
                                        size_t cap, size_t *used,
                                        uint64_t *count)
{
    sd_tx t;
    sd_found f;
    bool open;
    *used = 0;
    *count = 0;
    sd_status rc = sd_find_and_lock(s, &t, key, klen, hash, &f, &open);
    if (!open)
        return rc;
    if (rc == SD_OK && !sd_is_list(f.v.meta))
        rc = SD_WRONGTYPE;
    size_t pos = 0;
    uint32_t idx = rc == SD_OK ? LD(&sd_list_ends(&f.v)[0]) : 0;
    for (uint64_t n = 0; idx; n++) {
        sd_view it;
        if (n > s->max_chain || !sd_read_item(s, idx, &it)) {
            rc = SD_CORRUPT;
            break;
        }
        /* Past cap, only count what the records need. */
        pos += sd_put_record(pos < cap ? (unsigned char *)buf + pos : NULL,
                             pos < cap ? cap - pos : 0, &it);
        (*count)++;
        idx = it.next;
    }
    *used = pos;
    if (rc == SD_OK && pos > cap)
        rc = SD_TOOBIG;
    return sd_tx_end_write(&t, rc);
}
