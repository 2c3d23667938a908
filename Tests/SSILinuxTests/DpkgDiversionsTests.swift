import Testing
import SSICore
@testable import SSILinux

@Suite struct DpkgDiversionsTests {
    typealias Entry = DpkgDiversions.Entry

    @Test func parsesDpkgsDatabase() throws {
        let text = """
            /usr/share/man/man1/sh.1.gz
            /usr/share/man/man1/sh.distrib.1.gz
            dash
            /usr/bin/mount
            /usr/bin/mount.distrib
            ssi
            /etc/local.conf
            /etc/local.conf.orig
            :

            """
        let e = try DpkgDiversions.parse(text)
        #expect(e == [Entry(from: "/usr/share/man/man1/sh.1.gz", to: "/usr/share/man/man1/sh.distrib.1.gz", package: "dash"),
                      Entry(from: "/usr/bin/mount", to: "/usr/bin/mount.distrib", package: "ssi"),
                      Entry(from: "/etc/local.conf", to: "/etc/local.conf.orig", package: nil)])
        #expect(try DpkgDiversions.parse("") == [])
    }

    @Test func aTruncatedDatabaseIsAnErrorNamingIt() {
        #expect(throws: SSIError.self) { try DpkgDiversions.parse("/a\n/a.d\n", file: "/var/lib/dpkg/diversions") }
        do {
            _ = try DpkgDiversions.parse("/a\n/a.d\n", file: "/var/lib/dpkg/diversions")
        } catch {
            #expect(error.message.hasPrefix("/var/lib/dpkg/diversions: 2 lines"))
        }
    }

    @Test func aliasIsDpkgsNameOnMergedUsr() {
        #expect(SSIDiversion.alias("/usr/bin/mount") == "/bin/mount")
        #expect(SSIDiversion.alias("/usr/sbin/fsck") == "/sbin/fsck")
        #expect(SSIDiversion.divertedPath("/usr/sbin/fsck") == "/usr/sbin/fsck.distrib")
    }

    func ours(_ path: String) -> [Entry] {
        [Entry(from: path, to: path + ".distrib", package: "ssi"),
         Entry(from: SSIDiversion.alias(path), to: SSIDiversion.alias(path) + ".distrib", package: "ssi")]
    }

    @Test func states() {
        let p = "/usr/bin/mount"
        #expect(SSIDiversion.state(of: p, diversions: [], link: nil, distribExists: false) == .distro)
        #expect(SSIDiversion.state(of: p, diversions: ours(p), link: "/usr/sbin/ssi", distribExists: true) == .ssi)
        // Another package's diversion, under either name.
        #expect(SSIDiversion.state(of: p, diversions: [Entry(from: "/bin/mount", to: "/bin/mount.real", package: "busybox-x")],
                                   link: nil, distribExists: false) == .otherPackage("busybox-x"))
        #expect(SSIDiversion.state(of: p, diversions: [Entry(from: p, to: p + ".local", package: nil)],
                                   link: nil, distribExists: false) == .otherPackage("a local diversion"))
    }

    @Test func halfDoneSaysWhatIsMissing() {
        let p = "/usr/sbin/swapon"
        // Diverted, but the link is not there (an interrupted enable).
        guard case .partial(let a) = SSIDiversion.state(of: p, diversions: ours(p), link: nil, distribExists: true) else {
            Issue.record("not partial"); return
        }
        #expect(a == "/usr/sbin/swapon is not a link to /usr/sbin/ssi")
        // Only the /usr name diverted, linked somewhere else.
        guard case .partial(let b) = SSIDiversion.state(of: p, diversions: [ours(p)[0]], link: "/bin/busybox", distribExists: true) else {
            Issue.record("not partial"); return
        }
        #expect(b == "no diversion of /sbin/swapon; /usr/sbin/swapon links to /bin/busybox, not /usr/sbin/ssi")
        // A link to ssi with nothing diverted: the distro's file is gone.
        guard case .partial(let c) = SSIDiversion.state(of: p, diversions: [], link: "/usr/sbin/ssi", distribExists: false) else {
            Issue.record("not partial"); return
        }
        #expect(c.contains("no diversion of /usr/sbin/swapon") && c.contains("no /usr/sbin/swapon.distrib"))
    }
}
