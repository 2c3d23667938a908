// The C libraries that only some commands need (module loading, udev,
// compression, corosync, libsodium) are loaded with dlopen on first use
// instead of being linked: `ssi mount` must start as fast as util-linux's
// mount, and each linked library costs every command its loading and
// relocation (corosync's client libraries alone bring libqb, libsystemd,
// libgcrypt, liblz4, libcap). DESIGN-NOTES.md, "Libraries loaded on use".
#ifndef SSI_LAZY_H
#define SSI_LAZY_H

#include <stddef.h>

/// One per shared library; the order is the table's in lazy.c.
enum ssi_lazy_library {
    SSI_LIB_KMOD,
    SSI_LIB_UDEV,
    SSI_LIB_ZSTD,
    SSI_LIB_LZMA,
    SSI_LIB_ZLIB,
    SSI_LIB_SODIUM,
    SSI_LIB_CPG,
    SSI_LIB_QUORUM,
    SSI_LIB_VOTEQUORUM,
    SSI_LIB_CMAP,
    SSI_LIB_MOUNT,
    SSI_LIB_COUNT
};

/// The soname dlopen asks for ("libkmod.so.2"), or NULL out of range.
const char *ssi_lazy_soname(int library);
/// The Debian package that ships it ("libkmod2"), or NULL out of range.
const char *ssi_lazy_package(int library);
/// Loads the library now. 0, or -1 with dlerror's text in `error`.
int ssi_lazy_load(int library, char *error, size_t size);
/// 1 if the library was loaded by this process (through ssi_lazy_load or
/// a first call), else 0: a deinit whose init threw before the load has
/// nothing of that library to release.
int ssi_lazy_loaded(int library);

#endif
