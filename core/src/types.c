/* types.c - one column-kind classifier by type OID (pgspout_type_kind), for
 * the JSON export and for every binding's converters. */
#include "pgspout.h"

static int scalar_kind(unsigned int oid)
{
    switch (oid) {
    case 16: return PGSPOUT_KIND_BOOL;
    case 17: return PGSPOUT_KIND_BYTEA;
    case 20: return PGSPOUT_KIND_INT8;
    case 21: /* int2 */
    case 23: /* int4 */
    case 26: /* oid */ return PGSPOUT_KIND_INT;
    case 114: /* json */
    case 3802: /* jsonb */ return PGSPOUT_KIND_JSON;
    case 700:
    case 701: return PGSPOUT_KIND_FLOAT;
    case 1082: return PGSPOUT_KIND_DATE;
    case 1083: return PGSPOUT_KIND_TIME;
    case 1114: return PGSPOUT_KIND_TIMESTAMP;
    case 1184: return PGSPOUT_KIND_TIMESTAMPTZ;
    case 1186: return PGSPOUT_KIND_INTERVAL;
    case 1266: return PGSPOUT_KIND_TIMETZ;
    case 1700: return PGSPOUT_KIND_NUMERIC;
    case 2950: return PGSPOUT_KIND_UUID;
    default: return PGSPOUT_KIND_TEXT;
    }
}

/* Element type of the array types of the kinds above and of the text types
 * (char, name, text, bpchar, varchar); 0 for every other type. */
static unsigned int array_element(unsigned int oid)
{
    switch (oid) {
    case 1000: return 16;
    case 1001: return 17;
    case 1002: return 18;
    case 1003: return 19;
    case 1005: return 21;
    case 1007: return 23;
    case 1009: return 25;
    case 1014: return 1042;
    case 1015: return 1043;
    case 1016: return 20;
    case 1021: return 700;
    case 1022: return 701;
    case 1028: return 26;
    case 1115: return 1114;
    case 1182: return 1082;
    case 1183: return 1083;
    case 1185: return 1184;
    case 1187: return 1186;
    case 1231: return 1700;
    case 1270: return 1266;
    case 2951: return 2950;
    case 199: return 114;
    case 3807: return 3802;
    default: return 0;
    }
}

int pgspout_type_kind(unsigned int oid)
{
    unsigned int elem = array_element(oid);
    return elem ? PGSPOUT_KIND_ARRAY | scalar_kind(elem) : scalar_kind(oid);
}
