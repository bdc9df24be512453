/* version.c - run-time version, to compare with the header's macros. */
#include "pgspout.h"

const char *pgspout_version(void) { return PGSPOUT_VERSION_STRING; }

int pgspout_version_number(void) { return PGSPOUT_VERSION_NUMBER; }
