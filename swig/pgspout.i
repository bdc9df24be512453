/* pgspout.i - the one SWIG interface for every language.
 *
 * Shared declarations live here; each language adds its idiomatic layer and
 * its per-chunk conversion (rows built in C, one call per chunk) in its own
 * file, included below. */
%module pgspout

%{
#include "pgspout.h"
%}

#ifdef SWIGPYTHON
%include "python.i"
#endif
#ifdef SWIGLUA
%include "lua.i"
#endif
