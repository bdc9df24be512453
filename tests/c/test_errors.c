/* test_errors.c - code texts and names, state names, version, transport. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <libpq-fe.h>

#include "pgspout.h"
#include "testutil.h"

static const struct {
    int code;
    const char *name; /* lower-case enum name without PGSPOUT_ */
} codes[] = {
    {PGSPOUT_OK, "ok"},
    {PGSPOUT_DONE, "done"},
    {PGSPOUT_AGAIN, "again"},
    {PGSPOUT_PAUSED, "paused"},
    {PGSPOUT_EINVAL, "einval"},
    {PGSPOUT_EOPTION, "eoption"},
    {PGSPOUT_EVALUE, "evalue"},
    {PGSPOUT_ENOMEM, "enomem"},
    {PGSPOUT_ECONNECT, "econnect"},
    {PGSPOUT_ECONN, "econn"},
    {PGSPOUT_ESQL, "esql"},
    {PGSPOUT_EBUSY, "ebusy"},
    {PGSPOUT_ESTATE, "estate"},
    {PGSPOUT_ECANCELLED, "ecancelled"},
    {PGSPOUT_ETIMEOUT, "etimeout"},
    {PGSPOUT_EPAUSE_TIMEOUT, "epause_timeout"},
    {PGSPOUT_EMEMORY, "ememory"},
    {PGSPOUT_ENOTFOUND, "enotfound"},
    {PGSPOUT_EINTERNAL, "einternal"},
    {PGSPOUT_EINTR, "eintr"},
};
#define NCODES (sizeof codes / sizeof codes[0])

static void test_strerror_every_code(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        const char *t = pgspout_strerror(codes[i].code);
        assert_non_null(t);
        if (strlen(t) < 3)
            fail_msg("strerror(%d) too short: \"%s\"", codes[i].code, t);
        for (size_t j = 0; j < i; j++)
            if (!strcmp(t, pgspout_strerror(codes[j].code)))
                fail_msg("strerror(%d) == strerror(%d): \"%s\"", codes[i].code, codes[j].code, t);
        /* static storage: the same pointer every time */
        assert_ptr_equal(t, pgspout_strerror(codes[i].code));
    }
    /* the codes cover -16..3 without holes */
    assert_int_equal(NCODES, 20);
}

static void test_strerror_unknown(void **state)
{
    (void)state;
    static const int unknown[] = {4, 5, 99, -17, -100, 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *t = pgspout_strerror(unknown[i]);
        assert_non_null(t);
        assert_true(strlen(t) > 0);
        /* not mistaken for a real code */
        for (size_t j = 0; j < NCODES; j++)
            if (!strcmp(t, pgspout_strerror(codes[j].code)))
                fail_msg("strerror(%d) looks like code %d: %s", unknown[i], codes[j].code, t);
        const char *n = pgspout_code_name(unknown[i]);
        assert_non_null(n);
        assert_true(strlen(n) > 0);
        for (size_t j = 0; j < NCODES; j++)
            if (!strcmp(n, codes[j].name))
                fail_msg("code_name(%d) looks like a real code: %s", unknown[i], n);
    }
}

static void test_code_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < NCODES; i++) {
        const char *n = pgspout_code_name(codes[i].code);
        assert_non_null(n);
        if (strcmp(n, codes[i].name))
            fail_msg("code_name(%d) = \"%s\", want \"%s\"", codes[i].code, n, codes[i].name);
        for (const char *p = n; *p; p++)
            assert_true(islower((unsigned char)*p) || *p == '_');
    }
}

static void test_state_names(void **state)
{
    (void)state;
    static const struct {
        int st;
        const char *name;
    } states[] = {
        {PGSPOUT_STATE_RUNNING, "running"}, {PGSPOUT_STATE_PAUSED, "paused"},
        {PGSPOUT_STATE_DONE, "done"},       {PGSPOUT_STATE_LIMITED, "limited"},
        {PGSPOUT_STATE_FAILED, "failed"},   {PGSPOUT_STATE_CANCELLED, "cancelled"},
        {PGSPOUT_STATE_CLOSED, "closed"},
    };
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++)
        assert_string_equal(pgspout_state_name(states[i].st), states[i].name);
    static const int unknown[] = {-1, 7, 100, INT_MIN, INT_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        const char *n = pgspout_state_name(unknown[i]);
        assert_non_null(n);
        assert_true(strlen(n) > 0);
        for (size_t j = 0; j < sizeof states / sizeof states[0]; j++)
            assert_string_not_equal(n, states[j].name);
    }
}

static void test_version(void **state)
{
    (void)state;
    const char *v = pgspout_version();
    assert_non_null(v);
    assert_string_equal(v, PGSPOUT_VERSION_STRING);
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", PGSPOUT_VERSION_MAJOR, PGSPOUT_VERSION_MINOR,
             PGSPOUT_VERSION_PATCH);
    assert_string_equal(v, want);
    assert_int_equal(pgspout_version_number(), PGSPOUT_VERSION_NUMBER);
    assert_int_equal(PGSPOUT_VERSION_NUMBER, PGSPOUT_VERSION_MAJOR * 10000 +
                                                 PGSPOUT_VERSION_MINOR * 100 +
                                                 PGSPOUT_VERSION_PATCH);
    assert_ptr_equal(v, pgspout_version());
}

static void test_transport(void **state)
{
    (void)state;
    const char *t = pgspout_transport();
    assert_non_null(t);
    if (strcmp(t, "chunked") && strcmp(t, "single-row"))
        fail_msg("transport \"%s\" is neither chunked nor single-row", t);
    /* chunked rows need libpq >= 17; this binary is linked against the
     * libpq it was configured with */
    if (PQlibVersion() < 170000)
        assert_string_equal(t, "single-row");
}

static void test_free_and_hook_null(void **state)
{
    (void)state;
    pgspout_free(NULL);
    pgspout_set_log_hook(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strerror_every_code),
        cmocka_unit_test(test_strerror_unknown),
        cmocka_unit_test(test_code_names),
        cmocka_unit_test(test_state_names),
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_transport),
        cmocka_unit_test(test_free_and_hook_null),
    };
    return cmocka_run_group_tests_name("errors", tests, NULL, NULL);
}
