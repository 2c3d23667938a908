// One stub per library function ssi calls, under the function's own name:
// Swift code calls kmod_new as before, the linker binds it here instead of
// to libkmod, and the stub finds the real function in the library's
// handle (dlsym on a handle searches that library, never this binary) the
// first time, then jumps straight to it.
//
// The stubs are hidden: were the executable to export its symbols (the
// debug build does; the release link has --no-export-dynamic), an
// exported ZSTD_decompressStream here would be the one libkmod binds to.
// Each prototype comes from the library's own header, so a stub that does
// not match the real function does not compile.
//
// A Swift call to a function not listed fails to link with "undefined
// reference to 'NAME'": add its line. `gcc -aux-info out.txt -c x.c` on a
// file that includes the header prints every prototype in this form.
#pragma GCC visibility push(hidden)
// The headers that mark their API visible by default, made to follow the
// pragma.
#define ZSTDLIB_VISIBLE
#define ZSTDLIB_VISIBILITY
#define SODIUM_STATIC 1
#include <libkmod.h>
#include <libudev.h>
#include <zstd.h>
#include <lzma.h>
#include <zlib.h>
#include <sodium.h>
#include <corosync/cpg.h>
#include <corosync/quorum.h>
#include <corosync/votequorum.h>
#include <corosync/cmap.h>
#include <libmount/libmount.h>
#include <stdbool.h>

#include "ssi_lazy.h"

void *ssi_lazy_symbol(int library, const char *name);

// Relaxed would do on x86; acquire/release says what is meant: the slot is
// written once with a pointer that stays valid (the handle is never
// closed).
#define SSI_LAZY_SLOT(library, name)                                        \
    static void *slot;                                                      \
    void *fn = __atomic_load_n(&slot, __ATOMIC_ACQUIRE);                    \
    if (!fn) {                                                              \
        fn = ssi_lazy_symbol(library, #name);                               \
        __atomic_store_n(&slot, fn, __ATOMIC_RELEASE);                      \
    }

#define SSI_LAZY(library, ret, name, params, args)                          \
    ret name params {                                                       \
        SSI_LAZY_SLOT(library, name)                                        \
        return ((ret (*) params)fn) args;                                   \
    }

#define SSI_LAZY_VOID(library, name, params, args)                          \
    void name params {                                                      \
        SSI_LAZY_SLOT(library, name)                                        \
        ((void (*) params)fn) args;                                         \
    }

// KMOD
SSI_LAZY(SSI_LIB_KMOD, struct kmod_list *, kmod_list_next, (const struct kmod_list *a1, const struct kmod_list *a2), (a1, a2))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_load_resources, (struct kmod_ctx *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, struct kmod_list *, kmod_module_get_dependencies, (const struct kmod_module *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_get_info, (const struct kmod_module *a1, struct kmod_list **a2), (a1, a2))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_get_initstate, (const struct kmod_module *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, struct kmod_module *, kmod_module_get_module, (const struct kmod_list *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, const char *, kmod_module_get_name, (const struct kmod_module *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, const char *, kmod_module_get_path, (const struct kmod_module *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_get_softdeps, (const struct kmod_module *a1, struct kmod_list **a2, struct kmod_list **a3), (a1, a2, a3))
SSI_LAZY_VOID(SSI_LIB_KMOD, kmod_module_info_free_list, (struct kmod_list *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, const char *, kmod_module_info_get_key, (const struct kmod_list *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, const char *, kmod_module_info_get_value, (const struct kmod_list *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_new_from_lookup, (struct kmod_ctx *a1, const char *a2, struct kmod_list **a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_new_from_name, (struct kmod_ctx *a1, const char *a2, struct kmod_module **a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_probe_insert_module, (struct kmod_module *a1, unsigned int a2, const char *a3, int (*a4) (struct kmod_module *, const char *, void *), const void *a5, void (*a6) (struct kmod_module *, bool, const char *)), (a1, a2, a3, a4, a5, a6))
SSI_LAZY(SSI_LIB_KMOD, struct kmod_module *, kmod_module_unref, (struct kmod_module *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, int, kmod_module_unref_list, (struct kmod_list *a1), (a1))
SSI_LAZY(SSI_LIB_KMOD, struct kmod_ctx *, kmod_new, (const char *a1, const char *const *a2), (a1, a2))
SSI_LAZY_VOID(SSI_LIB_KMOD, kmod_set_log_priority, (struct kmod_ctx *a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_KMOD, struct kmod_ctx *, kmod_unref, (struct kmod_ctx *a1), (a1))

// UDEV
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_device_get_action, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_device_get_devnode, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_device_get_devtype, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_device_get_property_value, (struct udev_device *a1, const char *a2), (a1, a2))
SSI_LAZY(SSI_LIB_UDEV, long long unsigned int, udev_device_get_seqnum, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_device_get_subsystem, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_device_get_syspath, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, struct udev_device *, udev_device_new_from_syspath, (struct udev *a1, const char *a2), (a1, a2))
SSI_LAZY(SSI_LIB_UDEV, struct udev_device *, udev_device_unref, (struct udev_device *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, int, udev_enumerate_add_match_property, (struct udev_enumerate *a1, const char *a2, const char *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_UDEV, int, udev_enumerate_add_match_subsystem, (struct udev_enumerate *a1, const char *a2), (a1, a2))
SSI_LAZY(SSI_LIB_UDEV, struct udev_list_entry *, udev_enumerate_get_list_entry, (struct udev_enumerate *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, struct udev_enumerate *, udev_enumerate_new, (struct udev *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, int, udev_enumerate_scan_devices, (struct udev_enumerate *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, struct udev_enumerate *, udev_enumerate_unref, (struct udev_enumerate *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, const char *, udev_list_entry_get_name, (struct udev_list_entry *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, struct udev_list_entry *, udev_list_entry_get_next, (struct udev_list_entry *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, int, udev_monitor_enable_receiving, (struct udev_monitor *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, int, udev_monitor_filter_add_match_subsystem_devtype, (struct udev_monitor *a1, const char *a2, const char *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_UDEV, int, udev_monitor_get_fd, (struct udev_monitor *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, struct udev_monitor *, udev_monitor_new_from_netlink, (struct udev *a1, const char *a2), (a1, a2))
SSI_LAZY(SSI_LIB_UDEV, struct udev_device *, udev_monitor_receive_device, (struct udev_monitor *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, int, udev_monitor_set_receive_buffer_size, (struct udev_monitor *a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_UDEV, struct udev_monitor *, udev_monitor_unref, (struct udev_monitor *a1), (a1))
SSI_LAZY(SSI_LIB_UDEV, struct udev *, udev_new, (void), ())
SSI_LAZY(SSI_LIB_UDEV, struct udev *, udev_unref, (struct udev *a1), (a1))

// ZSTD
SSI_LAZY(SSI_LIB_ZSTD, size_t, ZSTD_CCtx_setParameter, (ZSTD_CCtx *a1, ZSTD_cParameter a2, int a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_ZSTD, size_t, ZSTD_compressStream2, (ZSTD_CCtx *a1, ZSTD_outBuffer *a2, ZSTD_inBuffer *a3, ZSTD_EndDirective a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_ZSTD, ZSTD_CCtx *, ZSTD_createCCtx, (void), ())
SSI_LAZY(SSI_LIB_ZSTD, ZSTD_DCtx *, ZSTD_createDCtx, (void), ())
SSI_LAZY(SSI_LIB_ZSTD, size_t, ZSTD_decompressStream, (ZSTD_DStream *a1, ZSTD_outBuffer *a2, ZSTD_inBuffer *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_ZSTD, size_t, ZSTD_freeCCtx, (ZSTD_CCtx *a1), (a1))
SSI_LAZY(SSI_LIB_ZSTD, size_t, ZSTD_freeDCtx, (ZSTD_DCtx *a1), (a1))
SSI_LAZY(SSI_LIB_ZSTD, const char *, ZSTD_getErrorName, (size_t a1), (a1))
SSI_LAZY(SSI_LIB_ZSTD, unsigned int, ZSTD_isError, (size_t a1), (a1))

// LZMA
SSI_LAZY(SSI_LIB_LZMA, lzma_ret, lzma_code, (lzma_stream *a1, lzma_action a2), (a1, a2))
SSI_LAZY(SSI_LIB_LZMA, lzma_ret, lzma_easy_encoder, (lzma_stream *a1, uint32_t a2, lzma_check a3), (a1, a2, a3))
SSI_LAZY_VOID(SSI_LIB_LZMA, lzma_end, (lzma_stream *a1), (a1))
SSI_LAZY(SSI_LIB_LZMA, lzma_ret, lzma_stream_decoder, (lzma_stream *a1, uint64_t a2, uint32_t a3), (a1, a2, a3))

// ZLIB
SSI_LAZY(SSI_LIB_ZLIB, int, deflate, (z_streamp a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_ZLIB, int, deflateEnd, (z_streamp a1), (a1))
SSI_LAZY(SSI_LIB_ZLIB, int, deflateInit2_, (z_streamp a1, int a2, int a3, int a4, int a5, int a6, const char *a7, int a8), (a1, a2, a3, a4, a5, a6, a7, a8))
SSI_LAZY(SSI_LIB_ZLIB, int, inflate, (z_streamp a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_ZLIB, int, inflateEnd, (z_streamp a1), (a1))
SSI_LAZY(SSI_LIB_ZLIB, int, inflateInit2_, (z_streamp a1, int a2, const char *a3, int a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_ZLIB, int, inflateReset, (z_streamp a1), (a1))
SSI_LAZY(SSI_LIB_ZLIB, const char *, zlibVersion, (void), ())

// SODIUM
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_generichash, (unsigned char *a1, size_t a2, const unsigned char *a3, long long unsigned int a4, const unsigned char *a5, size_t a6), (a1, a2, a3, a4, a5, a6))
SSI_LAZY(SSI_LIB_SODIUM, size_t, crypto_secretstream_xchacha20poly1305_abytes, (void), ())
SSI_LAZY(SSI_LIB_SODIUM, size_t, crypto_secretstream_xchacha20poly1305_headerbytes, (void), ())
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_secretstream_xchacha20poly1305_init_pull, (crypto_secretstream_xchacha20poly1305_state *a1, const unsigned char *a2, const unsigned char *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_secretstream_xchacha20poly1305_init_push, (crypto_secretstream_xchacha20poly1305_state *a1, unsigned char *a2, const unsigned char *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_secretstream_xchacha20poly1305_pull, (crypto_secretstream_xchacha20poly1305_state *a1, unsigned char *a2, long long unsigned int *a3, unsigned char *a4, const unsigned char *a5, long long unsigned int a6, const unsigned char *a7, long long unsigned int a8), (a1, a2, a3, a4, a5, a6, a7, a8))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_secretstream_xchacha20poly1305_push, (crypto_secretstream_xchacha20poly1305_state *a1, unsigned char *a2, long long unsigned int *a3, const unsigned char *a4, long long unsigned int a5, const unsigned char *a6, long long unsigned int a7, unsigned char a8), (a1, a2, a3, a4, a5, a6, a7, a8))
SSI_LAZY_VOID(SSI_LIB_SODIUM, randombytes_buf, (void *const a1, const size_t a2), (a1, a2))
SSI_LAZY(SSI_LIB_SODIUM, int, sodium_init, (void), ())
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_sign_seed_keypair, (unsigned char *a1, unsigned char *a2, const unsigned char *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_sign_detached, (unsigned char *a1, unsigned long long *a2, const unsigned char *a3, unsigned long long a4, const unsigned char *a5), (a1, a2, a3, a4, a5))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_sign_verify_detached, (const unsigned char *a1, const unsigned char *a2, unsigned long long a3, const unsigned char *a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_sign_ed25519_pk_to_curve25519, (unsigned char *a1, const unsigned char *a2), (a1, a2))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_sign_ed25519_sk_to_curve25519, (unsigned char *a1, const unsigned char *a2), (a1, a2))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_box_seal, (unsigned char *a1, const unsigned char *a2, unsigned long long a3, const unsigned char *a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_box_seal_open, (unsigned char *a1, const unsigned char *a2, unsigned long long a3, const unsigned char *a4, const unsigned char *a5), (a1, a2, a3, a4, a5))
SSI_LAZY(SSI_LIB_SODIUM, int, crypto_hash_sha256, (unsigned char *a1, const unsigned char *a2, unsigned long long a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_SODIUM, size_t, sodium_base64_encoded_len, (const size_t a1, const int a2), (a1, a2))
SSI_LAZY(SSI_LIB_SODIUM, char *, sodium_bin2base64, (char *const a1, const size_t a2, const unsigned char *const a3, const size_t a4, const int a5), (a1, a2, a3, a4, a5))
SSI_LAZY(SSI_LIB_SODIUM, int, sodium_base642bin, (unsigned char *const a1, const size_t a2, const char *const a3, const size_t a4, const char *const a5, size_t *const a6, const char **const a7, const int a8), (a1, a2, a3, a4, a5, a6, a7, a8))

// CPG
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_context_get, (cpg_handle_t a1, void **a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_context_set, (cpg_handle_t a1, void *a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_dispatch, (cpg_handle_t a1, cs_dispatch_flags_t a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_fd_get, (cpg_handle_t a1, int *a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_finalize, (cpg_handle_t a1), (a1))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_join, (cpg_handle_t a1, const struct cpg_name *a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_leave, (cpg_handle_t a1, const struct cpg_name *a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_local_get, (cpg_handle_t a1, unsigned int *a2), (a1, a2))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_mcast_joined, (cpg_handle_t a1, cpg_guarantee_t a2, const struct iovec *a3, unsigned int a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_CPG, cs_error_t, cpg_model_initialize, (cpg_handle_t *a1, cpg_model_t a2, cpg_model_data_t *a3, void *a4), (a1, a2, a3, a4))

// QUORUM
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_context_get, (quorum_handle_t a1, const void **a2), (a1, a2))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_context_set, (quorum_handle_t a1, const void *a2), (a1, a2))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_dispatch, (quorum_handle_t a1, cs_dispatch_flags_t a2), (a1, a2))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_fd_get, (quorum_handle_t a1, int *a2), (a1, a2))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_finalize, (quorum_handle_t a1), (a1))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_getquorate, (quorum_handle_t a1, int *a2), (a1, a2))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_model_initialize, (quorum_handle_t *a1, quorum_model_t a2, quorum_model_data_t *a3, uint32_t *a4, void *a5), (a1, a2, a3, a4, a5))
SSI_LAZY(SSI_LIB_QUORUM, cs_error_t, quorum_trackstart, (quorum_handle_t a1, unsigned int a2), (a1, a2))

// VOTEQUORUM
SSI_LAZY(SSI_LIB_VOTEQUORUM, cs_error_t, votequorum_finalize, (votequorum_handle_t a1), (a1))
SSI_LAZY(SSI_LIB_VOTEQUORUM, cs_error_t, votequorum_getinfo, (votequorum_handle_t a1, unsigned int a2, struct votequorum_info *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_VOTEQUORUM, cs_error_t, votequorum_setexpected, (votequorum_handle_t a1, unsigned int a2), (a1, a2))
SSI_LAZY(SSI_LIB_VOTEQUORUM, cs_error_t, votequorum_initialize, (votequorum_handle_t *a1, votequorum_callbacks_t *a2), (a1, a2))

// CMAP
SSI_LAZY(SSI_LIB_CMAP, cs_error_t, cmap_finalize, (cmap_handle_t a1), (a1))
SSI_LAZY(SSI_LIB_CMAP, cs_error_t, cmap_get_string, (cmap_handle_t a1, const char *a2, char **a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_CMAP, cs_error_t, cmap_get_uint32, (cmap_handle_t a1, const char *a2, uint32_t *a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_CMAP, cs_error_t, cmap_initialize, (cmap_handle_t *a1), (a1))

// MOUNT
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_append_options, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_disable_canonicalize, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_disable_helpers, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_disable_mtab, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_fake, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_force, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_fork, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_lazy, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_loopdel, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_rdonly_umount, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_sloppy, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_enable_verbose, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_get_excode, (struct libmnt_context * a1, int a2, char * a3, size_t a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_get_mflags, (struct libmnt_context * a1, long unsigned int * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_get_mtab, (struct libmnt_context * a1, struct libmnt_table ** a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, const char *, mnt_context_get_source, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_get_status, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_get_syscall_errno, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, const char *, mnt_context_get_target, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_is_fork, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_is_parent, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_is_verbose, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_mount, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_next_mount, (struct libmnt_context * a1, struct libmnt_iter * a2, struct libmnt_fs ** a3, int * a4, int * a5), (a1, a2, a3, a4, a5))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_next_umount, (struct libmnt_context * a1, struct libmnt_iter * a2, struct libmnt_fs ** a3, int * a4, int * a5), (a1, a2, a3, a4, a5))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_fstab, (struct libmnt_context * a1, struct libmnt_table * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_fstype, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_fstype_pattern, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_mflags, (struct libmnt_context * a1, long unsigned int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_options, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_options_pattern, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_optsmode, (struct libmnt_context * a1, int a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_source, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_target, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_target_prefix, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_set_target_ns, (struct libmnt_context * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_syscall_called, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_umount, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_context_wait_for_children, (struct libmnt_context * a1, int * a2, int * a3), (a1, a2, a3))
SSI_LAZY_VOID(SSI_LIB_MOUNT, mnt_free_context, (struct libmnt_context * a1), (a1))
SSI_LAZY_VOID(SSI_LIB_MOUNT, mnt_free_iter, (struct libmnt_iter * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, const char *, mnt_fs_get_fstype, (struct libmnt_fs * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, const char *, mnt_fs_get_options, (struct libmnt_fs * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_fs_get_passno, (struct libmnt_fs * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, const char *, mnt_fs_get_source, (struct libmnt_fs * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, const char *, mnt_fs_get_target, (struct libmnt_fs * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_fs_match_fstype, (struct libmnt_fs * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_fs_match_options, (struct libmnt_fs * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_fs_set_fstype, (struct libmnt_fs * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_fs_set_options, (struct libmnt_fs * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, char *, mnt_fs_strdup_options, (struct libmnt_fs * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_get_library_version, (const char ** a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, struct libmnt_context *, mnt_new_context, (void), ())
SSI_LAZY(SSI_LIB_MOUNT, struct libmnt_fs *, mnt_new_fs, (void), ())
SSI_LAZY(SSI_LIB_MOUNT, struct libmnt_iter *, mnt_new_iter, (int a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, struct libmnt_table *, mnt_new_table, (void), ())
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_optstr_get_option, (const char * a1, const char * a2, char ** a3, size_t * a4), (a1, a2, a3, a4))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_optstr_remove_option, (char ** a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_reset_context, (struct libmnt_context * a1), (a1))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_table_next_fs, (struct libmnt_table * a1, struct libmnt_iter * a2, struct libmnt_fs ** a3), (a1, a2, a3))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_table_parse_fstab, (struct libmnt_table * a1, const char * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_table_set_parser_errcb, (struct libmnt_table * a1, int (*a2)(struct libmnt_table *, const char *, int)), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, int, mnt_table_set_userdata, (struct libmnt_table * a1, void * a2), (a1, a2))
SSI_LAZY(SSI_LIB_MOUNT, void *, mnt_table_get_userdata, (struct libmnt_table * a1), (a1))
SSI_LAZY_VOID(SSI_LIB_MOUNT, mnt_unref_fs, (struct libmnt_fs * a1), (a1))
SSI_LAZY_VOID(SSI_LIB_MOUNT, mnt_unref_table, (struct libmnt_table * a1), (a1))
