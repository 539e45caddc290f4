/*
 * batch.c - the Dict methods on many keys: get_many, set_many,
 * delete_many. Every key and value is checked before the first core call.
 */
#include "binding.h"

/* Keys of an iterable, as UTF-8 arrays that borrow from `seq`. */
typedef struct key_batch {
    PyObject *seq;     /* owned: a list or tuple holding the keys */
    Py_ssize_t n;      /* how many */
    const char **keys; /* owned array; each borrowed from its str */
    size_t *klens;     /* owned array */
} key_batch;

static void batch_free(key_batch *b)
{
    Py_CLEAR(b->seq);
    PyMem_Free(b->keys);
    PyMem_Free(b->klens);
    b->keys = NULL;
    b->klens = NULL;
}

/* Fill b with the keys of `iterable`; -1 with an exception (b then needs
 * no batch_free). */
static int batch_keys(PyObject *iterable, key_batch *b)
{
    memset(b, 0, sizeof *b);
    if (PyUnicode_Check(iterable)) {
        PyErr_SetString(PyExc_TypeError,
                        "expected an iterable of keys, not one str");
        return -1;
    }
    b->seq = PySequence_Fast(iterable, "expected an iterable of keys");
    if (!b->seq)
        return -1;
    b->n = PySequence_Fast_GET_SIZE(b->seq);
    b->keys = PyMem_Calloc((size_t)b->n + 1, sizeof *b->keys);
    b->klens = PyMem_Calloc((size_t)b->n + 1, sizeof *b->klens);
    if (!b->keys || !b->klens) {
        batch_free(b);
        PyErr_NoMemory();
        return -1;
    }
    PyObject **items = PySequence_Fast_ITEMS(b->seq);
    for (Py_ssize_t i = 0; i < b->n; i++) {
        Py_ssize_t len;
        if (key_arg(items[i], &b->keys[i], &len) < 0) {
            batch_free(b);
            return -1;
        }
        b->klens[i] = (size_t)len;
    }
    return 0;
}

/* get_many under every stripe's lock: the way when readers keep meeting
 * writers, or a value needs more than a plain lock-free get. */
static PyObject *get_many_locked(DictObject *self, const key_batch *b,
                                 sd_span *sp)
{
    size_t cap = 4096, need = 0;
    unsigned char *buf = PyMem_Malloc(cap);
    PyObject *res = NULL;
    sd_status rc = SD_TOOBIG;
    while (buf && rc == SD_TOOBIG) {
        if (dict_enter(self) < 0)
            goto exit;
        span_enter(self, sp);
        rc = sd_get_many(self->h, (size_t)b->n, b->keys, b->klens, buf, cap,
                         &need);
        span_leave(sp);
        dict_leave(self);
        if (rc == SD_TOOBIG) {
            PyMem_Free(buf);
            cap = need;
            buf = PyMem_Malloc(cap);
        }
    }
    if (!buf) {
        PyErr_NoMemory();
        goto exit;
    }
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, "get_many", self->path);
        goto exit;
    }
    if (!(res = PyDict_New()))
        goto exit;
    PyObject **items = PySequence_Fast_ITEMS(b->seq);
    size_t pos = 0;
    for (Py_ssize_t i = 0; i < b->n; i++) {
        const unsigned char *rec = buf + pos;
        pos += record_size(rec);
        if (rec[0] == 0)
            continue; /* missing */
        PyObject *v = record_value((PyObject *)self, rec);
        if (!v || PyDict_SetItem(res, items[i], v) < 0) {
            Py_XDECREF(v);
            Py_CLEAR(res);
            goto exit;
        }
        Py_DECREF(v);
    }
exit:
    PyMem_Free(buf);
    return res;
}

const char Dict_get_many_doc[] =
    "get_many($self, keys, /)\n--\n\n"
    "A dict of the keys that exist, all as they were at one moment. Every\n"
    "key is checked first; then they are read without a lock, as get()\n"
    "reads, and read again under every stripe's lock if a writer came\n"
    "in meanwhile (or a value is over 4 KiB). O(len(keys)).";

/* Read every key without a lock, as get() does, and keep the result only if
 * no stripe's sequence counter moved meanwhile: then all the values were
 * current at one moment, as under the locks, which is the way after a few
 * tries. */
PyObject *Dict_get_many(DictObject *self, PyObject *keys)
{
    key_batch b;
    PyObject *res = NULL;
    if (batch_keys(keys, &b) < 0) /* every key is checked before any read */
        return NULL;
    if (dict_enter(self) < 0)
        goto exit;
    unsigned np = sd_nparts(self->h);
    dict_leave(self);
    uint64_t snap[SNAP_PARTS];
    sd_span span = SD_SPAN_INIT; /* the lookups and the locked way */
    PyObject **items = PySequence_Fast_ITEMS(b.seq);
    for (int attempt = 0; np <= SNAP_PARTS && attempt < 3; attempt++) {
        int stale = 0;
        if (dict_enter(self) < 0) /* closed by a thread while we read */
            goto exit;
        for (unsigned p = 0; p < np; p++)
            stale |= (int)((snap[p] = sd_part_seq(self->h, p)) & 1);
        dict_leave(self);
        if (stale)
            continue; /* a writer is in */
        if (!(res = PyDict_New()))
            goto exit;
        for (Py_ssize_t i = 0; i < b.n && !stale; i++) {
            PyObject *v =
                lookup(self, "get_many", items[i], snap, &stale, &span);
            if (!v && !stale) {
                Py_CLEAR(res);
                goto exit;
            }
            if (v && v != Py_Ellipsis && PyDict_SetItem(res, items[i], v) < 0)
                Py_CLEAR(res);
            Py_XDECREF(v);
            if (!res)
                goto exit;
        }
        if (dict_enter(self) < 0) {
            Py_CLEAR(res);
            goto exit;
        }
        for (unsigned p = 0; p < np && !stale; p++)
            stale = sd_part_seq(self->h, p) != snap[p];
        dict_leave(self);
        if (!stale)
            goto exit;
        Py_CLEAR(res);
        if (stale == 2)
            break;
    }
    res = get_many_locked(self, &b, &span);
exit:
    batch_free(&b);
    return res;
}

const char Dict_set_many_doc[] =
    "set_many($self, /, mapping, exptime=0)\n--\n\n"
    "Store every item under one hold of the lock. Every input is checked\n"
    "first. If the dict runs out of room, NoMemoryError is raised and\n"
    "e.stored says how many items were kept: none for a batch of dozens\n"
    "of items, unless one only fitted in its own old place in a full dict\n"
    "(that commits what came before it). Each item is atomic, the batch\n"
    "is not: a reader or a crash may see some items stored and not yet\n"
    "the others. O(len(mapping)).";

PyObject *Dict_set_many(DictObject *self, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"mapping", "exptime"};
    PyObject *a[2];
    if (parse_args("set_many", names, 2, 2, 1, args, nargs, kwnames, a) < 0)
        return NULL;
    int64_t ttl;
    if (ttl_arg(a[1], &ttl) < 0)
        return NULL;
    if (!PyDict_Check(a[0]) && !PyObject_HasAttrString(a[0], "items")) {
        PyErr_SetString(PyExc_TypeError, "set_many expects a mapping");
        return NULL;
    }
    PyObject *items = PyMapping_Items(a[0]);
    if (!items)
        return NULL;
    Py_ssize_t n = PyList_GET_SIZE(items);
    PyObject *keys = PyList_New(n);
    sd_value_in *vals = PyMem_Calloc((size_t)n + 1, sizeof *vals);
    key_batch b = {0};
    PyObject *res = NULL;
    if (!keys || !vals) {
        PyErr_NoMemory();
        goto exit;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *kv = PyList_GET_ITEM(items, i);
        if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) {
            PyErr_SetString(PyExc_TypeError, "mapping items must be pairs");
            goto exit;
        }
        PyList_SET_ITEM(keys, i, Py_NewRef(PyTuple_GET_ITEM(kv, 0)));
        if (value_arg((PyObject *)self, PyTuple_GET_ITEM(kv, 1), &vals[i]) < 0)
            goto exit;
    }
    if (batch_keys(keys, &b) < 0 || dict_enter(self) < 0)
        goto exit;
    size_t stored = 0;
    uint64_t evicted = 0;
    sd_status rc = sd_set_many(self->h, (size_t)n, b.keys, b.klens, vals, ttl,
                               &stored, &evicted);
    dict_leave(self);
    if (rc == SD_OK) {
        res = Py_NewRef(Py_None);
    } else {
        err_ctx cx = {.op = "set_many", .obj = self->path, .stored = stored};
        raise_status_ctx((PyObject *)self, rc, &cx);
    }
exit:
    batch_free(&b);
    PyMem_Free(vals);
    Py_XDECREF(keys);
    Py_DECREF(items);
    return res;
}

const char Dict_delete_many_doc[] =
    "delete_many($self, keys, /)\n--\n\n"
    "Delete the keys under one hold of the lock; return how many existed.\n"
    "Each delete is atomic, the batch is not (see set_many). O(len(keys)).";

PyObject *Dict_delete_many(DictObject *self, PyObject *keys)
{
    key_batch b;
    PyObject *res = NULL;
    if (batch_keys(keys, &b) < 0)
        return NULL;
    if (dict_enter(self) < 0)
        goto exit;
    size_t deleted = 0;
    sd_status rc =
        sd_delete_many(self->h, (size_t)b.n, b.keys, b.klens, &deleted);
    dict_leave(self);
    if (rc != SD_OK)
        raise_status((PyObject *)self, rc, "delete_many", self->path);
    else
        res = PyLong_FromSize_t(deleted);
exit:
    batch_free(&b);
    return res;
}
