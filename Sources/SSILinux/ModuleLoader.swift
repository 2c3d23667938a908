#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore
import CSSIShim
import Synchronization

/// modprobe for an image: inserts modules by name or alias from a module
/// directory's text indexes (`ModuleIndex`) with finit_module(2). What it
/// takes from modprobe's configuration is what an initramfs has: options
/// and `modprobe.blacklist=` from the kernel command line (an image
/// carries no /etc/modprobe.d). The blacklist applies to aliases only, as
/// modprobe applies it: a module asked for by name is loaded.
///
/// Safe to use from several threads at once (ssi-init loads the drivers
/// of different devices in parallel): two loads that share a dependency
/// both call finit_module for it, and the kernel makes the second wait for
/// the first and answer EEXIST, which is success here.
public final class ModuleLoader: Sendable {
    public let directory: String
    public let index: ModuleIndex
    /// Module name -> its parameters from the command line ("a=1 b=2").
    let options: [String: String]
    let blacklist: Set<String>
    /// Where the kernel lists loaded modules (tests point it elsewhere).
    let sysModule: String
    /// Softdeps that would not load, as modprobe ignores them (the
    /// caller may log them): "crc32c_intel: insert failed: ...".
    public var softdepFailures: [String] { failures.withLock { $0 } }
    private let failures = Mutex<[String]>([])
    /// The system call (tests record instead): 0 or an errno.
    let insertModule: @Sendable (_ fd: Int32, _ params: String, _ flags: Int32) -> Int32

    public init(directory: String, commandLine: KernelCommandLine,
                sysModule: String = "/sys/module",
                insertModule: (@Sendable (Int32, String, Int32) -> Int32)? = nil) throws(SSIError) {
        self.directory = directory
        self.index = try ModuleIndex.read(directory: directory)
        let parsed = Self.commandLineOptions(commandLine)
        self.options = parsed.options
        self.blacklist = parsed.blacklist
        self.sysModule = sysModule
        self.insertModule = insertModule ?? { fd, params, flags in
            ssi_finit_module(fd, params, flags) == 0 ? 0 : errno
        }
    }

    /// `NAME.PARAM=VALUE` words become NAME's options, as modprobe reads
    /// them from /proc/cmdline; `modprobe.blacklist=A,B` its blacklist.
    static func commandLineOptions(_ line: KernelCommandLine) -> (options: [String: String], blacklist: Set<String>) {
        var options: [String: String] = [:]
        var blacklist: Set<String> = []
        for word in line.words {
            guard let dot = word.firstIndex(of: "."), dot != word.startIndex else { continue }
            if let eq = word.firstIndex(of: "="), eq < dot { continue }
            let module = normalizeAlias(String(word[..<dot]))
            let rest = String(word[word.index(after: dot)...])
            guard !rest.isEmpty else { continue }
            if module == "modprobe" {
                if rest.hasPrefix("blacklist=") {
                    for name in rest.dropFirst(10).split(separator: ",") { blacklist.insert(normalizeAlias(String(name))) }
                }
                continue
            }
            // A value with spaces went through the kernel's quotes; it goes
            // to the module quoted again.
            var param = rest
            if let eq = param.firstIndex(of: "="), param[param.index(after: eq)...].contains(" ") {
                param = String(param[...eq]) + "\"" + param[param.index(after: eq)...] + "\""
            }
            options[module, default: ""] += (options[module] == nil ? "" : " ") + param
        }
        return (options, blacklist)
    }

    /// What a name or alias resolves to; blacklisted modules are dropped
    /// from what an alias matched.
    public func lookup(_ nameOrAlias: String) -> ModuleLookup {
        let found = index.lookup(nameOrAlias)
        guard case .modules(let names) = found, index.modules[normalizeAlias(nameOrAlias)] == nil else { return found }
        let allowed = names.filter { !blacklist.contains($0) }
        return allowed.isEmpty ? .notFound : .modules(allowed)
    }

    /// True when the kernel has the module (loaded, loading, or built in).
    public func isLoaded(_ name: String) -> Bool {
        if index.builtin.contains(name) { return true }
        guard let state = try? FileSystem.readText("\(sysModule)/\(name)/initstate") else { return false }
        return state.hasPrefix("live") || state.hasPrefix("coming")
    }

    /// Inserts what `nameOrAlias` resolves to, with everything each module
    /// needs, unless the kernel has it all already. True when something was
    /// inserted now.
    public func insertIfNeeded(_ nameOrAlias: String) throws(SSIError) -> Bool {
        let names: [String]
        switch lookup(nameOrAlias) {
        case .builtin: return false
        case .notFound:
            throw SSIError("modules", "\(nameOrAlias): not in this image's module index (\(directory))",
                           hint: "rebuild the image with --add-modules \(nameOrAlias)")
        case .modules(let found): names = found
        }
        var inserted = false
        for name in names {
            for step in index.loadOrder(name) where !isLoaded(step.name) {
                do throws(SSIError) {
                    try insert(step.name)
                    inserted = true
                } catch {
                    if step.required { throw error }
                    failures.withLock { $0.append(error.message) }
                }
            }
        }
        return inserted
    }

    /// finit_module's MODULE_INIT_COMPRESSED_FILE.
    static let compressedFile: Int32 = 4

    /// One finit_module(2). A module the kernel already has (it raced us,
    /// or another name for it loaded it) is success.
    func insert(_ name: String) throws(SSIError) {
        guard let entry = index.modules[name] else {
            throw SSIError("modules", "\(name): not in \(directory)/modules.dep")
        }
        let path = entry.path.hasPrefix("/") ? entry.path : directory + "/" + entry.path
        let file: Descriptor
        do { file = try Descriptor(open: path, O_RDONLY | O_CLOEXEC) } catch {
            throw SSIError("modules", "\(name): \(path): \(errnoDescription(error.errno))",
                           hint: "the image lists a module it does not carry; rebuild it")
        }
        // A compressed module (a distro's own directory; an image stores
        // them decompressed) is the kernel's to decompress.
        let compressed = [".zst", ".xz", ".gz"].contains { entry.path.hasSuffix($0) }
        let rc = insertModule(file.rawValue, options[name] ?? "", compressed ? Self.compressedFile : 0)
        if rc == 0 || rc == EEXIST { return }
        let why: String
        switch rc {
        case EINVAL where compressed, EOPNOTSUPP where compressed:
            why = "compressed, and this kernel cannot decompress modules itself (CONFIG_MODULE_DECOMPRESS)"
        case ENOEXEC: why = "not a module for this kernel (wrong version or architecture)"
        case ENOENT: why = "it needs a symbol no loaded module has"
        case EKEYREJECTED, EKEYREVOKED, ENOKEY: why = "its signature was refused (Secure Boot lockdown)"
        default: why = errnoDescription(rc)
        }
        throw SSIError("modules", "\(name): insert failed: \(why)", hint: "see dmesg for the kernel's reason")
    }
}
