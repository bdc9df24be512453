/* convert.h - the hand-written C of the Python binding: PostgreSQL values to
 * Python objects, a whole chunk per call (rows built in C), and handing
 * those rows out one at a time. Everything else of the module is generated
 * by SWIG from core/include/pgspout.h and swig/python.i, which wraps the
 * two structs below as the classes Connection and Stream (-builtin).
 *
 * Every function here runs with the GIL held, except where it says it
 * releases it. */
#ifndef PGSPY_CONVERT_H
#define PGSPY_CONVERT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "pgspout.h"

/* Row shapes (the Python layer's rows= option). */
enum { PGSPY_TUPLE = 0, PGSPY_DICT = 1, PGSPY_JSON = 2 };

/* A connection, shared (counted) by the Connection object and its Stream
 * objects, so that any of them can tell whether a call of another thread
 * runs on the connection with the GIL released. */
typedef struct pgspy_conn {
    pgspout_conn *c; /* NULL once closed or released */
    int refs;        /* the Connection object and its Stream objects */
    int busy;        /* owner calls (open, next chunk, close) running without the GIL */
    int inflight;    /* any-thread calls (cancel) running without the GIL */
} pgspy_conn;

typedef struct pgspy_stream {
    pgspout_stream *s; /* NULL once closed */
    pgspy_conn *conn;  /* counted reference */
    int mode;          /* PGSPY_TUPLE, _DICT or _JSON */
    int ncols;
    int *kinds;         /* pgspout_type_kind of each column */
    int binary;         /* the values come in binary (option binary) */
    PyObject *columns;  /* tuple of (name, type oid) */
    PyObject *rows;     /* the current chunk, converted (list), or NULL */
    Py_ssize_t pos;     /* its next row to hand out */
    int end_state;      /* once closed: PGSPOUT_STATE_CLOSED, or _FAILED after failure */
    PyObject *failure;  /* a conversion error, raised again by every later read */
    pgspout_stats last; /* stats when it was closed */
    char *tag;          /* command tag when it was closed (PyMem) */
} pgspy_stream;

/* Imports what the converters use (datetime, decimal, uuid, json); 0, or -1
 * with an exception set. Called before the first stream opens. */
int pgspy_convert_ready(void);
/* A Stream for s, freshly opened (not closed on failure: NULL with an
 * exception set). */
pgspy_stream *pgspy_stream_new(pgspout_stream *s, int mode);
/* Take the columns of w's stream again (pgspout.aio: a stream from
 * pgspout_stream_start knows them only once it has answered). 0, or -1 with
 * an exception set (w unchanged). */
int pgspy_stream_describe(pgspy_stream *w);
/* Free what pgspy_stream_new allocated (s must be closed already). */
void pgspy_stream_free(pgspy_stream *w);
/* The next row (tp_iternext): NULL at the end, or NULL with an exception.
 * Rows are handed out through pgspout_stream_handout, so that after a
 * cancel or close no row converted before it is ever returned. */
PyObject *pgspy_next(pgspy_stream *w);
/* The rest of the current chunk, or the next chunk, as a list; None at the
 * end. */
PyObject *pgspy_fetch(pgspy_stream *w);

/* arrow.c: the rest of w's rows as a PyCapsule "arrow_array_stream" (the
 * Arrow PyCapsule interface) that keeps owner (the Python Stream) alive. */
PyObject *pgspy_arrow_capsule(pgspy_stream *w, PyObject *owner);

/* aiter.c: pgspout.aio's `async for` over converted chunks; refill() is
 * called for a coroutine when a chunk is used up. */
PyObject *pgspy_rowaiter_new(PyObject *refill);

/* How many owner calls of this thread are counted in some connection's busy
 * (a destructor that runs inside one must not wait for busy to drop). */
extern _Thread_local int pgspy_here;
static inline void pgspy_busy(pgspy_conn *c, int d)
{
    c->busy += d;
    pgspy_here += d;
}

/* Provided by the SWIG wrapper (swig/python.i). */
PyObject *pgspy_raise(int code, const char *msg, const char *sqlstate);
int pgspy_reentered(void);
void pgspy_stream_end(pgspy_stream *w, int state);

#endif
