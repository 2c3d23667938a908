#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
public import SSICore

/// dpkg's diversions (`dpkg-divert`), read from its database, and what
/// `ssi divert` makes of them: which of the distro's commands ssi stands
/// in for. Changes go through dpkg-divert itself (the ssi command line);
/// this is the reading and the deciding, testable without root.
public enum DpkgDiversions {
    /// One diversion: `from` is renamed to `to` when a package (other than
    /// `package`) installs it. `package` nil: a local diversion (":").
    public struct Entry: Sendable, Equatable {
        public var from: String
        public var to: String
        public var package: String?

        public init(from: String, to: String, package: String?) {
            self.from = from
            self.to = to
            self.package = package
        }
    }

    public static var databasePath: String { adminDirectory + "/diversions" }

    /// dpkg's database folder: `DPKG_ADMINDIR` when set (as dpkg-divert
    /// reads it), else /var/lib/dpkg.
    public static var adminDirectory: String {
        if let dir = getenv("DPKG_ADMINDIR"), dir.pointee != 0 { return String(cString: dir) }
        return "/var/lib/dpkg"
    }

    /// The database's format: three lines per diversion (from, to, the
    /// package or ":" for a local one).
    public static func parse(_ text: String, file: String = "diversions") throws(SSIError) -> [Entry] {
        var lines = text.lines(omittingEmpty: false).map(String.init)
        if lines.last == "" { lines.removeLast() }
        guard lines.count % 3 == 0 else {
            throw SSIError("divert", "\(file): \(lines.count) lines, not three per diversion",
                           hint: "check it with dpkg-divert --list")
        }
        return stride(from: 0, to: lines.count, by: 3).map { i in
            Entry(from: lines[i], to: lines[i + 1], package: lines[i + 2] == ":" ? nil : lines[i + 2])
        }
    }

    /// The diversions on this system (none when dpkg has never made one).
    public static func read() throws(SSIError) -> [Entry] {
        let path = databasePath
        guard FileSystem.exists(path) else { return [] }
        let text: String
        do { text = try FileSystem.readText(path) } catch {
            throw SSIError("divert", "reading \(path): \(error.description)")
        }
        return try parse(text, file: path)
    }
}

/// The commands `ssi divert enable` puts ssi in place of, and the state of
/// each: the distro's file diverted to PATH.distrib by the package "ssi"
/// and a link to ssi in its place.
public enum SSIDiversion {
    public static let package = "ssi"
    public static let binary = "/usr/sbin/ssi"
    public static let paths = ["/usr/bin/mount", "/usr/bin/umount", "/usr/sbin/swapon", "/usr/sbin/swapoff", "/usr/sbin/fsck"]

    public static func divertedPath(_ path: String) -> String { path + ".distrib" }

    /// The name dpkg's database has for the file on Debian 12's merged
    /// /usr: util-linux ships /bin/mount and /sbin/fsck, and dpkg knows
    /// them by those names. A diversion of /usr/bin/mount alone would not
    /// catch an upgrade of the package that ships /bin/mount: each path
    /// is diverted under both names (Debian's DEP 17 advice).
    public static func alias(_ path: String) -> String {
        path.hasPrefix("/usr/") ? String(path.dropFirst(4)) : path
    }

    public enum State: Sendable, Equatable {
        /// No diversion, not a link to ssi: the distro's own command.
        case distro
        /// Diverted by ssi (both names) and a link to ssi in its place.
        case ssi
        /// Diverted by another package: ssi leaves it alone.
        case otherPackage(String)
        /// Half done (an interrupted enable or disable): what is there.
        case partial(String)
    }

    /// What is at `path`: `diversions` from dpkg's database, `link` the
    /// target of the symlink at the path (nil: not a symlink), `distribExists`
    /// whether PATH.distrib exists.
    public static func state(of path: String, diversions: [DpkgDiversions.Entry],
                             link: String?, distribExists: Bool) -> State {
        let main = diversions.first { $0.from == path }
        let alt = diversions.first { $0.from == alias(path) }
        let linked = link == binary
        if let other = [main, alt].compactMap({ $0 }).first(where: { $0.package != package }) {
            return .otherPackage(other.package ?? "a local diversion")
        }
        var missing: [String] = []
        if main == nil { missing.append("no diversion of \(path)") }
        else if main!.to != divertedPath(path) { missing.append("\(path) is diverted to \(main!.to), not \(divertedPath(path))") }
        if alias(path) != path {
            if alt == nil { missing.append("no diversion of \(alias(path))") }
            else if alt!.to != divertedPath(alias(path)) { missing.append("\(alias(path)) is diverted to \(alt!.to)") }
        }
        if !linked { missing.append(link.map { "\(path) links to \($0), not \(binary)" } ?? "\(path) is not a link to \(binary)") }
        if !distribExists { missing.append("no \(divertedPath(path))") }
        if missing.isEmpty { return .ssi }
        if main == nil && alt == nil && !linked { return .distro }
        return .partial(missing.joined(separator: "; "))
    }
}
