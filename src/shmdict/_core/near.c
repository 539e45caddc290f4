/*
 * near.c - the per-handle near cache: the values a handle returned, kept
 * as their objects while the core says they are current (see binding.h).
 * near_find, the hit, is inline in binding.h; here is how entries get in
 * and out, and what they cost in memory.
 */
#include "binding.h"

/* About the bytes an object kept in the cache takes (what sys.getsizeof
 * says, for the types kept; the shared singletons count nothing). */
static size_t obj_bytes(PyObject *o)
{
    if (o == Py_None || o == Py_True || o == Py_False)
        return 0;
    if (PyUnicode_Check(o)) {
        size_t n = (size_t)PyUnicode_GET_LENGTH(o);
        if (PyUnicode_IS_COMPACT_ASCII(o))
            return sizeof(PyASCIIObject) + n + 1;
        /* (and its UTF-8 copy, once made: not counted) */
        return sizeof(PyCompactUnicodeObject) +
               (n + 1) * (size_t)PyUnicode_KIND(o);
    }
    PyTypeObject *t = Py_TYPE(o);
    if (PyBytes_Check(o))
        return (size_t)t->tp_basicsize + (size_t)PyBytes_GET_SIZE(o);
    /* Not Py_SIZE: an int's size field is private from 3.12 on (and the
     * header asserts so). A kept int fits 64 bits: 3 digits at most. */
    if (PyLong_Check(o))
        return (size_t)t->tp_basicsize + 3 * (size_t)t->tp_itemsize;
    return (size_t)t->tp_basicsize; /* a float */
}

/* Drop every entry and the table. */
void near_clear(DictObject *self)
{
    struct near_slot *t = self->near;
    if (!t)
        return;
    void *mem = self->near_mem;
    self->near = NULL;
    self->near_mem = NULL;
    self->near_obj_bytes = 0;
    for (uint32_t i = 0; i < self->near_n; i++) {
        Py_XDECREF(t[i].key);
        Py_XDECREF(t[i].value);
    }
    PyMem_Free(mem);
}

/* The memory the cache holds: the table and, approximately, the objects
 * its entries hold (keys and values). */
size_t near_bytes(const DictObject *self)
{
    return self->near
               ? (size_t)self->near_n * NEAR_SLOT_BYTES + self->near_obj_bytes
               : 0;
}

/* What the core compares a kept value with (sd_near): its bytes as
 * stored, which for a str are its UTF-8. 0, or -1 if it can't be kept. */
static int near_ref(PyObject *value, const sd_value_out *o, sd_near *r)
{
    r->seq = o->seq;
    r->hash = o->hash;
    r->idx = o->idx;
    r->meta = (uint64_t)o->type | (o->ascii ? SD_META_ASCII : 0) |
              (o->tag ? SD_META_TAG : 0) | o->exp << SD_META_EXP_SHIFT;
    r->data = NULL;
    r->word = 0;
    switch (o->type) {
    case SD_T_INT:
        r->word = (uint64_t)o->i;
        return 0;
    case SD_T_FLOAT:
        memcpy(&r->word, &o->f, 8);
        return 0;
    case SD_T_BYTES:
        r->data = PyBytes_AS_STRING(value);
        r->word = o->len;
        return (size_t)PyBytes_GET_SIZE(value) == o->len ? 0 : -1;
    case SD_T_STR: {
        Py_ssize_t n;
        if (PyUnicode_IS_COMPACT_ASCII(value)) {
            r->data = PyUnicode_DATA(value);
            n = PyUnicode_GET_LENGTH(value);
        } else if (!(r->data = PyUnicode_AsUTF8AndSize(value, &n))) {
            PyErr_Clear(); /* (lone surrogates can't come from the core) */
            return -1;
        }
        r->word = o->len;
        return (size_t)n == o->len ? 0 : -1;
    }
    default:
        return 0;
    }
}

/* Whether a value of `len` bytes (a str or bytes) may replace one of
 * `old` object bytes in the cache, whose new size would be `new` object
 * bytes: small ones always, big ones while the budget holds. */
static bool near_room(const DictObject *self, size_t len, size_t old,
                      size_t new)
{
    if (len <= NEAR_SMALL_VALUE)
        return true;
    size_t budget = (size_t)self->near_n * NEAR_SLOT_BUDGET;
    return len <= NEAR_MAX_VALUE && self->near_obj_bytes - old + new <= budget;
}

/* Keep value as key's current value, if it may be kept: read without the
 * lock (o->seq), and small or within the budget. */
void near_keep(DictObject *self, PyObject *key, PyObject *value,
               const sd_value_out *o)
{
    /* (not on a handle a thread closed while this one read) */
    bool var = o->type == SD_T_STR || o->type == SD_T_BYTES;
    if (!self->near_n || !self->h || !o->seq || !PyUnicode_CheckExact(key) ||
        (var && o->len > NEAR_MAX_VALUE))
        return;
    if (!self->near) {
        /* One slot more, to start the table on a cache line. */
        self->near_mem = PyMem_Calloc((size_t)self->near_n + 1, 64);
        if (!self->near_mem)
            return; /* no cache, no harm */
        self->near = (struct near_slot *)(((uintptr_t)self->near_mem + 63) &
                                          ~(uintptr_t)63);
    }
    uint32_t tag;
    struct near_slot *ns = near_slot_of(self, key, &tag);
    if (!ns)
        return;
    if (ns->key && ns->tag != tag && ns->cand != tag) {
        /* Another key holds the slot: take it only when this key comes
         * back (a second read soon after), so a scan of many keys doesn't
         * churn the table, and the holder's objects aren't freed cold. */
        ns->cand = tag;
        return;
    }
    PyObject *old_key = ns->key, *old_value = ns->value;
    size_t old_bytes = old_key ? obj_bytes(old_key) + obj_bytes(old_value) : 0;
    if (var &&
        !near_room(self, o->len, old_bytes, obj_bytes(key) + obj_bytes(value)))
        return;
    sd_near ref;
    if (near_ref(value, o, &ref) < 0)
        return;
    self->near_obj_bytes -= old_bytes;
    ns->tag = tag;
    ns->cand = 0;
    ns->key = Py_NewRef(key);
    ns->value = Py_NewRef(value);
    ns->ref = ref;
    self->near_obj_bytes += obj_bytes(key) + obj_bytes(value);
    Py_XDECREF(old_key);
    Py_XDECREF(old_value);
}

/* After a set that stored `value` (converted to v): if the key holds a
 * slot, keep `value` there as its value, as a read of it would have been
 * kept, when the core said where the set left it (kept->seq) and a get
 * would give back an equal object of the same type: the exact built-in
 * types, not a tagged (pickled) one, whose reads make a new object each
 * time. Only a slot the key already holds: a set of a key nobody reads
 * costs the table nothing, and the slot check little. The caller has
 * left the handle. */
void near_keep_stored(DictObject *self, PyObject *key, PyObject *value,
                      const sd_value_in *v, const sd_near *kept)
{
    uint32_t tag;
    struct near_slot *ns;
    if (!kept->seq || v->tag || !self->near || !self->h ||
        !PyUnicode_CheckExact(key) || !(ns = near_slot_of(self, key, &tag)) ||
        !ns->key || ns->tag != tag || !same_str(ns->key, key))
        return;
    sd_near ref = *kept;
    ref.word = 0;
    ref.data = NULL;
    PyTypeObject *t = Py_TYPE(value);
    if (t == &PyLong_Type) {
        ref.word = (uint64_t)v->i;
    } else if (t == &PyFloat_Type) {
        memcpy(&ref.word, &v->f, 8);
    } else if (t == &PyUnicode_Type || t == &PyBytes_Type) {
        if (!near_room(self, v->len, obj_bytes(ns->value), obj_bytes(value)))
            return; /* (the kept one fails its next check) */
        ref.word = v->len;
        ref.data = v->data; /* the object's own bytes, or its UTF-8 */
    } else if (!(value == Py_None || value == Py_True || value == Py_False)) {
        return;
    }
    PyObject *old = ns->value;
    self->near_obj_bytes -= obj_bytes(old);
    self->near_obj_bytes += obj_bytes(value);
    ns->value = Py_NewRef(value);
    ns->ref = ref;
    Py_XDECREF(old);
}
