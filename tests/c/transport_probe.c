/* transport_probe.c - the transport pgspout finds inside a module that is
 * loaded RTLD_LOCAL (as Python loads extension modules) and that links a
 * libpq of its own under a bundled file name (as a wheel does): none of it
 * is in the global scope, where RTLD_DEFAULT would look.
 *
 *   transport_probe MODULE.so
 *
 * Prints the module's pgspout_transport(). scripts/test.sh (stage chunked)
 * builds MODULE.so from build/core/libpgspout.a and the libpq of
 * psycopg-binary's wheel, and expects "chunked". Not a cmocka suite: it
 * needs that libpq, which the build does not have.
 */
#include <dlfcn.h>
#include <stdio.h>

typedef const char *(*transport_fn)(void);

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s MODULE.so\n", argv[0]);
        return 2;
    }
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (h == NULL) {
        fprintf(stderr, "transport_probe: %s\n", dlerror());
        return 1;
    }
    transport_fn transport = (transport_fn)dlsym(h, "pgspout_transport");
    if (transport == NULL) {
        fprintf(stderr, "transport_probe: %s\n", dlerror());
        return 1;
    }
    printf("%s\n", transport());
    return 0;
}
