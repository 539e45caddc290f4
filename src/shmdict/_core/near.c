/*
 * near.c - the per-handle near cache: the values a handle returned, kept
 * as their objects while their stripe doesn't change (see binding.h).
 * near_find, the hit, is inline in binding.h; here is how entries get in
 * and out.
 */
#include "binding.h"

/* Drop every entry and the table. */
void near_clear(DictObject *self)
{
    struct near_slot *t = self->near;
    if (!t)
        return;
    self->near = NULL;
    for (unsigned i = 0; i < NEAR_SLOTS; i++) {
        Py_XDECREF(t[i].key);
        Py_XDECREF(t[i].value);
    }
    PyMem_Free(t);
}

/* Keep value as key's current value, if it may be kept: read without the
 * lock (o->seq), not expiring, and small. */
void near_keep(DictObject *self, PyObject *key, PyObject *value,
               const sd_value_out *o)
{
    if (!o->seq || o->expiring || !PyUnicode_CheckExact(key) ||
        ((o->type == SD_T_STR || o->type == SD_T_BYTES) &&
         o->len > NEAR_MAX_VALUE))
        return;
    if (!self->near) {
        self->near = PyMem_Calloc(NEAR_SLOTS, sizeof *self->near);
        if (!self->near)
            return; /* no cache, no harm */
    }
    Py_hash_t ph;
    struct near_slot *ns = near_slot_of(self, key, &ph);
    if (!ns)
        return;
    if (ns->key && ns->ph != ph && ns->cand != ph) {
        /* Another key holds the slot: take it only when this key comes
         * back (a second read soon after), so a scan of many keys doesn't
         * churn the table, and the holder's objects aren't freed cold. */
        ns->cand = ph;
        return;
    }
    ns->ph = ph;
    ns->cand = 0;
    PyObject *old_key = ns->key, *old_value = ns->value;
    ns->key = Py_NewRef(key);
    ns->value = Py_NewRef(value);
    ns->seq = o->seq;
    ns->part = o->part;
    ns->hash = o->hash;
    Py_XDECREF(old_key);
    Py_XDECREF(old_value);
}
