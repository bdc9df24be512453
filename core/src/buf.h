/* buf.h - growable byte buffer used by the JSON renderer and the exporters. */
#ifndef PGSPOUT_BUF_H
#define PGSPOUT_BUF_H

#include <stdarg.h>
#include <stddef.h>

typedef struct pgs_buf {
    char *data; /* NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int oom; /* sticky: an append failed, contents are incomplete */
} pgs_buf;

#define PGS_BUF_INIT                                                                               \
    {                                                                                              \
        NULL, 0, 0, 0                                                                              \
    }

/* Make room for extra more bytes (plus the NUL). 0 or -1 (sets oom). */
int pgs_buf_reserve(pgs_buf *b, size_t extra);
int pgs_buf_append(pgs_buf *b, const void *p, size_t n);
int pgs_buf_puts(pgs_buf *b, const char *s);
int pgs_buf_putc(pgs_buf *b, char c);
int pgs_buf_printf(pgs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empty the buffer, keep its memory. */
void pgs_buf_clear(pgs_buf *b);
void pgs_buf_free(pgs_buf *b);
/* Replace *dst (freed) with a malloc'd message formatted from fmt, trailing
 * newlines and spaces trimmed (libpq's messages end in one): one line of
 * text for callers. *dst is NULL if memory ran out. */
void pgs_set_message(char **dst, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));

/* Hand the contents over as a malloc'd string (caller frees); NULL if the
 * buffer ran out of memory. The buffer is left empty. */
char *pgs_buf_steal(pgs_buf *b);

#endif
