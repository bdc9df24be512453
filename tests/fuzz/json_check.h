/* json_check.h - strict checkers for the fuzz targets (written from RFC 8259
 * and Unicode 15 table 3-7, independently of the code under test). */
#ifndef PGSPOUT_FUZZ_JSON_CHECK_H
#define PGSPOUT_FUZZ_JSON_CHECK_H

#include <stddef.h>

/* Length of the well-formed UTF-8 sequence at s (1..4), or 0 if the bytes at
 * s do not start one (ill-formed, truncated, overlong, surrogate, > 10FFFF). */
size_t fz_utf8_seq(const unsigned char *s, size_t n);
/* 1 if all of s is well-formed UTF-8. */
int fz_utf8_valid(const unsigned char *s, size_t n);

/* 1 if s[0..n) is exactly one JSON value, optionally surrounded by JSON
 * whitespace: strict RFC 8259 (no NaN, no trailing commas, no lone
 * surrogate escapes, no raw control characters, well-formed UTF-8). */
int fz_json_valid(const char *s, size_t n);

/* If s[0..n) is exactly one JSON string, decode it into out (capacity at
 * least n bytes) and return the decoded length; -1 otherwise. */
long fz_json_string_decode(const char *s, size_t n, char *out);

/* 1 if s[0..n) is exactly a JSON number (RFC 8259 grammar). */
int fz_json_number(const char *s, size_t n);

#endif
