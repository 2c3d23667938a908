import Foundation

/// A real C source tree for the load-leveling test and benchmark: Lua
/// 5.4.4 as Debian 12 ships it (its orig tarball, from Debian's archive,
/// checked against the archive's checksum), unpacked once in the test
/// cache and copied into the test root at /usr/src/lua-5.4.4.
public enum SourceTree {
    public static let luaURL = "http://deb.debian.org/debian/pool/main/l/lua5.4/lua5.4_5.4.4.orig.tar.gz"
    public static let luaSHA256 = "164c7849653b80ae67bec4b7473b884bf5cc8d2dca05653475ec2ed27b9ebf61"
    public static let luaInRoot = "/usr/src/lua-5.4.4"
    static let cache = "/var/cache/ssi-test"

    /// The unpacked tree on the host (downloaded and unpacked if missing).
    public static func lua() throws -> String {
        let dir = cache + "/lua-5.4.4"
        if FileManager.default.fileExists(atPath: dir + "/src/lua.c") { return dir }
        try FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)
        let tarball = cache + "/lua5.4_5.4.4.orig.tar.gz"
        try Command.run(["curl", "-fsS", "--max-time", "120", "-o", tarball + ".part", luaURL], timeout: .seconds(180))
        let sum = try Command.run(["sha256sum", tarball + ".part"], timeout: .seconds(30)).stdout.prefix(64)
        guard sum == luaSHA256 else {
            throw HarnessError("\(luaURL): sha256 \(sum), not \(luaSHA256)")
        }
        try? FileManager.default.removeItem(atPath: tarball)
        try FileManager.default.moveItem(atPath: tarball + ".part", toPath: tarball)
        try Command.run(["tar", "--no-same-owner", "-xzf", tarball, "-C", cache], timeout: .seconds(60))
        return dir
    }
}

extension SourceTree {
    /// What `make linux` of the Lua tree builds with the test root's own
    /// compiler, built on the host in a chroot of the cached Debian root
    /// (mkdebian.sh's cache, made before any guest boots): `sha256sum lua
    /// luac *.o | sha256sum`'s line. The guests' builds must give the same
    /// bytes wherever their compiles ran. `makeArguments` are the
    /// guests' own (the VM test builds with -O0: a third of -O2's time
    /// under TCG, and the same number of compile jobs to place).
    public static func luaReferenceSums(root: String = "/var/cache/ssi-test/debian-root", makeArguments: String = "") throws -> String {
        let work = "/tmp/ssi-lua-reference"
        // Under mkdebian.sh's lock, which a copy of the root holds shared
        // (a test running beside this one may be making an image): the
        // build's files never land in another test's image.
        let lock = (root as NSString).deletingLastPathComponent + "/.lock"
        let script = "rm -rf \"$2\"; cp -a \"$1\" \"$2\" && chroot \"$3\" sh -c \"$4\"; rc=$?; rm -rf \"$2\"; exit $rc"
        let out = try Command.run(["flock", lock, "sh", "-c", script, "sh",
                                   try lua(), root + work, root,
                                   "cd \(work)/src && make linux \(makeArguments) > /dev/null 2>&1 && sha256sum lua luac *.o | sha256sum"],
                                  timeout: .seconds(600))
        return out.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
