/* stats.c - per-stream snapshots (pgspout_stream_stats, _stats_json). */
#include "internal.h"

#include <stddef.h>
#include <string.h>

int pgspout_stream_stats(const pgspout_stream *s, pgspout_stats *out)
{
    if (s == NULL || out == NULL || out->size < sizeof(size_t) + sizeof(int))
        return PGSPOUT_EINVAL;
    pgspout_stats st;
    memset(&st, 0, sizeof st);
    st.size = out->size < sizeof st ? out->size : sizeof st;
    st.state = pgspout_stream_state(s);
    int64_t end = LOAD(s->t_end);
    int64_t now = end ? end : pgs_now_ns();
    int ended = LOAD(s->ended) != 0;
    int pos = LOAD(s->pos);
    st.chunk_rows = (int)LOAD(s->chunk_target);
    st.rows_delivered = LOAD(s->delivered_base) + (uint64_t)pos;
    st.rows_received = LOAD(s->rows_received);
    st.rows_filtered = LOAD(s->rows_filtered);
    st.bytes_received = LOAD(s->bytes_received);
    st.chunks = LOAD(s->chunks);
    int nrows = LOAD(s->nrows_pub);
    st.buffered_rows = ended || nrows < pos ? 0 : (uint64_t)(nrows - pos);
    st.buffered_bytes = LOAD(s->buffered_bytes);
    st.peak_buffered_bytes = LOAD(s->peak_buffered);
    st.pauses = LOAD(s->pauses);
    int64_t first = LOAD(s->t_first_row);
    st.time_to_first_row = first ? (double)(first - s->t_open) / 1e9 : -1;
    st.elapsed = (double)(now - s->t_open) / 1e9;
    int64_t paused = LOAD(s->paused_ns);
    int64_t since = LOAD(s->pause_started);
    if (!ended && LOAD(s->pause_req) && since)
        paused += now - since;
    st.paused_time = (double)paused / 1e9;
    if (ended || LOAD(s->rate_t) == 0 || LOAD(s->rows_per_sec_x1000) == 0) {
        /* over the whole stream when no window has closed yet, or at the end */
        st.rows_per_sec = st.elapsed > 0 ? (double)st.rows_delivered / st.elapsed : 0;
        st.bytes_per_sec = st.elapsed > 0 ? (double)st.bytes_received / st.elapsed : 0;
    } else {
        st.rows_per_sec = (double)LOAD(s->rows_per_sec_x1000) / 1000;
        st.bytes_per_sec = (double)LOAD(s->bytes_per_sec_x1000) / 1000;
    }
    st.expected_rows = s->opt.expected_rows;
    st.progress = -1;
    st.eta = -1;
    if (s->opt.expected_rows > 0) {
        double p = (double)st.rows_delivered / (double)s->opt.expected_rows;
        st.progress = p > 1 ? 1 : p;
        if (ended)
            st.eta = 0;
        else if (st.rows_delivered > 0) {
            double active = st.elapsed - st.paused_time;
            double rate = active > 0 ? (double)st.rows_delivered / active : 0;
            double left = (double)s->opt.expected_rows - (double)st.rows_delivered;
            st.eta = rate > 0 ? (left > 0 ? left / rate : 0) : -1;
        }
    }
    memcpy(out, &st, st.size);
    return PGSPOUT_OK;
}

#define FIELD(name, type)                                                                          \
    {                                                                                              \
#name, type, offsetof(pgspout_stats, name)                                                 \
    }
static const pgspout_stats_field fields[] = {
    FIELD(state, PGSPOUT_FIELD_STATE),
    FIELD(chunk_rows, PGSPOUT_FIELD_INT),
    FIELD(rows_delivered, PGSPOUT_FIELD_UINT64),
    FIELD(rows_received, PGSPOUT_FIELD_UINT64),
    FIELD(rows_filtered, PGSPOUT_FIELD_UINT64),
    FIELD(bytes_received, PGSPOUT_FIELD_UINT64),
    FIELD(chunks, PGSPOUT_FIELD_UINT64),
    FIELD(buffered_rows, PGSPOUT_FIELD_UINT64),
    FIELD(buffered_bytes, PGSPOUT_FIELD_UINT64),
    FIELD(peak_buffered_bytes, PGSPOUT_FIELD_UINT64),
    FIELD(pauses, PGSPOUT_FIELD_UINT64),
    FIELD(time_to_first_row, PGSPOUT_FIELD_DOUBLE),
    FIELD(elapsed, PGSPOUT_FIELD_DOUBLE),
    FIELD(paused_time, PGSPOUT_FIELD_DOUBLE),
    FIELD(rows_per_sec, PGSPOUT_FIELD_DOUBLE),
    FIELD(bytes_per_sec, PGSPOUT_FIELD_DOUBLE),
    FIELD(expected_rows, PGSPOUT_FIELD_INT64),
    FIELD(progress, PGSPOUT_FIELD_DOUBLE),
    FIELD(eta, PGSPOUT_FIELD_DOUBLE),
};
#undef FIELD

const pgspout_stats_field *pgspout_stats_fields(int *n)
{
    if (n)
        *n = (int)(sizeof fields / sizeof fields[0]);
    return fields;
}

char *pgspout_stream_stats_json(const pgspout_stream *s)
{
    pgspout_stats st = PGSPOUT_STATS_INIT;
    if (pgspout_stream_stats(s, &st) != PGSPOUT_OK)
        return NULL;
    pgs_buf b = PGS_BUF_INIT;
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        const char *p = (const char *)&st + fields[i].offset;
        pgs_buf_printf(&b, "%c\"%s\":", i ? ',' : '{', fields[i].name);
        switch (fields[i].type) {
        case PGSPOUT_FIELD_STATE:
            pgs_buf_printf(&b, "\"%s\"", pgspout_state_name(*(const int *)p));
            break;
        case PGSPOUT_FIELD_INT: pgs_buf_printf(&b, "%d", *(const int *)p); break;
        case PGSPOUT_FIELD_UINT64:
            pgs_buf_printf(&b, "%llu", (unsigned long long)*(const uint64_t *)p);
            break;
        case PGSPOUT_FIELD_INT64: pgs_buf_printf(&b, "%lld", (long long)*(const int64_t *)p); break;
        default: pgs_buf_printf(&b, "%.6f", *(const double *)p); break;
        }
    }
    pgs_buf_printf(&b, "}");
    return pgs_buf_steal(&b);
}
