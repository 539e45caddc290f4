/*
 * list.c - the Dict methods on list values: lpush, rpush, lpop, rpop,
 * llen, lrange.
 */
#include "binding.h"

/* lpush and rpush: (key, value) by position only. */
static PyObject *push(DictObject *self, const char *op, int left,
                      PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_Format(PyExc_TypeError, "%s() takes 2 arguments (%zd given)", op,
                     nargs);
        return NULL;
    }
    const char *k;
    Py_ssize_t klen;
    sd_value_in v;
    uint64_t len = 0;
    if (key_arg(args[0], &k, &klen) < 0 ||
        value_arg((PyObject *)self, args[1], &v) < 0 || dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_push(self->h, k, (size_t)klen, left, &v, &len);
    dict_leave(self);
    if (rc != SD_OK)
        return raise_status((PyObject *)self, rc, op, args[0]);
    return PyLong_FromUnsignedLongLong(len);
}

const char Dict_lpush_doc[] =
    "lpush($self, key, value, /)\n--\n\n"
    "Put value at the head of the list at key (made if missing); return\n"
    "the new length. TypeError if key holds a scalar. O(1).";

PyObject *Dict_lpush(DictObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return push(self, "lpush", 1, args, nargs);
}

const char Dict_rpush_doc[] =
    "rpush($self, key, value, /)\n--\n\n"
    "Put value at the tail of the list at key; return the new length. O(1).";

PyObject *Dict_rpush(DictObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return push(self, "rpush", 0, args, nargs);
}

static sd_status fetch_lpop(sd_handle *h, const char *k, size_t n,
                            sd_value_out *out, void *arg)
{
    (void)arg;
    return sd_list_pop(h, k, n, 1, out);
}

static sd_status fetch_rpop(sd_handle *h, const char *k, size_t n,
                            sd_value_out *out, void *arg)
{
    (void)arg;
    return sd_list_pop(h, k, n, 0, out);
}

const char Dict_lpop_doc[] =
    "lpop($self, key, /)\n--\n\n"
    "Remove and return the head of the list at key, or None. A list that\n"
    "becomes empty is removed. O(1).";

PyObject *Dict_lpop(DictObject *self, PyObject *key)
{
    return fetch_obj(self, "lpop", key, fetch_lpop, NULL, Py_None, NULL);
}

const char Dict_rpop_doc[] =
    "rpop($self, key, /)\n--\n\n"
    "Remove and return the tail of the list at key, or None. O(1).";

PyObject *Dict_rpop(DictObject *self, PyObject *key)
{
    return fetch_obj(self, "rpop", key, fetch_rpop, NULL, Py_None, NULL);
}

const char Dict_llen_doc[] =
    "llen($self, key, /)\n--\n\n"
    "The length of the list at key (0 if missing). O(1).";

PyObject *Dict_llen(DictObject *self, PyObject *key)
{
    const char *k;
    Py_ssize_t klen;
    uint64_t len = 0;
    if (key_arg(key, &k, &klen) < 0 || dict_enter(self) < 0)
        return NULL;
    sd_status rc = sd_llen(self->h, k, (size_t)klen, &len);
    dict_leave(self);
    if (rc != SD_OK && rc != SD_NOTFOUND)
        return raise_status((PyObject *)self, rc, "llen", key);
    return PyLong_FromUnsignedLongLong(len);
}

const char Dict_lrange_doc[] =
    "lrange($self, key, /)\n--\n\n"
    "Every item of the list at key, head first, as they were at one moment\n"
    "([] if missing); the list is left as it is. O(n) under the lock.\n"
    "TypeError if key holds a scalar.";

PyObject *Dict_lrange(DictObject *self, PyObject *key)
{
    const char *k;
    Py_ssize_t klen;
    if (key_arg(key, &k, &klen) < 0 || dict_enter(self) < 0)
        return NULL;
    sd_span span = SD_SPAN_INIT; /* one timeout for the retries too */
    size_t cap = 4096, used = 0;
    uint64_t count = 0;
    unsigned char *buf = PyMem_Malloc(cap);
    sd_status rc = SD_TOOBIG;
    while (buf && rc == SD_TOOBIG) {
        span_enter(self, &span);
        rc = sd_list_items(self->h, k, (size_t)klen, buf, cap, &used, &count);
        span_leave(&span);
        if (rc == SD_TOOBIG) {
            unsigned char *bigger = PyMem_Realloc(buf, used);
            if (!bigger)
                PyMem_Free(buf);
            buf = bigger;
            cap = used;
        }
    }
    dict_leave(self);
    PyObject *res = NULL;
    if (!buf) {
        PyErr_NoMemory();
        goto exit;
    }
    if (rc == SD_NOTFOUND) {
        res = PyList_New(0);
        goto exit;
    }
    if (rc != SD_OK) {
        raise_status((PyObject *)self, rc, "lrange", key);
        goto exit;
    }
    if (!(res = PyList_New((Py_ssize_t)count)))
        goto exit;
    size_t pos = 0;
    for (uint64_t i = 0; i < count; i++) {
        const unsigned char *rec = buf + pos;
        pos += record_size(rec);
        PyObject *v = record_value((PyObject *)self, rec);
        if (!v) {
            Py_CLEAR(res);
            goto exit;
        }
        PyList_SET_ITEM(res, (Py_ssize_t)i, v);
    }
exit:
    PyMem_Free(buf);
    return res;
}
