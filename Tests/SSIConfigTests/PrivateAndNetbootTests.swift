import Testing
@testable import SSIConfig

/// [private], [netboot] and [root] wait_seconds: defaults, values, and
/// every problem named by line and field.
@Suite struct PrivateAndNetbootTests {
    func withSections(_ extra: String) -> String {
        replacing("[[node]]", with: extra + "\n[[node]]", in: baseCFS)
    }

    @Test("defaults: /etc/hostname, /etc/machine-id, /var and /tmp under /cluster/nodes; netboot on from /srv/ssi/netboot; 180 s wait")
    func defaults() throws {
        let c = try valid(baseCFS)
        #expect(c.privatePaths.paths == ["/etc/hostname", "/etc/machine-id", "/var", "/tmp"])
        #expect(c.privatePaths.directory == "/cluster/nodes")
        #expect(c.netboot == ClusterConfig.Netboot())
        #expect(c.netboot.enabled && c.netboot.directory == "/srv/ssi/netboot")
        guard case .cfs(let cfs) = c.root else { Issue.record("not cfs"); return }
        #expect(cfs.waitSeconds == 180)
    }

    @Test("values are read")
    func values() throws {
        let text = withSections("""
            [private]
            paths = ["/var", "/home"]
            directory = "/srv/nodes"

            [netboot]
            enabled = false
            directory = "/tftp"
            kernel_arguments = "console=ttyS1 quiet"

            """).replacingOccurrences(of: "server = 1", with: "server = 1\nwait_seconds = 30")
        let c = try valid(text)
        #expect(c.privatePaths == ClusterConfig.PrivatePaths(paths: ["/var", "/home"], directory: "/srv/nodes"))
        #expect(c.netboot == ClusterConfig.Netboot(enabled: false, directory: "/tftp", kernelArguments: "console=ttyS1 quiet"))
        guard case .cfs(let cfs) = c.root else { Issue.record("not cfs"); return }
        #expect(cfs.waitSeconds == 30)
    }

    @Test("nested private paths are refused, naming both")
    func nested() {
        let text = withSections("[private]\npaths = [\"/var\", \"/var/log\"]\n")
        expectOneProblem(text, line: line(of: "paths = ", in: text), field: "private.paths", "/var/log and /var are nested")
    }

    @Test("a private directory inside a private path is refused")
    func directoryInsidePrivate() {
        let text = withSections("[private]\ndirectory = \"/var/lib/ssi\"\n")
        expectOneProblem(text, line: line(of: "directory = ", in: text), field: "private.directory", "inside the private path /var")
    }

    @Test("/ is not a private path, relative paths are refused")
    func badPaths() {
        let root = withSections("[private]\npaths = [\"/\"]\n")
        expectOneProblem(root, line: line(of: "paths = ", in: root), field: "private.paths", "shared root")
        let relative = withSections("[private]\npaths = [\"var\"]\n")
        expectOneProblem(relative, line: line(of: "paths = ", in: relative), field: "private.paths", "not an absolute path")
    }

    @Test("netboot: a quoted boolean and an unknown key get hints")
    func netbootProblems() {
        let quoted = withSections("[netboot]\nenabled = \"true\"\n")
        expectOneProblem(quoted, line: line(of: "enabled = ", in: quoted), field: "netboot.enabled", "drop the quotes")
        let typo = withSections("[netboot]\ndirectroy = \"/x\"\n")
        expectOneProblem(typo, line: line(of: "directroy", in: typo), field: "netboot.directroy", "did you mean directory?")
    }

    @Test("wait_seconds is for cfs only, and bounded")
    func waitSeconds() {
        let zero = baseCFS.replacingOccurrences(of: "server = 1", with: "server = 1\nwait_seconds = 0")
        expectOneProblem(zero, line: line(of: "wait_seconds", in: zero), field: "root.wait_seconds", "out of range")
        let gfs = baseGFS2.replacingOccurrences(of: "lock_table = \"ssi:root\"", with: "lock_table = \"ssi:root\"\nwait_seconds = 10")
        expectOneProblem(gfs, line: line(of: "wait_seconds", in: gfs), field: "root.wait_seconds", "only for type = \"cfs\"")
    }

    @Test("[root] cached: /usr for 10 s by default; a list and a bound are read; [] turns it off")
    func cachedDefaultsAndValues() throws {
        guard case .cfs(let d) = try valid(baseCFS).root else { Issue.record("not cfs"); return }
        #expect(d.cached == ["/usr"] && d.cacheSeconds == 10 && d.cachePrivate)
        let noPrivate = baseCFS.replacingOccurrences(of: "server = 1", with: "server = 1\ncache_private = false")
        guard case .cfs(let n) = try valid(noPrivate).root else { Issue.record("not cfs"); return }
        #expect(!n.cachePrivate)
        let quoted = baseCFS.replacingOccurrences(of: "server = 1", with: "server = 1\ncache_private = \"no\"")
        expectOneProblem(quoted, line: line(of: "cache_private", in: quoted), field: "root.cache_private", "must be true or false")
        let text = baseCFS.replacingOccurrences(of: "server = 1", with: "server = 1\ncached = [\"/usr\", \"/opt/tools\"]\ncache_seconds = 60")
        guard case .cfs(let c) = try valid(text).root else { Issue.record("not cfs"); return }
        #expect(c.cached == ["/usr", "/opt/tools"] && c.cacheSeconds == 60)
        let off = baseCFS.replacingOccurrences(of: "server = 1", with: "server = 1\ncached = []")
        guard case .cfs(let o) = try valid(off).root else { Issue.record("not cfs"); return }
        #expect(o.cached.isEmpty)
        #expect(ClusterConfig.CFS.cachedMountOptions(seconds: 10) == "vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=10,lookupcache=all")
    }

    @Test("[root] cached: /, relative, overlapping and repeated trees, a bad bound, and gfs2 are refused by line and field")
    func cachedProblems() {
        func with(_ lines: String) -> String { baseCFS.replacingOccurrences(of: "server = 1", with: "server = 1\n" + lines) }
        let root = with("cached = [\"/\"]")
        expectOneProblem(root, line: line(of: "cached", in: root), field: "root.cached", "is the root itself")
        let relative = with("cached = [\"usr\"]")
        expectOneProblem(relative, line: line(of: "cached", in: relative), field: "root.cached", "not an absolute path")
        let nested = with("cached = [\"/usr\", \"/usr/lib\"]")
        expectOneProblem(nested, line: line(of: "cached", in: nested), field: "root.cached", "\"/usr/lib\" and \"/usr\" overlap")
        let twice = with("cached = [\"/usr\", \"/usr\"]")
        expectOneProblem(twice, line: line(of: "cached", in: twice), field: "root.cached", "listed twice")
        let notList = with("cached = \"/usr\"")
        expectOneProblem(notList, line: line(of: "cached", in: notList), field: "root.cached", "array of strings")
        let zero = with("cache_seconds = 0")
        expectOneProblem(zero, line: line(of: "cache_seconds", in: zero), field: "root.cache_seconds", "out of range")
        let gfs = baseGFS2.replacingOccurrences(of: "lock_table = \"ssi:root\"", with: "lock_table = \"ssi:root\"\ncached = [\"/usr\"]")
        expectOneProblem(gfs, line: line(of: "cached", in: gfs), field: "root.cached", "only for type = \"cfs\"")
    }
}
