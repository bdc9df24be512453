/* wait.c - monotonic time and interruptible waits. */
#include "wait.h"
#include "pgspout.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

int64_t pgs_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * PGS_NS_PER_S + ts.tv_nsec;
}

int pgs_wake_open(pgs_wake *w)
{
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    return w->fd < 0 ? -1 : 0;
}

void pgs_wake_close(pgs_wake *w)
{
    if (w->fd >= 0)
        close(w->fd);
    w->fd = -1;
}

void pgs_wake_signal(pgs_wake *w)
{
    uint64_t one = 1;
    if (w->fd >= 0) {
        ssize_t r = write(w->fd, &one, sizeof one);
        (void)r; /* EAGAIN means the counter is already non-zero: still woken */
    }
}

void pgs_wake_drain(pgs_wake *w)
{
    uint64_t v;
    if (w->fd >= 0) {
        ssize_t r = read(w->fd, &v, sizeof v);
        (void)r;
    }
}

/* The calling thread's interrupt hook (pgspout_set_interrupt_hook). */
static _Thread_local pgspout_interrupt_fn intr_fn;
static _Thread_local void *intr_ud;
static _Thread_local int intr_suspended;

void pgspout_set_interrupt_hook(pgspout_interrupt_fn fn, void *userdata)
{
    intr_fn = fn;
    intr_ud = userdata;
}

void pgs_interrupt_suspend(void) { intr_suspended++; }
void pgs_interrupt_resume(void) { intr_suspended--; }
int pgs_interrupt_armed(void) { return intr_fn != NULL && intr_suspended == 0; }
int pgs_interrupted(void) { return pgs_interrupt_armed() && intr_fn(intr_ud) != 0; }

int pgs_wait_rw(int sock, int want_write, int wake_fd, int64_t deadline_ns)
{
    struct pollfd p[2];
    int n = 0, is = -1, iw = -1;
    if (sock >= 0) {
        p[n].fd = sock;
        p[n].events = (short)(POLLIN | (want_write ? POLLOUT : 0));
        is = n++;
    }
    if (wake_fd >= 0) {
        p[n].fd = wake_fd;
        p[n].events = POLLIN;
        iw = n++;
    }
    int armed = pgs_interrupt_armed();
    for (;;) {
        int timeout = -1;
        if (deadline_ns > 0) {
            int64_t left = deadline_ns - pgs_now_ns();
            if (left <= 0)
                return 0;
            int64_t ms = (left + PGS_NS_PER_MS - 1) / PGS_NS_PER_MS;
            timeout = ms > INT32_MAX ? INT32_MAX : (int)ms;
        }
        /* with a hook, wake up now and then: a signal that arrived just
         * before poll() would otherwise go unnoticed until the wait ends */
        if (armed && (timeout < 0 || timeout > PGS_INTERRUPT_POLL_MS))
            timeout = PGS_INTERRUPT_POLL_MS;
        int r = poll(p, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno != EINTR)
                return -1;
            if (armed && pgs_interrupted())
                return PGS_WAIT_INTERRUPTED;
            continue;
        }
        if (r == 0) {
            if (armed && pgs_interrupted())
                return PGS_WAIT_INTERRUPTED;
            if (deadline_ns == 0 || pgs_now_ns() < deadline_ns)
                continue;
            return 0;
        }
        int mask = 0;
        if (is >= 0 && (p[is].revents & (POLLIN | POLLERR | POLLHUP | POLLNVAL)))
            mask |= PGS_WAIT_SOCKET;
        if (is >= 0 && (p[is].revents & POLLOUT))
            mask |= PGS_WAIT_WRITABLE;
        if (iw >= 0 && (p[iw].revents & POLLIN))
            mask |= PGS_WAIT_WAKE;
        return mask;
    }
}
