/* wait.h - monotonic time, and waiting on a socket plus a wake-up descriptor. */
#ifndef PGSPOUT_WAIT_H
#define PGSPOUT_WAIT_H

#include <stdint.h>

#define PGS_NS_PER_MS INT64_C(1000000)
#define PGS_NS_PER_S  INT64_C(1000000000)

int64_t pgs_now_ns(void);

/* An eventfd another thread writes to interrupt a wait. fd -1 if closed. */
typedef struct pgs_wake {
    int fd;
} pgs_wake;

int pgs_wake_open(pgs_wake *w); /* 0 or -1 */
void pgs_wake_close(pgs_wake *w);
void pgs_wake_signal(pgs_wake *w); /* async-signal and thread safe */
void pgs_wake_drain(pgs_wake *w);

enum { PGS_WAIT_SOCKET = 1, PGS_WAIT_WAKE = 2, PGS_WAIT_WRITABLE = 4 };

/* Wait until sock (if >= 0) is readable (or also writable, with
 * want_write), the wake fd fires (if wake_fd >= 0), or the monotonic deadline
 * passes (0 = none). Returns a PGS_WAIT_* mask, 0 on timeout, -1 on a poll
 * error. */
int pgs_wait_rw(int sock, int want_write, int wake_fd, int64_t deadline_ns);
#define pgs_wait(sock, wake_fd, deadline_ns) pgs_wait_rw(sock, 0, wake_fd, deadline_ns)

#endif
