/* convert.c - PostgreSQL text values to Python objects, a whole chunk per
 * call, and the rows handed out one at a time (see convert.h). A value the
 * Python type cannot hold (BC dates, year > 9999, 24:00:00, other
 * DateStyle/IntervalStyle output) comes back as the server's text (str). */
#include "convert.h"

#include <datetime.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>

/* ------------------------------------------------------- cached objects */
static struct {
    int ready;
    PyObject *Decimal;      /* Decimal(str), as create_decimal of an exact context */
    PyObject *UUID;         /* uuid.UUID */
    PyObject *uuid_unknown; /* uuid.SafeUUID.unknown */
    int uuid_fast;          /* the UUID fast path passed its self-test */
    PyObject *json_scan;    /* json's C scanner (scan_once) or NULL */
    PyObject *json_loads;   /* json.loads */
    PyObject *utc;          /* datetime.timezone.utc */
    PyObject *tz_cache;     /* {offset seconds: timezone} */
    int last_tz_off;
    PyObject *last_tz;
    PyObject *date_min, *date_max, *dt_min, *dt_max, *dtz_min, *dtz_max;
    PyObject *d_int, *d_is_safe; /* uuid.UUID's slot descriptors */
    descrsetfunc set_int, set_is_safe;
    char jstop[256]; /* bytes that end a run of plain JSON string text */
} G;

static PyObject *incref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static PyObject *import_attr(const char *mod, const char *attr)
{
    PyObject *m = PyImport_ImportModule(mod);
    if (m == NULL)
        return NULL;
    PyObject *a = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return a;
}

static PyObject *cv_uuid_fast(const char *v, size_t n);

int pgspy_convert_ready(void)
{
    if (G.ready)
        return 0;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return -1;
    if (G.Decimal == NULL) {
        /* The limits Decimal(str) itself parses with, so the same values,
         * without its keyword parsing and current-context lookup. */
        PyObject *m = PyImport_ImportModule("decimal");
        if (m == NULL)
            return -1;
        G.Decimal =
            PyRun_String("Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN).create_decimal",
                         Py_eval_input, PyModule_GetDict(m), NULL);
        Py_DECREF(m);
        if (G.Decimal == NULL)
            return -1;
    }
    if (G.UUID == NULL && !(G.UUID = import_attr("uuid", "UUID")))
        return -1;
    if (G.uuid_unknown == NULL) {
        PyObject *safe = import_attr("uuid", "SafeUUID");
        if (safe == NULL)
            return -1;
        G.uuid_unknown = PyObject_GetAttrString(safe, "unknown");
        Py_DECREF(safe);
        if (G.uuid_unknown == NULL)
            return -1;
    }
    if (G.json_loads == NULL && !(G.json_loads = import_attr("json", "loads")))
        return -1;
    if (G.json_scan == NULL) {
        /* the C scanner behind json.loads; fall back to json.loads without */
        PyObject *dec = import_attr("json", "_default_decoder");
        if (dec != NULL) {
            G.json_scan = PyObject_GetAttrString(dec, "scan_once");
            Py_DECREF(dec);
        }
        PyErr_Clear();
    }
    if (G.utc == NULL) {
        G.utc = PyDateTime_TimeZone_UTC;
        Py_INCREF(G.utc);
    }
    if (G.tz_cache == NULL && !(G.tz_cache = PyDict_New()))
        return -1;
    if (G.date_min == NULL) {
        PyDateTime_CAPI *api = PyDateTimeAPI;
        G.date_min = api->Date_FromDate(1, 1, 1, api->DateType);
        G.date_max = api->Date_FromDate(9999, 12, 31, api->DateType);
        G.dt_min = api->DateTime_FromDateAndTime(1, 1, 1, 0, 0, 0, 0, Py_None, api->DateTimeType);
        G.dt_max = api->DateTime_FromDateAndTime(9999, 12, 31, 23, 59, 59, 999999, Py_None,
                                                 api->DateTimeType);
        G.dtz_min = api->DateTime_FromDateAndTime(1, 1, 1, 0, 0, 0, 0, G.utc, api->DateTimeType);
        G.dtz_max = api->DateTime_FromDateAndTime(9999, 12, 31, 23, 59, 59, 999999, G.utc,
                                                  api->DateTimeType);
        if (!G.date_min || !G.date_max || !G.dt_min || !G.dt_max || !G.dtz_min || !G.dtz_max)
            return -1;
    }
    /* UUID fast path (object.__new__ + the 'int' slot, as uuid.UUID.__init__
     * ends up doing): use it only if it round-trips on this Python. */
    {
        static const char probe[] = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        for (int i = 0; i < 256; i++)
            G.jstop[i] = i < 0x20 || i == '"' || i == '\\';
        G.d_int = PyObject_GetAttrString(G.UUID, "int");
        G.d_is_safe = PyObject_GetAttrString(G.UUID, "is_safe");
        G.set_int = G.d_int ? Py_TYPE(G.d_int)->tp_descr_set : NULL;
        G.set_is_safe = G.d_is_safe ? Py_TYPE(G.d_is_safe)->tp_descr_set : NULL;
        G.uuid_fast = G.set_int && G.set_is_safe && PyType_Check(G.UUID) &&
                      ((PyTypeObject *)G.UUID)->tp_new == PyBaseObject_Type.tp_new;
        PyObject *u = cv_uuid_fast(probe, 36);
        PyObject *s = u ? PyObject_Str(u) : NULL;
        PyObject *want = PyUnicode_FromString(probe);
        int eq = G.uuid_fast && s && want && PyUnicode_Compare(s, want) == 0;
        eq = eq && u && PyObject_IsInstance(u, G.UUID) == 1;
        Py_XDECREF(u);
        Py_XDECREF(s);
        Py_XDECREF(want);
        PyErr_Clear();
        G.uuid_fast = eq;
    }
    G.ready = 1;
    return 0;
}

/* ---------------------------------------------------------- conversions */
/* Every converter gets a NUL-terminated text value and its length and
 * returns a new reference, or NULL with a Python error set. */
typedef PyObject *(*conv_fn)(const char *v, size_t n);

static PyObject *cv_text(const char *v, size_t n)
{
    return PyUnicode_DecodeUTF8(v, (Py_ssize_t)n, NULL);
}

static PyObject *cv_int(const char *v, size_t n)
{
    int64_t x;
    return pgspout_parse_int8(v, n, &x) == 0 ? PyLong_FromLongLong(x) : cv_text(v, n);
}

static PyObject *cv_float(const char *v, size_t n)
{
    double d;
    return pgspout_parse_float8(v, n, &d) == 0 ? PyFloat_FromDouble(d) : cv_text(v, n);
}

static PyObject *cv_bool(const char *v, size_t n)
{
    if (n == 1 && (v[0] == 't' || v[0] == 'f')) {
        PyObject *r = v[0] == 't' ? Py_True : Py_False;
        Py_INCREF(r);
        return r;
    }
    return cv_text(v, n);
}

static PyObject *cv_numeric(const char *v, size_t n)
{
    PyObject *s = PyUnicode_DecodeUTF8(v, (Py_ssize_t)n, NULL);
    if (s == NULL)
        return NULL;
    PyObject *r = PyObject_CallOneArg(G.Decimal, s);
    Py_DECREF(s);
    return r;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* bytes; the hex format decodes in place, the escape format (rare) through
 * a scratch copy, as it may shrink. */
static PyObject *cv_bytea(const char *v, size_t n)
{
    int hex = n >= 2 && v[0] == '\\' && v[1] == 'x';
    size_t cap = hex ? (n - 2) / 2 : n, len = 0;
    PyObject *b = hex ? PyBytes_FromStringAndSize(NULL, (Py_ssize_t)cap) : NULL;
    unsigned char *o =
        hex ? (b ? (unsigned char *)PyBytes_AS_STRING(b) : NULL) : PyMem_Malloc(cap + 1);
    if (o == NULL)
        return hex ? NULL : PyErr_NoMemory();
    if (pgspout_parse_bytea(v, n, o, cap, &len) != 0) {
        Py_XDECREF(b);
        b = cv_text(v, n);
    } else if (!hex) {
        b = PyBytes_FromStringAndSize((const char *)o, (Py_ssize_t)len);
    }
    if (!hex)
        PyMem_Free(o);
    return b;
}

/* The tzinfo for an offset east of UTC in seconds (None if !with_tz). */
static PyObject *tz_for(int with_tz, int off)
{
    if (!with_tz)
        return incref(Py_None);
    if (off == 0) {
        Py_INCREF(G.utc);
        return G.utc;
    }
    if (G.last_tz != NULL && G.last_tz_off == off) {
        Py_INCREF(G.last_tz);
        return G.last_tz;
    }
    PyObject *key = PyLong_FromLong(off);
    if (key == NULL)
        return NULL;
    PyObject *tz = PyDict_GetItemWithError(G.tz_cache, key);
    if (tz != NULL) {
        Py_INCREF(tz);
    } else if (!PyErr_Occurred()) {
        PyObject *delta = PyDelta_FromDSU(0, off, 0);
        tz = delta ? PyTimeZone_FromOffset(delta) : NULL;
        Py_XDECREF(delta);
        if (tz && PyDict_SetItem(G.tz_cache, key, tz) < 0)
            Py_CLEAR(tz);
    }
    Py_DECREF(key);
    if (tz != NULL) {
        Py_XSETREF(G.last_tz, tz);
        Py_INCREF(tz);
        G.last_tz_off = off;
    }
    return tz;
}

/* The result of a datetime constructor, or the text when Python refused the
 * value (out of range). */
static PyObject *or_text(PyObject *r, const char *v, size_t n)
{
    if (r == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        return cv_text(v, n);
    }
    return r;
}

/* The Python object for t, of kind date, time(tz) or timestamp(tz); NULL
 * with ValueError when Python's types cannot hold it (BC, year > 9999,
 * 24:00:00). */
static PyObject *dt_object(const pgspout_datetime *t, int kind)
{
    PyDateTime_CAPI *api = PyDateTimeAPI;
    int with_tz = kind == PGSPOUT_KIND_TIMETZ || kind == PGSPOUT_KIND_TIMESTAMPTZ;
    if (t->infinity)
        return incref(kind == PGSPOUT_KIND_DATE ? (t->infinity > 0 ? G.date_max : G.date_min)
                      : with_tz                 ? (t->infinity > 0 ? G.dtz_max : G.dtz_min)
                                                : (t->infinity > 0 ? G.dt_max : G.dt_min));
    if (kind == PGSPOUT_KIND_DATE)
        return api->Date_FromDate(t->year, t->month, t->day, api->DateType);
    PyObject *r, *tz = tz_for(with_tz, t->utc_offset);
    if (tz == NULL)
        return NULL;
    if (kind == PGSPOUT_KIND_TIME || kind == PGSPOUT_KIND_TIMETZ)
        r = api->Time_FromTime(t->hour, t->minute, t->second, t->usec, tz, api->TimeType);
    else
        r = api->DateTime_FromDateAndTime(t->year, t->month, t->day, t->hour, t->minute, t->second,
                                          t->usec, tz, api->DateTimeType);
    Py_DECREF(tz);
    return r;
}

static PyObject *cv_datetime(const char *v, size_t n, int kind)
{
    pgspout_datetime t;
    if (pgspout_parse_datetime(v, n, kind, &t) != 0)
        return cv_text(v, n);
    return or_text(dt_object(&t, kind), v, n);
}

#define DATETIME_CONVERTER(name, kind)                                                             \
    static PyObject *name(const char *v, size_t n) { return cv_datetime(v, n, kind); }
DATETIME_CONVERTER(cv_date, PGSPOUT_KIND_DATE)
DATETIME_CONVERTER(cv_time, PGSPOUT_KIND_TIME)
DATETIME_CONVERTER(cv_timetz, PGSPOUT_KIND_TIMETZ)
DATETIME_CONVERTER(cv_timestamp, PGSPOUT_KIND_TIMESTAMP)
DATETIME_CONVERTER(cv_timestamptz, PGSPOUT_KIND_TIMESTAMPTZ)

/* timedelta: months count 30 days and years 12 months, as PostgreSQL itself
 * does when it compares intervals; other IntervalStyles stay text. */
static PyObject *cv_interval(const char *v, size_t n)
{
    const int64_t DAY = INT64_C(86400000000);
    pgspout_interval iv;
    if (pgspout_parse_interval(v, n, &iv) != 0)
        return cv_text(v, n);
    int64_t d2 = iv.usec / DAY, r = iv.usec % DAY;
    if (r < 0) {
        r += DAY;
        d2 -= 1;
    }
    int64_t total = iv.days + (int64_t)iv.months * 30 + d2;
    if (total > 999999999 || total < -999999999)
        return cv_text(v, n);
    return PyDelta_FromDSU((int)total, (int)(r / 1000000), (int)(r % 1000000));
}

/* uuid.UUID without running its Python __init__: a new instance whose 'int'
 * and 'is_safe' slots are set through the class's slot descriptors (what
 * UUID.__init__ ends up doing). NULL, maybe without an error, when that is
 * not possible; the caller then calls uuid.UUID. */
static PyObject *uuid_from_bytes(const unsigned char b[16])
{
    if (!G.uuid_fast)
        return NULL;
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *iv = PyLong_FromUnsignedNativeBytes(
        b, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else /* the same, before Python 3.13 made it public */
    PyObject *iv = _PyLong_FromByteArray(b, 16, 0, 0);
#endif
    PyTypeObject *t = (PyTypeObject *)G.UUID;
    PyObject *u = iv ? t->tp_alloc(t, 0) : NULL;
    if (u != NULL &&
        (G.set_int(G.d_int, u, iv) < 0 || G.set_is_safe(G.d_is_safe, u, G.uuid_unknown) < 0))
        Py_CLEAR(u);
    Py_XDECREF(iv);
    /* immutable, refers to an int and an enum member only: no cycles */
    if (u != NULL && PyObject_GC_IsTracked(u))
        PyObject_GC_UnTrack(u);
    return u;
}

static PyObject *cv_uuid_fast(const char *v, size_t n)
{
    unsigned char b[16];
    return pgspout_parse_uuid(v, n, b) == 0 ? uuid_from_bytes(b) : NULL;
}

static PyObject *cv_uuid(const char *v, size_t n)
{
    PyObject *u = cv_uuid_fast(v, n);
    if (u != NULL)
        return u;
    PyErr_Clear();
    PyObject *s = cv_text(v, n);
    if (s == NULL)
        return NULL;
    u = PyObject_CallOneArg(G.UUID, s);
    Py_DECREF(s);
    return u;
}

static int json_ws(Py_UCS4 c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

static PyObject *json_loads(const char *v, size_t n)
{
    PyObject *s = PyUnicode_DecodeUTF8(v, (Py_ssize_t)n, NULL);
    if (s == NULL)
        return NULL;
    if (G.json_scan != NULL) {
        Py_ssize_t len = PyUnicode_GET_LENGTH(s), i = 0, j = len;
        int kind = PyUnicode_KIND(s);
        const void *data = PyUnicode_DATA(s);
        while (i < len && json_ws(PyUnicode_READ(kind, data, i)))
            i++;
        while (j > i && json_ws(PyUnicode_READ(kind, data, j - 1)))
            j--;
        PyObject *idx = PyLong_FromSsize_t(i);
        PyObject *res = idx ? PyObject_CallFunctionObjArgs(G.json_scan, s, idx, NULL) : NULL;
        Py_XDECREF(idx);
        if (res != NULL && PyTuple_Check(res) && PyTuple_GET_SIZE(res) == 2 &&
            PyLong_AsSsize_t(PyTuple_GET_ITEM(res, 1)) == j) {
            PyObject *obj = PyTuple_GET_ITEM(res, 0);
            Py_INCREF(obj);
            Py_DECREF(res);
            Py_DECREF(s);
            return obj;
        }
        Py_XDECREF(res);
        PyErr_Clear(); /* json.loads below gives the answer or the error */
    }
    PyObject *r = PyObject_CallOneArg(G.json_loads, s);
    Py_DECREF(s);
    return r;
}

/* JSON text straight to what json.loads returns (dict, list, str, int,
 * float, True, False, None; duplicate keys: the last value wins). Each
 * j_* returns a new reference, or NULL for anything it does not take on
 * (syntax errors, NaN/Infinity, lone surrogates, raw control characters,
 * invalid UTF-8, nesting deeper than 100, Python errors): cv_json then hands
 * the text to json.loads, which gives the answer or its error. */
typedef struct {
    const char *p, *e;
    int depth;
} jscan;

static PyObject *j_value(jscan *j);

static void j_ws(jscan *j)
{
    while (j->p < j->e && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

/* Short ASCII keys repeat from row to row: keep the last str made for each
 * hash slot (its hash cached), so a key costs a memcmp. */
static PyObject *key_cache[512];

/* Four hex digits at p (before e), or -1. */
static long hex4(const char *p, const char *e)
{
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int h = p + i < e ? hexval(p[i]) : -1;
        if (h < 0)
            return -1;
        v = v << 4 | h;
    }
    return v;
}

static PyObject *j_string(jscan *j, int key)
{
    const char *s = ++j->p, *p = s, *e = j->e;
    int esc = 0;
    for (;;) {
        for (uint64_t x; e - p >= 8; p += 8) { /* 8 bytes at a time: any '"', '\\' or < 0x20? */
            memcpy(&x, p, 8);
            uint64_t q = x ^ 0x2222222222222222u, b = x ^ 0x5c5c5c5c5c5c5c5cu;
            uint64_t hit = ((x - 0x2020202020202020u) | (q - 0x0101010101010101u) |
                            (b - 0x0101010101010101u)) &
                           ~x & 0x8080808080808080u;
            if (hit) { /* its lowest bit marks the first such byte */
                p += __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ ? __builtin_ctzll(hit) / 8 : 0;
                break;
            }
        }
        while (p < e && !G.jstop[(unsigned char)*p])
            p++;
        if (p < e && *p == '"')
            break;
        if (e - p < 2 || *p != '\\')
            return NULL; /* unterminated, or a control character (json.loads's error) */
        esc = 1;
        p += 2;
    }
    j->p = p + 1;
    size_t n = (size_t)(p - s);
    if (!esc) {
        unsigned h = 2166136261u, ascii = n <= 32 && key;
        for (size_t i = 0; ascii && i < n; i++) {
            ascii = (unsigned char)s[i] < 0x80;
            h = (h ^ (unsigned char)s[i]) * 16777619u;
        }
        if (!ascii)
            return PyUnicode_DecodeUTF8(s, (Py_ssize_t)n, NULL);
        PyObject **slot = &key_cache[h % 512], *k = *slot;
        if (k && (size_t)PyUnicode_GET_LENGTH(k) == n && memcmp(PyUnicode_DATA(k), s, n) == 0)
            return incref(k);
        if ((k = PyUnicode_FromStringAndSize(s, (Py_ssize_t)n)) == NULL || PyObject_Hash(k) == -1)
            return NULL;
        Py_XSETREF(*slot, incref(k));
        return k;
    }
    /* decoded, the UTF-8 is never longer than the escaped text */
    char inl[256], *o = n <= sizeof inl ? inl : PyMem_Malloc(n), *q = o;
    PyObject *r = NULL;
    if (o == NULL)
        return PyErr_NoMemory();
    for (p = s, e = s + n; p < e;) {
        long cp;
        if (*p != '\\') {
            *q++ = *p++;
            continue;
        }
        switch (p[1]) {
        case '"':
        case '\\':
        case '/': cp = p[1]; break;
        case 'b': cp = '\b'; break;
        case 'f': cp = '\f'; break;
        case 'n': cp = '\n'; break;
        case 'r': cp = '\r'; break;
        case 't': cp = '\t'; break;
        case 'u':
            cp = hex4(p + 2, e);
            if (cp >= 0xD800 && cp <= 0xDBFF && p + 7 < e && p[6] == '\\' && p[7] == 'u') {
                long lo = hex4(p + 8, e);
                if (lo >= 0xDC00 && lo <= 0xDFFF) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                    p += 6;
                }
            }
            if (cp < 0 || (cp >= 0xD800 && cp <= 0xDFFF))
                goto out; /* a lone surrogate: json.loads keeps it, str cannot be UTF-8 */
            p += 4;
            break;
        default: goto out;
        }
        p += 2;
        if (cp < 0x80) {
            *q++ = (char)cp;
        } else if (cp < 0x800) {
            *q++ = (char)(0xC0 | cp >> 6);
            *q++ = (char)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            *q++ = (char)(0xE0 | cp >> 12);
            *q++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *q++ = (char)(0x80 | (cp & 0x3F));
        } else {
            *q++ = (char)(0xF0 | cp >> 18);
            *q++ = (char)(0x80 | (cp >> 12 & 0x3F));
            *q++ = (char)(0x80 | (cp >> 6 & 0x3F));
            *q++ = (char)(0x80 | (cp & 0x3F));
        }
    }
    r = PyUnicode_DecodeUTF8(o, q - o, NULL);
out:
    if (o != inl)
        PyMem_Free(o);
    return r;
}

/* A number as json.loads reads it: int(text) without '.', 'e' or 'E',
 * float(text) with. */
static PyObject *j_number(jscan *j)
{
    const char *s = j->p, *p = s, *e = j->e;
    int isf = 0;
#define DIGITS(p) ((p) < e && *(p) >= '0' && *(p) <= '9')
    p += p < e && *p == '-';
    if (p < e && *p == '0')
        p++;
    else if (!DIGITS(p))
        return NULL;
    else
        while (DIGITS(p))
            p++;
    if (p < e && *p == '.') {
        if (!DIGITS(++p))
            return NULL;
        while (DIGITS(p))
            p++;
        isf = 1;
    }
    if (p < e && (*p == 'e' || *p == 'E')) {
        p++;
        p += p < e && (*p == '-' || *p == '+');
        if (!DIGITS(p))
            return NULL;
        while (DIGITS(p))
            p++;
        isf = 1;
    }
#undef DIGITS
    j->p = p;
    double d;
    int64_t v;
    if (isf ? pgspout_parse_float8(s, (size_t)(p - s), &d) == 0
            : pgspout_parse_int8(s, (size_t)(p - s), &v) == 0)
        return isf ? PyFloat_FromDouble(d) : PyLong_FromLongLong(v);
    /* NUL-terminated for the slow paths (big integers, very long floats) */
    char inl[64], *buf = p - s < (ptrdiff_t)sizeof inl ? inl : PyMem_Malloc((size_t)(p - s) + 1);
    PyObject *r = NULL;
    if (buf == NULL)
        return PyErr_NoMemory();
    memcpy(buf, s, (size_t)(p - s));
    buf[p - s] = '\0';
    if (!isf)
        r = PyLong_FromString(buf, NULL, 10);
    else if ((d = PyOS_string_to_double(buf, NULL, NULL)) != -1.0 || !PyErr_Occurred())
        r = PyFloat_FromDouble(d);
    if (buf != inl)
        PyMem_Free(buf);
    return r;
}

static PyObject *j_container(jscan *j, int obj)
{
    char close = obj ? '}' : ']';
    PyObject *c = j->depth++ < 100 ? (obj ? PyDict_New() : PyList_New(0)) : NULL, *k = NULL;
    if (c == NULL)
        return NULL;
    j->p++;
    j_ws(j);
    if (j->p < j->e && *j->p == close) {
        j->p++;
        j->depth--;
        return c;
    }
    for (;;) {
        if (obj) {
            j_ws(j);
            if (j->p >= j->e || *j->p != '"' || (k = j_string(j, 1)) == NULL)
                goto fail;
            j_ws(j);
            if (j->p >= j->e || *j->p++ != ':')
                goto fail;
        }
        PyObject *v = j_value(j);
        if (v == NULL)
            goto fail;
        int rc = obj ? PyDict_SetItem(c, k, v) : PyList_Append(c, v);
        Py_DECREF(v);
        Py_CLEAR(k);
        if (rc < 0)
            goto fail;
        j_ws(j);
        if (j->p < j->e && *j->p == ',') {
            j->p++;
            continue;
        }
        if (j->p < j->e && *j->p == close)
            break;
        goto fail;
    }
    j->p++;
    j->depth--;
    return c;
fail:
    Py_XDECREF(k);
    Py_DECREF(c);
    return NULL;
}

static PyObject *j_word(jscan *j, const char *w, PyObject *r)
{
    size_t n = strlen(w);
    if ((size_t)(j->e - j->p) < n || memcmp(j->p, w, n) != 0)
        return NULL;
    j->p += n;
    return incref(r);
}

static PyObject *j_value(jscan *j)
{
    j_ws(j);
    if (j->p >= j->e)
        return NULL;
    switch (*j->p) {
    case '"': return j_string(j, 0);
    case '{': return j_container(j, 1);
    case '[': return j_container(j, 0);
    case 't': return j_word(j, "true", Py_True);
    case 'f': return j_word(j, "false", Py_False);
    case 'n': return j_word(j, "null", Py_None);
    default: return j_number(j);
    }
}

static PyObject *cv_json(const char *v, size_t n)
{
    jscan j = {v, v + n, 0};
    PyObject *r = j_value(&j);
    if (r != NULL) {
        j_ws(&j);
        if (j.p == j.e)
            return r;
        Py_DECREF(r);
    }
    PyErr_Clear();
    return json_loads(v, n);
}

/* Scratch space for one array element (NUL-terminated for the converters). */
typedef struct {
    char *p;
    size_t cap;
    char inl[256];
} scratch;

static int scratch_room(scratch *sc, size_t need)
{
    if (need < sc->cap)
        return 0;
    size_t cap = sc->cap * 2;
    while (cap <= need)
        cap *= 2;
    char *np = sc->p == sc->inl ? PyMem_Malloc(cap) : PyMem_Realloc(sc->p, cap);
    if (np == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    if (sc->p == sc->inl)
        memcpy(np, sc->inl, sc->cap);
    sc->p = np;
    sc->cap = cap;
    return 0;
}

/* One {...} level. NULL with *bad set on a syntax error (no Python error),
 * NULL without *bad on a Python error. */
static PyObject *arr_level(const char **pp, const char *e, conv_fn fn, scratch *sc, int depth,
                           int *bad)
{
    const char *p = *pp;
    if (depth > 16 || p >= e || *p != '{') {
        *bad = 1;
        return NULL;
    }
    p++;
    PyObject *list = PyList_New(0);
    if (list == NULL)
        return NULL;
    if (p < e && *p == '}') {
        *pp = p + 1;
        return list;
    }
    for (;;) {
        PyObject *item;
        if (p >= e)
            goto bad;
        if (*p == '{') {
            item = arr_level(&p, e, fn, sc, depth + 1, bad);
        } else if (*p == '"') {
            size_t k = 0;
            p++;
            while (p < e && *p != '"') {
                if (*p == '\\' && ++p >= e)
                    goto bad;
                if (scratch_room(sc, k + 1) < 0)
                    goto fail;
                sc->p[k++] = *p++;
            }
            if (p >= e)
                goto bad;
            p++;
            sc->p[k] = '\0';
            item = fn(sc->p, k);
        } else {
            const char *st = p;
            while (p < e && *p != ',' && *p != '}')
                p++;
            size_t k = (size_t)(p - st);
            if (k == 4 && (st[0] | 0x20) == 'n' && (st[1] | 0x20) == 'u' && (st[2] | 0x20) == 'l' &&
                (st[3] | 0x20) == 'l') {
                item = Py_None;
                Py_INCREF(item);
            } else {
                if (scratch_room(sc, k) < 0)
                    goto fail;
                memcpy(sc->p, st, k);
                sc->p[k] = '\0';
                item = fn(sc->p, k);
            }
        }
        if (item == NULL)
            goto fail;
        int rc = PyList_Append(list, item);
        Py_DECREF(item);
        if (rc < 0)
            goto fail;
        if (p < e && *p == ',') {
            p++;
            continue;
        }
        if (p < e && *p == '}') {
            p++;
            break;
        }
        goto bad;
    }
    *pp = p;
    return list;
bad:
    *bad = 1;
fail:
    Py_DECREF(list);
    return NULL;
}

static PyObject *cv_array(const char *v, size_t n, conv_fn fn)
{
    const char *p = v, *e = v + n;
    int bad = 0;
    scratch sc;
    sc.p = sc.inl;
    sc.cap = sizeof sc.inl;
    if (p < e && *p == '[') { /* "[0:2]={...}": bounds other than 1 */
        const char *eq = memchr(p, '=', n);
        if (eq == NULL)
            return cv_text(v, n);
        p = eq + 1;
    }
    PyObject *r = arr_level(&p, e, fn, &sc, 0, &bad);
    if (sc.p != sc.inl)
        PyMem_Free(sc.p);
    if (r != NULL && p != e) {
        Py_DECREF(r);
        r = NULL;
        bad = 1;
    }
    if (r == NULL && bad && !PyErr_Occurred())
        return cv_text(v, n);
    return r;
}

/* By PGSPOUT_KIND_* (the low byte of pgspout_type_kind); 0 is text. */
static const conv_fn by_kind[] = {
    [PGSPOUT_KIND_TEXT] = cv_text,
    [PGSPOUT_KIND_BOOL] = cv_bool,
    [PGSPOUT_KIND_INT] = cv_int,
    [PGSPOUT_KIND_INT8] = cv_int,
    [PGSPOUT_KIND_FLOAT] = cv_float,
    [PGSPOUT_KIND_NUMERIC] = cv_numeric,
    [PGSPOUT_KIND_BYTEA] = cv_bytea,
    [PGSPOUT_KIND_DATE] = cv_date,
    [PGSPOUT_KIND_TIME] = cv_time,
    [PGSPOUT_KIND_TIMETZ] = cv_timetz,
    [PGSPOUT_KIND_TIMESTAMP] = cv_timestamp,
    [PGSPOUT_KIND_TIMESTAMPTZ] = cv_timestamptz,
    [PGSPOUT_KIND_INTERVAL] = cv_interval,
    [PGSPOUT_KIND_UUID] = cv_uuid,
    [PGSPOUT_KIND_JSON] = cv_json,
};
#define NKINDS ((int)(sizeof by_kind / sizeof by_kind[0]))

/* ------------------------------------------------------ binary values */
/* The values of a binary stream (option binary: only the types it takes,
 * never arrays), decoded by the core's pgspout_binary_*; what Python cannot
 * hold comes back as the server's text, as in text streams. */

static PyObject *bad_binary(void)
{
    return pgspy_raise(PGSPOUT_EINTERNAL, "a malformed binary value", NULL);
}

/* The server's text for a binary value of type oid, as str, or passed to
 * ctor (Decimal, UUID) when not NULL. */
static PyObject *binary_text(unsigned oid, const char *v, size_t n, PyObject *ctor)
{
    char buf[128], *p = buf;
    size_t len = 0;
    int rc = pgspout_binary_text(oid, v, n, buf, sizeof buf, &len);
    if (rc != 0 && len >= sizeof buf && (p = PyMem_Malloc(len + 1)) != NULL)
        rc = pgspout_binary_text(oid, v, n, p, len + 1, &len);
    PyObject *s = p == NULL ? PyErr_NoMemory() : rc != 0 ? bad_binary() : cv_text(p, len);
    if (p != buf)
        PyMem_Free(p);
    if (s == NULL || ctor == NULL)
        return s;
    PyObject *r = PyObject_CallOneArg(ctor, s);
    Py_DECREF(s);
    return r;
}

static PyObject *cb_bool(const char *v, size_t n)
{
    return n == 1 ? incref(v[0] ? Py_True : Py_False) : bad_binary();
}

static PyObject *cb_int(const char *v, size_t n)
{
    int64_t x;
    return pgspout_binary_int8(v, n, &x) == 0 ? PyLong_FromLongLong(x) : bad_binary();
}

static PyObject *cb_float(const char *v, size_t n)
{
    double d;
    return pgspout_binary_float8(v, n, &d) == 0 ? PyFloat_FromDouble(d) : bad_binary();
}

static PyObject *cb_numeric(const char *v, size_t n) { return binary_text(1700, v, n, G.Decimal); }

static PyObject *cb_uuid(const char *v, size_t n)
{
    PyObject *u = n == 16 ? uuid_from_bytes((const unsigned char *)v) : NULL;
    if (u != NULL)
        return u;
    PyErr_Clear();
    return binary_text(2950, v, n, G.UUID);
}

static PyObject *cb_jsonb(const char *v, size_t n)
{
    return n >= 1 && v[0] == 1 ? cv_json(v + 1, n - 1) : bad_binary();
}

static PyObject *cb_datetime(const char *v, size_t n, int kind, unsigned oid)
{
    pgspout_datetime t;
    if (pgspout_binary_datetime(v, n, kind, &t) != 0)
        return bad_binary();
    PyObject *r = dt_object(&t, kind);
    if (r == NULL && PyErr_ExceptionMatches(PyExc_ValueError)) {
        PyErr_Clear();
        return binary_text(oid, v, n, NULL);
    }
    return r;
}

#define BINARY_DATETIME(name, kind, oid)                                                           \
    static PyObject *name(const char *v, size_t n) { return cb_datetime(v, n, kind, oid); }
BINARY_DATETIME(cb_date, PGSPOUT_KIND_DATE, 1082)
BINARY_DATETIME(cb_time, PGSPOUT_KIND_TIME, 1083)
BINARY_DATETIME(cb_timetz, PGSPOUT_KIND_TIMETZ, 1266)
BINARY_DATETIME(cb_timestamp, PGSPOUT_KIND_TIMESTAMP, 1114)
BINARY_DATETIME(cb_timestamptz, PGSPOUT_KIND_TIMESTAMPTZ, 1184)

#define KIND_JSONB NKINDS /* binary jsonb has a version byte before its text */
static const conv_fn by_kind_binary[] = {
    [PGSPOUT_KIND_TEXT] = cv_text,
    [PGSPOUT_KIND_BOOL] = cb_bool,
    [PGSPOUT_KIND_INT] = cb_int,
    [PGSPOUT_KIND_INT8] = cb_int,
    [PGSPOUT_KIND_FLOAT] = cb_float,
    [PGSPOUT_KIND_NUMERIC] = cb_numeric,
    [PGSPOUT_KIND_DATE] = cb_date,
    [PGSPOUT_KIND_TIME] = cb_time,
    [PGSPOUT_KIND_TIMETZ] = cb_timetz,
    [PGSPOUT_KIND_TIMESTAMP] = cb_timestamp,
    [PGSPOUT_KIND_TIMESTAMPTZ] = cb_timestamptz,
    [PGSPOUT_KIND_UUID] = cb_uuid,
    [PGSPOUT_KIND_JSON] = cv_json,
    [KIND_JSONB] = cb_jsonb,
};

/* ------------------------------------------------------------ the chunk */

static PyObject *convert_value(const pgspy_stream *w, int kind, const pgspout_row *r, int i)
{
    if (pgspout_row_isnull(r, i))
        return incref(Py_None);
    size_t n = 0;
    const char *v = pgspout_row_value(r, i, &n);
    if (v == NULL)
        return pgspy_raise(PGSPOUT_EINTERNAL, "row has fewer columns than the stream", NULL);
    conv_fn fn = (w->binary ? by_kind_binary : by_kind)[kind & 0xff];
    return kind & PGSPOUT_KIND_ARRAY ? cv_array(v, n, fn) : fn(v, n);
}

static PyObject *convert_row(pgspy_stream *w, const pgspout_row *r)
{
    PyObject *row;
    if (w->mode == PGSPY_TUPLE) {
        if ((row = PyTuple_New(w->ncols)) == NULL)
            return NULL;
        int atomic = 1;
        for (int c = 0; c < w->ncols; c++) {
            PyObject *o = convert_value(w, w->kinds[c], r, c);
            if (o == NULL) {
                Py_DECREF(row);
                return NULL;
            }
            if (PyObject_IS_GC(o) && !Py_IS_TYPE(o, (PyTypeObject *)G.UUID))
                atomic = 0;
            PyTuple_SET_ITEM(row, c, o);
        }
        /* A tuple of scalars can never be part of a reference cycle: keep it
         * out of the cyclic GC's way, as CPython itself does lazily. */
        if (atomic)
            PyObject_GC_UnTrack(row);
    } else if (w->mode == PGSPY_DICT) {
        if ((row = PyDict_New()) == NULL)
            return NULL;
        for (int c = 0; c < w->ncols; c++) {
            PyObject *o = convert_value(w, w->kinds[c], r, c);
            PyObject *name = PyTuple_GET_ITEM(PyTuple_GET_ITEM(w->columns, c), 0);
            int rc = o ? PyDict_SetItem(row, name, o) : -1;
            Py_XDECREF(o);
            if (rc < 0) {
                Py_DECREF(row);
                return NULL;
            }
        }
    } else {
        const char *json = NULL;
        size_t len = 0;
        int rc = pgspout_row_json(w->s, r, &json, &len);
        if (rc < 0)
            return pgspy_raise(rc,
                               rc == PGSPOUT_ESTATE ? pgspout_stream_error(w->s)
                                                    : "could not render the row as JSON",
                               NULL);
        row = PyUnicode_DecodeUTF8(json, (Py_ssize_t)len, "replace");
    }
    return row;
}

static PyObject *convert_chunk(pgspy_stream *w, const pgspout_chunk *ch)
{
    int nrows = pgspout_chunk_nrows(ch);
    PyObject *list = PyList_New(nrows);
    for (int i = 0; list != NULL && i < nrows; i++) {
        const pgspout_row *r = pgspout_chunk_row(ch, i);
        PyObject *row = r ? convert_row(w, r) : pgspy_raise(PGSPOUT_EINTERNAL, "no row", NULL);
        if (row == NULL)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, i, row);
    }
    return list;
}

pgspy_stream *pgspy_stream_new(pgspout_stream *s, int mode)
{
    int nc = pgspout_stream_ncols(s);
    pgspy_stream *w = PyMem_Calloc(1, sizeof *w);
    if (w == NULL)
        return (pgspy_stream *)PyErr_NoMemory();
    w->mode = mode;
    w->binary = pgspout_stream_binary(s);
    w->kinds = PyMem_Calloc((size_t)(nc > 0 ? nc : 1), sizeof *w->kinds);
    w->columns = PyTuple_New(nc);
    if (w->kinds == NULL || w->columns == NULL) {
        PyErr_NoMemory();
        goto fail;
    }
    w->ncols = nc;
    for (int i = 0; i < nc; i++) {
        const char *name = pgspout_stream_colname(s, i);
        unsigned int oid = pgspout_stream_coltype(s, i);
        PyObject *o = PyUnicode_DecodeUTF8(name, (Py_ssize_t)strlen(name), "replace");
        if (o == NULL)
            goto fail;
        PyUnicode_InternInPlace(&o);
        PyObject *col = Py_BuildValue("(NI)", o, oid);
        if (col == NULL)
            goto fail;
        PyTuple_SET_ITEM(w->columns, i, col);
        int kind = pgspout_type_kind(oid);
        w->kinds[i] = (kind & 0xff) < NKINDS ? kind : PGSPOUT_KIND_TEXT;
        if (w->binary && oid == 3802)
            w->kinds[i] = KIND_JSONB;
    }
    w->s = s;
    return w;
fail:
    pgspy_stream_free(w);
    return NULL;
}

void pgspy_stream_free(pgspy_stream *w)
{
    Py_XDECREF(w->columns);
    Py_XDECREF(w->rows);
    Py_XDECREF(w->failure);
    PyMem_Free(w->kinds);
    PyMem_Free(w->tag);
    PyMem_Free(w);
}

/* ------------------------------------------------------ handing rows out */

/* pgspout_stream_next_chunk that Ctrl-C can interrupt: the core's blocking
 * wait retries on EINTR, so drive it non-blocking and wait here (GIL
 * released) on its descriptor in slices, running Python's signal handlers
 * between them. Returns the core's code, or INTERRUPTED with the handler's
 * exception set (the stream stays as it was). */
#define INTERRUPTED   (-1000)
#define WAIT_SLICE_MS 100

static int wait_chunk(pgspout_stream *s, const pgspout_chunk **ch)
{
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS rc =
            pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK | PGSPOUT_HANDOUT, ch);
        if (rc == PGSPOUT_AGAIN || rc == PGSPOUT_PAUSED) {
            /* the descriptor wakes for data and for pause/resume/cancel from
             * other threads; wait_ms covers deadlines and throttling */
            int ms = pgspout_stream_wait_ms(s);
            if (ms < 0 || ms > WAIT_SLICE_MS)
                ms = WAIT_SLICE_MS;
            struct pollfd p = {pgspout_stream_socket(s), POLLIN, 0};
            poll(&p, 1, ms);
        }
        Py_END_ALLOW_THREADS if (rc != PGSPOUT_AGAIN && rc != PGSPOUT_PAUSED) return rc;
        if (PyErr_CheckSignals() < 0)
            return INTERRUPTED;
    }
}

static PyObject *raise_stream(pgspy_stream *w, int rc)
{
    Py_CLEAR(w->rows);
    return pgspy_raise(rc, pgspout_stream_error(w->s), pgspout_stream_sqlstate(w->s));
}

/* The next chunk, converted, into w->rows: 1 rows, 0 the end, -1 an error. */
static int fill(pgspy_stream *w)
{
    Py_CLEAR(w->rows);
    w->pos = 0;
    if (w->s == NULL) {
        if (w->failure != NULL) {
            PyException_SetTraceback(w->failure, Py_None);
            PyErr_SetObject((PyObject *)Py_TYPE(w->failure), w->failure);
        } else {
            pgspy_raise(PGSPOUT_ESTATE, "the stream is closed", NULL);
        }
        return -1;
    }
    if (pgspy_reentered())
        return -1;
    if (w->conn->busy) {
        pgspy_raise(PGSPOUT_EBUSY, "the stream is being read by another thread", NULL);
        return -1;
    }
    const pgspout_chunk *ch = NULL;
    pgspy_busy(w->conn, 1);
    int rc = wait_chunk(w->s, &ch);
    pgspy_busy(w->conn, -1);
    if (rc == INTERRUPTED)
        return -1;
    if (rc == PGSPOUT_DONE)
        return 0;
    if (rc != PGSPOUT_OK) {
        raise_stream(w, rc < 0 ? rc : PGSPOUT_EINTERNAL);
        return -1;
    }
    if ((w->rows = convert_chunk(w, ch)) != NULL)
        return 1;
    /* Never continue past rows that were lost: the stream fails with this
     * error from now on. */
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    pgspy_stream_end(w, PGSPOUT_STATE_FAILED);
    Py_XINCREF(value);
    w->failure = value;
    PyErr_Restore(type, value, tb);
    return -1;
}

PyObject *pgspy_next(pgspy_stream *w)
{
    if ((w->rows == NULL || w->pos == PyList_GET_SIZE(w->rows)) && fill(w) <= 0)
        return NULL;
    int rc = pgspout_stream_handout(w->s, 1);
    if (rc < 0)
        return raise_stream(w, rc);
    return incref(PyList_GET_ITEM(w->rows, w->pos++));
}

PyObject *pgspy_fetch(pgspy_stream *w)
{
    if (w->rows == NULL || w->pos == PyList_GET_SIZE(w->rows)) {
        int rc = fill(w);
        if (rc <= 0)
            return rc < 0 ? NULL : incref(Py_None);
    }
    Py_ssize_t n = PyList_GET_SIZE(w->rows);
    int rc = pgspout_stream_handout(w->s, (int)(n - w->pos));
    if (rc < 0)
        return raise_stream(w, rc);
    PyObject *rows = w->pos ? PyList_GetSlice(w->rows, w->pos, n) : incref(w->rows);
    Py_CLEAR(w->rows);
    return rows;
}

/* ------------------------------------------------------ pgspout.aio */

int pgspy_stream_describe(pgspy_stream *w)
{
    pgspy_stream *fresh = pgspy_stream_new(w->s, w->mode);
    if (fresh == NULL)
        return -1;
    PyObject *old_cols = w->columns;
    int *old_kinds = w->kinds;
    w->columns = fresh->columns;
    w->kinds = fresh->kinds;
    w->ncols = fresh->ncols;
    fresh->columns = old_cols;
    fresh->kinds = old_kinds;
    pgspy_stream_free(fresh);
    return 0;
}
