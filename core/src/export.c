/* export.c - metrics as Prometheus text exposition (0.0.4) and as JSON.
 *
 * Names (all prefixed pgspout_; per-label series carry label="..."):
 *  counters   connections_opened_total, connections_failed_total,
 *             notifications_dropped_total (no label);
 *             streams_started_total, streams_completed_total,
 *             streams_failed_total, streams_cancelled_total,
 *             streams_limited_total{reason=max_rows|max_memory|timeout|pause_timeout},
 *             rows_total, bytes_total, rows_filtered_total, chunks_total,
 *             pauses_total, resumes_total, pause_timeouts_total,
 *             memory_warnings_total, memory_limit_hits_total;
 *             errors_total{sqlstate_class="22"} (no label)
 *  gauges     active_streams, paused_streams, buffered_bytes, chunk_rows_current
 *  histograms connect_seconds (no label), time_to_first_row_seconds,
 *             stream_duration_seconds, chunk_rows, pause_duration_seconds,
 *             buffer_bytes
 *  pools      (label="..." is the pool's label option)
 *             counters pool_acquires_total, pool_acquire_waits_total,
 *             pool_acquire_timeouts_total, pool_connections_created_total,
 *             pool_connections_closed_total{reason=broken|reset_failed|
 *             cancel_failed|idle_timeout|max_lifetime|pool_closed|fork|
 *             discarded},
 *             pool_resets_total; gauges pool_connections,
 *             pool_idle_connections, pool_in_use_connections, pool_waiting,
 *             pool_max_connections; histogram pool_acquire_seconds
 * Every started stream ends in exactly one of completed, failed, cancelled
 * or limited, so started = completed + failed + cancelled + limited + active.
 */
#include "buf.h"
#include "metrics_store.h"
#include "pgspout.h"

#include <stdio.h>
#include <stdlib.h>

#define R memory_order_relaxed

static uint64_t get(const _Atomic uint64_t *v) { return atomic_load_explicit(v, R); }

static void header(pgs_buf *b, const char *name, const char *help, const char *type)
{
    pgs_buf_printf(b, "# HELP pgspout_%s %s\n# TYPE pgspout_%s %s\n", name, help, name, type);
}

/* One histogram series; labels is "" or `label="x",` (trailing comma). */
static void prom_hist(pgs_buf *b, const char *name, const pgs_hist_def *d, const pgs_hist *h,
                      const char *labels)
{
    uint64_t cum = 0;
    for (int i = 0; i < d->nb; i++) {
        cum += get(&h->bucket[i]);
        pgs_buf_printf(b, "pgspout_%s_bucket{%sle=\"%.15g\"} %llu\n", name, labels, d->le[i],
                       (unsigned long long)cum);
    }
    cum += get(&h->bucket[d->nb]);
    pgs_buf_printf(b, "pgspout_%s_bucket{%sle=\"+Inf\"} %llu\n", name, labels,
                   (unsigned long long)cum); /* also the count: +Inf == _count */
    /* _sum/_count: the label set without the trailing comma */
    size_t n = 0;
    while (labels[n])
        n++;
    int ln = n ? (int)n - 1 : 0;
    pgs_buf_printf(b, "pgspout_%s_sum%s%.*s%s %.17g\n", name, ln ? "{" : "", ln, labels,
                   ln ? "}" : "", pgs_hist_sum(h));
    pgs_buf_printf(b, "pgspout_%s_count%s%.*s%s %llu\n", name, ln ? "{" : "", ln, labels,
                   ln ? "}" : "", (unsigned long long)cum);
}

static int nlabels_used(void)
{
    int n = 0;
    for (int i = 0; i < PGS_MAX_LABELS; i++)
        if (atomic_load(&pgs_metrics.labels[i].used))
            n = i + 1;
    return n;
}

static int npools_used(void)
{
    int n = 0;
    for (int i = 0; i < PGS_MAX_POOLS; i++)
        if (atomic_load(&pgs_metrics.pools[i].used))
            n = i + 1;
    return n;
}

static void prom_pools(pgs_buf *b)
{
    const pgs_pool_metrics *P = pgs_metrics.pools;
    int np = npools_used();
    for (int c = 0; c < PC_POOL_N; c++) {
        header(b, pgs_pool_counter_defs[c].name, pgs_pool_counter_defs[c].help, "counter");
        for (int i = 0; i < np; i++)
            if (atomic_load(&P[i].used))
                pgs_buf_printf(b, "pgspout_%s{label=\"%s\"} %llu\n", pgs_pool_counter_defs[c].name,
                               P[i].name, (unsigned long long)get(&P[i].counter[c]));
    }
    header(b, "pool_connections_closed_total", "Connections the pool closed, by reason.",
           "counter");
    for (int i = 0; i < np; i++)
        for (int r = 0; r < PGS_POOL_CLOSE_N && atomic_load(&P[i].used); r++)
            pgs_buf_printf(b,
                           "pgspout_pool_connections_closed_total{label=\"%s\",reason=\"%s\"} "
                           "%llu\n",
                           P[i].name, pgs_pool_close_names[r],
                           (unsigned long long)get(&P[i].closed[r]));
    for (int g = 0; g < PG_POOL_N; g++) {
        header(b, pgs_pool_gauge_defs[g].name, pgs_pool_gauge_defs[g].help, "gauge");
        for (int i = 0; i < np; i++)
            if (atomic_load(&P[i].used))
                pgs_buf_printf(b, "pgspout_%s{label=\"%s\"} %lld\n", pgs_pool_gauge_defs[g].name,
                               P[i].name, (long long)atomic_load_explicit(&P[i].gauge[g], R));
    }
    const pgs_hist_def *d = &pgs_pool_acquire_hist_def;
    header(b, d->name, d->help, "histogram");
    for (int i = 0; i < np; i++) {
        if (!atomic_load(&P[i].used))
            continue;
        char labels[PGS_LABEL_MAX + 16];
        snprintf(labels, sizeof labels, "label=\"%s\",", P[i].name);
        prom_hist(b, d->name, d, &P[i].acquire_time, labels);
    }
}

char *pgspout_metrics_prometheus(void)
{
    pgs_buf b = PGS_BUF_INIT;
    int nl = nlabels_used();
    const pgs_label_metrics *L = pgs_metrics.labels;

    header(&b, "connections_opened_total", "Connections opened successfully.", "counter");
    pgs_buf_printf(&b, "pgspout_connections_opened_total %llu\n",
                   (unsigned long long)get(&pgs_metrics.connections_opened));
    header(&b, "connections_failed_total", "Connection attempts that failed.", "counter");
    pgs_buf_printf(&b, "pgspout_connections_failed_total %llu\n",
                   (unsigned long long)get(&pgs_metrics.connections_failed));
    header(&b, "notifications_dropped_total",
           "Server notifications (LISTEN/NOTIFY) received on pgspout connections and dropped",
           "counter");
    pgs_buf_printf(&b, "pgspout_notifications_dropped_total %llu\n",
                   (unsigned long long)get(&pgs_metrics.notifications_dropped));
    header(&b, pgs_connect_hist_def.name, pgs_connect_hist_def.help, "histogram");
    prom_hist(&b, pgs_connect_hist_def.name, &pgs_connect_hist_def, &pgs_metrics.connect_time, "");

    for (int c = 0; c < C_LABEL_N; c++) {
        header(&b, pgs_counter_defs[c].name, pgs_counter_defs[c].help, "counter");
        for (int i = 0; i < nl; i++)
            if (atomic_load(&L[i].used))
                pgs_buf_printf(&b, "pgspout_%s{label=\"%s\"} %llu\n", pgs_counter_defs[c].name,
                               L[i].name, (unsigned long long)get(&L[i].counter[c]));
    }
    header(&b, "streams_limited_total", "Streams ended by a limit, by reason.", "counter");
    for (int i = 0; i < nl; i++)
        for (int r = 0; r < PGS_LIMIT_N && atomic_load(&L[i].used); r++)
            pgs_buf_printf(&b, "pgspout_streams_limited_total{label=\"%s\",reason=\"%s\"} %llu\n",
                           L[i].name, pgs_limit_names[r],
                           (unsigned long long)get(&L[i].limited[r]));
    header(&b, "errors_total", "Server errors by SQLSTATE class.", "counter");
    int ns = atomic_load(&pgs_metrics.nsqlstate);
    for (int i = 0; i < ns; i++)
        pgs_buf_printf(&b, "pgspout_errors_total{sqlstate_class=\"%s\"} %llu\n",
                       pgs_metrics.sqlstate[i].cls,
                       (unsigned long long)get(&pgs_metrics.sqlstate[i].n));
    for (int g = 0; g < G_LABEL_N; g++) {
        header(&b, pgs_gauge_defs[g].name, pgs_gauge_defs[g].help, "gauge");
        for (int i = 0; i < nl; i++)
            if (atomic_load(&L[i].used))
                pgs_buf_printf(&b, "pgspout_%s{label=\"%s\"} %lld\n", pgs_gauge_defs[g].name,
                               L[i].name, (long long)atomic_load_explicit(&L[i].gauge[g], R));
    }
    for (int h = 0; h < H_LABEL_N; h++) {
        header(&b, pgs_hist_defs[h].name, pgs_hist_defs[h].help, "histogram");
        for (int i = 0; i < nl; i++) {
            if (!atomic_load(&L[i].used))
                continue;
            char labels[PGS_LABEL_MAX + 16];
            snprintf(labels, sizeof labels, "label=\"%s\",", L[i].name);
            prom_hist(&b, pgs_hist_defs[h].name, &pgs_hist_defs[h], &L[i].hist[h], labels);
        }
    }
    prom_pools(&b);
    return pgs_buf_steal(&b);
}

static void json_hist(pgs_buf *b, const pgs_hist_def *d, const pgs_hist *h)
{
    /* one read of each bucket, so that count == the +Inf bucket */
    uint64_t cum[PGS_HIST_MAX_BUCKETS + 1], c = 0;
    for (int i = 0; i <= d->nb; i++)
        cum[i] = c += get(&h->bucket[i]);
    pgs_buf_printf(b, "{\"count\":%llu,\"sum\":%.17g,\"buckets\":[", (unsigned long long)c,
                   pgs_hist_sum(h));
    for (int i = 0; i < d->nb; i++)
        pgs_buf_printf(b, "%s[%.15g,%llu]", i ? "," : "", d->le[i], (unsigned long long)cum[i]);
    pgs_buf_printf(b, ",[\"+Inf\",%llu]]}", (unsigned long long)c);
}

char *pgspout_metrics_json(void)
{
    pgs_buf b = PGS_BUF_INIT;
    const pgs_label_metrics *L = pgs_metrics.labels;
    pgs_buf_printf(&b,
                   "{\"connections_opened_total\":%llu,\"connections_failed_total\":%llu,"
                   "\"notifications_dropped_total\":%llu,",
                   (unsigned long long)get(&pgs_metrics.connections_opened),
                   (unsigned long long)get(&pgs_metrics.connections_failed),
                   (unsigned long long)get(&pgs_metrics.notifications_dropped));
    pgs_buf_puts(&b, "\"connect_seconds\":");
    json_hist(&b, &pgs_connect_hist_def, &pgs_metrics.connect_time);
    pgs_buf_puts(&b, ",\"errors_total\":{");
    int ns = atomic_load(&pgs_metrics.nsqlstate);
    for (int i = 0; i < ns; i++)
        pgs_buf_printf(&b, "%s\"%s\":%llu", i ? "," : "", pgs_metrics.sqlstate[i].cls,
                       (unsigned long long)get(&pgs_metrics.sqlstate[i].n));
    pgs_buf_puts(&b, "},\"labels\":{");
    int first = 1, nl = nlabels_used();
    for (int i = 0; i < nl; i++) {
        if (!atomic_load(&L[i].used))
            continue;
        pgs_buf_printf(&b, "%s\"%s\":{", first ? "" : ",", L[i].name);
        first = 0;
        for (int c = 0; c < C_LABEL_N; c++)
            pgs_buf_printf(&b, "\"%s\":%llu,", pgs_counter_defs[c].name,
                           (unsigned long long)get(&L[i].counter[c]));
        pgs_buf_puts(&b, "\"streams_limited_total\":{");
        for (int r = 0; r < PGS_LIMIT_N; r++)
            pgs_buf_printf(&b, "%s\"%s\":%llu", r ? "," : "", pgs_limit_names[r],
                           (unsigned long long)get(&L[i].limited[r]));
        pgs_buf_puts(&b, "},");
        for (int g = 0; g < G_LABEL_N; g++)
            pgs_buf_printf(&b, "\"%s\":%lld,", pgs_gauge_defs[g].name,
                           (long long)atomic_load_explicit(&L[i].gauge[g], R));
        for (int h = 0; h < H_LABEL_N; h++) {
            pgs_buf_printf(&b, "%s\"%s\":", h ? "," : "", pgs_hist_defs[h].name);
            json_hist(&b, &pgs_hist_defs[h], &L[i].hist[h]);
        }
        pgs_buf_putc(&b, '}');
    }
    pgs_buf_puts(&b, "},\"pools\":{");
    first = 1;
    const pgs_pool_metrics *P = pgs_metrics.pools;
    int np = npools_used();
    for (int i = 0; i < np; i++) {
        if (!atomic_load(&P[i].used))
            continue;
        pgs_buf_printf(&b, "%s\"%s\":{", first ? "" : ",", P[i].name);
        first = 0;
        for (int c = 0; c < PC_POOL_N; c++)
            pgs_buf_printf(&b, "\"%s\":%llu,", pgs_pool_counter_defs[c].name,
                           (unsigned long long)get(&P[i].counter[c]));
        pgs_buf_puts(&b, "\"pool_connections_closed_total\":{");
        for (int r = 0; r < PGS_POOL_CLOSE_N; r++)
            pgs_buf_printf(&b, "%s\"%s\":%llu", r ? "," : "", pgs_pool_close_names[r],
                           (unsigned long long)get(&P[i].closed[r]));
        pgs_buf_puts(&b, "},");
        for (int g = 0; g < PG_POOL_N; g++)
            pgs_buf_printf(&b, "\"%s\":%lld,", pgs_pool_gauge_defs[g].name,
                           (long long)atomic_load_explicit(&P[i].gauge[g], R));
        pgs_buf_printf(&b, "\"%s\":", pgs_pool_acquire_hist_def.name);
        json_hist(&b, &pgs_pool_acquire_hist_def, &P[i].acquire_time);
        pgs_buf_putc(&b, '}');
    }
    pgs_buf_puts(&b, "}}");
    return pgs_buf_steal(&b);
}

void pgspout_free(void *p) { free(p); }
