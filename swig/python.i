/* python.i - the Python layer of the SWIG interface (included by pgspout.i
 * under SWIGPYTHON). Built with `swig -python -builtin`; the generated
 * extension is the private module pgspout._pgspout and the typed, idiomatic
 * API lives in bindings/python/pgspout/__init__.py.
 *
 * What is here:
 *  - Conn and Stream: builtin types over pgspout_conn / pgspout_stream whose
 *    destructors close the C handles, in either order (GC safety).
 *  - The hot path: Stream is a C iterator (tp_iternext) that takes a whole
 *    chunk with one pgspout_stream_next_chunk call (GIL released around it)
 *    and converts every row to Python objects in C, by type OID, with the GIL
 *    held.
 *  - Module functions: metrics, version, the error table, the registry.
 *
 * Threads. The GIL is released around every call that may block (connect,
 * open, next_chunk, close, cancel, registry open/fetch/...) and never while
 * Python objects are built or errors raised. The core's "any thread" calls
 * (pause, resume, cancel, state, stats) also run without the GIL and are
 * counted in `inflight`; a handle is closed only after they returned. Owner
 * calls (fetch, close, open) mark the object `busy`, and a second owner call
 * from another thread meanwhile gets StateError instead of racing.
 *
 * Signals. Iteration drives next_chunk non-blocking and runs Python's signal
 * handlers between 100 ms poll slices (the stream stays as it was). The
 * other blocking calls (connect, open, registry open/fetch) set the core's
 * interrupt hook on the main thread (pgs_interrupt_cb): a handler that
 * raises stops the wait, the core cancels the query (PGSPOUT_EINTR), and
 * the call returns NULL with the handler's exception.
 */

%{
#include <datetime.h>
#include <poll.h>
#include <structmember.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------- cached objects */
static struct pgs_py_globals {
    int ready;
    PyObject *Decimal;          /* decimal.Decimal */
    PyObject *UUID;             /* uuid.UUID */
    PyObject *uuid_unknown;     /* uuid.SafeUUID.unknown */
    int uuid_fast;              /* the UUID fast path passed its self-test */
    PyObject *json_scan;        /* json's C scanner (scan_once) or NULL */
    PyObject *json_loads;       /* json.loads */
    PyObject *utc;              /* datetime.timezone.utc */
    PyObject *tz_cache;         /* {offset seconds: timezone} */
    int last_tz_off;
    PyObject *last_tz;
    PyObject *date_min, *date_max, *dt_min, *dt_max, *dtz_min, *dtz_max;
    PyObject *s_int, *s_is_safe, *empty_tuple;
    PyObject *error_factory;    /* set by pgspout/__init__.py */
} G;

#define PGS_RETURN_NONE do { Py_INCREF(Py_None); return Py_None; } while (0)

static PyObject *pgs_import_attr(const char *mod, const char *attr)
{
    PyObject *m = PyImport_ImportModule(mod);
    if (m == NULL)
        return NULL;
    PyObject *a = PyObject_GetAttrString(m, attr);
    Py_DECREF(m);
    return a;
}

static PyObject *cv_uuid_fast(const char *v, size_t n);
static void uuid_fast_setup(void);

static int pgs_ready(void)
{
    if (G.ready)
        return 0;
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL)
        return -1;
    if (G.Decimal == NULL && !(G.Decimal = pgs_import_attr("decimal", "Decimal")))
        return -1;
    if (G.UUID == NULL && !(G.UUID = pgs_import_attr("uuid", "UUID")))
        return -1;
    if (G.uuid_unknown == NULL) {
        PyObject *safe = pgs_import_attr("uuid", "SafeUUID");
        if (safe == NULL)
            return -1;
        G.uuid_unknown = PyObject_GetAttrString(safe, "unknown");
        Py_DECREF(safe);
        if (G.uuid_unknown == NULL)
            return -1;
    }
    if (G.json_loads == NULL && !(G.json_loads = pgs_import_attr("json", "loads")))
        return -1;
    if (G.json_scan == NULL) {
        /* the C scanner behind json.loads; fall back to json.loads without */
        PyObject *dec = pgs_import_attr("json", "_default_decoder");
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
        G.dt_max = api->DateTime_FromDateAndTime(9999, 12, 31, 23, 59, 59, 999999, Py_None, api->DateTimeType);
        G.dtz_min = api->DateTime_FromDateAndTime(1, 1, 1, 0, 0, 0, 0, G.utc, api->DateTimeType);
        G.dtz_max = api->DateTime_FromDateAndTime(9999, 12, 31, 23, 59, 59, 999999, G.utc, api->DateTimeType);
        if (!G.date_min || !G.date_max || !G.dt_min || !G.dt_max || !G.dtz_min || !G.dtz_max)
            return -1;
    }
    if (G.s_int == NULL) {
        G.s_int = PyUnicode_InternFromString("int");
        G.s_is_safe = PyUnicode_InternFromString("is_safe");
        G.empty_tuple = PyTuple_New(0);
        if (!G.s_int || !G.s_is_safe || !G.empty_tuple)
            return -1;
    }
    /* UUID fast path (object.__new__ + the 'int' slot, as uuid.UUID.__init__
     * ends up doing): use it only if it round-trips on this Python. */
    {
        static const char probe[] = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11";
        uuid_fast_setup();
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

/* ------------------------------------------------------------- errors */

/* Raise the pgspout.Error subclass for code (built by the factory that
 * pgspout/__init__.py registered). Always returns NULL. */
static PyObject *pgs_raise(int code, const char *msg, const char *sqlstate)
{
    if (msg == NULL || *msg == '\0')
        msg = pgspout_strerror(code);
    PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    PyObject *st = NULL;
    if (sqlstate && *sqlstate)
        st = PyUnicode_DecodeUTF8(sqlstate, (Py_ssize_t)strlen(sqlstate), "replace");
    else {
        st = Py_None;
        Py_INCREF(st);
    }
    if (m == NULL || st == NULL) {
        Py_XDECREF(m);
        Py_XDECREF(st);
        return NULL;
    }
    if (G.error_factory != NULL) {
        PyObject *exc = PyObject_CallFunction(G.error_factory, "iOO", code, m, st);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
    } else {
        PyErr_Format(PyExc_RuntimeError, "pgspout %s: %U", pgspout_code_name(code), m);
    }
    Py_DECREF(m);
    Py_DECREF(st);
    return NULL;
}

/* ------------------------------------------------------ interruptions */
/* Ctrl-C while the core blocks (connect, stream open, registry open and
 * fetch): the core's interrupt hook calls pgs_interrupt_cb after a signal
 * interrupted its wait and every 100 ms; the callback takes the GIL, runs
 * Python's signal handlers and stops the wait if one raised. The exception
 * stays set: the binding returns NULL with it once the core gave up
 * (PGSPOUT_EINTR, the server query cancelled). Only the main thread runs
 * Python signal handlers, so the hook is set on the main thread only (other
 * threads would take the GIL ten times a second for nothing). A handler
 * that returns normally interrupts nothing. */
/* > 0 while this thread runs Python code called back from inside the core
 * (a signal handler in a wait, a log message). Thread-local: other threads
 * may run while that code releases the GIL. */
static _Thread_local int pgs_in_hook;
static unsigned long pgs_main_ident;
static pid_t pgs_main_pid;

static int pgs_interrupt_cb(void *ud)
{
    (void)ud;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_Occurred() != NULL;
    if (!stop) {
        pgs_in_hook++;
        stop = PyErr_CheckSignals() < 0;
        pgs_in_hook--;
    }
    PyGILState_Release(g);
    return stop;
}

/* Is this the thread that runs Python's signal handlers? GIL held. */
static int pgs_main_thread(void)
{
    if (pgs_main_pid != getpid()) { /* first call, or a fork child */
        PyObject *t = pgs_import_attr("threading", "main_thread");
        PyObject *mt = t ? PyObject_CallNoArgs(t) : NULL;
        PyObject *id = mt ? PyObject_GetAttrString(mt, "ident") : NULL;
        unsigned long v = id && PyLong_Check(id) ? PyLong_AsUnsignedLong(id) : 0;
        Py_XDECREF(t);
        Py_XDECREF(mt);
        Py_XDECREF(id);
        if (PyErr_Occurred() || v == 0) {
            PyErr_Clear();
            return 0;
        }
        pgs_main_ident = v;
        pgs_main_pid = getpid();
    }
    return PyThread_get_thread_ident() == pgs_main_ident;
}

/* Set the hook around one blocking core call (GIL held when called). */
static int pgs_hook_on(void)
{
    if (!pgs_main_thread())
        return 0;
    pgspout_set_interrupt_hook(pgs_interrupt_cb, NULL);
    return 1;
}

static void pgs_hook_off(int on)
{
    if (on)
        pgspout_set_interrupt_hook(NULL, NULL);
}

/* Blocking owner calls refuse to run from a signal handler that runs inside
 * a core wait of this same thread: the core is not re-entrant there (and a
 * registry fetch of the same id would deadlock on its own lock). */
static int pgs_reentered(void)
{
    if (pgs_in_hook == 0)
        return 0;
    pgs_raise(PGSPOUT_EBUSY,
              "pgspout was called from a signal handler while this thread waits inside "
              "pgspout; only cancel, pause, resume, state and stats may be called there",
              NULL);
    return 1;
}

/* ------------------------------------------------------------- logging */
/* The core's log hook (warnings such as memory_warn crossed or a COMMIT
 * that ended in ROLLBACK) forwarded to a Python callable (level, message)
 * that pgspout/__init__.py sets: the "pgspout" logger. It runs on whichever
 * thread drives the stream, GIL released there, so it takes the GIL; not
 * once the interpreter is shutting down (a registry reaper thread could
 * still log then). A pending exception of the thread is kept aside. */
static PyObject *pgs_log_target;

static int pgs_finalizing(void)
{
#if PY_VERSION_HEX >= 0x030D0000
    return Py_IsFinalizing();
#else
    return _Py_IsFinalizing();
#endif
}

static void pgs_log_cb(int level, const char *message, void *ud)
{
    (void)ud;
    if (!Py_IsInitialized() || pgs_finalizing())
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (pgs_log_target != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        PyObject *m = PyUnicode_DecodeUTF8(message, (Py_ssize_t)strlen(message), "replace");
        PyObject *r = NULL;
        if (m != NULL) {
            pgs_in_hook++;
            r = PyObject_CallFunction(pgs_log_target, "iO", level, m);
            pgs_in_hook--;
            Py_DECREF(m);
        }
        if (r == NULL)
            PyErr_WriteUnraisable(pgs_log_target);
        Py_XDECREF(r);
        PyErr_Restore(et, ev, tb);
    }
    PyGILState_Release(g);
}

/* Release the GIL and give other threads a moment: used while waiting for a
 * call on another thread to return before a handle can be closed. */
static void pgs_wait_zero(const int *counter)
{
    while (*counter > 0) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
}

/* ---------------------------------------------------------- conversions */
/* Every converter gets a NUL-terminated text value and its length and
 * returns a new reference, or NULL with a Python error set. A value the
 * Python type cannot hold (BC dates, year > 9999, 24:00:00, other
 * DateStyle/IntervalStyle output) comes back as the server's text (str). */
typedef PyObject *(*pgs_conv_fn)(const char *v, size_t n);

static PyObject *cv_text(const char *v, size_t n)
{
    return PyUnicode_DecodeUTF8(v, (Py_ssize_t)n, NULL);
}

static PyObject *cv_int(const char *v, size_t n)
{
    const char *p = v, *e = v + n;
    int neg = 0;
    uint64_t acc = 0;
    if (p < e && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    if (p == e || e - p > 19)
        goto slow;
    for (; p < e; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (d > 9)
            goto slow;
        acc = acc * 10 + d;
    }
    if (!neg)
        return PyLong_FromUnsignedLongLong(acc);
    if (acc <= (uint64_t)INT64_MAX)
        return PyLong_FromLongLong(-(long long)acc);
    if (acc == (uint64_t)INT64_MAX + 1)
        return PyLong_FromLongLong(INT64_MIN);
slow: {
        PyObject *r = PyLong_FromString(v, NULL, 10);
        if (r == NULL) {
            PyErr_Clear();
            return cv_text(v, n);
        }
        return r;
    }
}

/* Exact fast path for short decimals (Clinger): a mantissa below 2^53 and a
 * power of ten up to 22 are both exact doubles, so one IEEE multiplication or
 * division rounds correctly. Everything else goes to PyOS_string_to_double. */
static const double pow10_tab[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                   1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static int float_fast(const char *p, const char *e, double *out)
{
    int neg = 0, digits = 0, exp10 = 0;
    uint64_t m = 0;
    if (p < e && (*p == '-' || *p == '+')) {
        neg = *p == '-';
        p++;
    }
    const char *start = p;
    while (p < e && *p >= '0' && *p <= '9') {
        if (m || *p != '0')
            digits++;
        m = m * 10 + (uint64_t)(*p - '0');
        p++;
        if (digits > 15)
            return -1;
    }
    if (p < e && *p == '.') {
        p++;
        while (p < e && *p >= '0' && *p <= '9') {
            if (m || *p != '0')
                digits++;
            m = m * 10 + (uint64_t)(*p - '0');
            exp10--;
            p++;
            if (digits > 15)
                return -1;
        }
    }
    if (p == start || (p == start + 1 && *start == '.'))
        return -1;
    if (p < e && (*p == 'e' || *p == 'E')) {
        int eneg = 0, ev = 0;
        p++;
        if (p < e && (*p == '-' || *p == '+')) {
            eneg = *p == '-';
            p++;
        }
        if (p == e)
            return -1;
        while (p < e && *p >= '0' && *p <= '9') {
            ev = ev * 10 + (*p - '0');
            if (ev > 1000)
                return -1;
            p++;
        }
        exp10 += eneg ? -ev : ev;
    }
    if (p != e || exp10 < -22 || exp10 > 22)
        return -1;
    double d = (double)m;
    d = exp10 < 0 ? d / pow10_tab[-exp10] : d * pow10_tab[exp10];
    *out = neg ? -d : d;
    return 0;
}

static PyObject *cv_float(const char *v, size_t n)
{
    double d;
    if (float_fast(v, v + n, &d) == 0)
        return PyFloat_FromDouble(d);
    char *end = NULL;
    d = PyOS_string_to_double(v, &end, NULL);
    if (end != v + n || (d == -1.0 && PyErr_Occurred())) {
        PyErr_Clear();
        return cv_text(v, n);
    }
    return PyFloat_FromDouble(d);
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

static PyObject *cv_bytea(const char *v, size_t n)
{
    if (n >= 2 && v[0] == '\\' && v[1] == 'x') { /* bytea_output = hex */
        if ((n - 2) % 2)
            return cv_text(v, n);
        size_t m = (n - 2) / 2;
        PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)m);
        if (b == NULL)
            return NULL;
        unsigned char *o = (unsigned char *)PyBytes_AS_STRING(b);
        for (size_t i = 0; i < m; i++) {
            int hi = hexval(v[2 + 2 * i]), lo = hexval(v[3 + 2 * i]);
            if (hi < 0 || lo < 0) {
                Py_DECREF(b);
                return cv_text(v, n);
            }
            o[i] = (unsigned char)(hi << 4 | lo);
        }
        return b;
    }
    /* bytea_output = escape: \\ and \ooo, everything else literal */
    PyObject *b = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)n);
    if (b == NULL)
        return NULL;
    char *o = PyBytes_AS_STRING(b);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        if (v[i] != '\\') {
            o[k++] = v[i++];
        } else if (i + 1 < n && v[i + 1] == '\\') {
            o[k++] = '\\';
            i += 2;
        } else if (i + 3 < n && v[i + 1] >= '0' && v[i + 1] <= '3' &&
                   v[i + 2] >= '0' && v[i + 2] <= '7' && v[i + 3] >= '0' && v[i + 3] <= '7') {
            o[k++] = (char)((v[i + 1] - '0') << 6 | (v[i + 2] - '0') << 3 | (v[i + 3] - '0'));
            i += 4;
        } else {
            Py_DECREF(b);
            return cv_text(v, n);
        }
    }
    if (_PyBytes_Resize(&b, (Py_ssize_t)k) < 0)
        return NULL;
    return b;
}

/* k decimal digits at p into *out; -1 if one is not a digit. */
static int pdig(const char *p, int k, int *out)
{
    int v = 0;
    for (int i = 0; i < k; i++) {
        unsigned d = (unsigned)(p[i] - '0');
        if (d > 9)
            return -1;
        v = v * 10 + (int)d;
    }
    *out = v;
    return 0;
}

/* "YYYY-MM-DD" at p (exactly four year digits). */
static int parse_date(const char *p, const char *e, int *y, int *m, int *d)
{
    if (e - p < 10 || p[4] != '-' || p[7] != '-')
        return -1;
    if (pdig(p, 4, y) || pdig(p + 5, 2, m) || pdig(p + 8, 2, d))
        return -1;
    return 0;
}

/* "HH:MM:SS[.ffffff]" at *pp; advances *pp. */
static int parse_time(const char **pp, const char *e, int *h, int *mi, int *s, int *us)
{
    const char *p = *pp;
    if (e - p < 8 || p[2] != ':' || p[5] != ':')
        return -1;
    if (pdig(p, 2, h) || pdig(p + 3, 2, mi) || pdig(p + 6, 2, s))
        return -1;
    p += 8;
    *us = 0;
    if (p < e && *p == '.') {
        int k = 0, frac = 0;
        p++;
        while (p < e && *p >= '0' && *p <= '9') {
            if (k < 6) {
                frac = frac * 10 + (*p - '0');
                k++;
            }
            p++;
        }
        if (k == 0)
            return -1;
        while (k < 6) {
            frac *= 10;
            k++;
        }
        *us = frac;
    }
    *pp = p;
    return 0;
}

/* "+HH[:MM[:SS]]" / "-..." at *pp: offset east of UTC in seconds. */
static int parse_offset(const char **pp, const char *e, int *off)
{
    const char *p = *pp;
    int sign, h, m = 0, s = 0;
    if (p >= e || (*p != '+' && *p != '-'))
        return -1;
    sign = *p == '-' ? -1 : 1;
    p++;
    if (e - p < 2 || pdig(p, 2, &h))
        return -1;
    p += 2;
    if (e - p >= 3 && p[0] == ':') {
        if (pdig(p + 1, 2, &m))
            return -1;
        p += 3;
        if (e - p >= 3 && p[0] == ':') {
            if (pdig(p + 1, 2, &s))
                return -1;
            p += 3;
        }
    }
    *off = sign * (h * 3600 + m * 60 + s);
    *pp = p;
    return 0;
}

static PyObject *tz_for(int off)
{
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

static int is_word(const char *v, size_t n, const char *w)
{
    return n == strlen(w) && memcmp(v, w, n) == 0;
}

static PyObject *incref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}

static PyObject *cv_date(const char *v, size_t n)
{
    int y, m, d;
    if (n != 10 || parse_date(v, v + n, &y, &m, &d)) {
        if (is_word(v, n, "infinity"))
            return incref(G.date_max);
        if (is_word(v, n, "-infinity"))
            return incref(G.date_min);
        return cv_text(v, n);
    }
    return or_text(PyDateTimeAPI->Date_FromDate(y, m, d, PyDateTimeAPI->DateType), v, n);
}

static PyObject *ts_common(const char *v, size_t n, int with_tz)
{
    const char *p = v, *e = v + n;
    int y, mo, d, h, mi, s, us, off = 0;
    if (parse_date(p, e, &y, &mo, &d) || n < 19 || p[10] != ' ')
        goto special;
    p += 11;
    if (parse_time(&p, e, &h, &mi, &s, &us))
        goto special;
    if (with_tz && parse_offset(&p, e, &off))
        goto special;
    if (p != e)
        goto special; /* " BC" and anything unexpected */
    PyObject *tz = Py_None;
    if (with_tz) {
        tz = tz_for(off);
        if (tz == NULL)
            return NULL;
    } else {
        Py_INCREF(tz);
    }
    PyObject *r = PyDateTimeAPI->DateTime_FromDateAndTime(y, mo, d, h, mi, s, us, tz,
                                                          PyDateTimeAPI->DateTimeType);
    Py_DECREF(tz);
    return or_text(r, v, n);
special:
    if (is_word(v, n, "infinity"))
        return incref(with_tz ? G.dtz_max : G.dt_max);
    if (is_word(v, n, "-infinity"))
        return incref(with_tz ? G.dtz_min : G.dt_min);
    return cv_text(v, n);
}

static PyObject *cv_timestamp(const char *v, size_t n) { return ts_common(v, n, 0); }
static PyObject *cv_timestamptz(const char *v, size_t n) { return ts_common(v, n, 1); }

static PyObject *time_common(const char *v, size_t n, int with_tz)
{
    const char *p = v, *e = v + n;
    int h, mi, s, us, off = 0;
    if (parse_time(&p, e, &h, &mi, &s, &us))
        return cv_text(v, n);
    if (with_tz && parse_offset(&p, e, &off))
        return cv_text(v, n);
    if (p != e)
        return cv_text(v, n);
    PyObject *tz = Py_None;
    if (with_tz) {
        tz = tz_for(off);
        if (tz == NULL)
            return NULL;
    } else {
        Py_INCREF(tz);
    }
    PyObject *r = PyDateTimeAPI->Time_FromTime(h, mi, s, us, tz, PyDateTimeAPI->TimeType);
    Py_DECREF(tz);
    return or_text(r, v, n); /* 24:00:00 stays text */
}

static PyObject *cv_time(const char *v, size_t n) { return time_common(v, n, 0); }
static PyObject *cv_timetz(const char *v, size_t n) { return time_common(v, n, 1); }

/* IntervalStyle postgres ("1 year 2 mons -3 days +04:05:06.5"). Months count
 * 30 days and years 12 months, as PostgreSQL itself does when it compares
 * intervals; other styles come back as text. */
static PyObject *cv_interval(const char *v, size_t n)
{
    const char *p = v, *e = v + n;
    int64_t months = 0, days = 0, usecs = 0;
    const int64_t LIM = INT64_C(1) << 40;
    while (p < e) {
        if (*p == ' ') {
            p++;
            continue;
        }
        int neg = 0;
        if (*p == '-' || *p == '+') {
            neg = *p == '-';
            p++;
        }
        const char *ds = p;
        int64_t num = 0;
        while (p < e && *p >= '0' && *p <= '9') {
            num = num * 10 + (*p - '0');
            if (num > LIM)
                return cv_text(v, n);
            p++;
        }
        if (p == ds)
            return cv_text(v, n);
        if (p < e && *p == ':') { /* H+:MM:SS[.ffffff] */
            int mi, s, us = 0;
            if (num > INT64_C(2562047788)) /* PostgreSQL's largest hour count */
                return cv_text(v, n);
            if (e - p < 6 || p[3] != ':' || pdig(p + 1, 2, &mi) || pdig(p + 4, 2, &s))
                return cv_text(v, n);
            p += 6;
            if (p < e && *p == '.') {
                int k = 0, frac = 0;
                p++;
                while (p < e && *p >= '0' && *p <= '9') {
                    if (k < 6) {
                        frac = frac * 10 + (*p - '0');
                        k++;
                    }
                    p++;
                }
                while (k < 6) {
                    frac *= 10;
                    k++;
                }
                us = frac;
            }
            int64_t t = ((num * 60 + mi) * 60 + s) * INT64_C(1000000) + us;
            usecs += neg ? -t : t;
            continue;
        }
        if (p >= e || *p != ' ')
            return cv_text(v, n);
        p++;
        const char *w = p;
        while (p < e && *p >= 'a' && *p <= 'z')
            p++;
        size_t wl = (size_t)(p - w);
        int64_t sn = neg ? -num : num;
        if ((wl == 4 && !memcmp(w, "year", 4)) || (wl == 5 && !memcmp(w, "years", 5)))
            months += 12 * sn;
        else if ((wl == 3 && !memcmp(w, "mon", 3)) || (wl == 4 && !memcmp(w, "mons", 4)))
            months += sn;
        else if ((wl == 3 && !memcmp(w, "day", 3)) || (wl == 4 && !memcmp(w, "days", 4)))
            days += sn;
        else
            return cv_text(v, n);
    }
    const int64_t DAY = INT64_C(86400000000);
    int64_t d2 = usecs / DAY, r = usecs % DAY;
    if (r < 0) {
        r += DAY;
        d2 -= 1;
    }
    int64_t total = days + months * 30 + d2;
    if (total > 999999999 || total < -999999999)
        return cv_text(v, n);
    PyObject *res = PyDelta_FromDSU((int)total, (int)(r / 1000000), (int)(r % 1000000));
    if (res == NULL && PyErr_ExceptionMatches(PyExc_OverflowError)) {
        PyErr_Clear();
        return cv_text(v, n);
    }
    return res;
}

/* uuid.UUID without running its Python __init__: allocate the instance and
 * fill its 'int' and 'is_safe' slots (what UUID.__init__ ends up doing), the
 * slot offsets read from the class's member descriptors at start-up. */
static Py_ssize_t uuid_off_int = -1, uuid_off_safe = -1;
static signed char hexv[256];

static Py_ssize_t slot_offset(PyObject *type, const char *name)
{
    PyObject *d = PyDict_GetItemString(((PyTypeObject *)type)->tp_dict, name);
    if (d == NULL || !Py_IS_TYPE(d, &PyMemberDescr_Type))
        return -1;
    PyMemberDef *m = ((PyMemberDescrObject *)d)->d_member;
    return m->type == T_OBJECT_EX && !(m->flags & READONLY) ? m->offset : -1;
}

static void uuid_fast_setup(void)
{
    for (int i = 0; i < 256; i++)
        hexv[i] = (signed char)hexval((char)i);
    uuid_off_int = slot_offset(G.UUID, "int");
    uuid_off_safe = slot_offset(G.UUID, "is_safe");
    G.uuid_fast = PyType_Check(G.UUID) && uuid_off_int > 0 && uuid_off_safe > 0 &&
                  ((PyTypeObject *)G.UUID)->tp_new == PyBaseObject_Type.tp_new;
}

static PyObject *cv_uuid_fast(const char *v, size_t n)
{
    unsigned char b[16];
    int k = 0;
    if (n != 36 || !G.uuid_fast)
        return NULL;
    for (size_t i = 0; i < 36;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (v[i] != '-')
                return NULL;
            i++;
            continue;
        }
        int hi = hexv[(unsigned char)v[i]], lo = hexv[(unsigned char)v[i + 1]];
        if ((hi | lo) < 0)
            return NULL;
        b[k++] = (unsigned char)(hi << 4 | lo);
        i += 2;
    }
#if PY_VERSION_HEX >= 0x030D0000
    PyObject *iv = PyLong_FromUnsignedNativeBytes(
        b, 16, Py_ASNATIVEBYTES_BIG_ENDIAN | Py_ASNATIVEBYTES_UNSIGNED_BUFFER);
#else
    PyObject *iv = _PyLong_FromByteArray(b, 16, 0, 0);
#endif
    if (iv == NULL)
        return NULL;
    PyTypeObject *t = (PyTypeObject *)G.UUID;
    PyObject *u = t->tp_alloc(t, 0);
    if (u == NULL) {
        Py_DECREF(iv);
        return NULL;
    }
    *(PyObject **)((char *)u + uuid_off_int) = iv;
    Py_INCREF(G.uuid_unknown);
    *(PyObject **)((char *)u + uuid_off_safe) = G.uuid_unknown;
    /* immutable, refers to an int and an enum member only: no cycles */
    if (PyObject_GC_IsTracked(u))
        PyObject_GC_UnTrack(u);
    return u;
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

static PyObject *cv_json(const char *v, size_t n)
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

static pgs_conv_fn conv_scalar(unsigned int oid)
{
    switch (oid) {
    case 16: return cv_bool;
    case 17: return cv_bytea;
    case 20: case 21: case 23: case 26: return cv_int;
    case 114: case 3802: return cv_json;
    case 700: case 701: return cv_float;
    case 1082: return cv_date;
    case 1083: return cv_time;
    case 1114: return cv_timestamp;
    case 1184: return cv_timestamptz;
    case 1186: return cv_interval;
    case 1266: return cv_timetz;
    case 1700: return cv_numeric;
    case 2950: return cv_uuid;
    default: return cv_text; /* text, varchar, name, bpchar, char and the rest */
    }
}

/* Element type of the array types converted to lists, 0 for others. */
static unsigned int array_elem(unsigned int oid)
{
    switch (oid) {
    case 1000: return 16;    case 1001: return 17;    case 1002: return 18;
    case 1003: return 19;    case 1005: return 21;    case 1007: return 23;
    case 1009: return 25;    case 1014: return 1042;  case 1015: return 1043;
    case 1016: return 20;    case 1021: return 700;   case 1022: return 701;
    case 1028: return 26;    case 1115: return 1114;  case 1182: return 1082;
    case 1183: return 1083;  case 1185: return 1184;  case 1187: return 1186;
    case 1231: return 1700;  case 1270: return 1266;  case 2951: return 2950;
    case 199: return 114;    case 3807: return 3802;
    default: return 0;
    }
}

/* Scratch space for one array element (NUL-terminated for the converters). */
typedef struct {
    char *p;
    size_t cap;
    char inl[256];
} pgs_scratch;

static int scratch_room(pgs_scratch *sc, size_t need)
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
static PyObject *arr_level(const char **pp, const char *e, pgs_conv_fn fn, pgs_scratch *sc,
                           int depth, int *bad)
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

static PyObject *cv_array(const char *v, size_t n, pgs_conv_fn fn)
{
    const char *p = v, *e = v + n;
    int bad = 0;
    pgs_scratch sc;
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

/* ----------------------------------------------------- conn and stream */

typedef struct pgs_col {
    PyObject *name;
    unsigned int oid;
    pgs_conv_fn fn;   /* scalar converter */
    pgs_conv_fn elem; /* element converter for arrays, else NULL */
} pgs_col;

enum { PGS_MODE_TUPLE = 0, PGS_MODE_DICT = 1, PGS_MODE_JSON = 2 };

typedef struct PgsStream PgsStream;

typedef struct PgsConn {
    pgspout_conn *c;     /* NULL once closed */
    PgsStream *stream;   /* the open stream on it (not owned) */
    int busy;            /* owner calls in progress with the GIL released */
    int inflight;        /* conn.cancel() calls (any thread) in progress */
    int closing;         /* close started: new calls are refused */
    pid_t pid;           /* the process that connected (see pgs_forked) */
} PgsConn;

struct PgsStream {
    pgspout_stream *s;   /* NULL once released (ended or closed) */
    PgsConn *conn;       /* back link while s is open (not owned) */
    int busy;            /* an owner call runs with the GIL released */
    int inflight;        /* any-thread calls running with the GIL released */
    int mode;
    int ncols;
    pgs_col *cols;
    PyObject *columns;   /* [(name, oid), ...] */
    PyObject *chunk;     /* converted rows not yet handed out */
    Py_ssize_t pos;
    int closed;          /* closed by close() or by its connection */
    int final_state;     /* PGSPOUT_STATE_* when released */
    int err_code;        /* < 0 when the stream failed */
    PyObject *err_msg, *err_sqlstate;
    PyObject *err_type, *err_value; /* a Python error from conversion */
    PyObject *final_stats;
    PyObject *cmd_tag;   /* the command tag when released (str), or NULL */
    pid_t pid;           /* the process that opened it */
};

/* A connection inherited through fork() belongs to the parent: the child
 * never calls into it (not even to close it, which would talk to the server
 * on the parent's socket); its handles are dropped, their memory leaked. */
static int pgs_forked(pid_t pid)
{
    return pid != getpid();
}

static PyObject *pgs_raise_forked(void)
{
    return pgs_raise(PGSPOUT_ESTATE,
                     "the connection belongs to the parent process (inherited through fork)", NULL);
}

static PyObject *opt_time(double t)
{
    if (t < 0)
        PGS_RETURN_NONE;
    return PyFloat_FromDouble(t);
}

static PyObject *stats_dict(const pgspout_stats *st)
{
    return Py_BuildValue(
        "{s:s,s:i,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:d,s:d,s:d,s:d,s:L,s:N,s:N}",
        "state", pgspout_state_name(st->state), "chunk_rows", st->chunk_rows,
        "rows_delivered", (unsigned long long)st->rows_delivered,
        "rows_received", (unsigned long long)st->rows_received,
        "rows_filtered", (unsigned long long)st->rows_filtered,
        "bytes_received", (unsigned long long)st->bytes_received,
        "chunks", (unsigned long long)st->chunks,
        "buffered_rows", (unsigned long long)st->buffered_rows,
        "buffered_bytes", (unsigned long long)st->buffered_bytes,
        "peak_buffered_bytes", (unsigned long long)st->peak_buffered_bytes,
        "pauses", (unsigned long long)st->pauses,
        "time_to_first_row", opt_time(st->time_to_first_row),
        "elapsed", st->elapsed, "paused_time", st->paused_time,
        "rows_per_sec", st->rows_per_sec, "bytes_per_sec", st->bytes_per_sec,
        "expected_rows", (long long)st->expected_rows,
        "progress", opt_time(st->progress), "eta", opt_time(st->eta));
}

/* Snapshot, unlink and close the core stream. GIL held on entry and exit;
 * released while the core closes (it may drain the connection). */
static void stream_release(PgsStream *w, int closed)
{
    if (closed)
        w->closed = 1;
    if (w->s == NULL)
        return;
    if (pgs_forked(w->pid)) {
        w->s = NULL;
        w->final_state = PGSPOUT_STATE_CLOSED;
        w->closed = 1;
        if (w->conn) {
            w->conn->stream = NULL;
            w->conn = NULL;
        }
        return;
    }
    pgspout_stream *s = w->s;
    pgspout_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    w->final_state = pgspout_stream_state(s);
    if (w->err_msg == NULL && pgspout_stream_errcode(s) < 0) {
        if (w->err_code == 0)
            w->err_code = pgspout_stream_errcode(s);
        w->err_msg = PyUnicode_DecodeUTF8(pgspout_stream_error(s),
                                          (Py_ssize_t)strlen(pgspout_stream_error(s)), "replace");
        w->err_sqlstate = PyUnicode_FromString(pgspout_stream_sqlstate(s));
        if (!w->err_msg || !w->err_sqlstate)
            PyErr_Clear();
    }
    if (pgspout_stream_stats(s, &st) == PGSPOUT_OK) {
        Py_XSETREF(w->final_stats, stats_dict(&st));
        if (w->final_stats == NULL)
            PyErr_Clear();
    }
    if (w->cmd_tag == NULL) {
        const char *tag = pgspout_stream_command_tag(s);
        w->cmd_tag = PyUnicode_DecodeUTF8(tag, (Py_ssize_t)strlen(tag), "replace");
        if (w->cmd_tag == NULL)
            PyErr_Clear();
    }
    w->s = NULL;
    Py_CLEAR(w->chunk);
    PgsConn *conn = w->conn;
    w->conn = NULL;
    if (conn) {
        conn->stream = NULL;
        conn->busy++;
    }
    pgs_wait_zero(&w->inflight); /* pause/cancel/stats from other threads */
    Py_BEGIN_ALLOW_THREADS
    pgspout_stream_close(s);
    Py_END_ALLOW_THREADS
    if (conn)
        conn->busy--;
}

static PyObject *stream_raise_final(PgsStream *w)
{
    if (w->err_type != NULL) { /* a conversion error: raise it again */
        PyException_SetTraceback(w->err_value, Py_None);
        PyErr_SetObject(w->err_type, w->err_value);
        return NULL;
    }
    return pgs_raise(w->err_code, w->err_msg ? PyUnicode_AsUTF8(w->err_msg) : NULL,
                     w->err_sqlstate ? PyUnicode_AsUTF8(w->err_sqlstate) : NULL);
}

static PyObject *convert_value(const pgs_col *c, const pgspout_row *r, int i)
{
    if (pgspout_row_isnull(r, i)) {
        Py_INCREF(Py_None);
        return Py_None;
    }
    size_t n = 0;
    const char *v = pgspout_row_value(r, i, &n);
    if (v == NULL)
        return pgs_raise(PGSPOUT_EINTERNAL, "row has fewer columns than the stream", NULL);
    return c->elem ? cv_array(v, n, c->elem) : c->fn(v, n);
}

static PyObject *convert_chunk(PgsStream *w, const pgspout_chunk *ch)
{
    int nrows = pgspout_chunk_nrows(ch);
    PyObject *list = PyList_New(nrows);
    if (list == NULL)
        return NULL;
    for (int i = 0; i < nrows; i++) {
        const pgspout_row *r = pgspout_chunk_row(ch, i);
        PyObject *row = NULL;
        if (r == NULL) {
            pgs_raise(PGSPOUT_EINTERNAL, "chunk row out of range", NULL);
            goto fail;
        }
        if (w->mode == PGS_MODE_TUPLE) {
            row = PyTuple_New(w->ncols);
            if (row == NULL)
                goto fail;
            int atomic = 1;
            for (int c = 0; c < w->ncols; c++) {
                PyObject *o = convert_value(&w->cols[c], r, c);
                if (o == NULL) {
                    Py_DECREF(row);
                    goto fail;
                }
                if (PyObject_IS_GC(o) && !Py_IS_TYPE(o, (PyTypeObject *)G.UUID))
                    atomic = 0;
                PyTuple_SET_ITEM(row, c, o);
            }
            /* A tuple of scalars can never be part of a reference cycle: keep
             * it out of the cyclic GC's way, as CPython itself does lazily. */
            if (atomic)
                PyObject_GC_UnTrack(row);
        } else if (w->mode == PGS_MODE_DICT) {
            row = PyDict_New();
            if (row == NULL)
                goto fail;
            for (int c = 0; c < w->ncols; c++) {
                PyObject *o = convert_value(&w->cols[c], r, c);
                int rc = o ? PyDict_SetItem(row, w->cols[c].name, o) : -1;
                Py_XDECREF(o);
                if (rc < 0) {
                    Py_DECREF(row);
                    goto fail;
                }
            }
        } else {
            const char *json = NULL;
            size_t len = 0;
            int rc = pgspout_row_json(w->s, r, &json, &len);
            if (rc < 0) {
                pgs_raise(rc, "could not render the row as JSON", NULL);
                goto fail;
            }
            row = PyUnicode_DecodeUTF8(json, (Py_ssize_t)len, "replace");
            if (row == NULL)
                goto fail;
        }
        PyList_SET_ITEM(list, i, row);
    }
    return list;
fail:
    Py_DECREF(list);
    return NULL;
}

/* pgspout_stream_next_chunk that Ctrl-C can interrupt: the core's blocking
 * wait retries on EINTR, so drive it non-blocking and wait here (GIL
 * released) on its descriptor in slices, running Python's signal handlers
 * between them. Returns the core's code, or PGS_INTERRUPTED with the
 * handler's exception set. */
#define PGS_INTERRUPTED (-1000)
#define PGS_WAIT_SLICE_MS 100

static int stream_wait_chunk(pgspout_stream *s, const pgspout_chunk **ch)
{
    for (;;) {
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = pgspout_stream_next_chunk(s, PGSPOUT_NONBLOCK, ch);
        if (rc == PGSPOUT_AGAIN || rc == PGSPOUT_PAUSED) {
            /* the descriptor wakes for data and for pause/resume/cancel from
             * other threads; wait_ms covers deadlines and throttling */
            int ms = pgspout_stream_wait_ms(s);
            if (ms < 0 || ms > PGS_WAIT_SLICE_MS)
                ms = PGS_WAIT_SLICE_MS;
            struct pollfd p = {pgspout_stream_socket(s), POLLIN, 0};
            poll(&p, 1, ms);
        }
        Py_END_ALLOW_THREADS
        if (rc != PGSPOUT_AGAIN && rc != PGSPOUT_PAUSED)
            return rc;
        if (PyErr_CheckSignals() < 0)
            return PGS_INTERRUPTED;
    }
}

/* Get the next chunk of converted rows into w->chunk. 1: rows, 0: the end,
 * -1: an error is set. */
static int stream_fill(PgsStream *w)
{
    if (w->chunk != NULL && w->pos < PyList_GET_SIZE(w->chunk))
        return 1;
    Py_CLEAR(w->chunk);
    w->pos = 0;
    if (w->s == NULL) {
        if (w->closed) {
            if (w->final_state == PGSPOUT_STATE_CLOSED && w->err_code == PGSPOUT_ESTATE)
                pgs_raise(PGSPOUT_ESTATE, "the stream's connection was closed", NULL);
            else
                pgs_raise(PGSPOUT_ESTATE, "the stream is closed", NULL);
            return -1;
        }
        if (w->err_code < 0 || w->err_type != NULL) {
            stream_raise_final(w);
            return -1;
        }
        return 0;
    }
    if (pgs_forked(w->pid)) {
        pgs_raise_forked();
        return -1;
    }
    if (pgs_reentered())
        return -1;
    if (w->busy) {
        pgs_raise(PGSPOUT_EBUSY, "the stream is being read by another thread", NULL);
        return -1;
    }
    if (w->conn != NULL && w->conn->closing) {
        pgs_raise(PGSPOUT_ESTATE, "the stream's connection is closing", NULL);
        return -1;
    }
    pgspout_stream *s = w->s;
    PgsConn *conn = w->conn;
    const pgspout_chunk *ch = NULL;
    int rc;
    w->busy = 1;
    if (conn)
        conn->busy++;
    rc = stream_wait_chunk(s, &ch);
    if (conn)
        conn->busy--;
    w->busy = 0;
    if (rc == PGS_INTERRUPTED)
        return -1; /* KeyboardInterrupt & co: the stream stays as it was */
    if (rc == PGSPOUT_OK) {
        PyObject *rows = convert_chunk(w, ch);
        if (rows == NULL) {
            /* Never continue past rows that were lost: the stream fails with
             * this error from now on. */
            PyObject *tb = NULL;
            PyErr_Fetch(&w->err_type, &w->err_value, &tb);
            PyErr_NormalizeException(&w->err_type, &w->err_value, &tb);
            Py_XDECREF(tb);
            stream_release(w, 0);
            w->final_state = PGSPOUT_STATE_FAILED;
            stream_raise_final(w);
            return -1;
        }
        w->chunk = rows;
        w->pos = 0;
        return PyList_GET_SIZE(rows) > 0 ? 1 : stream_fill(w);
    }
    if (rc == PGSPOUT_DONE) {
        stream_release(w, 0);
        return 0;
    }
    if (rc > 0) { /* AGAIN / PAUSED cannot happen without NONBLOCK */
        pgs_raise(PGSPOUT_EINTERNAL, "unexpected result from next_chunk", NULL);
        return -1;
    }
    stream_release(w, 0);
    if (w->err_code == 0)
        w->err_code = rc;
    stream_raise_final(w);
    return -1;
}

static PyObject *pgs_stream_iternext(PyObject *self)
{
    PgsStream *w = (PgsStream *)((SwigPyObject *)self)->ptr;
    if (w == NULL)
        return NULL;
    if (w->chunk != NULL && w->pos < PyList_GET_SIZE(w->chunk)) {
        PyObject *row = PyList_GET_ITEM(w->chunk, w->pos);
        w->pos++;
        Py_INCREF(row);
        return row;
    }
    int rc = stream_fill(w);
    if (rc <= 0)
        return NULL; /* error set, or the end (StopIteration) */
    PyObject *row = PyList_GET_ITEM(w->chunk, w->pos);
    w->pos++;
    Py_INCREF(row);
    return row;
}

static void stream_free(PgsStream *w)
{
    if (w == NULL)
        return;
    stream_release(w, 1);
    for (int i = 0; i < w->ncols; i++)
        Py_XDECREF(w->cols[i].name);
    PyMem_Free(w->cols);
    Py_XDECREF(w->columns);
    Py_XDECREF(w->chunk);
    Py_XDECREF(w->err_msg);
    Py_XDECREF(w->err_sqlstate);
    Py_XDECREF(w->err_type);
    Py_XDECREF(w->err_value);
    Py_XDECREF(w->final_stats);
    Py_XDECREF(w->cmd_tag);
    PyMem_Free(w);
}

/* Run an any-thread core call without the GIL, counted in inflight so that a
 * close waits for it. */
typedef int (*pgs_stream_op)(pgspout_stream *);

static PyObject *stream_anythread(PgsStream *w, pgs_stream_op op, const char *what)
{
    if (w->s == NULL)
        return pgs_raise(PGSPOUT_ESTATE, what, NULL);
    if (pgs_forked(w->pid))
        return pgs_raise_forked();
    pgspout_stream *s = w->s;
    int rc;
    w->inflight++;
    Py_BEGIN_ALLOW_THREADS
    rc = op(s);
    Py_END_ALLOW_THREADS
    w->inflight--;
    if (rc < 0)
        return pgs_raise(rc, what, NULL);
    PGS_RETURN_NONE;
}

/* ------------------------------------------------------ argument helpers */

/* UTF-8 of a str without embedded NULs (borrowed from o). */
static const char *pgs_cstr(PyObject *o, const char *what)
{
    if (!PyUnicode_Check(o)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what, Py_TYPE(o)->tp_name);
        return NULL;
    }
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s != NULL && (Py_ssize_t)strlen(s) != n) {
        PyErr_Format(PyExc_ValueError, "%s contains a NUL character", what);
        return NULL;
    }
    return s;
}

/* Options from a sequence of (key, value) str pairs; NULL with an error set.
 * A NULL/None seq gives a default set. */
static pgspout_options *pgs_options(PyObject *seq)
{
    pgspout_options *o = pgspout_options_new();
    if (o == NULL) {
        PyErr_NoMemory();
        return NULL;
    }
    if (seq == NULL || seq == Py_None)
        return o;
    PyObject *fast = PySequence_Fast(seq, "options must be a sequence of (key, value) pairs");
    if (fast == NULL)
        goto fail;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(fast); i++) {
        PyObject *kv = PySequence_Fast_GET_ITEM(fast, i);
        if (!PyTuple_Check(kv) || PyTuple_GET_SIZE(kv) != 2) {
            PyErr_SetString(PyExc_TypeError, "options must be (key, value) pairs");
            goto fail_fast;
        }
        const char *k = pgs_cstr(PyTuple_GET_ITEM(kv, 0), "option name");
        const char *v = k ? pgs_cstr(PyTuple_GET_ITEM(kv, 1), "option value") : NULL;
        if (v == NULL)
            goto fail_fast;
        int rc = pgspout_options_set(o, k, v);
        if (rc < 0) {
            pgs_raise(rc, pgspout_options_error(o), NULL);
            goto fail_fast;
        }
    }
    Py_DECREF(fast);
    return o;
fail_fast:
    Py_DECREF(fast);
fail:
    pgspout_options_free(o);
    return NULL;
}

/* Parameters from a sequence of str/None: a tuple (immutable while the GIL
 * is released) and an array of pointers into it. */
static int pgs_params(PyObject *seq, PyObject **keep, const char ***out, int *n)
{
    *keep = NULL;
    *out = NULL;
    *n = 0;
    if (seq == NULL || seq == Py_None)
        return 0;
    PyObject *t = PySequence_Tuple(seq);
    if (t == NULL)
        return -1;
    Py_ssize_t len = PyTuple_GET_SIZE(t);
    if (len > 65535) {
        Py_DECREF(t);
        PyErr_SetString(PyExc_ValueError, "too many parameters (at most 65535)");
        return -1;
    }
    const char **p = PyMem_Calloc((size_t)(len ? len : 1), sizeof *p);
    if (p == NULL) {
        Py_DECREF(t);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *o = PyTuple_GET_ITEM(t, i);
        if (o == Py_None)
            continue;
        if (!PyUnicode_Check(o)) {
            PyErr_Format(PyExc_TypeError, "parameter $%zd must be str or None, not %.100s", i + 1,
                         Py_TYPE(o)->tp_name);
            goto fail;
        }
        Py_ssize_t sl;
        p[i] = PyUnicode_AsUTF8AndSize(o, &sl);
        if (p[i] == NULL)
            goto fail;
        if ((Py_ssize_t)strlen(p[i]) != sl) {
            PyErr_Format(PyExc_ValueError, "parameter $%zd contains a NUL character", i + 1);
            goto fail;
        }
    }
    *keep = t;
    *out = p;
    *n = (int)len;
    return 0;
fail:
    PyMem_Free(p);
    Py_DECREF(t);
    return -1;
}

static PyObject *take_cstr(char *s)
{
    if (s == NULL)
        return PyErr_NoMemory();
    PyObject *r = PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
    pgspout_free(s);
    return r;
}

static int pgs_id(PyObject *o, uint64_t *id)
{
    if (!PyLong_Check(o)) {
        PyErr_Format(PyExc_TypeError, "stream id must be int, not %.100s", Py_TYPE(o)->tp_name);
        return -1;
    }
    unsigned long long v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred())
        return -1;
    *id = v;
    return 0;
}

/* ----------------------------------------------------- the Conn methods */

static PgsConn *pgs_conn_new(PyObject *dsn, PyObject *opts)
{
    const char *conninfo = pgs_cstr(dsn, "dsn");
    if (conninfo == NULL || pgs_reentered() || pgs_ready() < 0)
        return NULL;
    pgspout_options *o = pgs_options(opts);
    if (o == NULL)
        return NULL;
    pgspout_conn *c = NULL;
    int rc;
    int hook = pgs_hook_on();
    Py_BEGIN_ALLOW_THREADS
    rc = pgspout_connect_opts(conninfo, o, &c);
    Py_END_ALLOW_THREADS
    pgs_hook_off(hook);
    pgspout_options_free(o);
    /* a signal handler raised (KeyboardInterrupt): that is the answer, even
     * when the connect got through just as it ran */
    if (rc < 0 || PyErr_Occurred()) {
        if (!PyErr_Occurred())
            pgs_raise(rc, c ? pgspout_conn_error(c) : NULL, NULL);
        Py_BEGIN_ALLOW_THREADS
        pgspout_conn_close(c);
        Py_END_ALLOW_THREADS
        return NULL;
    }
    PgsConn *w = PyMem_Calloc(1, sizeof *w);
    if (w == NULL) {
        Py_BEGIN_ALLOW_THREADS
        pgspout_conn_close(c);
        Py_END_ALLOW_THREADS
        PyErr_NoMemory();
        return NULL;
    }
    w->c = c;
    w->pid = getpid();
    return w;
}

/* Close the open stream (if any) and the connection. In a destructor
 * (wait=1) calls on other threads are waited for; close() refuses instead. */
static int pgs_conn_shutdown(PgsConn *w, int wait)
{
    if (w->c == NULL)
        return 0;
    if (pgs_forked(w->pid)) {
        if (w->stream != NULL)
            stream_release(w->stream, 1);
        w->c = NULL;
        return 0;
    }
    if (w->closing) { /* another thread is closing it: wait for that */
        while (w->c != NULL) {
            Py_BEGIN_ALLOW_THREADS
            struct timespec ts = {0, 200000};
            nanosleep(&ts, NULL);
            Py_END_ALLOW_THREADS
        }
        return 0;
    }
    if (w->busy && !wait) {
        pgs_raise(PGSPOUT_EBUSY,
                  "the connection is in use by another thread (cancel its stream first)", NULL);
        return -1;
    }
    /* refuse new calls, then wait for the ones running on other threads */
    w->closing = 1;
    while (w->busy > 0 || w->inflight > 0) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
    if (w->stream != NULL) {
        PgsStream *st = w->stream;
        st->err_code = PGSPOUT_ESTATE;
        stream_release(st, 1);
        st->final_state = PGSPOUT_STATE_CLOSED;
    }
    pgspout_conn *c = w->c;
    w->c = NULL;
    Py_BEGIN_ALLOW_THREADS
    pgspout_conn_close(c);
    Py_END_ALLOW_THREADS
    return 0;
}

static PgsStream *pgs_conn_open(PgsConn *cw, PyObject *sql, PyObject *params, PyObject *opts)
{
    if (pgs_reentered())
        return NULL;
    if (cw->c == NULL || cw->closing) {
        pgs_raise(PGSPOUT_ESTATE, "the connection is closed", NULL);
        return NULL;
    }
    if (pgs_forked(cw->pid)) {
        pgs_raise_forked();
        return NULL;
    }
    if (cw->busy) {
        pgs_raise(PGSPOUT_EBUSY, "the connection is in use by another thread", NULL);
        return NULL;
    }
    if (cw->stream != NULL) {
        pgs_raise(PGSPOUT_EBUSY,
                  "the connection already has an open stream (read it to the end or close it)",
                  NULL);
        return NULL;
    }
    const char *q = pgs_cstr(sql, "sql");
    if (q == NULL || pgs_ready() < 0)
        return NULL;
    PyObject *keep = NULL;
    const char **pv = NULL;
    int np = 0;
    if (pgs_params(params, &keep, &pv, &np) < 0)
        return NULL;
    pgspout_options *o = pgs_options(opts);
    if (o == NULL) {
        PyMem_Free(pv);
        Py_XDECREF(keep);
        return NULL;
    }
    int mode = PGS_MODE_TUPLE;
    const char *rows = pgspout_options_get(o, "rows");
    if (rows && strcmp(rows, "dict") == 0)
        mode = PGS_MODE_DICT;
    else if (rows && strcmp(rows, "json") == 0)
        mode = PGS_MODE_JSON;

    pgspout_conn *c = cw->c;
    pgspout_stream *s = NULL;
    int rc;
    cw->busy++;
    int hook = pgs_hook_on();
    Py_BEGIN_ALLOW_THREADS
    rc = pgspout_stream_open(c, q, np, (const char *const *)pv, o, &s);
    Py_END_ALLOW_THREADS
    pgs_hook_off(hook);
    cw->busy--;
    pgspout_options_free(o);
    PyMem_Free(pv);
    Py_XDECREF(keep);
    /* PGSPOUT_EINTR: a signal handler raised (KeyboardInterrupt) and the
     * core cancelled the query; the handler's exception is the answer, and
     * it stays the answer should the open have finished regardless */
    if (rc < 0 || PyErr_Occurred()) {
        if (PyErr_Occurred()) {
            /* keep it */
        } else if (s != NULL) {
            pgs_raise(rc, pgspout_stream_error(s), pgspout_stream_sqlstate(s));
        } else {
            pgs_raise(rc, pgspout_conn_error(c), NULL);
        }
        if (s != NULL) {
            cw->busy++;
            Py_BEGIN_ALLOW_THREADS
            pgspout_stream_close(s);
            Py_END_ALLOW_THREADS
            cw->busy--;
        }
        return NULL;
    }

    PgsStream *w = PyMem_Calloc(1, sizeof *w);
    if (w == NULL) {
        PyErr_NoMemory();
        goto fail_close;
    }
    w->s = s;
    w->pid = cw->pid;
    w->mode = mode;
    w->final_state = PGSPOUT_STATE_RUNNING;
    int nc = pgspout_stream_ncols(s);
    w->cols = PyMem_Calloc((size_t)(nc > 0 ? nc : 1), sizeof *w->cols);
    w->columns = PyList_New(nc);
    if (w->cols == NULL || w->columns == NULL) {
        PyErr_NoMemory();
        goto fail_w;
    }
    w->ncols = nc;
    for (int i = 0; i < nc; i++) {
        const char *name = pgspout_stream_colname(s, i);
        unsigned int oid = pgspout_stream_coltype(s, i);
        pgs_col *col = &w->cols[i];
        col->name = PyUnicode_DecodeUTF8(name ? name : "", (Py_ssize_t)strlen(name ? name : ""),
                                         "replace");
        if (col->name == NULL)
            goto fail_w;
        PyUnicode_InternInPlace(&col->name);
        col->oid = oid;
        unsigned int elem = array_elem(oid);
        col->fn = conv_scalar(oid);
        col->elem = elem ? conv_scalar(elem) : NULL;
        PyObject *t = Py_BuildValue("(OI)", col->name, oid);
        if (t == NULL)
            goto fail_w;
        PyList_SET_ITEM(w->columns, i, t);
    }
    w->conn = cw;
    cw->stream = w;
    return w;
fail_w:
    w->s = NULL;
    stream_free(w);
fail_close:
    cw->busy++;
    Py_BEGIN_ALLOW_THREADS
    pgspout_stream_close(s);
    Py_END_ALLOW_THREADS
    cw->busy--;
    return NULL;
}
%}

/* ------------------------------------------------------- SWIG declarations */

/* Every wrapper checks for a Python error its C code set. */
%exception {
    $action
    if (PyErr_Occurred())
        SWIG_fail;
}

%noexception PgsConn::~PgsConn;
%noexception PgsStream::~PgsStream;
%rename(Conn) PgsConn;
%rename(Stream) PgsStream;
%newobject PgsConn::open;
%feature("python:tp_iter") PgsStream "PyObject_SelfIter";
%feature("python:tp_iternext") PgsStream "pgs_stream_iternext";

%nodefaultctor PgsStream;

typedef struct PgsConn {} PgsConn;
typedef struct PgsStream {} PgsStream;

%extend PgsConn {
    /* Conn(dsn, [(key, value), ...]) connects (GIL released). */
    PgsConn(PyObject *dsn, PyObject *options) { return pgs_conn_new(dsn, options); }
    ~PgsConn() {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        pgs_conn_shutdown($self, 1);
        PyMem_Free($self);
        PyErr_Clear();
        PyErr_Restore(et, ev, tb);
    }
    /* open(sql, params, options) -> Stream: params are str or None. */
    PgsStream *open(PyObject *sql, PyObject *params, PyObject *options) {
        return pgs_conn_open($self, sql, params, options);
    }
    PyObject *close() {
        if ($self->c != NULL && pgs_reentered())
            return NULL;
        if (pgs_conn_shutdown($self, 0) < 0)
            return NULL;
        PGS_RETURN_NONE;
    }
    PyObject *closed() { return PyBool_FromLong($self->c == NULL || $self->closing); }
    PyObject *ok() {
        return PyBool_FromLong($self->c != NULL && !pgs_forked($self->pid) && pgspout_conn_ok($self->c));
    }
    PyObject *server_version() {
        if ($self->c == NULL)
            return pgs_raise(PGSPOUT_ESTATE, "the connection is closed", NULL);
        if (pgs_forked($self->pid))
            return pgs_raise_forked();
        return PyLong_FromLong(pgspout_conn_server_version($self->c));
    }
    PyObject *error() {
        const char *e = $self->c ? pgspout_conn_error($self->c) : "";
        return PyUnicode_DecodeUTF8(e, (Py_ssize_t)strlen(e), "replace");
    }
    /* Cancel whatever runs on the connection. Any thread. */
    PyObject *cancel() {
        if ($self->c == NULL || $self->closing)
            return pgs_raise(PGSPOUT_ESTATE, "the connection is closed", NULL);
        if (pgs_forked($self->pid))
            return pgs_raise_forked();
        pgspout_conn *c = $self->c;
        int rc;
        $self->inflight++;
        Py_BEGIN_ALLOW_THREADS
        rc = pgspout_conn_cancel(c);
        Py_END_ALLOW_THREADS
        $self->inflight--;
        if (rc < 0)
            return pgs_raise(rc, "cancel failed", NULL);
        PGS_RETURN_NONE;
    }
}

%extend PgsStream {
    ~PgsStream() {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        stream_free($self);
        PyErr_Clear();
        PyErr_Restore(et, ev, tb);
    }
    /* The rows not handed out yet from the current chunk, or the next chunk;
     * None at the end. */
    PyObject *fetch() {
        int rc = stream_fill($self);
        if (rc < 0)
            return NULL;
        if (rc == 0)
            PGS_RETURN_NONE;
        PyObject *rows = $self->chunk;
        if ($self->pos > 0)
            rows = PyList_GetSlice($self->chunk, $self->pos, PyList_GET_SIZE($self->chunk));
        else
            Py_INCREF(rows);
        Py_CLEAR($self->chunk);
        $self->pos = 0;
        return rows;
    }
    PyObject *pause() { return stream_anythread($self, pgspout_stream_pause, "the stream has ended"); }
    PyObject *resume() { return stream_anythread($self, pgspout_stream_resume, "the stream has ended"); }
    PyObject *cancel() { return stream_anythread($self, pgspout_stream_cancel, "the stream has ended"); }
    PyObject *close() {
        if ($self->s != NULL && pgs_reentered())
            return NULL;
        if ($self->busy)
            return pgs_raise(PGSPOUT_EBUSY,
                             "the stream is being read by another thread (cancel it instead)", NULL);
        stream_release($self, 1);
        PGS_RETURN_NONE;
    }
    PyObject *state() {
        if ($self->s != NULL && pgs_forked($self->pid))
            stream_release($self, 1);
        if ($self->s == NULL)
            return PyUnicode_FromString($self->closed ? "closed" : pgspout_state_name($self->final_state));
        pgspout_stream *s = $self->s;
        int st;
        $self->inflight++;
        Py_BEGIN_ALLOW_THREADS
        st = pgspout_stream_state(s);
        Py_END_ALLOW_THREADS
        $self->inflight--;
        return PyUnicode_FromString(pgspout_state_name(st));
    }
    PyObject *stats() {
        if ($self->s != NULL && pgs_forked($self->pid))
            stream_release($self, 1);
        if ($self->s == NULL) {
            if ($self->final_stats == NULL)
                return PyDict_New();
            PyObject *d = PyDict_Copy($self->final_stats);
            if (d && $self->closed) {
                PyObject *cl = PyUnicode_FromString("closed");
                if (cl == NULL || PyDict_SetItemString(d, "state", cl) < 0)
                    Py_CLEAR(d);
                Py_XDECREF(cl);
            }
            return d;
        }
        pgspout_stream *s = $self->s;
        pgspout_stats st;
        int rc;
        memset(&st, 0, sizeof st);
        st.size = sizeof st;
        $self->inflight++;
        Py_BEGIN_ALLOW_THREADS
        rc = pgspout_stream_stats(s, &st);
        Py_END_ALLOW_THREADS
        $self->inflight--;
        if (rc < 0)
            return pgs_raise(rc, "stats failed", NULL);
        return stats_dict(&st);
    }
    /* The server's command tag once the statement completed ("SELECT 3",
     * "ROLLBACK" for a COMMIT of a failed transaction), "" before. An owner
     * call: while another thread is inside a call on the stream, "" (the
     * statement has not completed as far as this thread can know). */
    PyObject *command_tag() {
        if ($self->s != NULL && !$self->busy && !pgs_forked($self->pid)) {
            const char *tag = pgspout_stream_command_tag($self->s);
            return PyUnicode_DecodeUTF8(tag, (Py_ssize_t)strlen(tag), "replace");
        }
        if ($self->s == NULL && $self->cmd_tag != NULL) {
            Py_INCREF($self->cmd_tag);
            return $self->cmd_tag;
        }
        return PyUnicode_FromString("");
    }
    PyObject *columns() {
        Py_INCREF($self->columns);
        return $self->columns;
    }
    PyObject *mode() {
        static const char *const names[] = {"tuple", "dict", "json"};
        return PyUnicode_FromString(names[$self->mode]);
    }
    /* (code, message, sqlstate) of a failed stream, or None. */
    PyObject *error() {
        pgspout_stream *s = $self->s;
        if (s != NULL && pgspout_stream_errcode(s) < 0)
            return Py_BuildValue("(iss)", pgspout_stream_errcode(s), pgspout_stream_error(s),
                                 pgspout_stream_sqlstate(s));
        if ($self->err_code < 0)
            return Py_BuildValue("(iOO)", $self->err_code,
                                 $self->err_msg ? $self->err_msg : Py_None,
                                 $self->err_sqlstate ? $self->err_sqlstate : Py_None);
        PGS_RETURN_NONE;
    }
}

/* ---------------------------------------------------------- module level */
%rename("%(strip:[pgspy_])s", regextarget=1) "^pgspy_";
%inline %{
static PyObject *pgspy_set_error_factory(PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "error factory must be callable");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(G.error_factory, fn);
    PGS_RETURN_NONE;
}

/* Forward the core's log messages to fn(level, message); None stops it.
 * Set once at import, before any stream (the core's hook is not
 * synchronised with running streams). */
static PyObject *pgspy_set_log_function(PyObject *fn)
{
    if (fn != Py_None && !PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "log function must be callable or None");
        return NULL;
    }
    if (fn == Py_None) {
        pgspout_set_log_hook(NULL, NULL);
        Py_CLEAR(pgs_log_target);
    } else {
        Py_INCREF(fn);
        Py_XSETREF(pgs_log_target, fn);
        pgspout_set_log_hook(pgs_log_cb, NULL);
    }
    PGS_RETURN_NONE;
}

/* [(code, name, text), ...] for every negative code the core knows. */
static PyObject *pgspy_error_table(void)
{
    PyObject *list = PyList_New(0);
    for (int code = -1; list != NULL && code >= -1000; code--) {
        const char *name = pgspout_code_name(code);
        if (strcmp(name, "unknown") == 0)
            break;
        PyObject *t = Py_BuildValue("(iss)", code, name, pgspout_strerror(code));
        if (t == NULL || PyList_Append(list, t) < 0)
            Py_CLEAR(list);
        Py_XDECREF(t);
    }
    return list;
}

static PyObject *pgspy_version(void) { return PyUnicode_FromString(pgspout_version()); }
static PyObject *pgspy_version_number(void) { return PyLong_FromLong(pgspout_version_number()); }
static PyObject *pgspy_transport(void) { return PyUnicode_FromString(pgspout_transport()); }
static PyObject *pgspy_strerror(PyObject *code)
{
    long c = PyLong_AsLong(code);
    if (c == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(pgspout_strerror((int)c));
}
static PyObject *pgspy_state_name(int state) { return PyUnicode_FromString(pgspout_state_name(state)); }

static PyObject *pgspy_metrics_text(void) { return take_cstr(pgspout_metrics_prometheus()); }
static PyObject *pgspy_metrics_json(void) { return take_cstr(pgspout_metrics_json()); }
static PyObject *pgspy_metrics_reset(void)
{
    pgspout_metrics_reset();
    PGS_RETURN_NONE;
}

/* ---------------------------------------------------------------- registry */
static PyObject *pgspy_registry_open(PyObject *dsn, PyObject *sql, PyObject *params, PyObject *opts)
{
    const char *conninfo = pgs_cstr(dsn, "dsn");
    const char *q = conninfo ? pgs_cstr(sql, "sql") : NULL;
    if (q == NULL || pgs_reentered())
        return NULL;
    PyObject *keep = NULL;
    const char **pv = NULL;
    int np = 0;
    if (pgs_params(params, &keep, &pv, &np) < 0)
        return NULL;
    pgspout_options *o = pgs_options(opts);
    if (o == NULL) {
        PyMem_Free(pv);
        Py_XDECREF(keep);
        return NULL;
    }
    uint64_t id = 0;
    char *err = NULL;
    int rc;
    int hook = pgs_hook_on();
    Py_BEGIN_ALLOW_THREADS
    rc = pgspout_registry_open(conninfo, q, np, (const char *const *)pv, o, &id, &err);
    Py_END_ALLOW_THREADS
    pgs_hook_off(hook);
    pgspout_options_free(o);
    PyMem_Free(pv);
    Py_XDECREF(keep);
    if (PyErr_Occurred()) { /* a signal handler raised: the core gave up (EINTR) */
        pgspout_free(err);
        if (rc >= 0) { /* ... or had just got through: nobody will know the id */
            Py_BEGIN_ALLOW_THREADS
            pgspout_registry_close(id);
            Py_END_ALLOW_THREADS
        }
        return NULL;
    }
    if (rc < 0) {
        pgs_raise(rc, err, NULL);
        pgspout_free(err);
        return NULL;
    }
    pgspout_free(err);
    return PyLong_FromUnsignedLongLong(id);
}

/* The next chunk as NDJSON text, None at the end. */
static PyObject *pgspy_registry_fetch(PyObject *idobj, int max_rows)
{
    uint64_t id;
    if (pgs_id(idobj, &id) < 0 || pgs_reentered())
        return NULL;
    char *out = NULL, *err = NULL;
    size_t len = 0;
    int nrows = 0, rc;
    int hook = pgs_hook_on();
    Py_BEGIN_ALLOW_THREADS
    rc = pgspout_registry_fetch(id, max_rows, &out, &len, &nrows, &err);
    Py_END_ALLOW_THREADS
    pgs_hook_off(hook);
    if (PyErr_Occurred()) {
        /* a signal handler raised: the core cancelled the stream (EINTR),
         * later fetches raise CancelledError. Should rows have come anyway,
         * they are lost with this exception: cancel the stream so that the
         * gap can never pass for a complete result. */
        if (rc >= 0) {
            Py_BEGIN_ALLOW_THREADS
            pgspout_registry_cancel(id);
            Py_END_ALLOW_THREADS
        }
        pgspout_free(out);
        pgspout_free(err);
        return NULL;
    }
    if (rc < 0) {
        pgs_raise(rc, err, NULL);
        pgspout_free(out);
        pgspout_free(err);
        return NULL;
    }
    pgspout_free(err);
    if (rc == PGSPOUT_DONE || out == NULL) {
        pgspout_free(out);
        PGS_RETURN_NONE;
    }
    PyObject *r = PyUnicode_DecodeUTF8(out, (Py_ssize_t)len, "replace");
    pgspout_free(out);
    return r;
}

typedef int (*pgs_reg_op)(uint64_t);

static PyObject *registry_op(PyObject *idobj, pgs_reg_op op)
{
    uint64_t id;
    if (pgs_id(idobj, &id) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = op(id);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return pgs_raise(rc, NULL, NULL);
    PGS_RETURN_NONE;
}

static PyObject *pgspy_registry_pause(PyObject *id) { return registry_op(id, pgspout_registry_pause); }
static PyObject *pgspy_registry_resume(PyObject *id) { return registry_op(id, pgspout_registry_resume); }
static PyObject *pgspy_registry_cancel(PyObject *id) { return registry_op(id, pgspout_registry_cancel); }
static PyObject *pgspy_registry_close(PyObject *id) { return registry_op(id, pgspout_registry_close); }

static PyObject *pgspy_registry_stats(PyObject *idobj)
{
    uint64_t id;
    if (pgs_id(idobj, &id) < 0)
        return NULL;
    char *js;
    Py_BEGIN_ALLOW_THREADS
    js = pgspout_registry_stats_json(id);
    Py_END_ALLOW_THREADS
    if (js == NULL)
        return pgs_raise(PGSPOUT_ENOTFOUND, "no registry stream with that id", NULL);
    return take_cstr(js);
}

static PyObject *pgspy_registry_list(void)
{
    char *js;
    Py_BEGIN_ALLOW_THREADS
    js = pgspout_registry_list_json();
    Py_END_ALLOW_THREADS
    return take_cstr(js);
}

static PyObject *pgspy_registry_reap(void)
{
    int n;
    Py_BEGIN_ALLOW_THREADS
    n = pgspout_registry_reap();
    Py_END_ALLOW_THREADS
    return PyLong_FromLong(n);
}
%}
