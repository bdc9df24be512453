/* proxy.h - a TCP relay on 127.0.0.1 for fault tests: relays every accepted
 * connection to an upstream port, and on command stalls (stops relaying in
 * both directions without closing, for old and new connections alike: a
 * silent network) or drops (resets every connection). */
#ifndef PGSPOUT_REL_PROXY_H
#define PGSPOUT_REL_PROXY_H

typedef struct rel_proxy rel_proxy;

/* Start relaying to 127.0.0.1:upstream_port; NULL on failure. */
rel_proxy *rel_proxy_start(int upstream_port);
int rel_proxy_port(const rel_proxy *p);
/* Each returns once the relay thread has applied it. */
void rel_proxy_stall(rel_proxy *p);
void rel_proxy_resume(rel_proxy *p);
void rel_proxy_drop(rel_proxy *p); /* RST both sides of every connection */
/* Connections accepted so far. */
int rel_proxy_accepted(rel_proxy *p);
void rel_proxy_stop(rel_proxy *p);

#endif
