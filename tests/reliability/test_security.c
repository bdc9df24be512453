/* test_security.c - passwords never leak; SCRAM-SHA-256 and TLS work.
 *
 *  - conninfo passwords never appear in connection errors (failed SCRAM
 *    login, malformed conninfo and URIs), the registry's messages, the log
 *    hook, metrics (Prometheus and JSON) or stream stats
 *  - parameters travel separately from the SQL (the server's view of the
 *    running query shows $1, not the value)
 *  - SCRAM-SHA-256: right password streams, wrong one is ECONNECT with a clear
 *    message
 *  - TLS against a separate throwaway server with a test CA: verify-full
 *    works (by name and by IP), a different CA or a wrong host name is
 *    ECONNECT with a message about the certificate
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "relutil.h"

#define SECRET   "Sup3rSecretPw"
#define RIGHT_PW "C0rrect-Horse-Battery"

static int server_port = -1;
static char server_db[128];
static char role[64];

/* Everything the log hook saw, to search for secrets. */
static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
static char log_seen[65536];
static size_t log_len;

static void log_hook(int level, const char *msg, void *ud)
{
    (void)level, (void)ud;
    pthread_mutex_lock(&log_mu);
    size_t n = strlen(msg);
    if (log_len + n + 2 < sizeof log_seen) {
        memcpy(log_seen + log_len, msg, n);
        log_len += n;
        log_seen[log_len++] = '\n';
        log_seen[log_len] = '\0';
    }
    pthread_mutex_unlock(&log_mu);
}

static void run_ok(pgspout_conn *c, const char *sql)
{
    pgspout_stream *s = NULL;
    int rc = pgspout_stream_open(c, sql, 0, NULL, NULL, &s);
    const pgspout_row *r;
    if (rc == PGSPOUT_OK)
        while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
            ;
    if (rc != PGSPOUT_DONE)
        fail_msg("%s: %s: %s", sql, pgspout_code_name(rc),
                 s ? pgspout_stream_error(s) : pgspout_conn_error(c));
    pgspout_stream_close(s);
}

/* No secret anywhere in text; says where when it is. */
static int leaks(const char *where, const char *text, const char *secret)
{
    if (text && strstr(text, secret)) {
        printf("  LEAK in %s: %s\n", where, text);
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------- SCRAM */

static void test_scram_login(void **state)
{
    (void)state;
    if (server_port < 0)
        skip();
    char dsn[512];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=%s user=%s password=%s", server_port,
             server_db, role, RIGHT_PW);
    pgspout_conn *c = NULL;
    int rc = pgspout_connect(dsn, &c);
    if (rc != PGSPOUT_OK)
        fail_msg("SCRAM login with the right password: %s: %s", pgspout_code_name(rc),
                 pgspout_conn_error(c));
    tu_expect_scalar(c, "SELECT current_user", role);
    rel_expect_series(c, 5000);
    pgspout_conn_close(c);

    /* the same over a URI */
    snprintf(dsn, sizeof dsn, "postgresql://%s:%s@127.0.0.1:%d/%s", role, RIGHT_PW, server_port,
             server_db);
    c = NULL;
    assert_int_equal(pgspout_connect(dsn, &c), PGSPOUT_OK);
    tu_expect_scalar(c, "SELECT 1", "1");
    pgspout_conn_close(c);

    /* wrong password: ECONNECT, a clear message, no password in it */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=%s user=%s password=%s", server_port,
             server_db, role, SECRET);
    c = NULL;
    rc = pgspout_connect(dsn, &c);
    printf("  wrong password: %s: %s\n", pgspout_code_name(rc), pgspout_conn_error(c));
    assert_int_equal(rc, PGSPOUT_ECONNECT);
    assert_true(rel_contains(pgspout_conn_error(c), "password authentication failed"));
    assert_false(rel_contains(pgspout_conn_error(c), SECRET));
    assert_int_equal(pgspout_conn_ok(c), 0);
    pgspout_conn_close(c);

    /* no password at all */
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=%s user=%s", server_port, server_db,
             role);
    const char *saved = getenv("PGPASSWORD");
    char *keep = saved ? strdup(saved) : NULL;
    unsetenv("PGPASSWORD");
    setenv("PGPASSFILE", "/nonexistent/pgpass", 1);
    c = NULL;
    rc = pgspout_connect(dsn, &c);
    printf("  no password: %s: %s\n", pgspout_code_name(rc), pgspout_conn_error(c));
    assert_int_equal(rc, PGSPOUT_ECONNECT);
    assert_true(rel_contains(pgspout_conn_error(c), "password"));
    pgspout_conn_close(c);
    unsetenv("PGPASSFILE");
    if (keep) {
        setenv("PGPASSWORD", keep, 1);
        free(keep);
    }
}

/* ------------------------------------------------------ password leaks */

typedef struct leak_case {
    const char *fmt; /* %d = port, %s = role (both optional, in that order) */
    int want;        /* expected code */
    const char *secret;
} leak_case;

static const leak_case leak_cases[] = {
    /* a failed SCRAM login */
    {"host=127.0.0.1 port=%d user=%s dbname=pgspout password=" SECRET, PGSPOUT_ECONNECT, SECRET},
    {"postgresql://%2$s:" SECRET "@127.0.0.1:%1$d/pgspout", PGSPOUT_ECONNECT, SECRET},
    /* malformed conninfo around a password */
    {"host=127.0.0.1 port=abc password=" SECRET, PGSPOUT_ECONNECT, SECRET},
    {"password=" SECRET " nosuchkeyword=1", PGSPOUT_ECONNECT, SECRET},
    {"host=127.0.0.1 password='" SECRET, PGSPOUT_ECONNECT, SECRET},
    /* a URI libpq cannot parse (it quotes the whole URI in its message) */
    {"postgresql://user:" SECRET "@[bad", PGSPOUT_ECONNECT, SECRET},
    {"postgresql://user:" SECRET "@host:port/db", PGSPOUT_ECONNECT, SECRET},
    {"postgresql://user:" SECRET "@localhost/db?nosuchparam=1", PGSPOUT_ECONNECT, SECRET},
    /* an unquoted password with a space: libpq reads its second word as a
     * keyword and names it in the error */
    {"host=127.0.0.1 password=Correct " SECRET, PGSPOUT_ECONNECT, SECRET},
};

static void test_passwords_never_leak(void **state)
{
    (void)state;
    if (server_port < 0)
        skip();
    int leaked = 0, wrong = 0;
    pgspout_set_log_hook(log_hook, NULL);
    for (size_t i = 0; i < sizeof leak_cases / sizeof leak_cases[0]; i++) {
        const leak_case *k = &leak_cases[i];
        char dsn[512];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#pragma GCC diagnostic ignored "-Wformat-extra-args"
        snprintf(dsn, sizeof dsn, k->fmt, server_port, role);
#pragma GCC diagnostic pop
        pgspout_conn *c = NULL;
        int rc = pgspout_connect(dsn, &c);
        char where[600];
        snprintf(where, sizeof where, "pgspout_conn_error for \"%s\"", dsn);
        leaked += leaks(where, pgspout_conn_error(c), k->secret);
        if (rc != k->want) {
            printf("  connect(\"%s\") = %s, wanted %s: %s\n", dsn, pgspout_code_name(rc),
                   pgspout_code_name(k->want), pgspout_conn_error(c));
            wrong++;
        }
        pgspout_conn_close(c);
        /* the same through pgspout_connect_opts and the registry */
        pgspout_options *o = tu_opts("connect_timeout", "5s", "application_name", "rel_sec", NULL);
        c = NULL;
        pgspout_connect_opts(dsn, o, &c);
        snprintf(where, sizeof where, "pgspout_connect_opts error for \"%s\"", dsn);
        leaked += leaks(where, pgspout_conn_error(c), k->secret);
        pgspout_conn_close(c);
        uint64_t id = 0;
        char *err = NULL;
        pgspout_registry_open(dsn, "SELECT 1", 0, NULL, o, &id, &err);
        snprintf(where, sizeof where, "pgspout_registry_open errmsg for \"%s\"", dsn);
        leaked += leaks(where, err, k->secret);
        pgspout_free(err);
        if (id)
            pgspout_registry_close(id);
        pgspout_options_free(o);
    }

    /* a working login with a password, a stream and a registry stream:
     * stats, registry listings and metrics never carry the conninfo */
    char dsn[512];
    snprintf(dsn, sizeof dsn, "host=127.0.0.1 port=%d dbname=%s user=%s password=%s", server_port,
             server_db, role, RIGHT_PW);
    pgspout_conn *c = NULL;
    assert_int_equal(pgspout_connect(dsn, &c), PGSPOUT_OK);
    pgspout_options *o = tu_opts("label", "security", NULL);
    pgspout_stream *s = NULL;
    assert_int_equal(pgspout_stream_open(c, "SELECT generate_series(1, 10)", 0, NULL, o, &s),
                     PGSPOUT_OK);
    uint64_t id = 0;
    char *err = NULL;
    int rc = pgspout_registry_open(dsn, "SELECT generate_series(1, 10)", 0, NULL, o, &id, &err);
    if (rc != PGSPOUT_OK)
        fail_msg("registry_open: %s: %s", pgspout_code_name(rc), err ? err : "");
    char *sj = pgspout_stream_stats_json(s);
    char *rj = pgspout_registry_stats_json(id);
    char *lj = pgspout_registry_list_json();
    char *mp = pgspout_metrics_prometheus();
    char *mj = pgspout_metrics_json();
    leaked += leaks("stream stats JSON", sj, RIGHT_PW) +
              leaks("registry stats JSON", rj, RIGHT_PW) +
              leaks("registry list JSON", lj, RIGHT_PW) +
              leaks("Prometheus metrics", mp, RIGHT_PW) + leaks("JSON metrics", mj, RIGHT_PW) +
              leaks("Prometheus metrics", mp, SECRET) + leaks("JSON metrics", mj, SECRET);
    pgspout_free(sj);
    pgspout_free(rj);
    pgspout_free(lj);
    pgspout_free(mp);
    pgspout_free(mj);
    pgspout_registry_close(id);
    pgspout_stream_close(s);
    pgspout_conn_close(c);
    pgspout_options_free(o);
    pgspout_set_log_hook(NULL, NULL);
    pthread_mutex_lock(&log_mu);
    leaked += leaks("the log hook", log_seen, SECRET) + leaks("the log hook", log_seen, RIGHT_PW);
    pthread_mutex_unlock(&log_mu);
    assert_int_equal(wrong, 0);
    assert_int_equal(leaked, 0);
}

/* Parameters are sent apart from the SQL: the server's own view of the
 * running statement shows $1, never the value. */
typedef struct bg_open {
    pgspout_conn *c;
    int rc;
} bg_open;

static void *bg_open_main(void *arg)
{
    bg_open *b = arg;
    const char *params[] = {"Sup3rSecretParam' OR '1'='1"};
    pgspout_stream *s = NULL;
    b->rc = pgspout_stream_open(b->c, "SELECT $1::text AS v, pg_sleep(1)", 1, params, NULL, &s);
    const pgspout_row *r;
    if (b->rc == PGSPOUT_OK) {
        b->rc = pgspout_stream_next(s, &r);
        if (b->rc == PGSPOUT_OK && strcmp(pgspout_row_value(r, 0, NULL), params[0]) != 0)
            b->rc = -100;
        while (b->rc == PGSPOUT_OK)
            b->rc = pgspout_stream_next(s, &r);
    }
    pgspout_stream_close(s);
    return NULL;
}

static void test_parameters_sent_apart(void **state)
{
    (void)state;
    pgspout_conn *c = NULL, *watcher = NULL;
    assert_int_equal(rel_connect(tu_dsn(), &c), PGSPOUT_OK);
    assert_int_equal(rel_connect(tu_dsn(), &watcher), PGSPOUT_OK);
    char *pid = tu_try_scalar(c, "SELECT pg_backend_pid()", 0, NULL);
    assert_non_null(pid);
    bg_open b = {.c = c};
    pthread_t th;
    pthread_create(&th, NULL, bg_open_main, &b);
    char *q = NULL;
    const char *params[] = {pid};
    for (int i = 0; i < 50 && (q == NULL || !rel_contains(q, "pg_sleep")); i++) {
        tu_sleep_ms(20);
        free(q);
        q = tu_try_scalar(watcher, "SELECT query FROM pg_stat_activity WHERE pid = $1::int", 1,
                          params);
    }
    pthread_join(th, NULL);
    printf("  the server saw: %s\n", q ? q : "(nothing)");
    assert_non_null(q);
    assert_true(rel_contains(q, "$1"));
    assert_false(rel_contains(q, "Sup3rSecretParam"));
    assert_int_equal(b.rc, PGSPOUT_DONE);
    free(q);
    free(pid);
    pgspout_conn_close(watcher);
    pgspout_conn_close(c);
}

/* --------------------------------------------------------------- TLS */

static void test_tls_verify_full(void **state)
{
    (void)state;
    if (rel_sh("command -v openssl >/dev/null 2>&1") != 0) {
        printf("  openssl is not installed: TLS case skipped\n");
        skip();
    }
    char *tmp = rel_tmpdir("tls");
    assert_non_null(tmp);
    char certs[600], pgdir[600];
    snprintf(certs, sizeof certs, "%s/certs", tmp);
    snprintf(pgdir, sizeof pgdir, "%s/pg", tmp);
    int rc = rel_sh(
        "set -e; mkdir -p '%1$s'; cd '%1$s';"
        "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\n"
        "keyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth\\n' > ext.cnf;"
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 2"
        " -subj '/CN=pgspout test CA' -addext 'basicConstraints=critical,CA:TRUE'"
        " -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null;"
        "openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.crt -days 2"
        " -subj '/CN=some other CA' -addext 'basicConstraints=critical,CA:TRUE'"
        " -addext 'keyUsage=critical,keyCertSign,cRLSign' 2>/dev/null;"
        "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr"
        " -subj '/CN=localhost' 2>/dev/null;"
        "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial"
        " -out server.crt -days 2 -extfile ext.cnf 2>/dev/null;"
        "chmod 600 server.key; chmod 755 .;"
        "if [ \"$(id -u)\" = 0 ]; then chown postgres: server.key server.crt; fi",
        certs);
    if (rc != 0) {
        rel_sh("rm -rf '%s'", tmp);
        fail_msg("generating the test CA and server certificate failed (%d)", rc);
    }
    char conf[2048];
    snprintf(conf, sizeof conf,
             "ssl = on\nssl_cert_file = '%s/server.crt'\nssl_key_file = '%s/server.key'\n", certs,
             certs);
    int port = rel_pg_start(pgdir, conf);
    if (port < 0) {
        rel_sh("rm -rf '%s'", tmp);
        fail_msg("could not start the TLS throwaway server");
    }
    int failed = 0;
    struct {
        const char *what, *extra;
        int want;
        const char *mention;
    } cases[] = {
        {"verify-full by name", "host=localhost sslmode=verify-full sslrootcert=%s/ca.crt",
         PGSPOUT_OK, NULL},
        {"verify-full by IP", "host=127.0.0.1 sslmode=verify-full sslrootcert=%s/ca.crt",
         PGSPOUT_OK, NULL},
        {"a different CA", "host=localhost sslmode=verify-full sslrootcert=%s/other.crt",
         PGSPOUT_ECONNECT, "certificate"},
        {"a wrong host name",
         "host=wrong.example hostaddr=127.0.0.1 sslmode=verify-full sslrootcert=%s/ca.crt",
         PGSPOUT_ECONNECT, "certificate"},
        {"a missing root certificate",
         "host=localhost sslmode=verify-full sslrootcert=%s/no-such-ca.crt", PGSPOUT_ECONNECT,
         "certificate"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char extra[1024], dsn[1400];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
        snprintf(extra, sizeof extra, cases[i].extra, certs);
#pragma GCC diagnostic pop
        snprintf(dsn, sizeof dsn, "port=%d user=pgspout dbname=pgspout %s", port, extra);
        pgspout_conn *c = NULL;
        rc = pgspout_connect(dsn, &c);
        printf("  TLS %s: %s%s%s\n", cases[i].what, pgspout_code_name(rc), rc ? ": " : "",
               rc ? pgspout_conn_error(c) : "");
        if (rc != cases[i].want ||
            (cases[i].mention && !rel_contains(pgspout_conn_error(c), cases[i].mention))) {
            printf("  FAILED: TLS %s: wanted %s%s%s\n", cases[i].what,
                   pgspout_code_name(cases[i].want), cases[i].mention ? " mentioning " : "",
                   cases[i].mention ? cases[i].mention : "");
            failed++;
        }
        if (rc == PGSPOUT_OK) {
            tu_expect_scalar(c, "SELECT ssl::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                             "true");
            rel_expect_series(c, 20000);
            /* cancel over a TLS connection: the cancel request goes apart */
            pgspout_stream *s = NULL;
            pgspout_options *o = tu_opts("chunk_rows", "100", NULL);
            assert_int_equal(
                pgspout_stream_open(c, "SELECT generate_series(1, 100000000)", 0, NULL, o, &s),
                PGSPOUT_OK);
            const pgspout_row *r;
            assert_int_equal(pgspout_stream_next(s, &r), PGSPOUT_OK);
            assert_int_equal(pgspout_stream_cancel(s), PGSPOUT_OK);
            while ((rc = pgspout_stream_next(s, &r)) == PGSPOUT_OK)
                ;
            assert_int_equal(rc, PGSPOUT_ECANCELLED);
            pgspout_stream_close(s);
            pgspout_options_free(o);
            tu_expect_scalar(c, "SELECT 1", "1");
        }
        pgspout_conn_close(c);
    }
    rel_pg_destroy(pgdir);
    rel_sh("rm -rf '%s'", tmp);
    free(tmp);
    assert_int_equal(failed, 0);
}

/* ----------------------------------------------------------------- main */

static int group_setup(void **state)
{
    (void)state;
    pgspout_conn *c = NULL;
    if (pgspout_connect(tu_dsn(), &c) != PGSPOUT_OK) {
        fprintf(stderr, "cannot connect: %s\n", pgspout_conn_error(c));
        pgspout_conn_close(c);
        return -1;
    }
    char *port = tu_try_scalar(c, "SELECT inet_server_port()", 0, NULL);
    char *db = tu_try_scalar(c, "SELECT current_database()", 0, NULL);
    char *super = tu_try_scalar(
        c, "SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user", 0, NULL);
    if (port && strcmp(port, "<NULL>") != 0 && super && strcmp(super, "true") == 0)
        server_port = atoi(port);
    else
        printf("  (the DSN is not TCP or not a superuser: SCRAM and leak cases are skipped)\n");
    snprintf(server_db, sizeof server_db, "%s", db ? db : "pgspout");
    free(port);
    free(db);
    free(super);
    snprintf(role, sizeof role, "rel_scram_%d", (int)getpid());
    if (server_port > 0) {
        char sql[256];
        run_ok(c, "SET password_encryption = 'scram-sha-256'");
        snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", role);
        run_ok(c, sql);
        snprintf(sql, sizeof sql, "CREATE ROLE %s LOGIN PASSWORD '%s'", role, RIGHT_PW);
        run_ok(c, sql);
        snprintf(sql, sizeof sql,
                 "SELECT rolpassword LIKE 'SCRAM-SHA-256$%%' FROM pg_authid WHERE rolname = '%s'",
                 role);
        char *scram = tu_try_scalar(c, sql, 0, NULL);
        int ok = scram && strcmp(scram, "t") == 0;
        free(scram);
        if (!ok) {
            fprintf(stderr, "the role's password is not stored as SCRAM-SHA-256\n");
            pgspout_conn_close(c);
            return -1;
        }
    }
    pgspout_conn_close(c);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (server_port > 0) {
        pgspout_conn *c = NULL;
        if (pgspout_connect(tu_dsn(), &c) == PGSPOUT_OK) {
            char sql[128];
            snprintf(sql, sizeof sql, "DROP ROLE IF EXISTS %s", role);
            free(tu_try_scalar(c, sql, 0, NULL));
        }
        pgspout_conn_close(c);
    }
    return 0;
}

int main(void)
{
    int gate = tu_db_gate("test_security");
    if (gate >= 0)
        return gate;
    setvbuf(stdout, NULL, _IOLBF, 0);
    rel_filters();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scram_login),
        cmocka_unit_test(test_passwords_never_leak),
        cmocka_unit_test(test_parameters_sent_apart),
        cmocka_unit_test(test_tls_verify_full),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
