// dlopen on first use, for the libraries in ssi_lazy.h. Every entry point
// that can fail cleanly (a throwing Swift initializer) calls
// ssi_lazy_load first and reports dlerror's text; the per-function stubs
// in stubs.c then only exit (127, with the library and its package
// named) if a library vanished between the two.
#define _GNU_SOURCE
#include "ssi_lazy.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

// The sonames of Debian 12's packages, which debian/control depends on by
// name (dpkg-shlibdeps cannot see a dlopen). LazyLibraryTests checks each
// against the DT_SONAME of the -dev package's .so we compile against.
static const struct {
    const char *soname;
    const char *package;
} table[SSI_LIB_COUNT] = {
    [SSI_LIB_KMOD] = {"libkmod.so.2", "libkmod2"},
    [SSI_LIB_UDEV] = {"libudev.so.1", "libudev1"},
    [SSI_LIB_ZSTD] = {"libzstd.so.1", "libzstd1"},
    [SSI_LIB_LZMA] = {"liblzma.so.5", "liblzma5"},
    [SSI_LIB_ZLIB] = {"libz.so.1", "zlib1g"},
    [SSI_LIB_SODIUM] = {"libsodium.so.23", "libsodium23"},
    [SSI_LIB_CPG] = {"libcpg.so.4", "libcpg4"},
    [SSI_LIB_QUORUM] = {"libquorum.so.5", "libquorum5"},
    [SSI_LIB_VOTEQUORUM] = {"libvotequorum.so.8", "libvotequorum8"},
    [SSI_LIB_CMAP] = {"libcmap.so.4", "libcmap4"},
    [SSI_LIB_MOUNT] = {"libmount.so.1", "libmount1"},
};

// Written once per library with the handle dlopen returned; a race loads
// twice, which dlopen turns into a second reference to the same handle.
static void *handles[SSI_LIB_COUNT];

const char *ssi_lazy_soname(int library) {
    return library >= 0 && library < SSI_LIB_COUNT ? table[library].soname : NULL;
}

const char *ssi_lazy_package(int library) {
    return library >= 0 && library < SSI_LIB_COUNT ? table[library].package : NULL;
}

static void *handle(int library, const char **error) {
    void *h = __atomic_load_n(&handles[library], __ATOMIC_ACQUIRE);
    if (h) return h;
    // RTLD_LOCAL: the library's symbols stay out of the global scope, so
    // nothing loaded later binds to them by accident.
    h = dlopen(table[library].soname, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        *error = dlerror();
        return NULL;
    }
    __atomic_store_n(&handles[library], h, __ATOMIC_RELEASE);
    return h;
}

int ssi_lazy_load(int library, char *error, size_t size) {
    if (library < 0 || library >= SSI_LIB_COUNT) {
        if (size) snprintf(error, size, "library %d is not one ssi loads", library);
        return -1;
    }
    const char *why = NULL;
    if (handle(library, &why)) return 0;
    if (size) snprintf(error, size, "%s", why ? why : "dlopen failed");
    return -1;
}

int ssi_lazy_loaded(int library) {
    return library >= 0 && library < SSI_LIB_COUNT && __atomic_load_n(&handles[library], __ATOMIC_ACQUIRE) != NULL;
}

// Not reached through ssi's own entry points, which load first and throw.
// A stub has no error to return (its function's result type varies), so
// it ends the process with the cause rather than jump to NULL.
static void fail(int library, const char *name, const char *why) {
    char line[512];
    int n = snprintf(line, sizeof line, "ssi: cannot call %s: %s (%s; install the package %s)\n",
                     name, table[library].soname, why ? why : "not found", table[library].package);
    if (n > 0) {
        ssize_t ignored = write(2, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
        (void)ignored;
    }
    _exit(127);
}

void *ssi_lazy_symbol(int library, const char *name) {
    const char *why = NULL;
    void *h = handle(library, &why);
    if (!h) fail(library, name, why);
    void *p = dlsym(h, name);
    if (!p) fail(library, name, dlerror());
    return p;
}
