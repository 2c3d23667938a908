#if canImport(Glibc)
import Glibc
#endif
import CMount
public import SSICore

/// util-linux's libmount, wrapped the way swift-system wraps a syscall: a
/// class that owns one `libmnt_context` and frees it, setters that mirror
/// mount(8)'s options, and results that carry mount(8)'s exit code and
/// message (libmount writes them: `mnt_context_get_excode`), so that
/// `ssi-mount` says exactly what util-linux's mount says for the same input.
public final class MountContext {
    let cxt: OpaquePointer

    /// mount(8)'s exit codes (`MNT_EX_*`).
    public enum ExitCode {
        public static let success: Int32 = 0
        public static let usage: Int32 = 1
        public static let system: Int32 = 2
        public static let software: Int32 = 4
        public static let user: Int32 = 8
        public static let fileIO: Int32 = 16
        public static let fail: Int32 = 32
        public static let someOK: Int32 = 64
    }

    /// How one mount or umount went: libmount's exit code and its message
    /// ("" when there is nothing to say).
    public struct Outcome: Sendable, Equatable {
        public var exitCode: Int32
        public var message: String
        public init(exitCode: Int32, message: String) {
            self.exitCode = exitCode
            self.message = message
        }
    }

    public init() throws(SystemCallError) {
        try loadLibMount()
        guard let c = mnt_new_context() else { throw SystemCallError("mnt_new_context", errno: ENOMEM) }
        cxt = c
    }

    deinit { mnt_free_context(cxt) }

    public var source: String? {
        get { mnt_context_get_source(cxt).map { String(cString: $0) } }
        set { mnt_context_set_source(cxt, newValue) }
    }
    public var target: String? {
        get { mnt_context_get_target(cxt).map { String(cString: $0) } }
        set { mnt_context_set_target(cxt, newValue) }
    }
    public func setType(_ type: String?) { mnt_context_set_fstype(cxt, type) }
    /// `-t` for `-a`: a comma list, "no" prefixes negate.
    public func setTypePattern(_ pattern: String?) { mnt_context_set_fstype_pattern(cxt, pattern) }
    /// `-O` for `-a`.
    public func setOptionsPattern(_ pattern: String?) { mnt_context_set_options_pattern(cxt, pattern) }
    public func setOptions(_ options: String?) { mnt_context_set_options(cxt, options) }
    public func appendOptions(_ options: String) { mnt_context_append_options(cxt, options) }
    public func setFake(_ on: Bool) { mnt_context_enable_fake(cxt, on ? 1 : 0) }
    public func setNoMtab(_ on: Bool) { mnt_context_disable_mtab(cxt, on ? 1 : 0) }
    public func setVerbose(_ on: Bool) { mnt_context_enable_verbose(cxt, on ? 1 : 0) }
    public func setSloppy(_ on: Bool) { mnt_context_enable_sloppy(cxt, on ? 1 : 0) }
    public func setLazy(_ on: Bool) { mnt_context_enable_lazy(cxt, on ? 1 : 0) }
    public func setForce(_ on: Bool) { mnt_context_enable_force(cxt, on ? 1 : 0) }
    public func setReadOnlyUmount(_ on: Bool) { mnt_context_enable_rdonly_umount(cxt, on ? 1 : 0) }
    public func setNoCanonicalize(_ on: Bool) { mnt_context_disable_canonicalize(cxt, on ? 1 : 0) }
    public func setNoHelpers(_ on: Bool) { mnt_context_disable_helpers(cxt, on ? 1 : 0) }
    public func setFork(_ on: Bool) { mnt_context_enable_fork(cxt, on ? 1 : 0) }
    /// Neither fstab nor the mount table completes the command line (mount(8)
    /// for --bind, --move and --make-*: the operands are the whole story).
    public func setNoTables() { mnt_context_set_optsmode(cxt, Int32(MNT_OMODE_NOTAB)) }
    /// libmount's MNT_OMODE_* bits, for `setOptionsMode`.
    public enum OptionsMode {
        public static let ignore = Int32(MNT_OMODE_IGNORE)
        public static let append = Int32(MNT_OMODE_APPEND)
        public static let prepend = Int32(MNT_OMODE_PREPEND)
        public static let replace = Int32(MNT_OMODE_REPLACE)
        public static let force = Int32(MNT_OMODE_FORCE)
        public static let fstab = Int32(MNT_OMODE_FSTAB)
        public static let mtab = Int32(MNT_OMODE_MTAB)
        public static let noTables = Int32(MNT_OMODE_NOTAB)
    }
    /// --options-mode / --options-source(-force): how fstab's and the
    /// mount table's options join the command line's (MNT_OMODE_* bits).
    public func setOptionsMode(_ mask: Int32) { mnt_context_set_optsmode(cxt, mask) }
    /// --target-prefix: the target under this folder (a chroot's).
    public func setTargetPrefix(_ path: String) { mnt_context_set_target_prefix(cxt, path) }
    /// -N: mount (or unmount) in the mount namespace of this file, or of
    /// this pid (/proc/PID/ns/mnt), as util-linux reads the option.
    public func setTargetNamespace(_ value: String) throws(SystemCallError) {
        let path = Int32(value).flatMap { $0 > 0 ? "/proc/\($0)/ns/mnt" : nil } ?? value
        let rc = mnt_context_set_target_ns(cxt, path)
        if rc != 0 { throw SystemCallError("failed to set target namespace to \(path)", errno: rc < 0 ? -rc : errno) }
    }
    /// umount -d: the loop device goes with the mount.
    public func setLoopDelete(_ on: Bool) { mnt_context_enable_loopdel(cxt, on ? 1 : 0) }
    /// `MS_*` flags that have no option name (--bind, --move, --rbind).
    public func addFlags(_ flags: UInt) {
        var current: UInt = 0
        mnt_context_get_mflags(cxt, &current)
        mnt_context_set_mflags(cxt, current | flags)
    }
    public var isVerbose: Bool { mnt_context_is_verbose(cxt) != 0 }
    public var isParent: Bool { mnt_context_is_parent(cxt) != 0 }
    public var isFork: Bool { mnt_context_is_fork(cxt) != 0 }

    /// Use this fstab instead of /etc/fstab (`-T`, or a table edited in
    /// memory: see `FstabTable`).
    public func setFstab(_ table: FstabTable) { mnt_context_set_fstab(cxt, table.table) }

    public func mount() -> Outcome { outcome(mnt_context_mount(cxt)) }
    public func umount() -> Outcome { outcome(mnt_context_umount(cxt)) }

    /// True when the last mount really mounted (not `nofail` skipped).
    public var mounted: Bool { mnt_context_get_status(cxt) == 1 }

    /// mount -a: each fstab entry in turn. `each` gets the target and what
    /// happened: nil outcome for an entry skipped (`ignored` 1: filtered
    /// out or noauto, 2: already mounted).
    /// With --fork (`setFork`) each mount runs in a child: `each` then
    /// only hears of the fork (an outcome of success), and the result is
    /// the children's count and how many of them failed.
    @discardableResult
    public func mountAll(_ each: (_ target: String, _ ignored: Int32, _ outcome: Outcome?) -> Void) -> (children: Int32, failed: Int32) {
        let itr = mnt_new_iter(Int32(MNT_ITER_FORWARD))
        defer { mnt_free_iter(itr) }
        var fs: OpaquePointer?
        var rc: Int32 = 0
        var ignored: Int32 = 0
        while mnt_context_next_mount(cxt, itr, &fs, &rc, &ignored) == 0 {
            let target = fs.flatMap { mnt_fs_get_target($0) }.map { String(cString: $0) } ?? "?"
            if ignored != 0 {
                each(target, ignored, nil)
            } else {
                let o = outcome(rc)
                each(target, 0, o)
            }
        }
        var children: Int32 = 0
        var failed: Int32 = 0
        if isParent { mnt_context_wait_for_children(cxt, &children, &failed) }
        return (children, failed)
    }

    func outcome(_ rc: Int32) -> Outcome {
        var buf = [CChar](repeating: 0, count: 4096)
        let code = mnt_context_get_excode(cxt, rc, &buf, buf.count)
        let message = String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Outcome(exitCode: code, message: message)
    }

    /// Clears source, target, type and options for the next mount.
    public func reset() { mnt_reset_context(cxt) }
}

/// An fstab (or any mount table file) read by libmount, editable in memory.
public final class FstabTable {
    let table: OpaquePointer
    /// Lines libmount could not parse and passed over, as its error
    /// callback gave them (file as named, line from 1): util-linux's tools
    /// warn of each ("FILE: parse error at line N -- ignored").
    private let skipped = SkippedLines()
    final class SkippedLines { var lines: [(file: String, line: Int)] = [] }
    public var parseErrors: [(file: String, line: Int)] { skipped.lines }

    /// One entry, copied out of the table.
    public struct Entry: Sendable, Equatable {
        public var source: String
        public var target: String
        public var type: String
        public var options: String
        public var passNumber: Int32
        public init(source: String, target: String, type: String, options: String, passNumber: Int32 = 0) {
            self.source = source
            self.target = target
            self.type = type
            self.options = options
            self.passNumber = passNumber
        }
    }

    /// Reads `path` (/etc/fstab when nil). A missing /etc/fstab is an
    /// empty table, as for mount(8).
    /// No load first, unlike MountContext: callers read a table that
    /// cannot be made as "no fstab", which a missing libmount is not; the
    /// stub's exit 127, naming the library and its package, is the error.
    public init(path: String?) throws(SystemCallError) {
        guard let t = mnt_new_table() else { throw SystemCallError("mnt_new_table", errno: ENOMEM) }
        table = t
        // The callback gets the table only: the list rides as its user
        // data (alive as long as self). 1: pass the line over and go on,
        // as libmount does with no callback.
        mnt_table_set_userdata(t, Unmanaged.passUnretained(skipped).toOpaque())
        mnt_table_set_parser_errcb(t) { tb, file, line in
            guard let tb, let raw = mnt_table_get_userdata(tb) else { return 1 }
            Unmanaged<SkippedLines>.fromOpaque(raw).takeUnretainedValue().lines
                .append((file.map { String(cString: $0) } ?? "?", Int(line)))
            return 1
        }
        let rc = mnt_table_parse_fstab(t, path)
        if rc != 0 && (path != nil || rc != -ENOENT) {
            // Not unreferenced here: every stored property is set, so a
            // throw runs deinit, which does it (twice was a double free
            // that crashed `fsck -A` on a missing $FSTAB_FILE).
            throw SystemCallError("reading \(path ?? "/etc/fstab")", errno: rc < 0 ? -rc : EINVAL)
        }
    }

    deinit { mnt_unref_table(table) }

    public var entries: [Entry] {
        var out: [Entry] = []
        forEach { fs in out.append(Self.entry(fs)) }
        return out
    }

    /// Rewrites every entry's option string.
    public func editOptions(_ change: (Entry) -> String) {
        forEach { fs in
            let e = Self.entry(fs)
            let new = change(e)
            if new != e.options { mnt_fs_set_options(fs, new) }
        }
    }

    /// libmount's matching of `-t` and `-O` patterns against one entry.
    public static func matches(_ entry: Entry, types: String?, options: String?) -> Bool {
        guard let fs = mnt_new_fs() else { return false }
        defer { mnt_unref_fs(fs) }
        mnt_fs_set_fstype(fs, entry.type)
        mnt_fs_set_options(fs, entry.options)
        if let types, mnt_fs_match_fstype(fs, types) == 0 { return false }
        if let options, mnt_fs_match_options(fs, options) == 0 { return false }
        return true
    }

    private func forEach(_ body: (OpaquePointer) -> Void) {
        let itr = mnt_new_iter(Int32(MNT_ITER_FORWARD))
        defer { mnt_free_iter(itr) }
        var fs: OpaquePointer?
        while mnt_table_next_fs(table, itr, &fs) == 0, let fs { body(fs) }
    }

    private static func entry(_ fs: OpaquePointer) -> Entry {
        func s(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }
        return Entry(source: s(mnt_fs_get_source(fs)), target: s(mnt_fs_get_target(fs)), type: s(mnt_fs_get_fstype(fs)),
                     options: s(mnt_fs_get_options(fs)), passNumber: mnt_fs_get_passno(fs))
    }
}

/// Option strings ("rw,node=1,x-foo=a,b" with quoting) as libmount splits them.
public enum MountOptions {
    /// The value of `name` ("" for a bare flag), nil when absent.
    public static func value(of name: String, in options: String) -> String? {
        // libmount returns a pointer INTO the option string, so that string
        // must outlive the copy: a temporary C string made for the call
        // alone is freed before the copy (a long value then read freed
        // memory and crashed `mount -o node=...`).
        guard isOptionName(name) else { return nil }
        return options.withCString { optstr -> String? in
            var value: UnsafeMutablePointer<CChar>?
            var size = 0
            guard mnt_optstr_get_option(optstr, name, &value, &size) == 0 else { return nil }
            guard let value else { return "" }
            return String(decoding: UnsafeRawBufferPointer(start: value, count: size), as: UTF8.self)
        }
    }

    /// The string without `name` (every occurrence).
    public static func removing(_ name: String, from options: String) -> String {
        guard isOptionName(name) else { return options }
        // strdup copies, so the temporary C string may die after it; libmount
        // edits the copy in place. Each removal shortens it, so the loop
        // ends; the bound is a guard against a library that does not.
        guard let dup = strdup(options) else { return options }
        var p: UnsafeMutablePointer<CChar>? = dup
        defer { free(p) }
        var rounds = 0
        while rounds <= options.utf8.count, mnt_optstr_remove_option(&p, name) == 0 { rounds += 1 }
        return p.map { String(cString: $0) } ?? ""
    }

    /// A name libmount can look up: not empty, and without the separators
    /// and NUL that would make it match something other than one option.
    static func isOptionName(_ name: String) -> Bool {
        !name.isEmpty && !name.utf8.contains(where: { $0 == 0 || $0 == UInt8(ascii: ",") || $0 == UInt8(ascii: "=") || $0 == UInt8(ascii: "\"") })
    }
}

extension MountContext {
    /// True when mount(2)/umount(2) was called and failed: mount(8) then
    /// adds its "dmesg(1) may have more information" line.
    public var syscallFailed: Bool {
        mnt_context_syscall_called(cxt) != 0 && mnt_context_get_syscall_errno(cxt) != 0
    }

    public static var libraryVersion: String {
        var v: UnsafePointer<CChar>?
        mnt_get_library_version(&v)
        return v.map { String(cString: $0) } ?? "?"
    }

    /// The mounted file systems as mount(8) lists them: libmount's table
    /// of this process's mounts, options merged with userspace ones (utab).
    public static func mountedFileSystems() -> [FstabTable.Entry] {
        guard let cxt = try? MountContext() else { return [] }
        var tb: OpaquePointer?
        guard mnt_context_get_mtab(cxt.cxt, &tb) == 0, let tb else { return [] }
        let itr = mnt_new_iter(Int32(MNT_ITER_FORWARD))
        defer { mnt_free_iter(itr) }
        var fs: OpaquePointer?
        var out: [FstabTable.Entry] = []
        while mnt_table_next_fs(tb, itr, &fs) == 0, let fs {
            func s(_ p: UnsafePointer<CChar>?) -> String { p.map { String(cString: $0) } ?? "" }
            let opts = mnt_fs_strdup_options(fs)
            out.append(FstabTable.Entry(source: s(mnt_fs_get_source(fs)).isEmpty ? "none" : s(mnt_fs_get_source(fs)),
                                        target: s(mnt_fs_get_target(fs)), type: s(mnt_fs_get_fstype(fs)),
                                        options: opts.map { String(cString: $0) } ?? ""))
            free(opts)
        }
        return out
    }
}

extension MountContext {
    /// umount -a: libmount's walk of the mount table, last mount first.
    /// umount -a: `each` sees every mount, `outcome` nil for one the
    /// patterns passed over. Returns the exit codes OR'ed, as umount(8).
    public func umountAll(_ each: (_ target: String, _ outcome: Outcome?) -> Void) -> Int32 {
        let itr = mnt_new_iter(Int32(MNT_ITER_BACKWARD))
        defer { mnt_free_iter(itr) }
        var fs: OpaquePointer?
        var rc: Int32 = 0
        var ignored: Int32 = 0
        var all: Int32 = 0
        while mnt_context_next_umount(cxt, itr, &fs, &rc, &ignored) == 0 {
            let target = fs.flatMap { mnt_fs_get_target($0) }.map { String(cString: $0) } ?? "?"
            guard ignored == 0 else {
                each(target, nil)
                continue
            }
            let o = outcome(rc)
            each(target, o)
            all |= o.exitCode
        }
        return all
    }
}

/// libmount is opened on first use (LazyLibrary): a missing one is an
/// error with dlopen's cause, naming the library and its package.
private func loadLibMount() throws(SystemCallError) {
    do throws(SSIError) { try LazyLibrary.mount.load() } catch {
        throw SystemCallError("\(error.message); \(error.hint ?? "install the package \(LazyLibrary.mount.package)")", errno: ENOENT)
    }
}
