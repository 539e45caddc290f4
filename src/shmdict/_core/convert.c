/*
 * convert.c - Python in, Python out: argument parsing, values both ways,
 * the arguments of Dict(), and the one table from sd_status to exception.
 */
#include "binding.h"

#include <errno.h>
#include <math.h>
#include <string.h>
#include <sys/statvfs.h>

/* ---- argument parsing ------------------------------------------------- */

/* A minimal FASTCALL parser: `names` lists every parameter; the first
 * `npos` may be given by position; the first `nreq` are required. */
int parse_args(const char *fname, const char *const *names, int nnames,
               int npos, int nreq, PyObject *const *args, Py_ssize_t nargs,
               PyObject *kwnames, PyObject **out)
{
    if (nargs > npos) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes at most %d positional arguments (%zd given)",
                     fname, npos, nargs);
        return -1;
    }
    for (int i = 0; i < nnames; i++)
        out[i] = i < nargs ? args[i] : NULL;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t j = 0; j < nkw; j++) {
        PyObject *kw = PyTuple_GET_ITEM(kwnames, j);
        int i = 0;
        while (i < nnames && PyUnicode_CompareWithASCIIString(kw, names[i]))
            i++;
        if (i == nnames) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument %R", fname,
                         kw);
            return -1;
        }
        if (out[i]) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'", fname,
                         names[i]);
            return -1;
        }
        out[i] = args[nargs + j];
    }
    for (int i = 0; i < nreq; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing required argument '%s'", fname,
                         names[i]);
            return -1;
        }
    }
    return 0;
}

/* key_arg (binding.h) for a key that is not a compact ASCII str. */
int key_arg_slow(PyObject *key, const char **p, Py_ssize_t *n)
{
    if (!PyUnicode_Check(key)) {
        PyErr_Format(PyExc_TypeError, "keys must be str, not %.100s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    *p = PyUnicode_AsUTF8AndSize(key, n);
    if (!*p)
        return -1;
    if (*n == 0) {
        PyErr_SetString(PyExc_ValueError, "keys must not be empty");
        return -1;
    }
    if ((size_t)*n > SD_MAX_KEY) {
        PyErr_Format(PyExc_ValueError,
                     "key is %zd bytes of UTF-8; the limit is %u", *n,
                     (unsigned)SD_MAX_KEY);
        return -1;
    }
    return 0;
}

/* A value argument. `self` (NULL for numbers) finds the Pickled type. */
int value_arg(PyObject *self, PyObject *v, sd_value_in *out)
{
    out->ascii = 0;
    out->tag = 0;
    out->data = NULL;
    out->len = 0;
    if (v == Py_None) {
        out->type = SD_T_NONE;
    } else if (v == Py_True) {
        out->type = SD_T_TRUE;
    } else if (v == Py_False) {
        out->type = SD_T_FALSE;
    } else if (PyLong_Check(v)) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow) {
            PyErr_SetString(PyExc_OverflowError,
                            "int does not fit in 64 bits (shmdict stores "
                            "signed 64-bit ints)");
            return -1;
        }
        if (x == -1 && PyErr_Occurred())
            return -1;
        out->type = SD_T_INT;
        out->i = x;
    } else if (PyFloat_Check(v)) {
        out->type = SD_T_FLOAT;
        out->f = PyFloat_AS_DOUBLE(v);
    } else if (PyUnicode_Check(v)) {
        Py_ssize_t n;
        out->data = PyUnicode_AsUTF8AndSize(v, &n);
        if (!out->data)
            return -1;
        out->type = SD_T_STR;
        out->len = (size_t)n;
        out->ascii = PyUnicode_IS_ASCII(v) ? 1 : 0;
    } else if (PyBytes_Check(v)) {
        out->type = SD_T_BYTES;
        out->data = PyBytes_AS_STRING(v);
        out->len = (size_t)PyBytes_GET_SIZE(v);
        if (!PyBytes_CheckExact(v) && self) {
            module_state *st = state_of(self);
            if (!st)
                return -1;
            out->tag = PyObject_TypeCheck(v, st->PickledType) ? 1 : 0;
        }
    } else {
        PyErr_Format(PyExc_TypeError,
                     "values must be None, bool, int, float, str or bytes, "
                     "not %.100s",
                     Py_TYPE(v)->tp_name);
        return -1;
    }
    if (out->len > UINT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "value is larger than 4 GiB");
        return -1;
    }
    return 0;
}

/* A number argument that must be finite: exptime or delta. */
static int finite_number(PyObject *o, const char *what, double *d)
{
    if (PyBool_Check(o) || !(PyLong_Check(o) || PyFloat_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s must be an int or float, not %.100s",
                     what, Py_TYPE(o)->tp_name);
        return -1;
    }
    *d = PyFloat_Check(o) ? PyFloat_AS_DOUBLE(o) : PyLong_AsDouble(o);
    if (*d == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s is too large", what);
        return -1;
    }
    if (!isfinite(*d)) {
        PyErr_Format(PyExc_ValueError, "%s must be finite, not %R", what, o);
        return -1;
    }
    return 0;
}

/* A number argument for incr: delta or init. */
int number_arg(PyObject *o, const char *what, sd_value_in *v)
{
    memset(v, 0, sizeof *v);
    if (PyLong_Check(o) && !PyBool_Check(o))
        return value_arg(NULL, o, v);
    if (finite_number(o, what, &v->f) < 0)
        return -1;
    v->type = SD_T_FLOAT;
    return 0;
}

/* exptime in seconds -> milliseconds: <= 0 (or NULL) means none (0); any
 * positive time lasts at least 1 ms. */
#define MAX_TTL_MS 9007199254740992.0 /* 2**53 ms, about 285,000 years */

int ttl_arg(PyObject *o, int64_t *ms)
{
    double d;
    *ms = 0;
    if (!o)
        return 0;
    if (finite_number(o, "exptime", &d) < 0)
        return -1;
    if (d <= 0)
        return 0;
    double m = ceil(d * 1000.0);
    if (m > MAX_TTL_MS) {
        PyErr_SetString(PyExc_ValueError,
                        "exptime is too large (the limit is 2**53 ms)");
        return -1;
    }
    *ms = m < 1 ? 1 : (int64_t)m;
    return 0;
}

/* ---- the arguments of Dict() ------------------------------------------
 * The one place they are checked: shmdict.new(), open() and get() pass
 * theirs through unchanged. */

/* The lock timeout `o` (NULL: DEFAULT_LOCK_TIMEOUT) in seconds, and as the
 * core's ms. 0: try once, don't wait; math.inf (or anything beyond the
 * core's limit, about 139 years): no limit; any other positive time waits
 * at least 1 ms. */
int lock_timeout_arg(PyObject *o, double *s, int64_t *ms)
{
    *s = o ? PyFloat_AsDouble(o) : DEFAULT_LOCK_TIMEOUT;
    if (*s == -1.0 && PyErr_Occurred())
        return -1;
    if (isnan(*s) || *s < 0) {
        PyObject *f = PyFloat_FromDouble(*s);
        if (f) {
            PyErr_Format(PyExc_ValueError,
                         "lock_timeout must be >= 0 seconds (0: don't wait, "
                         "math.inf: no limit), not %R",
                         f);
            Py_DECREF(f);
        }
        return -1;
    }
    if (*s * 1000.0 > (double)SD_MAX_TIMEOUT_MS)
        *ms = SD_WAIT_FOREVER;
    else
        *ms = (int64_t)ceil(*s * 1000.0);
    return 0;
}

/* The size in bytes (NULL: 0): an int, from SD_MIN_SIZE to SD_MAX_SIZE if
 * the dict may be created; an attach ignores it. */
int size_arg(PyObject *o, int create, unsigned long long *size)
{
    *size = 0;
    if (o && (!PyLong_Check(o) || PyBool_Check(o))) {
        PyErr_Format(PyExc_TypeError, "size must be int, not %.100s",
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    if (!create) {
        *size = o ? PyLong_AsUnsignedLongLongMask(o) : 0;
        return *size == (unsigned long long)-1 && PyErr_Occurred() ? -1 : 0;
    }
    int overflow = 0;
    long long s = o ? PyLong_AsLongLongAndOverflow(o, &overflow) : 0;
    if (s == -1 && PyErr_Occurred())
        return -1;
    if (overflow || s < 0 || (unsigned long long)s < SD_MIN_SIZE ||
        (unsigned long long)s > SD_MAX_SIZE) {
        PyErr_Format(
            PyExc_ValueError, "size must be between %llu and %llu bytes",
            (unsigned long long)SD_MIN_SIZE, (unsigned long long)SD_MAX_SIZE);
        return -1;
    }
    *size = (unsigned long long)s;
    return 0;
}

/* The file's permission bits (NULL: 0o600), from 0 to 0o777. */
int mode_arg(PyObject *o, unsigned *mode)
{
    long m = 0600;
    if (o) {
        int overflow = 0;
        m = PyLong_Check(o) && !PyBool_Check(o)
                ? PyLong_AsLongAndOverflow(o, &overflow)
                : -1;
        if (m == -1 && PyErr_Occurred())
            return -1;
        if (overflow)
            m = -1;
    }
    if (m < 0 || m > 0777) {
        PyErr_SetString(PyExc_ValueError,
                        "mode must be permission bits between 0 and 0o777");
        return -1;
    }
    *mode = (unsigned)m;
    return 0;
}

/* The directory part of `path` into dir (os.path.dirname's rule: "" when
 * there is no '/', "/" for a file in the root, no trailing '/'). */
static void dir_of(const char *path, char *dir, size_t cap)
{
    const char *slash = strrchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) + 1 : 0;
    size_t all = 0;
    while (all < n && path[all] == '/')
        all++;
    if (all < n) /* not all slashes: drop the trailing ones */
        while (n > 0 && path[n - 1] == '/')
            n--;
    if (n >= cap)
        n = cap - 1;
    memcpy(dir, path, n);
    dir[n] = '\0';
}

/* NoMemoryError if the filesystem of `path` could never hold `size` bytes
 * (an error reading it lets the open itself say what is wrong). */
int fits_filesystem(PyTypeObject *type, const char *path,
                    unsigned long long size)
{
    char dir[4096];
    struct statvfs vfs;
    dir_of(path, dir, sizeof dir);
    if (statvfs(dir, &vfs) != 0)
        return 0;
    unsigned long long total =
        (unsigned long long)vfs.f_blocks * (unsigned long long)vfs.f_frsize;
    if (!total || size <= total)
        return 0;
    module_state *st = state_of_type(type);
    if (st)
        PyErr_Format(st->NoMemoryError,
                     "a dict of %llu bytes can never fit in %s, a filesystem "
                     "of %llu bytes: ask for less, or give it more (Docker "
                     "--shm-size, a Kubernetes emptyDir with medium: Memory "
                     "and a bigger sizeLimit)",
                     size, dir, total);
    return -1;
}

/* ---- values out ------------------------------------------------------- */

/* Whether every byte is below 128, a word at a time. */
int is_ascii(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t acc = 0, w[4], a[4] = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 32 <= n; i += 32) { /* four chains: loads, not ORs, limit */
        memcpy(w, s + i, 32);
        a[0] |= w[0];
        a[1] |= w[1];
        a[2] |= w[2];
        a[3] |= w[3];
    }
    acc = a[0] | a[1] | a[2] | a[3];
    for (; i + 8 <= n; i += 8) {
        memcpy(w, s + i, 8);
        acc |= w[0];
    }
    for (; i < n; i++)
        acc |= s[i];
    return (acc & UINT64_C(0x8080808080808080)) == 0;
}

/* The object for a value the core copied out; CorruptError for a value
 * whose bytes don't make one. */
PyObject *value_obj(PyObject *self, const sd_value_out *o)
{
    switch (o->type) {
    case SD_T_NONE:
        Py_RETURN_NONE;
    case SD_T_TRUE:
        Py_RETURN_TRUE;
    case SD_T_FALSE:
        Py_RETURN_FALSE;
    case SD_T_INT:
        return PyLong_FromLongLong(o->i);
    case SD_T_FLOAT:
        return PyFloat_FromDouble(o->f);
    case SD_T_STR: {
        if (o->ascii && is_ascii(o->buf, o->len)) {
            /* Skip the decoder: the flag said ASCII and the bytes agree. */
            PyObject *s = PyUnicode_New((Py_ssize_t)o->len, 127);
            if (s)
                memcpy(PyUnicode_DATA(s), o->buf, o->len);
            return s;
        }
        PyObject *s = PyUnicode_DecodeUTF8(o->buf, (Py_ssize_t)o->len, NULL);
        if (!s && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
            PyErr_Clear();
            return raise_status(self, SD_CORRUPT, NULL, NULL);
        }
        return s;
    }
    case SD_T_BYTES: {
        PyObject *b = PyBytes_FromStringAndSize(o->buf, (Py_ssize_t)o->len);
        if (!b || !o->tag)
            return b;
        module_state *st = state_of(self);
        PyObject *p =
            st ? PyObject_CallOneArg((PyObject *)st->PickledType, b) : NULL;
        Py_DECREF(b);
        return p;
    }
    default:
        return raise_status(self, SD_CORRUPT, NULL, NULL);
    }
}

/* The value of one record of sd_get_many's format (also sd_list_items'):
 * an 8-byte header [type, ascii, tag, 0, u32 len] and the body. */
PyObject *record_value(PyObject *self, const unsigned char *rec)
{
    const unsigned char *body = rec + 8;
    sd_value_out o = {.type = rec[0], .ascii = rec[1], .tag = rec[2]};
    uint32_t len;
    memcpy(&len, rec + 4, 4);
    o.len = len;
    o.buf = (void *)body;
    if (o.type == SD_T_INT)
        memcpy(&o.i, body, 8);
    else if (o.type == SD_T_FLOAT)
        memcpy(&o.f, body, 8);
    return value_obj(self, &o);
}

/* The bytes one such record takes, header and padded body. */
size_t record_size(const unsigned char *rec)
{
    uint32_t len;
    memcpy(&len, rec + 4, 4);
    return 8 + (rec[0] == SD_T_STR || rec[0] == SD_T_BYTES
                    ? ((size_t)len + 7) / 8 * 8
                : rec[0] == SD_T_INT || rec[0] == SD_T_FLOAT ? 8
                                                             : 0);
}

/* ---- status -> exception ----------------------------------------------
 * The one table. Each row maps a status, in the calls it names (NULL: any
 * call), to an exception and a message; the first row that matches wins,
 * so a call's own rows come before the status's general one. A message is
 * a template:
 *   {op}      the Python call           {status}  sd_strstatus(rc)
 *   {key}     repr(key or path)         {obj}     str(key or path)
 *   {item}    bytes the item needs      {max_item} the largest item
 *   {size}    Dict()'s size             {stripes} Dict()'s stripes
 * (an absent key or path shows as None). */

enum exc_kind {
    /* builtin exceptions */
    EXC_KEY,      /* KeyError(key), or KeyError(message) with no key */
    EXC_OS,       /* OSError from errno, with the path as its filename */
    EXC_TYPE,     /* TypeError(message) */
    EXC_OVERFLOW, /* OverflowError(message) */
    EXC_VALUE,    /* ValueError(message) */
    /* shmdict.errors' exceptions, from the module state */
    EXC_NOSPACE, /* NoMemoryError: which filesystem is full, what to do */
    EXC_NOMEM,   /* shmdict.NoMemoryError(message) */
    EXC_CORRUPT, /* shmdict.CorruptError(message) */
    EXC_TIMEOUT, /* shmdict.LockTimeout(message) */
    EXC_ERROR,   /* shmdict.Error(message) */
};

enum {
    ROW_NEVER_FITS = 1, /* only if cx->item is more than any stripe holds */
    ROW_STORED = 2,     /* the exception gets .stored = cx->stored */
};

#define LIST_CALLS "lpush rpush lpop rpop llen lrange"
#define SCALAR_READS "get __getitem__ get_stale pop setdefault cas"

static const struct status_row {
    sd_status status;
    const char *calls; /* space-separated names of Python calls; NULL: any */
    enum exc_kind exc;
    unsigned flags; /* ROW_* */
    const char *msg;
} status_table[] = {
    {SD_NOTFOUND, NULL, EXC_KEY, 0, "{status}"},
    {SD_NOMEM, NULL, EXC_NOMEM, ROW_NEVER_FITS,
     "no memory: an item of {item} bytes can never fit; the largest this "
     "dict holds is {max_item} bytes (one stripe's heap: see new(..., "
     "stripes=))"},
    {SD_NOMEM, "set_many", EXC_NOMEM, ROW_STORED,
     "no memory: the dict is full"},
    {SD_NOMEM, NULL, EXC_NOMEM, 0, "{status}"},
    {SD_NOSPACE, NULL, EXC_NOSPACE, 0, NULL},
    {SD_NOTNUM, "incr", EXC_TYPE, 0,
     "{op}: the value of {key} is not an int or float"},
    {SD_NOTNUM, NULL, EXC_TYPE, 0, "{status}: {key}"},
    {SD_OVERFLOW, "incr", EXC_OVERFLOW, 0,
     "{op}: the result for {key} does not fit in 64 bits"},
    {SD_OVERFLOW, NULL, EXC_OVERFLOW, 0, "{status}"},
    {SD_WRONGTYPE, LIST_CALLS, EXC_TYPE, 0, "{key} does not hold a list"},
    {SD_WRONGTYPE, SCALAR_READS, EXC_TYPE, 0,
     "{key} holds a list: use the list methods"},
    {SD_WRONGTYPE, "incr", EXC_TYPE, 0,
     "{op}: the value of {key} is not an int or float"},
    {SD_WRONGTYPE, "get_many", EXC_TYPE, 0,
     "{op}: one of the keys holds a list"},
    {SD_WRONGTYPE, NULL, EXC_TYPE, 0, "{status}: {key}"},
    {SD_BADARG, "create", EXC_VALUE, 0,
     "a dict of {size} bytes can't have {stripes} stripes (each needs room "
     "for its own heap)"},
    {SD_BADARG, NULL, EXC_VALUE, 0, "{status}"},
    {SD_CORRUPT, NULL, EXC_CORRUPT, 0, "{status}: {obj}"},
    {SD_FORMAT, NULL, EXC_CORRUPT, 0, "{status}: {obj}"},
    {SD_TORN, NULL, EXC_CORRUPT, 0, "{status}: {obj}"},
    {SD_TIMEDOUT, NULL, EXC_TIMEOUT, 0, "{status}"},
    {SD_SYSERR, NULL, EXC_OS, 0, NULL},
    {SD_TOOBIG, NULL, EXC_ERROR, 0, "{status}"},
    {SD_INTERNAL, NULL, EXC_ERROR, 0, "{status}"},
    {SD_EXISTS, NULL, EXC_ERROR, 0, "{status}"},
    {SD_INTERRUPTED, NULL, EXC_ERROR, 0, "{status}"},
};

/* The row for a status that has none (SD_OK, or a status this binding
 * doesn't know): a plain shmdict.Error. */
static const struct status_row no_row = {SD_OK, NULL, EXC_ERROR, 0,
                                         "{status}"};

/* Whether every status but SD_OK has a general row (any call, no
 * condition), so that no status falls through to no_row: the import
 * checks it (module.c). */
int status_table_complete(void)
{
    for (int s = SD_OK + 1; s < SD_STATUS_COUNT; s++) {
        size_t i = 0, n = sizeof status_table / sizeof status_table[0];
        while (i < n && !((int)status_table[i].status == s &&
                          !status_table[i].calls && !status_table[i].flags))
            i++;
        if (i == n)
            return 0;
    }
    return 1;
}

/* Whether `op` is one of the space-separated names in `calls`. */
static bool call_in(const char *op, const char *calls)
{
    size_t n = op ? strlen(op) : 0;
    if (!n)
        return false;
    for (const char *p = calls; (p = strstr(p, op)) != NULL; p += n)
        if ((p == calls || p[-1] == ' ') && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

static const struct status_row *row_of(DictObject *self, sd_status rc,
                                       const err_ctx *cx)
{
    for (size_t i = 0; i < sizeof status_table / sizeof status_table[0]; i++) {
        const struct status_row *r = &status_table[i];
        if (r->status != rc || (r->calls && !call_in(cx->op, r->calls)))
            continue;
        if ((r->flags & ROW_NEVER_FITS) &&
            !(cx->item && self->h && cx->item > sd_max_item(self->h)))
            continue;
        return r;
    }
    return &no_row;
}

/* The value of one {name} of a message template, as a new str. */
static PyObject *placeholder(DictObject *self, sd_status rc, const err_ctx *cx,
                             const char *name, size_t n)
{
#define IS(s) (n == sizeof(s) - 1 && memcmp(name, s, n) == 0)
    PyObject *obj = cx->obj ? cx->obj : Py_None;
    if (IS("op"))
        return PyUnicode_FromString(cx->op ? cx->op : "?");
    if (IS("status"))
        return PyUnicode_FromString(sd_strstatus(rc));
    if (IS("key"))
        return PyObject_Repr(obj);
    if (IS("obj"))
        return PyObject_Str(obj);
    if (IS("item"))
        return PyUnicode_FromFormat("%llu", (unsigned long long)cx->item);
    if (IS("max_item"))
        return PyUnicode_FromFormat(
            "%llu", (unsigned long long)(self->h ? sd_max_item(self->h) : 0));
    if (IS("size"))
        return PyUnicode_FromFormat("%llu", (unsigned long long)cx->size);
    if (IS("stripes"))
        return PyUnicode_FromFormat("%u", cx->stripes);
#undef IS
    return PyUnicode_FromStringAndSize(name - 1, (Py_ssize_t)n + 2);
}

/* The message of a row: its template with the placeholders filled in. */
static PyObject *format_message(DictObject *self, sd_status rc,
                                const err_ctx *cx, const char *tmpl)
{
    PyObject *parts = PyList_New(0), *res = NULL;
    if (!parts)
        return NULL;
    const char *p = tmpl;
    while (*p) {
        const char *open = strchr(p, '{');
        const char *close = open ? strchr(open, '}') : NULL;
        const char *end = close ? open : p + strlen(p);
        PyObject *piece =
            end > p ? PyUnicode_FromStringAndSize(p, end - p) : NULL;
        if ((end > p && !piece) ||
            (piece && PyList_Append(parts, piece) < 0)) {
            Py_XDECREF(piece);
            goto exit;
        }
        Py_XDECREF(piece);
        if (!close)
            break;
        piece =
            placeholder(self, rc, cx, open + 1, (size_t)(close - open - 1));
        if (!piece || PyList_Append(parts, piece) < 0) {
            Py_XDECREF(piece);
            goto exit;
        }
        Py_DECREF(piece);
        p = close + 1;
    }
    PyObject *empty = PyUnicode_FromStringAndSize(NULL, 0);
    if (empty)
        res = PyUnicode_Join(empty, parts);
    Py_XDECREF(empty);
exit:
    Py_DECREF(parts);
    return res;
}

/* NoMemoryError for a filesystem with no page left: say which, how big,
 * and what to do about it. `path` is the dict's file (a str), or NULL. */
static void set_nospace(PyObject *exc, PyObject *path)
{
    const char *p =
        path && PyUnicode_Check(path) ? PyUnicode_AsUTF8(path) : NULL;
    if (!p) {
        PyErr_Clear();
        p = SHM_DIR "/";
    }
    char dir[4096];
    dir_of(p, dir, sizeof dir);
    if (!dir[0])
        strcpy(dir, ".");
    struct statvfs vfs;
    double mib = 1024.0 * 1024.0, total = 0, avail = 0;
    if (statvfs(dir, &vfs) == 0) {
        total = (double)vfs.f_blocks * (double)vfs.f_frsize / mib;
        avail = (double)vfs.f_bavail * (double)vfs.f_frsize / mib;
    }
    char msg[4096 + 512];
    snprintf(msg, sizeof msg,
             "the shared-memory filesystem at %s is full (%.1f MiB, %.1f MiB "
             "free); nothing was stored. Free space there (remove unused "
             "dicts), or give it more: Docker --shm-size=256m, Kubernetes an "
             "emptyDir volume with medium: Memory and a sizeLimit; or create "
             "the dict with reserve=True to claim its memory up front",
             dir, total, avail);
    PyErr_SetString(exc, msg);
}

PyObject *raise_status_ctx(PyObject *self_, sd_status rc, const err_ctx *cx)
{
    DictObject *self = (DictObject *)self_;
    int saved_errno = errno;
    if (rc == SD_INTERRUPTED && PyErr_Occurred())
        return NULL;
    const struct status_row *r = row_of(self, rc, cx);
    if (r->exc == EXC_OS) {
        errno = saved_errno;
        return PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, cx->obj);
    }
    if (r->exc == EXC_KEY && cx->obj) {
        PyErr_SetObject(PyExc_KeyError, cx->obj);
        return NULL;
    }
    module_state *st = NULL;
    if (r->exc >= EXC_NOSPACE) {
        st = state_of(self_);
        if (!st)
            return NULL;
    }
    if (r->exc == EXC_NOSPACE) {
        set_nospace(st->NoMemoryError, self->path ? self->path : cx->obj);
        return NULL;
    }
    PyObject *type = r->exc == EXC_KEY        ? PyExc_KeyError
                     : r->exc == EXC_TYPE     ? PyExc_TypeError
                     : r->exc == EXC_OVERFLOW ? PyExc_OverflowError
                     : r->exc == EXC_VALUE    ? PyExc_ValueError
                     : r->exc == EXC_NOMEM    ? st->NoMemoryError
                     : r->exc == EXC_CORRUPT  ? st->CorruptError
                     : r->exc == EXC_TIMEOUT  ? st->LockTimeout
                                              : st->Error;
    PyObject *msg = format_message(self, rc, cx, r->msg);
    if (!msg)
        return NULL;
    if (!(r->flags & ROW_STORED)) {
        PyErr_SetObject(type, msg);
        Py_DECREF(msg);
        return NULL;
    }
    PyObject *exc = PyObject_CallOneArg(type, msg);
    PyObject *num = exc ? PyLong_FromSize_t(cx->stored) : NULL;
    if (num && PyObject_SetAttrString(exc, "stored", num) == 0)
        PyErr_SetObject(type, exc);
    Py_XDECREF(num);
    Py_XDECREF(exc);
    Py_DECREF(msg);
    return NULL;
}
