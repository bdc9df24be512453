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
 * error, PGS_WAIT_INTERRUPTED when the calling thread's interrupt hook
 * (pgspout_set_interrupt_hook) asked to give up: it is consulted after a
 * signal interrupted the wait and every PGS_INTERRUPT_POLL_MS while set. */
int pgs_wait_rw(int sock, int want_write, int wake_fd, int64_t deadline_ns);
#define PGS_WAIT_INTERRUPTED                 (-2)
#define PGS_INTERRUPT_POLL_MS                100
#define pgs_wait(sock, wake_fd, deadline_ns) pgs_wait_rw(sock, 0, wake_fd, deadline_ns)

/* Cleanup waits (a drain after a cancel) must finish even after an
 * interrupt: while suspended, the thread's hook is not consulted. Nests. */
void pgs_interrupt_suspend(void);
void pgs_interrupt_resume(void);
/* 1 if the calling thread has an interrupt hook and it asks to give up now. */
int pgs_interrupted(void);
/* 1 if the calling thread has an active (set, not suspended) hook. */
int pgs_interrupt_armed(void);

#endif
