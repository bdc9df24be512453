/* python.i - the Python part of the SWIG interface (included by pgspout.i
 * under SWIGPYTHON), built with `swig -python -builtin` as the private
 * module pgspout._pgspout; the idiomatic API is bindings/python/pgspout.
 *
 * Generated: the module functions of pgspout.h (version, code and state
 * names, metrics, the registry) through the typemaps below, and the classes
 * Connection and Stream (%extend over the structs of
 * bindings/python/convert.h). Hand-written: the rows (convert.c).
 *
 * Threads: the GIL is released around every call that may block (connect,
 * open, reading a chunk, close, cancel, the registry) and never while Python
 * objects are built or errors raised. Pause, resume, state and stats do not
 * block and keep it. Calls that release the GIL are counted on the
 * connection (busy: owner calls; inflight: cancel), so that another thread
 * gets StateError instead of racing, and a handle is freed only after they
 * returned.
 *
 * Signals: the blocking calls set the core's interrupt hook on the main
 * thread (Ctrl-C stops them with the handler's exception); reading a chunk
 * runs Python's signal handlers between short waits (convert.c). */

%{
#include <time.h>
#include "convert.h"

#define PGSPY_CLOSED(what) pgspy_raise(PGSPOUT_ESTATE, "the " what " is closed", NULL)
%}

%include <stdint.i>

/* ---------------------------------------------------------------- errors */
%{
static PyObject *pgspy_error_factory; /* pgspout._make_error */

/* Raise the pgspout.Error subclass for code (message: msg or the code's
 * text; sqlstate or None). Always returns NULL. */
PyObject *pgspy_raise(int code, const char *msg, const char *sqlstate)
{
    if (msg == NULL || *msg == '\0')
        msg = pgspout_strerror(code);
    if (pgspy_error_factory == NULL)
        return PyErr_Format(PyExc_RuntimeError, "pgspout %s: %s", pgspout_code_name(code), msg);
    PyObject *m = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    PyObject *exc = m ? PyObject_CallFunction(pgspy_error_factory, "iNz", code, m,
                                              sqlstate && *sqlstate ? sqlstate : NULL)
                      : NULL;
    if (exc != NULL) {
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
    }
    return NULL;
}
%}

/* A wrapper fails when its C code raised. */
%exception {
    $action
    if (PyErr_Occurred())
        SWIG_fail;
}

/* Negative return codes raise; 0 and up return None. */
%typemap(out) int PGSPY_CODE {
    if ($1 < 0) {
        pgspy_raise($1, NULL, NULL);
        SWIG_fail;
    }
    $result = SWIG_Py_Void();
}
%apply int PGSPY_CODE { int pause, int resume, int cancel };
%apply int PGSPY_CODE { int pgspout_registry_pause, int pgspout_registry_resume };
%apply int PGSPY_CODE { int pgspout_registry_cancel, int pgspout_registry_close };

/* ------------------------------------------------ threads and signals */
%{
_Thread_local int pgspy_here; /* this thread's calls counted in busy (convert.h) */

/* GIL held: wait, GIL released, until no call of another thread counts. */
static void pgspy_wait(const int *count)
{
    while (*count > 0) {
        Py_BEGIN_ALLOW_THREADS
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
        Py_END_ALLOW_THREADS
    }
}

/* > 0 while this thread runs Python code called from inside a core wait (a
 * signal handler, a log message), where the core is not re-entrant. */
static _Thread_local int pgspy_in_hook;

int pgspy_reentered(void)
{
    if (pgspy_in_hook == 0)
        return 0;
    pgspy_raise(PGSPOUT_EBUSY,
                "pgspout was called from a signal handler while this thread waits inside "
                "pgspout; only cancel, pause, resume, state and stats may be called there",
                NULL);
    return 1;
}
%}

%{
static unsigned long pgspy_main_thread; /* threading.main_thread().ident */

/* The core calls it after a signal and every 100 ms while it waits: run
 * Python's signal handlers; one that raised stops the wait (EINTR). */
static int pgspy_interrupt(void *ud)
{
    (void)ud;
    PyGILState_STATE g = PyGILState_Ensure();
    int stop = PyErr_Occurred() != NULL;
    if (!stop) {
        pgspy_in_hook++;
        stop = PyErr_CheckSignals() < 0;
        pgspy_in_hook--;
    }
    PyGILState_Release(g);
    return stop;
}

/* A blocking core call: GIL released, interruptible on the main thread
 * (the only one that runs Python's signal handlers). */
#define PGSPY_BLOCK(call)                                                                          \
    do {                                                                                           \
        int hook_ = PyThread_get_thread_ident() == pgspy_main_thread;                              \
        if (hook_)                                                                                 \
            pgspout_set_interrupt_hook(pgspy_interrupt, NULL);                                     \
        Py_BEGIN_ALLOW_THREADS                                                                     \
        call;                                                                                      \
        Py_END_ALLOW_THREADS                                                                       \
        if (hook_)                                                                                 \
            pgspout_set_interrupt_hook(NULL, NULL);                                                \
    } while (0)
%}

/* Registry calls block on the registry's lock (a fetch of the same id) or
 * on the server: GIL released; open and fetch are interruptible, and when a
 * signal handler raised although the call got through, undo says what to
 * do with the result nobody will see. */
%define PGSPY_NOGIL(fn)
%exception fn {
    Py_BEGIN_ALLOW_THREADS
    $action
    Py_END_ALLOW_THREADS
}
%enddef
PGSPY_NOGIL(pgspout_registry_pause)
PGSPY_NOGIL(pgspout_registry_resume)
PGSPY_NOGIL(pgspout_registry_cancel)
PGSPY_NOGIL(pgspout_registry_close)
PGSPY_NOGIL(pgspout_registry_stats_json)
PGSPY_NOGIL(pgspout_registry_list_json)
PGSPY_NOGIL(pgspout_registry_reap)

%define PGSPY_INTERRUPTIBLE(fn, undo)
%exception fn {
    if (pgspy_reentered())
        SWIG_fail;
    PGSPY_BLOCK($action);
    if (PyErr_Occurred()) {
        if (result >= 0)
            PGSPY_BLOCK(undo);
        SWIG_fail;
    }
}
%enddef
PGSPY_INTERRUPTIBLE(pgspout_registry_open, pgspout_registry_close(*arg6))
PGSPY_INTERRUPTIBLE(pgspout_registry_fetch, pgspout_registry_cancel(arg1))

/* --------------------------------------------------------------- logging */
%{
/* The core's log records to the Python callable (level, message, label,
 * severity, sqlstate; the last three str or None) that pgspout/__init__.py
 * sets: the "pgspout" logger. On whichever thread drives a stream, so it
 * takes the GIL; never while Python shuts down (a registry reaper thread
 * may still log). */
static PyObject *pgspy_log_target;

static PyObject *pgspy_log_str(const char *s)
{
    if (s == NULL)
        Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)strlen(s), "replace");
}

static void pgspy_log(const pgspout_log_record *rec, void *ud)
{
    (void)ud;
#if PY_VERSION_HEX >= 0x030D0000
    if (!Py_IsInitialized() || Py_IsFinalizing())
#else
    if (!Py_IsInitialized() || _Py_IsFinalizing())
#endif
        return;
    PyGILState_STATE g = PyGILState_Ensure();
    if (pgspy_log_target != NULL) {
        PyObject *et, *ev, *tb;
        PyErr_Fetch(&et, &ev, &tb);
        pgspy_in_hook++;
        PyObject *r = PyObject_CallFunction(pgspy_log_target, "iNNNN", rec->level,
                                            pgspy_log_str(rec->message), pgspy_log_str(rec->label),
                                            pgspy_log_str(rec->severity),
                                            pgspy_log_str(rec->sqlstate));
        pgspy_in_hook--;
        if (r == NULL)
            PyErr_WriteUnraisable(pgspy_log_target);
        Py_XDECREF(r);
        PyErr_Restore(et, ev, tb);
    }
    PyGILState_Release(g);
}
%}

/* ------------------------------------------------------------- arguments */
%{
/* UTF-8 of a str without NUL characters, borrowed from o. */
static const char *pgspy_cstr(PyObject *o, const char *what)
{
    Py_ssize_t n;
    if (!PyUnicode_Check(o))
        return PyErr_Format(PyExc_TypeError, "%s must be str, not %.100s", what,
                            Py_TYPE(o)->tp_name),
               NULL;
    const char *s = PyUnicode_AsUTF8AndSize(o, &n);
    if (s != NULL && strlen(s) != (size_t)n)
        return PyErr_Format(PyExc_ValueError, "%s contains a NUL character", what), NULL;
    return s;
}
%}

%typemap(in) const char * {
    if (($1 = ($1_ltype)pgspy_cstr($input, "$1_name")) == NULL)
        SWIG_fail;
}
%typemap(freearg) const char * "";

%{
/* Options from a dict of str: str. */
static pgspout_options *pgspy_options(PyObject *d)
{
    if (!PyDict_Check(d))
        return PyErr_Format(PyExc_TypeError, "options must be a dict"), NULL;
    pgspout_options *o = pgspout_options_new();
    if (o == NULL)
        return (pgspout_options *)PyErr_NoMemory();
    PyObject *k, *v;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &k, &v)) {
        const char *ks = pgspy_cstr(k, "option name");
        const char *vs = ks ? pgspy_cstr(v, "option value") : NULL;
        int rc = vs ? pgspout_options_set(o, ks, vs) : PGSPOUT_EINVAL;
        if (rc < 0) {
            if (vs != NULL)
                pgspy_raise(rc, pgspout_options_error(o), NULL);
            pgspout_options_free(o);
            return NULL;
        }
    }
    return o;
}
%}

%typemap(in) const pgspout_options *opts (pgspout_options *tmp = NULL) {
    if ((tmp = pgspy_options($input)) == NULL)
        SWIG_fail;
    $1 = tmp;
}
%typemap(freearg) const pgspout_options *opts "pgspout_options_free(tmp$argnum);"


%{
/* Parameters from a sequence of str or None, kept in a tuple (*keep) that
 * nobody can change while the GIL is released. */
static int pgspy_params(PyObject *seq, PyObject **keep, int *n, const char ***out)
{
    *n = 0;
    if (seq == Py_None)
        return 0;
    if ((*keep = PySequence_Tuple(seq)) == NULL)
        return -1;
    Py_ssize_t len = PyTuple_GET_SIZE(*keep);
    if (len > 65535)
        return PyErr_Format(PyExc_ValueError, "too many parameters (at most 65535)"), -1;
    if ((*out = PyMem_Calloc((size_t)(len ? len : 1), sizeof **out)) == NULL)
        return PyErr_NoMemory(), -1;
    for (Py_ssize_t i = 0; i < len; i++) {
        PyObject *o = PyTuple_GET_ITEM(*keep, i);
        if (o != Py_None && ((*out)[i] = pgspy_cstr(o, "parameter")) == NULL)
            return -1;
    }
    *n = (int)len;
    return 0;
}
%}

%typemap(in) (int nparams, const char *const *params) (PyObject *keep = NULL, const char **pv = NULL) {
    if (pgspy_params($input, &keep, &$1, &pv) < 0)
        SWIG_fail;
    $2 = ($2_ltype)pv;
}
%typemap(freearg) (int nparams, const char *const *params) {
    PyMem_Free((void *)pv$argnum);
    Py_XDECREF(keep$argnum);
}

/* Out-pointers of the registry. open returns the id, fetch the NDJSON text
 * (None at the end); a negative code raises with the library's message. */
%typemap(out) int pgspout_registry_open, int pgspout_registry_fetch "";
%typemap(in, numinputs=0) uint64_t *id (uint64_t tmp = 0) "$1 = &tmp;"
%typemap(argout) uint64_t *id "if (result >= 0) $result = PyLong_FromUnsignedLongLong(*$1);"
%typemap(in, numinputs=0) (char **out, size_t *len) (char *buf = NULL, size_t n = 0) {
    $1 = &buf;
    $2 = &n;
}
%typemap(argout) (char **out, size_t *len) {
    if (result >= 0 && buf$argnum == NULL)
        $result = SWIG_Py_Void();
    else if (result >= 0)
        $result = PyUnicode_DecodeUTF8(buf$argnum, (Py_ssize_t)n$argnum, "replace");
}
%typemap(freearg) (char **out, size_t *len) "pgspout_free(buf$argnum);"
%typemap(in, numinputs=0) int *nrows (int tmp = 0) "$1 = &tmp;"
%typemap(in, numinputs=0) char **errmsg (char *msg = NULL) "$1 = &msg;"
%typemap(argout) char **errmsg {
    if (result < 0) {
        pgspy_raise(result, msg$argnum, NULL);
        SWIG_fail;
    }
}
%typemap(freearg) char **errmsg "pgspout_free(msg$argnum);"

/* ----------------------------------------------------------- Connection */
%{
static void pgspy_conn_unref(pgspy_conn *w)
{
    if (--w->refs == 0)
        PyMem_Free(w);
}

static pgspy_conn *pgspy_connect(const char *dsn, const pgspout_options *o)
{
    pgspout_conn *c = NULL;
    int rc = PGSPOUT_EINVAL;
    if (pgspy_reentered() || pgspy_convert_ready() < 0)
        return NULL;
    PGSPY_BLOCK(rc = pgspout_connect_opts(dsn, o, &c));
    /* a signal handler that raised is the answer, even if the connect got through */
    pgspy_conn *w = rc < 0 || PyErr_Occurred() ? NULL : PyMem_Calloc(1, sizeof *w);
    if (w == NULL) {
        if (rc < 0 && !PyErr_Occurred())
            pgspy_raise(rc, c ? pgspout_conn_error(c) : NULL, NULL);
        else if (!PyErr_Occurred())
            PyErr_NoMemory();
        Py_BEGIN_ALLOW_THREADS
        pgspout_conn_close(c);
        Py_END_ALLOW_THREADS
        return NULL;
    }
    w->c = c;
    w->refs = 1;
    return w;
}
%}

%{
/* close(): the open stream ends too (StateError "connection was closed"). */
static PyObject *pgspy_close_conn(pgspy_conn *w)
{
    pgspout_conn *c = w->c;
    if (c != NULL && w->busy)
        return pgspy_raise(PGSPOUT_EBUSY,
                           "the connection is in use by another thread (cancel its stream first)",
                           NULL);
    w->c = NULL;
    pgspy_busy(w, 1);
    pgspy_wait(&w->inflight);
    Py_BEGIN_ALLOW_THREADS
    pgspout_conn_close(c);
    Py_END_ALLOW_THREADS
    pgspy_busy(w, -1);
    Py_RETURN_NONE;
}

/* The garbage collector's close: a stream still open keeps the connection
 * until it ends (pgspout_conn_release), whatever the order. */
static void pgspy_conn_drop(pgspy_conn *w)
{
    pgspout_conn *c = w->c;
    w->c = NULL;
    if (pgspy_here == 0) /* else this thread is inside a call (a signal handler) */
        pgspy_wait(&w->busy);
    pgspy_wait(&w->inflight);
    Py_BEGIN_ALLOW_THREADS
    pgspout_conn_release(c);
    Py_END_ALLOW_THREADS
    pgspy_conn_unref(w);
}

/* cancel() of a stream (s) or a connection (c): any thread, GIL released. */
static int pgspy_cancel(pgspy_conn *w, pgspout_stream *s, pgspout_conn *c)
{
    int rc = PGSPOUT_ESTATE;
    if (s == NULL && c == NULL)
        return rc;
    w->inflight++;
    Py_BEGIN_ALLOW_THREADS
    rc = s ? pgspout_stream_cancel(s) : pgspout_conn_cancel(c);
    Py_END_ALLOW_THREADS
    w->inflight--;
    return rc;
}
%}

/* --------------------------------------------------------------- Stream */
%{
static pgspy_stream *pgspy_open(pgspy_conn *cw, const char *sql, int np, const char *const *pv,
                                const pgspout_options *o, int mode)
{
    pgspout_stream *s = NULL;
    int rc = PGSPOUT_EINVAL;
    if (cw->c == NULL)
        return (pgspy_stream *)PGSPY_CLOSED("connection");
    if (cw->busy)
        return (pgspy_stream *)pgspy_raise(PGSPOUT_EBUSY,
                                           "the connection is in use by another thread", NULL);
    if (pgspy_reentered() || pgspy_convert_ready() < 0)
        return NULL;
    pgspy_busy(cw, 1);
    PGSPY_BLOCK(rc = pgspout_stream_open(cw->c, sql, np, pv, o, &s));
    pgspy_stream *w = rc < 0 || PyErr_Occurred() ? NULL : pgspy_stream_new(s, mode);
    if (w == NULL) {
        if (!PyErr_Occurred())
            pgspy_raise(rc, s ? pgspout_stream_error(s) : pgspout_conn_error(cw->c),
                        s ? pgspout_stream_sqlstate(s) : NULL);
        Py_BEGIN_ALLOW_THREADS
        pgspout_stream_close(s);
        Py_END_ALLOW_THREADS
    } else {
        w->conn = cw;
        cw->refs++;
    }
    pgspy_busy(cw, -1);
    return w;
}
%}

%{
/* Close the core stream, keeping its stats and command tag. */
void pgspy_stream_end(pgspy_stream *w, int state)
{
    pgspout_stream *s = w->s;
    if (s == NULL)
        return;
    const char *tag = pgspout_stream_command_tag(s);
    w->last.size = sizeof w->last;
    pgspout_stream_stats(s, &w->last);
    if ((w->tag = PyMem_Malloc(strlen(tag) + 1)) != NULL)
        strcpy(w->tag, tag);
    w->s = NULL;
    w->end_state = state;
    Py_CLEAR(w->rows);
    pgspy_busy(w->conn, 1);
    pgspy_wait(&w->conn->inflight);
    Py_BEGIN_ALLOW_THREADS
    pgspout_stream_close(s);
    Py_END_ALLOW_THREADS
    pgspy_busy(w->conn, -1);
}

static PyObject *pgspy_close_stream(pgspy_stream *w)
{
    if (w->s != NULL && pgspy_reentered())
        return NULL;
    if (w->s != NULL && w->conn->busy)
        return pgspy_raise(PGSPOUT_EBUSY,
                           "the stream is being read by another thread (cancel it instead)", NULL);
    pgspy_stream_end(w, PGSPOUT_STATE_CLOSED);
    Py_RETURN_NONE;
}

static void pgspy_stream_drop(pgspy_stream *w)
{
    if (pgspy_here == 0)
        pgspy_wait(&w->conn->busy);
    pgspy_stream_end(w, PGSPOUT_STATE_CLOSED);
    pgspy_conn_unref(w->conn);
    pgspy_stream_free(w);
}
%}

%{
/* The stats dict, from the core's table of fields (-1: unknown). */
static PyObject *pgspy_stats(pgspy_stream *w)
{
    pgspout_stats now = PGSPOUT_STATS_INIT;
    if (w->s != NULL && pgspout_stream_stats(w->s, &now) < 0)
        return pgspy_raise(PGSPOUT_EINVAL, "stats failed", NULL);
    const char *st = w->s ? NULL : pgspout_state_name(w->end_state);
    const char *base = (const char *)(w->s ? &now : &w->last);
    int n;
    const pgspout_stats_field *f = pgspout_stats_fields(&n);
    PyObject *d = PyDict_New();
    for (int i = 0; d != NULL && i < n; i++) {
        const void *p = base + f[i].offset;
        PyObject *v = f[i].type == PGSPOUT_FIELD_INT      ? PyLong_FromLong(*(const int *)p)
                      : f[i].type == PGSPOUT_FIELD_UINT64 ? PyLong_FromUnsignedLongLong(*(const uint64_t *)p)
                      : f[i].type == PGSPOUT_FIELD_INT64  ? PyLong_FromLongLong(*(const int64_t *)p)
                      : f[i].type == PGSPOUT_FIELD_DOUBLE ? PyFloat_FromDouble(*(const double *)p)
                      : PyUnicode_FromString(st ? st : pgspout_state_name(*(const int *)p));
        if (v == NULL || PyDict_SetItemString(d, f[i].name, v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(v);
    }
    return d;
}
%}

/* ------------------------------------------------- the event loop (aio) */
%{
/* pgspout.aio: the non-blocking connect and open (pgspout_connect_start,
 * pgspout_stream_start) and their polls. Nothing here waits: the waits are
 * the event loop's, on the descriptors these calls name. The GIL stays held
 * except around pgspout_stream_poll, which reads and copies a chunk. */
static pgspy_conn *pgspy_connect_start(const char *dsn, const pgspout_options *o)
{
    pgspout_conn *c = NULL;
    if (pgspy_reentered() || pgspy_convert_ready() < 0)
        return NULL;
    int rc = pgspout_connect_start(dsn, o, &c);
    pgspy_conn *w = rc < 0 ? NULL : PyMem_Calloc(1, sizeof *w);
    if (w == NULL) {
        if (rc < 0)
            pgspy_raise(rc, c ? pgspout_conn_error(c) : NULL, NULL);
        else
            PyErr_NoMemory();
        pgspout_conn_close(c);
        return NULL;
    }
    w->c = c;
    w->refs = 1;
    return w;
}

/* (connected, fd, want_write, wait_ms); a failed connect raises. */
static PyObject *pgspy_connect_poll(pgspy_conn *w)
{
    int fd = -1, ww = 0, ms = -1;
    if (w->c == NULL)
        return PGSPY_CLOSED("connection");
    int rc = pgspout_conn_poll(w->c, &fd, &ww, &ms);
    if (rc < 0)
        return pgspy_raise(rc, pgspout_conn_error(w->c), NULL);
    return Py_BuildValue("(Oiii)", rc == PGSPOUT_OK ? Py_True : Py_False, fd, ww, ms);
}

static pgspy_stream *pgspy_start(pgspy_conn *cw, const char *sql, int np, const char *const *pv,
                                 const pgspout_options *o, int mode)
{
    pgspout_stream *s = NULL;
    if (cw->c == NULL)
        return (pgspy_stream *)PGSPY_CLOSED("connection");
    if (cw->busy)
        return (pgspy_stream *)pgspy_raise(PGSPOUT_EBUSY,
                                           "the connection is in use by another thread", NULL);
    if (pgspy_reentered() || pgspy_convert_ready() < 0)
        return NULL;
    int rc = pgspout_stream_start(cw->c, sql, np, pv, o, &s);
    pgspy_stream *w = rc < 0 ? NULL : pgspy_stream_new(s, mode);
    if (w == NULL) {
        if (!PyErr_Occurred())
            pgspy_raise(rc, s ? pgspout_stream_error(s) : pgspout_conn_error(cw->c),
                        s ? pgspout_stream_sqlstate(s) : NULL);
        pgspout_stream_close(s);
        return NULL;
    }
    w->conn = cw;
    cw->refs++;
    return w;
}

/* pgspout_stream_poll: 0 rows ready, 1 done, 2 wait for the descriptor,
 * 3 paused; a failed stream raises. The columns are taken once known. */
static PyObject *pgspy_poll(pgspy_stream *w)
{
    pgspout_stream *s = w->s;
    int rc;
    if (s == NULL)
        return pgspy_raise(PGSPOUT_ESTATE, "the stream is closed", NULL);
    if (pgspy_reentered())
        return NULL;
    if (w->conn->busy)
        return pgspy_raise(PGSPOUT_EBUSY, "the stream is being read by another thread", NULL);
    pgspy_busy(w->conn, 1);
    Py_BEGIN_ALLOW_THREADS
    rc = pgspout_stream_poll(s);
    Py_END_ALLOW_THREADS
    pgspy_busy(w->conn, -1);
    if (rc < 0)
        return pgspy_raise(rc, pgspout_stream_error(s), pgspout_stream_sqlstate(s));
    if ((rc == PGSPOUT_OK || rc == PGSPOUT_DONE) && w->ncols != pgspout_stream_ncols(s) &&
        pgspy_stream_describe(w) < 0)
        return NULL;
    return PyLong_FromLong(rc);
}
%}

%rename(Connection) pgspy_conn;
%rename(Stream) pgspy_stream;
%nodefaultctor pgspy_stream;
%newobject pgspy_conn::open;
%newobject pgspy_conn::start;
%newobject connect_start;
%noexception pgspy_conn::~pgspy_conn;
%noexception pgspy_stream::~pgspy_stream;
%feature("python:tp_iter") pgspy_stream "PyObject_SelfIter";
%feature("python:slot", "tp_iternext", functype="iternextfunc") pgspy_stream::__next__;

typedef struct pgspy_conn {} pgspy_conn;
typedef struct pgspy_stream {} pgspy_stream;

%extend pgspy_conn {
    pgspy_conn(const char *conninfo, const pgspout_options *opts) {
        return pgspy_connect(conninfo, opts);
    }
    ~pgspy_conn() { pgspy_conn_drop($self); }
    pgspy_stream *open(const char *sql, int nparams, const char *const *params,
                       const pgspout_options *opts, int mode) {
        return pgspy_open($self, sql, nparams, params, opts, mode);
    }
    PyObject *close() { return pgspy_close_conn($self); }
    int cancel() { return pgspy_cancel($self, NULL, $self->c); }
    /* pgspout.aio */
    pgspy_stream *start(const char *sql, int nparams, const char *const *params,
                        const pgspout_options *opts, int mode) {
        return pgspy_start($self, sql, nparams, params, opts, mode);
    }
    PyObject *connect_poll() { return pgspy_connect_poll($self); }
    PyObject *closed() { return PyBool_FromLong($self->c == NULL); }
    PyObject *ok() { return PyBool_FromLong($self->c != NULL && pgspout_conn_ok($self->c)); }
    PyObject *server_version() {
        if ($self->c == NULL)
            return PGSPY_CLOSED("connection");
        return PyLong_FromLong(pgspout_conn_server_version($self->c));
    }
}

%extend pgspy_stream {
    ~pgspy_stream() { pgspy_stream_drop($self); }
    PyObject *__next__() { return pgspy_next($self); }
    PyObject *fetch() { return pgspy_fetch($self); }
    int pause() { return $self->s ? pgspout_stream_pause($self->s) : PGSPOUT_ESTATE; }
    int resume() { return $self->s ? pgspout_stream_resume($self->s) : PGSPOUT_ESTATE; }
    int cancel() { return pgspy_cancel($self->conn, $self->s, NULL); }
    PyObject *close() { return pgspy_close_stream($self); }
    const char *state() {
        return pgspout_state_name($self->s ? pgspout_stream_state($self->s) : $self->end_state);
    }
    PyObject *stats() { return pgspy_stats($self); }
    /* "" while another thread reads the stream (the statement has not
     * completed as far as this thread can know) */
    const char *command_tag() {
        if ($self->s == NULL)
            return $self->tag ? $self->tag : "";
        return $self->conn->busy ? "" : pgspout_stream_command_tag($self->s);
    }
    PyObject *columns() {
        Py_INCREF($self->columns);
        return $self->columns;
    }
    PyObject *arrow_capsule(PyObject *owner) { return pgspy_arrow_capsule($self, owner); }
    PyObject *binary() { return PyBool_FromLong($self->binary); }
    /* pgspout.aio */
    PyObject *poll() { return pgspy_poll($self); }
    int fileno() { return $self->s ? pgspout_stream_socket($self->s) : -1; }
    int wait_ms() { return $self->s ? pgspout_stream_wait_ms($self->s) : -1; }
}

/* ---------------------------------------------------------- module level */
%inline %{
/* pgspout/__init__.py: the exception factory, the log function (None
 * stops logging; set at import, before any stream) and the main thread. */
static PyObject *set_error_factory(PyObject *fn)
{
    Py_INCREF(fn);
    Py_XSETREF(pgspy_error_factory, fn);
    Py_RETURN_NONE;
}
static PyObject *set_log_function(PyObject *fn)
{
    PyObject *target = fn == Py_None ? NULL : fn;
    Py_XINCREF(target);
    Py_XSETREF(pgspy_log_target, target);
    pgspout_set_log_record_hook(target ? pgspy_log : NULL, NULL);
    Py_RETURN_NONE;
}
static void set_main_thread(unsigned long ident) { pgspy_main_thread = ident; }
/* pgspout.aio: `async for` over the lists fetch() returns (aiter.c) */
static PyObject *aio_rows(PyObject *refill) { return pgspy_rowaiter_new(refill); }
/* pgspout.aio: a Connection whose connect is in progress (connect_poll) */
static pgspy_conn *connect_start(const char *conninfo, const pgspout_options *opts)
{
    return pgspy_connect_start(conninfo, opts);
}
%}

/* Module functions: pgspout_version() is version(); handles, options, rows
 * and stats are the classes' business. */
%rename("%(strip:[pgspout_])s") "";
%rename("$ignore", regextarget=1) "^pgspout_(options|conn|stream|chunk|row)_";
%ignore pgspout_connect;
%ignore pgspout_connect_opts;
%ignore pgspout_stats;
%ignore pgspout_stats_field;
%ignore pgspout_stats_fields;

/* ================================================================ pools
 * pgspout.Pool (issue 14): a block of its own. _c.Pool wraps an owned
 * pgspout_pool; acquire() hands out an ordinary _c.Connection whose close()
 * and garbage collection give the connection back (pgspout_conn_close and
 * _release on a pooled connection do), and Connection.release() gives up
 * the handle while a stream still runs on it (back at the stream's end).
 *
 * Threads: acquire and maintain run without the GIL, counted in inflight;
 * close() first makes the pool unreachable (p = NULL, under the GIL), then
 * stops the acquire calls still waiting - their interrupt hook sees
 * `closing` within 100 ms (EINTR) - and waits for inflight to drain before
 * pgspout_pool_close, so no call ever starts on a closed pool. On the main
 * thread the hook also runs Python's signal handlers (Ctrl-C). */
%{
#include <stdatomic.h>

typedef struct pgspy_pool {
    pgspout_pool *p;    /* NULL once closed */
    int inflight;       /* calls running without the GIL (GIL-protected count) */
    atomic_int closing; /* close() is waiting for them: acquire gives up */
} pgspy_pool;

static int pgspy_pl_hook(void *ud)
{
    pgspy_pool *w = (pgspy_pool *)ud;
    if (atomic_load(&w->closing))
        return 1;
    return PyThread_get_thread_ident() == pgspy_main_thread ? pgspy_interrupt(NULL) : 0;
}

static pgspy_pool *pgspy_pl_new(const char *conninfo, const pgspout_options *o)
{
    pgspout_pool *p = NULL;
    if (conninfo == NULL)
        return (pgspy_pool *)pgspy_raise(PGSPOUT_EINVAL, "dsn must not be None", NULL);
    int rc = pgspout_pool_new(conninfo, o, &p);
    if (rc < 0)
        return (pgspy_pool *)pgspy_raise(
            rc, rc == PGSPOUT_EVALUE ? "min_idle must not be above max_size" : NULL, NULL);
    pgspy_pool *w = PyMem_Calloc(1, sizeof *w);
    if (w == NULL) {
        pgspout_pool_close(p);
        return (pgspy_pool *)PyErr_NoMemory();
    }
    w->p = p;
    return w;
}

/* A pooled connection as a _c.Connection (timeout_ms: -1 = the pool's
 * acquire_timeout, 0 = no wait). */
static pgspy_conn *pgspy_pl_acquire(pgspy_pool *w, long long timeout_ms)
{
    pgspout_pool *p = w->p;
    pgspout_conn *c = NULL;
    int rc = PGSPOUT_EINVAL;
    if (p == NULL)
        return (pgspy_conn *)PGSPY_CLOSED("pool");
    if (timeout_ms < -1)
        return (pgspy_conn *)pgspy_raise(PGSPOUT_EINVAL, "timeout must not be negative", NULL);
    if (pgspy_reentered() || pgspy_convert_ready() < 0)
        return NULL;
    w->inflight++;
    Py_BEGIN_ALLOW_THREADS
    pgspout_set_interrupt_hook(pgspy_pl_hook, w);
    rc = pgspout_pool_acquire(p, (int64_t)timeout_ms, &c);
    pgspout_set_interrupt_hook(NULL, NULL);
    Py_END_ALLOW_THREADS
    pgspy_conn *cw = NULL;
    if (rc == PGSPOUT_OK && !PyErr_Occurred()) {
        cw = PyMem_Calloc(1, sizeof *cw);
        if (cw == NULL)
            PyErr_NoMemory();
    }
    if (cw == NULL) {
        if (PyErr_Occurred())
            ; /* a signal handler's exception, or no memory */
        else if (rc == PGSPOUT_ETIMEOUT)
            pgspy_raise(rc, "pool exhausted: no connection came free within the acquire timeout",
                        NULL);
        else if (rc == PGSPOUT_ESTATE || (rc == PGSPOUT_EINTR && atomic_load(&w->closing)))
            PGSPY_CLOSED("pool");
        else
            pgspy_raise(rc, c ? pgspout_conn_error(c) : NULL, NULL);
        if (c != NULL) {
            Py_BEGIN_ALLOW_THREADS
            pgspout_pool_release(p, c); /* a failed connect holds a place too */
            Py_END_ALLOW_THREADS
        }
    } else {
        cw->c = c;
        cw->refs = 1;
    }
    w->inflight--;
    return cw;
}

/* An idle connection as a _c.Connection, or NULL without an exception (None:
 * pgspout_pool_acquire_idle found none; no connect, no wait, so the GIL is
 * kept). */
static pgspy_conn *pgspy_pl_acquire_idle(pgspy_pool *w)
{
    pgspout_conn *c = NULL;
    if (w->p == NULL)
        return (pgspy_conn *)PGSPY_CLOSED("pool");
    int rc = pgspout_pool_acquire_idle(w->p, &c);
    if (rc == PGSPOUT_AGAIN)
        return NULL;
    if (rc == PGSPOUT_ESTATE)
        return (pgspy_conn *)PGSPY_CLOSED("pool");
    if (rc < 0)
        return (pgspy_conn *)pgspy_raise(rc, NULL, NULL);
    pgspy_conn *cw = PyMem_Calloc(1, sizeof *cw);
    if (cw == NULL) {
        pgspout_pool_release(w->p, c);
        return (pgspy_conn *)PyErr_NoMemory();
    }
    cw->c = c;
    cw->refs = 1;
    return cw;
}

static PyObject *pgspy_pl_maintain(pgspy_pool *w)
{
    pgspout_pool *p = w->p;
    int rc;
    if (p == NULL)
        return PGSPY_CLOSED("pool");
    w->inflight++;
    Py_BEGIN_ALLOW_THREADS
    pgspout_set_interrupt_hook(pgspy_pl_hook, w);
    rc = pgspout_pool_maintain(p);
    pgspout_set_interrupt_hook(NULL, NULL);
    Py_END_ALLOW_THREADS
    w->inflight--;
    if (PyErr_Occurred())
        return NULL;
    if (rc < 0)
        return pgspy_raise(rc, rc == PGSPOUT_ECONNECT ? "could not open a pool connection" : NULL,
                           NULL);
    Py_RETURN_NONE;
}

static PyObject *pgspy_pl_stats(pgspy_pool *w)
{
    pgspout_pool_stats st = PGSPOUT_POOL_STATS_INIT;
    if (w->p == NULL)
        return PGSPY_CLOSED("pool");
    pgspout_pool_stats_get(w->p, &st); /* brief lock, no I/O: GIL kept */
    return Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:K,s:K,s:K,s:K,s:K,s:L}", "max_size", st.max_size,
                         "total", st.total, "idle", st.idle, "in_use", st.in_use, "waiting",
                         st.waiting, "acquires", (unsigned long long)st.acquires, "waits",
                         (unsigned long long)st.waits, "timeouts",
                         (unsigned long long)st.timeouts, "created",
                         (unsigned long long)st.created, "closed", (unsigned long long)st.closed,
                         "acquire_timeout_ms", (long long)st.acquire_timeout_ms);
}

static void pgspy_pl_shut(pgspy_pool *w)
{
    pgspout_pool *p = w->p;
    if (p == NULL)
        return;
    w->p = NULL;
    atomic_store(&w->closing, 1);
    pgspy_wait(&w->inflight);
    Py_BEGIN_ALLOW_THREADS
    pgspout_pool_close(p);
    Py_END_ALLOW_THREADS
}

%}

%rename(Pool) pgspy_pool;
%newobject pgspy_pool::acquire;
%newobject pgspy_pool::acquire_idle;
%noexception pgspy_pool::~pgspy_pool;
typedef struct pgspy_pool {} pgspy_pool;

%extend pgspy_pool {
    pgspy_pool(const char *conninfo, const pgspout_options *opts) {
        return pgspy_pl_new(conninfo, opts);
    }
    ~pgspy_pool() {
        pgspy_pl_shut($self);
        PyMem_Free($self);
    }
    pgspy_conn *acquire(long long timeout_ms) { return pgspy_pl_acquire($self, timeout_ms); }
    pgspy_conn *acquire_idle() { return pgspy_pl_acquire_idle($self); }
    PyObject *maintain() { return pgspy_pl_maintain($self); }
    PyObject *stats() { return pgspy_pl_stats($self); }
    PyObject *close() {
        pgspy_pl_shut($self);
        Py_RETURN_NONE;
    }
    PyObject *closed() { return PyBool_FromLong($self->p == NULL); }
}

/* Connection.release(): let go of the handle; a stream still open on it
 * keeps the connection until it ends, then it is closed - or given back to
 * its pool. (The body is here: this %extend joins the class declared
 * above, whose methods are emitted before this file's later %{ %} code.) */
%extend pgspy_conn {
    PyObject *release() {
        pgspout_conn *c = $self->c;
        if (c != NULL && $self->busy)
            return pgspy_raise(PGSPOUT_EBUSY, "the connection is in use by another thread", NULL);
        $self->c = NULL;
        pgspy_busy($self, 1);
        pgspy_wait(&$self->inflight);
        Py_BEGIN_ALLOW_THREADS
        pgspout_conn_release(c);
        Py_END_ALLOW_THREADS
        pgspy_busy($self, -1);
        Py_RETURN_NONE;
    }
}

/* the C pool API is the class above's business */
%ignore pgspout_pool_new;
%ignore pgspout_pool_acquire;
%ignore pgspout_pool_release;
%ignore pgspout_pool_maintain;
%ignore pgspout_pool_stats;
%ignore pgspout_pool_stats_get;
%ignore pgspout_pool_close;
%ignore pgspout_registry_pool;
%ignore pgspout_registry_open_pool;
/* ============================================================ end pools */
/* ------------------------------- snapshots and partition plans (issue 16)
 * Snapshot: a pgspout_snapshot holder (pgspout/partitions.py wraps it);
 * plan_json(conn, spec): pgspout_plan_make + pgspout_plan_json for a spec
 * dict of the pgspout_plan_spec fields (lists of str for columns, params
 * (str or None) and bounds; str or None for where, key and snapshot). The
 * plan's partitions are opened as ordinary streams with option snapshot. */
%{
typedef struct pgspy_snapshot {
    pgspout_snapshot *snap;
} pgspy_snapshot;

static pgspy_snapshot *pgspy_snap_export(const char *dsn, const pgspout_options *o)
{
    pgspout_snapshot *snap = NULL;
    int rc = PGSPOUT_EINVAL;
    if (pgspy_reentered())
        return NULL;
    PGSPY_BLOCK(rc = pgspout_snapshot_export(dsn, o, &snap));
    pgspy_snapshot *w = rc < 0 || PyErr_Occurred() ? NULL : PyMem_Calloc(1, sizeof *w);
    if (w == NULL) {
        if (rc < 0 && !PyErr_Occurred())
            pgspy_raise(rc, snap ? pgspout_snapshot_error(snap) : NULL, NULL);
        else if (!PyErr_Occurred())
            PyErr_NoMemory();
        Py_BEGIN_ALLOW_THREADS
        pgspout_snapshot_close(snap);
        Py_END_ALLOW_THREADS
        return NULL;
    }
    w->snap = snap;
    return w;
}

static void pgspy_snap_release(pgspy_snapshot *w)
{
    pgspout_snapshot *snap = w->snap;
    w->snap = NULL;
    Py_BEGIN_ALLOW_THREADS
    pgspout_snapshot_close(snap);
    Py_END_ALLOW_THREADS
}

/* spec[key] as str (NULL for a missing key or None; -1 on a wrong type). */
static int pgspy_spec_str(PyObject *spec, const char *key, const char **out)
{
    PyObject *v = PyDict_GetItemString(spec, key);
    *out = NULL;
    if (v == NULL || v == Py_None)
        return 0;
    return (*out = pgspy_cstr(v, key)) == NULL ? -1 : 0;
}

static PyObject *pgspy_plan_json(pgspy_conn *cw, PyObject *spec)
{
    if (!PyDict_Check(spec))
        return PyErr_Format(PyExc_TypeError, "spec must be a dict");
    if (cw->c == NULL)
        return PGSPY_CLOSED("connection");
    if (cw->busy)
        return pgspy_raise(PGSPOUT_EBUSY, "the connection is in use by another thread", NULL);
    if (pgspy_reentered())
        return NULL;
    pgspout_plan_spec ps = PGSPOUT_PLAN_SPEC_INIT;
    PyObject *keep[3] = {NULL, NULL, NULL};
    const char **lists[3] = {NULL, NULL, NULL};
    int counts[3] = {0, 0, 0};
    static const char *const list_keys[] = {"columns", "params", "bounds"};
    PyObject *np = PyDict_GetItemString(spec, "npartitions");
    PyObject *result = NULL;
    if (pgspy_spec_str(spec, "table", &ps.table) < 0 || pgspy_spec_str(spec, "where", &ps.where) < 0 ||
        pgspy_spec_str(spec, "key", &ps.key) < 0 ||
        pgspy_spec_str(spec, "snapshot", &ps.snapshot) < 0)
        goto out;
    if (np != NULL && np != Py_None) {
        long n = PyLong_AsLong(np);
        if (n == -1 && PyErr_Occurred())
            goto out;
        ps.npartitions = n < 0 || n > 1000000 ? -1 : (int)n;
    }
    for (int i = 0; i < 3; i++) {
        PyObject *v = PyDict_GetItemString(spec, list_keys[i]);
        if (v != NULL && pgspy_params(v, &keep[i], &counts[i], &lists[i]) < 0)
            goto out;
    }
    ps.ncolumns = counts[0];
    ps.columns = lists[0];
    ps.nparams = counts[1];
    ps.params = lists[1];
    ps.nbounds = counts[2];
    ps.bounds = lists[2];
    pgspout_plan *plan = NULL;
    int rc = PGSPOUT_EINVAL;
    pgspy_busy(cw, 1);
    PGSPY_BLOCK(rc = pgspout_plan_make(cw->c, &ps, &plan));
    pgspy_busy(cw, -1);
    if (!PyErr_Occurred()) {
        if (rc < 0)
            pgspy_raise(rc, pgspout_conn_error(cw->c), NULL);
        else {
            char *json = pgspout_plan_json(plan);
            result = json ? PyUnicode_FromString(json) : PyErr_NoMemory();
            pgspout_free(json);
        }
    }
    pgspout_plan_free(plan);
out:
    for (int i = 0; i < 3; i++) {
        PyMem_Free((void *)lists[i]);
        Py_XDECREF(keep[i]);
    }
    return result;
}
%}

%rename(Snapshot) pgspy_snapshot;
%noexception pgspy_snapshot::~pgspy_snapshot;
typedef struct pgspy_snapshot {} pgspy_snapshot;
%extend pgspy_snapshot {
    pgspy_snapshot(const char *conninfo, const pgspout_options *opts) {
        return pgspy_snap_export(conninfo, opts);
    }
    ~pgspy_snapshot() {
        pgspy_snap_release($self);
        PyMem_Free($self);
    }
    /* the id, "" once closed */
    const char *id() { return $self->snap ? pgspout_snapshot_id($self->snap) : ""; }
    PyObject *ok() { return PyBool_FromLong($self->snap && pgspout_snapshot_ok($self->snap)); }
    PyObject *close() {
        pgspy_snap_release($self);
        Py_RETURN_NONE;
    }
}
%inline %{
static PyObject *plan_json(pgspy_conn *conn, PyObject *spec) { return pgspy_plan_json(conn, spec); }
%}
%rename("$ignore", regextarget=1) "^pgspout_(snapshot|plan)_";
%ignore pgspout_plan_spec;
