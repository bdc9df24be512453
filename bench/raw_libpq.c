/*
 * raw_libpq.c - the practical limit: a plain libpq client in single-row mode
 * that touches every value (sums lengths, reads each value's first byte,
 * counts the non-NULL ones).
 *
 *   raw_libpq DSN SQL
 *
 * Prints "rows=N values=V bytes=B check=C" on stdout (bench.py holds every
 * other client's values=, and pgspout_c's bytes= and check=, to these);
 * errors on stderr, exit 1.
 * Build: cc -O2 -o raw_libpq raw_libpq.c $(pkg-config --cflags --libs libpq)
 */
#include <libpq-fe.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s DSN SQL\n", argv[0]);
        return 2;
    }
    PGconn *conn = PQconnectdb(argv[1]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "raw_libpq: connect: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    if (!PQsendQueryParams(conn, argv[2], 0, NULL, NULL, NULL, NULL, 0) ||
        !PQsetSingleRowMode(conn)) {
        fprintf(stderr, "raw_libpq: send: %s", PQerrorMessage(conn));
        PQfinish(conn);
        return 1;
    }
    unsigned long long rows = 0, values = 0, bytes = 0, check = 0;
    int failed = 0;
    PGresult *res;
    while ((res = PQgetResult(conn)) != NULL) {
        switch (PQresultStatus(res)) {
        case PGRES_SINGLE_TUPLE: {
            int ncols = PQnfields(res);
            for (int c = 0; c < ncols; c++) {
                int len = PQgetlength(res, 0, c);
                bytes += (unsigned long long)len;
                if (len > 0)
                    check += (unsigned char)PQgetvalue(res, 0, c)[0];
                if (!PQgetisnull(res, 0, c))
                    values++;
            }
            rows++;
            break;
        }
        case PGRES_TUPLES_OK: break;
        default: fprintf(stderr, "raw_libpq: %s", PQresultErrorMessage(res)); failed = 1;
        }
        PQclear(res);
    }
    PQfinish(conn);
    if (failed)
        return 1;
    printf("rows=%llu values=%llu bytes=%llu check=%llu\n", rows, values, bytes, check);
    return 0;
}
