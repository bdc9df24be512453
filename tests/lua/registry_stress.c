/* registry_stress.c - the stream registry under concurrent use.
 *
 * 8 fetcher threads fetch (random max_rows, so partial chunks and top-ups)
 * from 6 registry streams at once - several on the same id - while 2
 * controller threads pause/resume, read stats and the list, and cancel or
 * close streams under the fetchers' feet, and a reaper thread reaps streams
 * whose 150 ms idle_timeout passed (fetchers and controllers leave those
 * alone every other second). Every stream that completes must have been
 * delivered exactly once and in order: the ranges the fetches got tile
 * 1..30000.
 * At the end the registry must be empty.
 *
 * Run by tests/lua/run.sh (plain build). Under the sanitizers:
 *   cmake -S . -B build-tsan -DPGSPOUT_SANITIZE=thread -DPGSPOUT_BUILD_TESTS=OFF
 *   cmake --build build-tsan --target pgspout_static
 *   cc -g -O1 -fsanitize=thread -Icore/include tests/lua/registry_stress.c \
 *      build-tsan/core/libpgspout.a -lpq -lpthread -lm -o registry_stress
 *   PGSPOUT_TEST_DSN=... ./registry_stress 20      # seconds
 * (likewise -DPGSPOUT_SANITIZE=address,undefined with -fsanitize=address,undefined). */
#include "pgspout.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define NSLOT    6
#define NROWS    30000
#define MAXFETCH 4096

typedef struct {
    pthread_mutex_t mu;
    uint64_t id; /* 0 = empty */
    int reapable;
    long first[MAXFETCH];
    int count[MAXFETCH];
    int nf;
    int done;
    int inflight;
} slot_t;

static slot_t slots[NSLOT];
static const char *dsn;
static atomic_int stop;
static atomic_long rows_total, fetches, completed, verified, notfound, errors, reaped, cancels,
    gone;

static unsigned rnd(unsigned *s)
{
    *s = *s * 1103515245u + 12345u;
    return (*s >> 8);
}

static void open_slot(int i)
{
    char *err = NULL;
    uint64_t id = 0;
    pgspout_options *o = pgspout_options_new();
    char cr[16];
    snprintf(cr, sizeof cr, "%d", 50 + i * 40);
    pgspout_options_set(o, "chunk_rows", cr);
    int reapable = (i % 3 == 0);
    pgspout_options_set(o, "idle_timeout", reapable ? "150ms" : "0");
    int rc = pgspout_registry_open(dsn, "SELECT g FROM generate_series(1, 30000) g", 0, NULL, o,
                                   &id, &err);
    pgspout_options_free(o);
    if (rc != PGSPOUT_OK) {
        fprintf(stderr, "open: %d %s\n", rc, err ? err : "");
        pgspout_free(err);
        abort();
    }
    pthread_mutex_lock(&slots[i].mu);
    slots[i].id = id;
    slots[i].nf = 0;
    slots[i].done = 0;
    slots[i].inflight = 0;
    slots[i].reapable = reapable;
    pthread_mutex_unlock(&slots[i].mu);
}

static int cmp_first(const void *a, const void *b)
{
    const long *x = a, *y = b;
    return (*x > *y) - (*x < *y);
}

/* ranges tile 1..NROWS exactly */
static void verify(slot_t *s)
{
    long pairs[MAXFETCH][2];
    for (int k = 0; k < s->nf; k++) {
        pairs[k][0] = s->first[k];
        pairs[k][1] = s->count[k];
    }
    qsort(pairs, (size_t)s->nf, sizeof pairs[0], cmp_first);
    long next = 1;
    for (int k = 0; k < s->nf; k++) {
        if (pairs[k][0] != next) {
            fprintf(stderr, "stream %llu: range starts at %ld, expected %ld\n",
                    (unsigned long long)s->id, pairs[k][0], next);
            abort();
        }
        next += pairs[k][1];
    }
    if (next != NROWS + 1) {
        fprintf(stderr, "stream %llu: %ld rows\n", (unsigned long long)s->id, next - 1);
        abort();
    }
    verified++;
}

static void *fetcher(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg * 7919u + 1;
    while (!stop) {
        int i = (int)(rnd(&seed) % NSLOT);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        /* every other second, leave the reapable slots alone so they idle
         * past their 150 ms idle_timeout and get reaped */
        if (i % 3 == 0 && (now.tv_sec & 1)) {
            usleep(100);
            continue;
        }
        pthread_mutex_lock(&slots[i].mu);
        uint64_t id = slots[i].id;
        if (id)
            slots[i].inflight++;
        pthread_mutex_unlock(&slots[i].mu);
        if (!id)
            continue;
        char *out = NULL, *err = NULL;
        size_t len = 0;
        int n = 0;
        int rc = pgspout_registry_fetch(id, (int)(rnd(&seed) % 300), &out, &len, &n, &err);
        fetches++;
        long first = 0;
        if (rc == PGSPOUT_OK) {
            if (sscanf(out, "{\"g\":%ld}", &first) != 1 || n <= 0) {
                fprintf(stderr, "bad chunk\n");
                abort();
            }
            int lines = 0;
            for (size_t k = 0; k < len; k++)
                lines += out[k] == '\n';
            if (lines != n) {
                fprintf(stderr, "lines %d != n %d\n", lines, n);
                abort();
            }
            rows_total += n;
        } else if (rc == PGSPOUT_ENOTFOUND) {
            notfound++;
        } else if (rc != PGSPOUT_DONE) {
            errors++; /* cancelled by the controller */
        }
        int reopen = 0;
        pthread_mutex_lock(&slots[i].mu);
        if (slots[i].id == id) {
            if (rc == PGSPOUT_OK && slots[i].nf < MAXFETCH) {
                slots[i].first[slots[i].nf] = first;
                slots[i].count[slots[i].nf] = n;
                slots[i].nf++;
            }
            if (rc == PGSPOUT_DONE)
                slots[i].done = 1;
            slots[i].inflight--;
            /* verify once every fetch that started before the end recorded */
            if (slots[i].done == 1 && slots[i].inflight == 0) {
                slots[i].done = 2;
                verify(&slots[i]);
                completed++;
                pgspout_registry_close(id);
                slots[i].id = 0;
                reopen = 1;
            }
        }
        pthread_mutex_unlock(&slots[i].mu);
        if (reopen)
            open_slot(i);
        pgspout_free(out);
        pgspout_free(err);
    }
    return NULL;
}

static void *controller(void *arg)
{
    unsigned seed = 4242u + (unsigned)(uintptr_t)arg;
    while (!stop) {
        int i = (int)(rnd(&seed) % NSLOT);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (i % 3 == 0 && (now.tv_sec & 1)) {
            usleep(100);
            continue;
        }
        pthread_mutex_lock(&slots[i].mu);
        uint64_t id = slots[i].id;
        pthread_mutex_unlock(&slots[i].mu);
        if (!id)
            continue;
        switch (rnd(&seed) % 20) {
        case 0:
        case 1:
        case 2:
        case 3:
        case 4:
            pgspout_registry_pause(id);
            usleep(500);
            pgspout_registry_resume(id);
            break;
        case 5: {
            char *s = pgspout_registry_stats_json(id);
            pgspout_free(s);
            break;
        }
        case 6: {
            char *s = pgspout_registry_list_json();
            if (!s)
                abort();
            pgspout_free(s);
            break;
        }
        case 7:
            if (rnd(&seed) % 8 == 0) {
                /* cancel (or close) a stream while fetchers hammer it; replace it */
                pthread_mutex_lock(&slots[i].mu);
                if (slots[i].id == id) {
                    if (rnd(&seed) % 2)
                        pgspout_registry_cancel(id);
                    else
                        pgspout_registry_close(id);
                    pgspout_registry_close(id);
                    slots[i].id = 0;
                    cancels++;
                    pthread_mutex_unlock(&slots[i].mu);
                    open_slot(i);
                } else
                    pthread_mutex_unlock(&slots[i].mu);
            }
            break;
        default: usleep(200); break;
        }
    }
    return NULL;
}

static void *reaper(void *arg)
{
    (void)arg;
    while (!stop) {
        int n = pgspout_registry_reap();
        reaped += n;
        /* reopen reaped slots */
        for (int i = 0; i < NSLOT; i++) {
            pthread_mutex_lock(&slots[i].mu);
            uint64_t id = slots[i].id;
            int reapable = slots[i].reapable;
            pthread_mutex_unlock(&slots[i].mu);
            if (id && reapable) {
                char *s = pgspout_registry_stats_json(id);
                if (!s) { /* reaped */
                    pthread_mutex_lock(&slots[i].mu);
                    int mine = slots[i].id == id;
                    if (mine)
                        slots[i].id = 0;
                    pthread_mutex_unlock(&slots[i].mu);
                    if (mine) {
                        gone++; /* reaped by us or by the background thread */
                        open_slot(i);
                    }
                }
                pgspout_free(s);
            }
        }
        usleep(20000);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int secs = argc > 1 ? atoi(argv[1]) : 10;
    dsn = getenv("PGSPOUT_TEST_DSN");
    if (!dsn)
        return 2;
    for (int i = 0; i < NSLOT; i++) {
        pthread_mutex_init(&slots[i].mu, NULL);
        open_slot(i);
    }
    pthread_t t[12];
    int nt = 0;
    for (int i = 0; i < 8; i++)
        pthread_create(&t[nt++], NULL, fetcher, (void *)(uintptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_create(&t[nt++], NULL, controller, (void *)(uintptr_t)i);
    pthread_create(&t[nt++], NULL, reaper, NULL);
    sleep((unsigned)secs);
    stop = 1;
    for (int i = 0; i < nt; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < NSLOT; i++)
        if (slots[i].id)
            pgspout_registry_close(slots[i].id);
    char *l = pgspout_registry_list_json();
    printf("registry_stress: %ld rows in %ld fetches; %ld streams completed and verified (%ld); "
           "%ld cancelled/closed under fetchers; %ld idle streams reaped (%ld by registry_reap); "
           "%ld enotfound, "
           "%ld stream errors; registry after close: %s\n",
           (long)rows_total, (long)fetches, (long)completed, (long)verified, (long)cancels,
           (long)gone, (long)reaped, (long)notfound, (long)errors, l);
    int ok = l && strcmp(l, "[]") == 0;
    pgspout_free(l);
    return ok && completed > 0 && (secs < 4 || gone > 0) ? 0 : 1;
}
