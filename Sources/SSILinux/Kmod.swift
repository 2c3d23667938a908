#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
internal import CKmod
public import SSICore

/// libkmod, for the two jobs we have: resolving a module set with its
/// dependency closure against a kernel's module directory (ssi-mkinitrd, on
/// the build host), and inserting modules by name (ssi-init, in the image).
///
/// libkmod's `kmod_list_foreach` macros do not import into Swift; lists are
/// walked with `kmod_list_next`.
public final class KmodContext {
    private let ctx: OpaquePointer
    public let directory: String

    /// - Parameter directory: `/lib/modules/VER` (or any tree with the same
    ///   layout and its `modules.*.bin` indexes).
    /// - Parameter useSystemConfig: read /etc/modprobe.d and friends. The
    ///   image builder does not: the build host's local blacklists and
    ///   options must not change what goes into an image for other machines.
    public init(directory: String, useSystemConfig: Bool) throws(SSIError) {
        self.directory = directory
        try LazyLibrary.kmod.load()
        var ctx: OpaquePointer?
        if useSystemConfig {
            ctx = kmod_new(directory, nil)
        } else {
            // An empty list of config paths: no /etc/modprobe.d.
            var none: [UnsafePointer<CChar>?] = [nil]
            ctx = none.withUnsafeMutableBufferPointer { kmod_new(directory, $0.baseAddress) }
        }
        guard let ctx else {
            throw SSIError("modules", "libkmod could not open \(directory)")
        }
        kmod_set_log_priority(ctx, LOG_ERR)
        self.ctx = ctx
        // Fails only when an index is missing; lookups then fall back to
        // opening the index files themselves and report the real error.
        _ = kmod_load_resources(ctx)
    }

    deinit { kmod_unref(ctx) }

    /// What a name or alias resolves to.
    public enum Lookup: Sendable, Equatable {
        /// Loadable modules (an alias can match several).
        case modules([KernelModule])
        /// Built into the kernel: nothing to load.
        case builtin
        /// Neither a module, an alias nor a built-in.
        case notFound
    }

    public func lookup(_ nameOrAlias: String) throws(SSIError) -> Lookup {
        var list: OpaquePointer?
        let rc = kmod_module_new_from_lookup(ctx, nameOrAlias, &list)
        if rc < 0 {
            throw SSIError("modules", "looking up '\(nameOrAlias)' in \(directory): \(errnoDescription(-rc))")
        }
        defer { kmod_module_unref_list(list) }
        let mods = modules(in: list)
        if mods.isEmpty { return .notFound }
        let loadable = mods.filter { $0.path != nil }
        return loadable.isEmpty ? .builtin : .modules(loadable)
    }

    /// The module's full dependency list from modules.dep (depmod already
    /// wrote it transitively closed), plus softdeps `pre:` and `post:`.
    public func dependencies(of module: KernelModule) -> (hard: [KernelModule], softPre: [String], softPost: [String]) {
        guard let mod = handle(module.name) else { return ([], [], []) }
        defer { kmod_module_unref(mod) }
        let deps = kmod_module_get_dependencies(mod)
        defer { kmod_module_unref_list(deps) }
        var pre: OpaquePointer?
        var post: OpaquePointer?
        _ = kmod_module_get_softdeps(mod, &pre, &post)
        defer {
            kmod_module_unref_list(pre)
            kmod_module_unref_list(post)
        }
        return (modules(in: deps), modules(in: pre).map(\.name), modules(in: post).map(\.name))
    }

    /// modinfo's values for a key ("firmware", "softdep", "alias").
    public func info(_ module: KernelModule, key: String) -> [String] {
        guard let mod = handle(module.name) else { return [] }
        defer { kmod_module_unref(mod) }
        var list: OpaquePointer?
        guard kmod_module_get_info(mod, &list) >= 0 else { return [] }
        defer { kmod_module_info_free_list(list) }
        var out: [String] = []
        var cur = list
        while let entry = cur {
            if let k = kmod_module_info_get_key(entry), String(cString: k) == key,
               let v = kmod_module_info_get_value(entry) {
                out.append(String(cString: v))
            }
            cur = kmod_list_next(list, entry)
        }
        return out
    }

    /// modprobe NAME: inserts the module and everything it needs (hard
    /// dependencies and softdeps, from the indexes in `directory`). A
    /// module already loaded or built in is success.
    public func insert(_ nameOrAlias: String) throws(SSIError) {
        var list: OpaquePointer?
        let rc = kmod_module_new_from_lookup(ctx, nameOrAlias, &list)
        if rc < 0 {
            throw SSIError("modules", "\(nameOrAlias): lookup failed: \(errnoDescription(-rc))")
        }
        defer { kmod_module_unref_list(list) }
        if list == nil {
            throw SSIError("modules", "\(nameOrAlias): not in this image's module index (\(directory))",
                           hint: "rebuild the image with --add-modules \(nameOrAlias)")
        }
        var cur = list
        while let entry = cur {
            let mod = kmod_module_get_module(entry)
            defer { kmod_module_unref(mod) }
            let name = String(cString: kmod_module_get_name(mod))
            let r = kmod_module_probe_insert_module(mod, 0, nil, nil, nil, nil)
            if r < 0 {
                throw SSIError("modules", "\(name): insert failed: \(errnoDescription(-r))",
                               hint: "see dmesg for the kernel's reason")
            }
            cur = kmod_list_next(list, entry)
        }
    }

    /// Inserts the module unless it is already loaded or built in.
    /// Returns true when something was inserted now.
    public func insertIfNeeded(_ nameOrAlias: String) throws(SSIError) -> Bool {
        var list: OpaquePointer?
        guard kmod_module_new_from_lookup(ctx, nameOrAlias, &list) >= 0, list != nil else {
            try insert(nameOrAlias)   // reports the lookup failure
            return true
        }
        defer { kmod_module_unref_list(list) }
        var cur = list
        var allLive = true
        while let entry = cur {
            let mod = kmod_module_get_module(entry)
            let state = kmod_module_get_initstate(mod)
            if state != Int32(KMOD_MODULE_LIVE.rawValue) && state != Int32(KMOD_MODULE_BUILTIN.rawValue) {
                allLive = false
            }
            kmod_module_unref(mod)
            cur = kmod_list_next(list, entry)
        }
        if allLive { return false }
        try insert(nameOrAlias)
        return true
    }

    private func handle(_ name: String) -> OpaquePointer? {
        var mod: OpaquePointer?
        guard kmod_module_new_from_name(ctx, name, &mod) >= 0 else { return nil }
        return mod
    }

    private func modules(in list: OpaquePointer?) -> [KernelModule] {
        var out: [KernelModule] = []
        var cur = list
        while let entry = cur {
            if let mod = kmod_module_get_module(entry) {
                let name = String(cString: kmod_module_get_name(mod))
                let path = kmod_module_get_path(mod).map { String(cString: $0) }
                out.append(KernelModule(name: name, path: path))
                kmod_module_unref(mod)
            }
            cur = kmod_list_next(list, entry)
        }
        return out
    }
}

public struct KernelModule: Sendable, Hashable {
    /// The module name with underscores ("virtio_blk").
    public var name: String
    /// Absolute path of the .ko on the build host; nil when built in.
    public var path: String?
}
