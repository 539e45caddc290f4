/*
 * batch.c - calls over several stripes at once: get_many, set_many,
 * delete_many and flush_all. They take the stripes they need in ascending
 * order, which keeps them deadlock-free, and hold them together, so that
 * no other process sees part of a call.
 */
#include "api.h"
#include "tx.h"
#include "write.h"

typedef struct multi {
    sd_tx t[SD_MAX_PARTS];
    bool held[SD_MAX_PARTS];
    sd_handle *d;
    sd_wait w; /* one for all the stripes: block_begin is called once */
} multi;

/* End and release every held stripe's (unchanged) transaction, on the way
 * out of a failed lock_stripes. */
static void release_stripes(multi *m)
{
    for (unsigned j = m->d->nstripes; j-- > 0;)
        if (m->held[j]) {
            /* Nothing changed yet, and the caller returns an error of
             * its own already: this one adds nothing. */
            SD_IGNORE(sd_tx_end(&m->t[j], SD_OK));
            m->held[j] = false;
        }
}

/* Take the stripes in `want` (all if NULL), in ascending order, waiting
 * at most one lock timeout in all.
 *
 * No code outside the core may run while this thread holds a stripe (the
 * interrupt hook runs Python's signal handlers, which may call this dict),
 * so a wait for a stripe while others are held is not interruptible. It
 * doesn't last: after one slice the wait gives up, the stripes held are
 * let go (unchanged), the busy one is waited for alone, where the hook is
 * asked between slices, and then let go too, and the call starts over.
 * Letting go also frees those stripes for others meanwhile. */
SD_MUST_USE static sd_status lock_stripes(sd_handle *d, const bool *want,
                                          multi *m)
{
    m->d = d;
    m->w = (sd_wait){.token = NULL, .blocked = false, .holding = false};
    for (unsigned i = 0; i < d->nstripes; i++)
        m->held[i] = false;
    sd_span span = SD_SPAN_INIT;
    sd_span_enter(d, &span);
    sd_status rc = SD_BUSY_HOLDING;
    while (rc == SD_BUSY_HOLDING) {
        unsigned i = 0;
        bool any = false;
        for (rc = SD_OK; i < d->nstripes; i++) {
            if (want && !want[i])
                continue;
            m->w.holding = any;
            rc = sd_tx_begin_wait(&d->stripes[i], &m->t[i], &m->w);
            if (rc != SD_OK)
                break;
            m->held[i] = any = true;
        }
        if (rc == SD_OK)
            break;
        release_stripes(m);
        if (rc == SD_BUSY_HOLDING) { /* wait for stripe i alone */
            sd_tx t;
            m->w.holding = false;
            sd_status r = sd_tx_begin_wait(&d->stripes[i], &t, &m->w);
            if (r == SD_OK) /* and start over, unless the file went bad */
                r = sd_tx_end(&t, SD_OK);
            if (r != SD_OK)
                rc = r;
        }
    }
    sd_span_leave(&span);
    if (rc != SD_OK && m->w.blocked && d->stripes[0].block_end) {
        d->stripes[0].block_end(m->w.token);
        m->w.blocked = false;
    }
    return rc;
}

/* Finish every held stripe (commit, or undo if rc is an error) and
 * release them. */
SD_MUST_USE static sd_status unlock_stripes(multi *m, sd_status rc)
{
    sd_handle *d = m->d;
    for (unsigned i = d->nstripes; i-- > 0;) {
        if (!m->held[i])
            continue;
        sd_status r = sd_tx_end_write(&m->t[i], rc);
        if ((rc == SD_OK && r != SD_OK) || (rc == SD_NOMEM && r == SD_NOSPACE))
            rc = r; /* say it was the filesystem, if it was */
    }
    if (m->w.blocked && d->stripes[0].block_end)
        d->stripes[0].block_end(m->w.token);
    return rc;
}

/* SD_BADARG unless every key length is valid: the batches' key check. */
SD_MUST_USE static sd_status check_keys(size_t n, const size_t *klens)
{
    for (size_t i = 0; i < n; i++)
        if (!sd_key_ok(klens[i]))
            return SD_BADARG;
    return SD_OK;
}

SD_MUST_USE sd_status sd_get_many(sd_handle *d, size_t n,
                                  const char *const *keys, const size_t *klens,
                                  void *buf, size_t cap, size_t *need)
{
    if (check_keys(n, klens))
        return sd_guarded(d, SD_BADARG);
    multi m;
    sd_status rc = lock_stripes(d, NULL, &m);
    if (rc)
        return sd_guarded(d, rc);
    unsigned char *out = buf;
    size_t pos = 0;
    int64_t now = sd_now_ms();
    for (size_t i = 0; i < n && rc == SD_OK; i++) {
        uint32_t hash = sd_key_hash(d->hash_seed, keys[i], klens[i]);
        sd_found f;
        sd_status r =
            sd_find_locked(sd_stripe_of(d, hash), keys[i], klens[i], hash, &f);
        if (r == SD_CORRUPT) {
            rc = r;
            break;
        }
        unsigned char *at = pos < cap ? out + pos : NULL;
        size_t room = pos < cap ? cap - pos : 0;
        if (r == SD_OK && !sd_expired(f.v.meta, now)) {
            if (sd_is_list(f.v.meta)) {
                rc = SD_WRONGTYPE;
                break;
            }
            pos += sd_put_record(at, room, &f.v);
        } else { /* missing: a record of zeros */
            if (room >= 8)
                memset(at, 0, 8);
            pos += 8;
        }
    }
    if (rc == SD_OK && pos > cap) {
        *need = pos;
        rc = SD_TOOBIG;
    }
    sd_status r = unlock_stripes(&m, SD_OK);
    return sd_guarded(d, rc != SD_OK ? rc : r);
}

/* Commit every held stripe: a checkpoint of a batch. */
static void commit_stripes(multi *m)
{
    for (unsigned i = 0; i < m->d->nstripes; i++)
        if (m->held[i])
            sd_tx_commit(&m->t[i]);
}

/* Does any held stripe's transaction need a checkpoint before the next
 * item? (its undo log or its queue of frees is nearly full) */
/* The most one item can log: a 4 KiB block written word by word (see
 * store_commits's full-dict path) plus the allocator's and index's words. */
#define BATCH_LOG_RESERVE 640u

/* Whether a held stripe's undo log or free queue is nearly full, so that
 * the batch must commit everything held before its next item. */
static bool needs_checkpoint(multi *m)
{
    for (unsigned i = 0; i < m->d->nstripes; i++)
        if (m->held[i] && (LD(&m->d->stripes[i].lock->log_n) >
                               SD_LOG_CAP - BATCH_LOG_RESERVE ||
                           m->t[i].npending > SD_PENDING_CAP - 8))
            return true;
    return false;
}

SD_MUST_USE sd_status sd_set_many(sd_handle *d, size_t n,
                                  const char *const *keys, const size_t *klens,
                                  const sd_value_in *vals, int64_t ttl_ms,
                                  size_t *done, uint64_t *evicted)
{
    *done = 0;
    *evicted = 0;
    if (check_keys(n, klens))
        return sd_guarded(d, SD_BADARG);
    uint64_t biggest = 0;
    for (size_t i = 0; i < n; i++) {
        if (!sd_check_value(&vals[i]))
            return sd_guarded(d, SD_BADARG);
        uint64_t need = sd_entry_need(klens[i], sd_value_len(&vals[i]));
        biggest = need > biggest ? need : biggest;
    }
    multi m;
    sd_status rc = lock_stripes(d, NULL, &m);
    if (rc)
        return sd_guarded(d, rc);
    for (unsigned j = 0; j < d->nstripes; j++)
        sd_before_alloc_commits(&m.t[j], biggest);
    /* Fast path: the whole batch in one transaction per stripe, with a
     * checkpoint of all of them whenever one log nears its end, so a
     * batch that fits is all or nothing. */
    size_t committed = 0, i = 0;
    for (; i < n && rc == SD_OK; i++) {
        if (needs_checkpoint(&m)) {
            commit_stripes(&m);
            committed = i;
        }
        uint32_t hash = sd_key_hash(d->hash_seed, keys[i], klens[i]);
        sd_stripe *s = sd_stripe_of(d, hash);
        rc = sd_set_commits(&m.t[s - d->stripes], keys[i], klens[i], hash,
                            &vals[i], ttl_ms, SD_MODE_SET);
        if (rc == SD_OK && m.t[s - d->stripes].overflow)
            rc = SD_INTERNAL;  /* can't happen with the reserve above */
        sd_mark_used(s, hash); /* see the slow path below */
    }
    bool room = false;
    for (unsigned j = 0; rc == SD_NOMEM && j < d->nstripes; j++)
        room = room || sd_can_make_room(&d->stripes[j]);
    if (rc == SD_NOMEM && room) {
        /* Slow path: undo back to the checkpoint, then store item by item,
         * making room as needed (which commits as it goes). A dict that
         * can't make room skips this and is left as the checkpoint was. */
        for (unsigned j = 0; j < d->nstripes; j++)
            if (m.held[j])
                sd_tx_abort(&m.t[j]);
        rc = SD_OK;
        for (i = committed; i < n && rc == SD_OK; i++) {
            uint64_t ev = 0;
            uint32_t hash = sd_key_hash(d->hash_seed, keys[i], klens[i]);
            sd_tx *t = &m.t[sd_stripe_of(d, hash) - d->stripes];
            rc = sd_set_room_commits(t, keys[i], klens[i], hash, &vals[i],
                                     ttl_ms, SD_MODE_SET, &ev);
            *evicted += ev;
            if (rc == SD_OK) {
                sd_tx_commit(t);
                committed = i + 1;
                /* A new key comes unmarked; mark the batch's keys so that
                 * making room for its later items passes them over. A
                 * mark left by an undone write costs nothing but that. */
                sd_mark_used(t->s, hash);
            }
        }
    }
    *done = rc == SD_OK ? n : committed;
    return sd_guarded(d, unlock_stripes(&m, rc));
}

SD_MUST_USE sd_status sd_delete_many(sd_handle *d, size_t n,
                                     const char *const *keys,
                                     const size_t *klens, size_t *deleted)
{
    *deleted = 0;
    if (check_keys(n, klens))
        return sd_guarded(d, SD_BADARG);
    multi m;
    sd_status rc = lock_stripes(d, NULL, &m);
    if (rc)
        return sd_guarded(d, rc);
    for (size_t i = 0; i < n && rc == SD_OK; i++) {
        uint32_t hash = sd_key_hash(d->hash_seed, keys[i], klens[i]);
        sd_tx *t = &m.t[sd_stripe_of(d, hash) - d->stripes];
        sd_found f;
        rc = sd_find_live_locked(t, keys[i], klens[i], hash, &f);
        if (rc == SD_OK) {
            rc = sd_drop_locked(t, &f);
            if (rc == SD_OK)
                ++*deleted;
        } else if (rc == SD_NOTFOUND) {
            rc = SD_OK;
        }
        if (rc == SD_OK) /* each delete stands on its own */
            sd_tx_commit(t);
    }
    return sd_guarded(d, unlock_stripes(&m, rc));
}

SD_MUST_USE sd_status sd_flush_all(sd_handle *d)
{
    multi m;
    sd_status rc = lock_stripes(d, NULL, &m);
    if (rc)
        return sd_guarded(d, rc);
    /* Mark every stripe first: a holder killed half way leaves the rest
     * marked, and their next lockers finish the flush. */
    for (unsigned i = 0; i < d->nstripes; i++)
        ST(&d->stripes[i].lock->flush_pending, 1u);
    COMPILER_BARRIER();
    for (unsigned i = 0; i < d->nstripes; i++)
        sd_flush_raw_locked(&d->stripes[i]);
    return sd_guarded(d, unlock_stripes(&m, SD_OK));
}
