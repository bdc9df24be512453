/* pgspout.i - the one SWIG interface for every language: SWIG wraps
 * core/include/pgspout.h, once, at the end of this file. Each language's
 * file comes first, so that its %ignore, %rename, typemaps and %extend
 * classes apply to the header; what every language shares is here. */
%module pgspout

%{
#include "pgspout.h"
%}

/* C callbacks: no binding wraps these setters or their function types
 * directly (a binding installs its own C function where it needs one). */
%ignore pgspout_options_set_filter;
%ignore pgspout_options_set_progress;
%ignore pgspout_set_log_hook;
%ignore pgspout_set_log_record_hook;
%ignore pgspout_log_record;
%ignore pgspout_log_record_fn;
%ignore pgspout_set_interrupt_hook;
%ignore pgspout_log_fn;
%ignore pgspout_interrupt_fn;
%ignore pgspout_filter_fn;
%ignore pgspout_progress_fn;
%ignore pgspout_free;
/* The non-blocking connect returns a handle in progress: each binding that
 * has an event loop drives it its own way (python.i: pgspout.aio). */
%ignore pgspout_connect_start;

/* Text-value parsers: for C callers and the converters in bindings/; the
 * languages get converted values instead. */
%rename("$ignore", regextarget=1) "^pgspout_parse_";
%ignore pgspout_datetime;
%ignore pgspout_interval;
/* The Arrow structs: Python hands them over as PyCapsules (python.i). */
%ignore ArrowSchema;
%ignore ArrowArray;
%ignore ArrowArrayStream;
%ignore pgspout_stream_arrow;
%ignore pgspout_stream_binary;

/* Strings the library allocates: the wrapper copies them into the
 * language's string and frees them with pgspout_free. */
%newobject pgspout_metrics_prometheus;
%newobject pgspout_metrics_json;
%newobject pgspout_stream_stats_json;
%newobject pgspout_registry_stats_json;
%newobject pgspout_registry_list_json;
%typemap(newfree) char * "pgspout_free($1);";

#ifdef SWIGPYTHON
%include "python.i"
#endif
#ifdef SWIGLUA
%include "lua.i"
#endif

%include "pgspout.h"
