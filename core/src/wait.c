/* wait.c - monotonic time and interruptible waits. */
#include "wait.h"

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
    for (;;) {
        int timeout = -1;
        if (deadline_ns > 0) {
            int64_t left = deadline_ns - pgs_now_ns();
            if (left <= 0)
                return 0;
            int64_t ms = (left + PGS_NS_PER_MS - 1) / PGS_NS_PER_MS;
            timeout = ms > INT32_MAX ? INT32_MAX : (int)ms;
        }
        int r = poll(p, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        if (r == 0) {
            if (deadline_ns > 0 && pgs_now_ns() < deadline_ns)
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
