#if canImport(Glibc)
import Glibc
#endif
public import SSICore
import SSILinux

/// Copies files from the build host into an ImageTree the way a dynamic
/// loader would need them at run time: every symlink on the way kept as a
/// symlink, and for ELF files the interpreter and the DT_NEEDED closure
/// searched like ld.so does (DT_RPATH, DT_RUNPATH with $ORIGIN, the
/// ld.so.conf directories, then the default directories).
///
/// The image always has the merged-/usr layout (/bin, /sbin, /lib, /lib64
/// are symlinks into /usr), so a host path /lib/x lands at usr/lib/x.
public struct HostInstaller {
    public private(set) var tree: ImageTree
    private var done: Set<String> = []
    private let systemDirectories: [String]
    /// Prefix for every host path read (tests point it at a fake root).
    public let hostRoot: String

    public static let mergedUsrLinks = ["bin": "usr/bin", "sbin": "usr/sbin", "lib": "usr/lib",
                                        "lib64": "usr/lib64", "lib32": "usr/lib32", "libx32": "usr/libx32"]

    public init(tree: ImageTree, hostRoot: String = "") throws(SSIError) {
        self.tree = tree
        self.hostRoot = hostRoot
        self.systemDirectories = HostInstaller.loaderDirectories(hostRoot: hostRoot)
        for (link, target) in HostInstaller.mergedUsrLinks.sorted(by: { $0.key < $1.key }) {
            try self.tree.add(target, .directory(permissions: 0o755))
            try self.tree.add(link, .symlink(target: target))
        }
    }

    /// Where a host path goes in the image.
    public static func imagePath(forHost path: String) -> String {
        let p = ImageTree.normalize(path)
        let first = p.split(separator: "/").first.map(String.init) ?? ""
        if let usr = mergedUsrLinks[first] {
            return usr + p.dropFirst(first.count)
        }
        return p
    }

    /// Installs a host file (or symlink chain), and, for ELF files and
    /// scripts, what they need to run. `as` places it elsewhere in the image.
    public mutating func install(_ hostPath: String, as imagePath: String? = nil,
                                 permissions: UInt32? = nil) throws(SSIError) {
        try install(hostPath, as: imagePath, permissions: permissions, depth: 0, neededBy: nil)
    }

    private mutating func install(_ hostPath: String, as imagePath: String?, permissions: UInt32?,
                                  depth: Int, neededBy: String?) throws(SSIError) {
        guard depth < 40 else {
            throw SSIError("install", "\(hostPath): too many levels of symbolic links")
        }
        // Resolve directory symlinks on the host, keep the last component.
        let dir: String
        do {
            dir = try FileSystem.realPath(hostRoot + dirname(of: hostPath))
        } catch {
            throw missing(hostPath, neededBy, error.description)
        }
        let real = (dir == "/" ? "" : dir) + "/" + basename(of: hostPath)
        let logical = hostRoot.isEmpty ? real : String(real.dropFirst(hostRoot.count))
        let dest = imagePath ?? HostInstaller.imagePath(forHost: logical)
        if imagePath == nil && done.contains(dest) { return }
        let st: FileSystem.Status
        do {
            st = try FileSystem.status(real)
        } catch {
            throw missing(hostPath, neededBy, error.description)
        }
        switch st.kind {
        case .symlink:
            let target: String
            do { target = try FileSystem.readLink(real) } catch { throw SSIError("install", error.description) }
            if imagePath == nil { done.insert(dest) }
            try tree.add(dest, .symlink(target: target))
            let next = target.hasPrefix("/") ? target : dirname(of: logical) + "/" + target
            try install(next, as: nil, permissions: nil, depth: depth + 1, neededBy: neededBy)
        case .regular:
            if imagePath == nil { done.insert(dest) }
            try tree.add(dest, .hostFile(source: real, permissions: permissions ?? st.mode, size: st.size))
            try installDependencies(of: real, logical: logical)
        case .directory:
            try tree.add(dest, .directory(permissions: st.mode))
        default:
            throw SSIError("install", "\(hostPath) is not a regular file, symlink or directory",
                           hint: "device nodes come from devtmpfs at boot; do not install them")
        }
    }

    /// Installs libraries that `binary` opens with dlopen (LazyLibrary):
    /// no DT_NEEDED names them, so the closure walk cannot find them. They
    /// are searched like the binary's own DT_NEEDED entries (dlopen uses
    /// the caller's DT_RUNPATH, then the loader's directories).
    public mutating func installLoaded(_ sonames: [String], by binary: String) throws(SSIError) {
        guard let info = try ELF.read(hostRoot + binary) else {
            throw SSIError("install", "\(binary) is not an ELF file; cannot place the libraries it loads")
        }
        for soname in sonames {
            let found = try locate(soname, for: info, origin: dirname(of: binary), neededBy: binary)
            try install(found, as: nil, permissions: nil, depth: 0, neededBy: binary)
        }
    }

    private func missing(_ path: String, _ neededBy: String?, _ cause: String) -> SSIError {
        if let neededBy {
            return SSIError("install", "\(printableName(path)), needed by \(printableName(neededBy)), is missing: \(printableName(cause))")
        }
        return SSIError("install", "\(path) not found: \(cause)", hint: "check the path given to --install")
    }

    private mutating func installDependencies(of real: String, logical: String) throws(SSIError) {
        // Scripts: bring the interpreter named on the #! line.
        if let interp = scriptInterpreter(real) {
            try install(interp, as: nil, permissions: nil, depth: 0, neededBy: logical)
            return
        }
        guard let info = try ELF.read(real) else { return }
        if let interp = info.interpreter {
            try install(interp, as: nil, permissions: nil, depth: 0, neededBy: logical)
        }
        let origin = dirname(of: logical)
        for lib in info.needed {
            let found = try locate(lib, for: info, origin: origin, neededBy: logical)
            try install(found, as: nil, permissions: nil, depth: 0, neededBy: logical)
        }
    }

    private func scriptInterpreter(_ path: String) -> String? {
        // O_NONBLOCK: the path was a regular file when checked; if it is a
        // FIFO by now, the read returns nothing instead of waiting.
        guard let file = try? Descriptor(open: path, O_RDONLY | O_NONBLOCK | O_NOCTTY) else { return nil }
        var buf = [UInt8](repeating: 0, count: 256)
        let n = buf.withUnsafeMutableBytes { read(file.rawValue, $0.baseAddress, $0.count) }
        guard n > 2, buf[0] == UInt8(ascii: "#"), buf[1] == UInt8(ascii: "!") else { return nil }
        let line = buf[2..<n].prefix { $0 != UInt8(ascii: "\n") }
        let word = String(decoding: line, as: UTF8.self).split(separator: " ").first.map(String.init)
        return word.flatMap { $0.hasPrefix("/") ? $0 : nil }
    }

    /// Finds a DT_NEEDED library the way ld.so would, checking that the
    /// candidate is of the same ELF class and machine (a 32-bit library of
    /// the same name in an earlier directory is skipped, as ld.so does).
    private func locate(_ lib: String, for info: ELFDynamicInfo, origin: String,
                        neededBy: String) throws(SSIError) -> String {
        if lib.contains("/") { return lib }
        func expand(_ d: String) -> String {
            d.replacingOccurrences("$ORIGIN", with: origin).replacingOccurrences("${ORIGIN}", with: origin)
        }
        var dirs: [String] = []
        if info.runpath.isEmpty { dirs += info.rpath.map(expand) }
        dirs += info.runpath.map(expand)
        dirs += systemDirectories
        for d in dirs {
            let candidate = (d.hasSuffix("/") ? d : d + "/") + lib
            guard FileSystem.exists(hostRoot + candidate) else { continue }
            if let other = try? ELF.read(hostRoot + candidate),
               other.is64Bit != info.is64Bit || other.machine != info.machine {
                continue
            }
            return candidate
        }
        // Names from an ELF file may hold anything: escaped for the terminal.
        throw SSIError("install", "\(printableName(lib)), needed by \(printableName(neededBy)), was not found in \(printableName(dirs.joined(separator: ":")))",
                       hint: "install the package that ships it")
    }

    /// The loader's search directories: /etc/ld.so.conf (with its
    /// includes), then the built-in defaults.
    static func loaderDirectories(hostRoot: String) -> [String] {
        var dirs: [String] = []
        var seen: Set<String> = []
        func parse(_ file: String, depth: Int) {
            guard depth < 8, let text = try? FileSystem.readText(hostRoot + file) else { return }
            for raw in text.lines() {
                let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first
                    .map { $0.trimmingSpaces() } ?? ""
                if line.isEmpty { continue }
                if line.hasPrefix("include ") {
                    let pattern = line.dropFirst("include ".count).trimmingSpaces()
                    let abs = pattern.hasPrefix("/") ? pattern : dirname(of: file) + "/" + pattern
                    for f in globPaths(hostRoot + abs) {
                        parse(String(f.dropFirst(hostRoot.count)), depth: depth + 1)
                    }
                } else if !line.hasPrefix("hwcap") {
                    if seen.insert(line).inserted { dirs.append(line) }
                }
            }
        }
        parse("/etc/ld.so.conf", depth: 0)
        for d in ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"]
        where seen.insert(d).inserted {
            dirs.append(d)
        }
        return dirs
    }
}

func globPaths(_ pattern: String) -> [String] {
    var g = glob_t()
    defer { globfree(&g) }
    guard glob(pattern, 0, nil, &g) == 0 else { return [] }
    return (0..<Int(g.gl_pathc)).compactMap { i in g.gl_pathv[i].map { String(cString: $0) } }.sorted()
}

extension StringProtocol {
    func trimmingSpaces() -> String {
        let s = self.drop { $0 == " " || $0 == "\t" }
        return String(s.reversed().drop { $0 == " " || $0 == "\t" || $0 == "\r" }.reversed())
    }
}

extension String {
    func replacingOccurrences(_ needle: String, with replacement: String) -> String {
        // By hand on bytes: String's range(of:) would pull the regex
        // engine (about 1 MB) into the binary every image carries.
        let hay = Array(self.utf8), pin = Array(needle.utf8)
        guard !pin.isEmpty, hay.count >= pin.count else { return self }
        var out: [UInt8] = []
        var i = 0
        while i < hay.count {
            if i + pin.count <= hay.count && hay[i..<(i + pin.count)].elementsEqual(pin) {
                out += Array(replacement.utf8)
                i += pin.count
            } else {
                out.append(hay[i])
                i += 1
            }
        }
        return String(decoding: out, as: UTF8.self)
    }
}
