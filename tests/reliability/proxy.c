/* proxy.c - see proxy.h. One thread, non-blocking sockets, poll. */
#define _GNU_SOURCE
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXR  128
#define BUFSZ 65536

typedef struct half {
    char buf[BUFSZ];
    size_t n, off; /* pending bytes buf[off..n) */
} half;

typedef struct relay {
    int a, b; /* client side, server side */
    half ab, ba;
} relay;

struct rel_proxy {
    int lfd, port, upstream;
    int ctl[2];
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stalled;
    unsigned cmd_seq, done_seq;
    char cmd;
    int accepted;
    relay *r[MAXR];
    int nr;
};

static void nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

static void rst_close(int fd)
{
    struct linger l = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

static void relay_free(rel_proxy *p, int i, int rst)
{
    relay *r = p->r[i];
    if (rst) {
        rst_close(r->a);
        rst_close(r->b);
    } else {
        close(r->a);
        close(r->b);
    }
    free(r);
    p->r[i] = p->r[--p->nr];
}

static void do_accept(rel_proxy *p)
{
    int c = accept(p->lfd, NULL, NULL);
    if (c < 0)
        return;
    int u = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)p->upstream)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (u < 0 || connect(u, (struct sockaddr *)&sa, sizeof sa) != 0 || p->nr >= MAXR) {
        if (u >= 0)
            close(u);
        rst_close(c);
        return;
    }
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(u, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    nonblock(c);
    nonblock(u);
    relay *r = calloc(1, sizeof *r);
    r->a = c;
    r->b = u;
    p->r[p->nr++] = r;
    pthread_mutex_lock(&p->mu);
    p->accepted++;
    pthread_mutex_unlock(&p->mu);
}

/* Move bytes from -> h -> to. -1 when the connection is over. */
static int pump(int from, int to, half *h, short rev_from)
{
    if (h->n == 0 && (rev_from & (POLLIN | POLLHUP | POLLERR))) {
        ssize_t k = read(from, h->buf, sizeof h->buf);
        if (k == 0 || (k < 0 && errno != EAGAIN && errno != EINTR))
            return -1;
        if (k > 0)
            h->n = (size_t)k, h->off = 0;
    }
    if (h->n > h->off) { /* non-blocking: try whenever bytes are pending */
        ssize_t k = write(to, h->buf + h->off, h->n - h->off);
        if (k < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        if (k > 0)
            h->off += (size_t)k;
        if (h->off == h->n)
            h->n = h->off = 0;
    }
    return 0;
}

static void *proxy_main(void *arg)
{
    rel_proxy *p = arg;
    struct pollfd fds[2 + 2 * MAXR];
    for (;;) {
        int n = 0;
        fds[n++] = (struct pollfd){.fd = p->ctl[0], .events = POLLIN};
        fds[n++] = (struct pollfd){.fd = p->lfd, .events = POLLIN};
        int stalled = p->stalled;
        if (!stalled)
            for (int i = 0; i < p->nr; i++) {
                relay *r = p->r[i];
                fds[n++] = (struct pollfd){
                    .fd = r->a,
                    .events = (short)((r->ab.n ? 0 : POLLIN) | (r->ba.n ? POLLOUT : 0))};
                fds[n++] = (struct pollfd){
                    .fd = r->b,
                    .events = (short)((r->ba.n ? 0 : POLLIN) | (r->ab.n ? POLLOUT : 0))};
            }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[0].revents & POLLIN) {
            char cmd;
            if (read(p->ctl[0], &cmd, 1) != 1)
                continue;
            if (cmd == 'Q')
                break;
            if (cmd == 'S')
                p->stalled = 1;
            else if (cmd == 'R')
                p->stalled = 0;
            else if (cmd == 'D')
                while (p->nr)
                    relay_free(p, p->nr - 1, 1);
            pthread_mutex_lock(&p->mu);
            p->done_seq++;
            pthread_cond_broadcast(&p->cv);
            pthread_mutex_unlock(&p->mu);
            continue; /* the relay set may have changed */
        }
        if (fds[1].revents & POLLIN)
            do_accept(p);
        if (stalled)
            continue;
        /* fds[2 + 2i], fds[3 + 2i] belong to p->r[i] as it was at poll time;
         * do_accept only appends, so the indexes still hold. */
        int polled = (n - 2) / 2;
        for (int i = polled - 1; i >= 0; i--) {
            relay *r = p->r[i];
            short ra = fds[2 + 2 * i].revents, rb = fds[3 + 2 * i].revents;
            if (!ra && !rb)
                continue;
            if (pump(r->a, r->b, &r->ab, ra) != 0 || pump(r->b, r->a, &r->ba, rb) != 0)
                relay_free(p, i, 0);
        }
    }
    while (p->nr)
        relay_free(p, p->nr - 1, 0);
    return NULL;
}

rel_proxy *rel_proxy_start(int upstream_port)
{
    rel_proxy *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->upstream = upstream_port;
    p->lfd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(p->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof sa;
    if (p->lfd < 0 || bind(p->lfd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        listen(p->lfd, 64) != 0 || getsockname(p->lfd, (struct sockaddr *)&sa, &sl) != 0 ||
        pipe(p->ctl) != 0) {
        free(p);
        return NULL;
    }
    p->port = ntohs(sa.sin_port);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->th, NULL, proxy_main, p) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

int rel_proxy_port(const rel_proxy *p) { return p->port; }

static void command(rel_proxy *p, char c)
{
    pthread_mutex_lock(&p->mu);
    unsigned want = ++p->cmd_seq;
    pthread_mutex_unlock(&p->mu);
    if (write(p->ctl[1], &c, 1) != 1)
        return;
    pthread_mutex_lock(&p->mu);
    while (p->done_seq < want)
        pthread_cond_wait(&p->cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

void rel_proxy_stall(rel_proxy *p) { command(p, 'S'); }
void rel_proxy_resume(rel_proxy *p) { command(p, 'R'); }
void rel_proxy_drop(rel_proxy *p) { command(p, 'D'); }

int rel_proxy_accepted(rel_proxy *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->accepted;
    pthread_mutex_unlock(&p->mu);
    return n;
}

void rel_proxy_stop(rel_proxy *p)
{
    if (p == NULL)
        return;
    char q = 'Q';
    if (write(p->ctl[1], &q, 1) == 1)
        pthread_join(p->th, NULL);
    close(p->lfd);
    close(p->ctl[0]);
    close(p->ctl[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
