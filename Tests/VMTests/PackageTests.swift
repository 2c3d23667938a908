// The Debian package, for real: installed with dpkg into a copy of the
// cached Debian test root (chroot, no VM), its files checked, `ssi divert`
// enabled, and the package purged: util-linux's mount, umount, swapon,
// swapoff and fsck must be back and working, with no diversion left.

import Foundation
import SSIVMHarness
import Testing

/// The .deb under test: SSI_DEB (scripts/test sets it after scripts/build-deb).
let packageDeb: String? = VMHost.environment("SSI_DEB")

let packageSkipReason: String? = {
    guard let deb = packageDeb else { return "set SSI_DEB or run scripts/build-deb" }
    guard FileManager.default.isReadableFile(atPath: deb) else { return "SSI_DEB=\(deb) is not a readable file (run scripts/build-deb)" }
    guard geteuid() == 0 else { return "needs root (a chroot with /proc and /dev bound, dpkg in it)" }
    return nil
}()

extension VM {
    @Suite struct PackageTests {
        static let cache = "/var/cache/ssi-test"
        static let names = ["ssi", "ssi-mkinitrd", "ssi-init", "ssi-cluster", "ssi-mount", "ssi-umount",
                            "ssi-swapon", "ssi-swapoff", "ssi-fsck", "fence_ssi", "ssi-migrate"]
        /// OpenSSI's process commands, in /usr/bin.
        static let userNames = ["migrate", "onnode", "where_pid"]
        static let diverted = ["/usr/bin/mount", "/usr/bin/umount", "/usr/sbin/swapon", "/usr/sbin/swapoff", "/usr/sbin/fsck"]

        @Test("dpkg -i, ssi divert enable, dpkg --purge: the package installs what it says and gives util-linux back",
              .enabled(if: packageSkipReason == nil, Comment(rawValue: packageSkipReason ?? "")),
              .timeLimit(.minutes(10)))
        func installDivertPurge() throws {
            var root = try Chroot(debianRoot: try Self.debianRoot())
            defer { root.remove() }
            let fm = FileManager.default

            try fm.copyItem(atPath: packageDeb!, toPath: root.path + "/tmp/ssi.deb")
            let install = try root.run(["dpkg", "-i", "/tmp/ssi.deb"], check: false)
            try #require(install.status == 0, "dpkg -i failed:\n\(install.stdout)\(install.stderr)")

            // The binary, its names, and a version that is the package's.
            for name in Self.names {
                let path = root.path + "/usr/sbin/" + name
                #expect(fm.fileExists(atPath: path), "/usr/sbin/\(name) is missing")
                if name != "ssi" {
                    #expect((try? fm.destinationOfSymbolicLink(atPath: path)) == "ssi", "/usr/sbin/\(name) is not a link to ssi")
                }
            }
            for name in Self.userNames {
                #expect((try? fm.destinationOfSymbolicLink(atPath: root.path + "/usr/bin/" + name)) == "../sbin/ssi",
                        "/usr/bin/\(name) is not a link to ../sbin/ssi")
            }
            let version = try root.run(["ssi", "--version"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
            let packageVersion = try root.run(["dpkg-query", "-W", "-f=${Version}", "ssi"]).stdout
            #expect(!version.isEmpty && version == packageVersion, "ssi --version says \(version), the package is \(packageVersion)")

            // Man pages (gzip'd), completions, examples, hooks.
            for page in ["ssi.8.gz", "ssi.mkinitrd.8.gz", "ssi.cluster.status.8.gz", "ssi.divert.8.gz", "fence_ssi.8.gz", "ssi-mkinitrd.8.gz",
                         "onnode.8.gz", "where_pid.8.gz", "migrate.8.gz", "ssi-migrate.8.gz"] {
                let data = fm.contents(atPath: root.path + "/usr/share/man/man8/" + page)
                #expect(data.map { $0.starts(with: [0x1f, 0x8b]) } == true, "man page \(page) missing or not gzip'd")
            }
            let man = try root.run(["sh", "-c", "zcat /usr/share/man/man8/ssi.mkinitrd.8.gz"]).stdout
            // mdoc: `.It Fl u , -update` renders as "-u, --update".
            #expect(man.contains("Fl u , -update") && man.contains("Fl k , -kver"), "ssi.mkinitrd.8 does not describe -u/--update and -k/--kver")
            let bash = (try? String(contentsOfFile: root.path + "/usr/share/bash-completion/completions/ssi", encoding: .utf8)) ?? ""
            #expect(bash.contains("complete -") && !bash.hasPrefix("#!"), "bash completion missing or starts with #!")
            for file in ["/usr/share/zsh/vendor-completions/_ssi", "/usr/share/fish/vendor_completions.d/ssi.fish",
                         "/usr/share/doc/ssi/examples/cfs-3node.conf", "/usr/share/doc/ssi/examples/gfs2-3node.conf",
                         "/etc/default/ssi"] {
                #expect(((try? fm.attributesOfItem(atPath: root.path + file)[.size] as? Int) ?? 0) > 0, "\(file) missing or empty")
            }
            // INSTALL.md's first cluster command writes the key there.
            var isDir: ObjCBool = false
            #expect(fm.fileExists(atPath: root.path + "/etc/ssi", isDirectory: &isDir) && isDir.boolValue, "/etc/ssi is not shipped")
            let key = try root.run(["ssi", "cluster", "keygen", "-o", "/etc/ssi/authkey"], check: false)
            #expect(key.status == 0, "ssi cluster keygen -o /etc/ssi/authkey: \(key.stderr)")
            for hook in ["/usr/lib/systemd/system-shutdown/ssi-gfs2-root", "/etc/kernel/postinst.d/ssi", "/etc/kernel/postrm.d/ssi",
                         "/etc/grub.d/09_ssi"] {
                #expect(fm.isExecutableFile(atPath: root.path + hook), "\(hook) missing or not executable")
            }

            // The kernel hook does nothing until the admin opts in; then it
            // runs ssi-mkinitrd -u, whose error names the kernel (the test
            // root has no kernel installed).
            let quiet = try root.run(["/etc/kernel/postinst.d/ssi", "6.1.0-99-test", "/boot/vmlinuz-6.1.0-99-test"], check: false)
            #expect(quiet.status == 0 && quiet.stdout.isEmpty && quiet.stderr.isEmpty,
                    "the hook was not a no-op without SSI_MKINITRD=yes: \(quiet.status) \(quiet.stderr)")
            try "SSI_MKINITRD=yes\n".write(toFile: root.path + "/etc/default/ssi", atomically: true, encoding: .utf8)
            let optedIn = try root.run(["/etc/kernel/postinst.d/ssi", "6.1.0-99-test"], check: false)
            #expect(optedIn.status != 0 && optedIn.stderr.contains("kernel 6.1.0-99-test is not installed"),
                    "opted-in hook: status \(optedIn.status), stderr: \(optedIn.stderr)")
            #expect(!fm.fileExists(atPath: root.path + "/boot/ssi-initrd.img-6.1.0-99-test"))
            // With the host's kernel modules (read-only) in the root, the
            // opted-in hooks build that kernel's ssi image and remove it.
            if let kernel = VMHost.kernel {
                let v = kernel.version
                try root.bind(kernel.modulesDirectory, readOnly: true)
                let built = try root.run(["/etc/kernel/postinst.d/ssi", v, "/boot/vmlinuz-\(v)"], check: false)
                #expect(built.status == 0, "postinst.d/ssi \(v): \(built.stderr)")
                #expect(built.stdout.contains("wrote /boot/ssi-initrd.img-\(v)"), "postinst.d/ssi \(v): \(built.stdout)")
                let listing = try root.run(["ssi-mkinitrd", "--list", "/boot/ssi-initrd.img-\(v)"]).stdout
                #expect(listing.contains(" init") && listing.contains(".ko"), "the image has no /init or no module")
                // The package's binary, packed when the package was built
                // (debian/rules, after dh_strip), is appended as it is.
                let packed = (try? fm.contentsOfDirectory(atPath: root.path + "/usr/lib/ssi")) ?? []
                #expect(packed.count == 1 && packed[0].hasPrefix("ssi-") && packed[0].hasSuffix(".cpio.zst"), "/usr/lib/ssi: \(packed)")
                #expect(built.stdout.contains("ssi from its packed archive /usr/lib/ssi/ssi-"), "\(built.stdout)")
                #expect(listing.contains("# archive 2") && (listing.components(separatedBy: "# archive 2").last ?? "").contains(" usr/bin/ssi\n"),
                        "the packed binary is the image's second archive: \(listing.suffix(300))")
                #expect(!fm.fileExists(atPath: root.path + "/boot/initrd.img-\(v)"), "initramfs-tools' name was written")
                try root.run(["/etc/kernel/postrm.d/ssi", v, "/boot/vmlinuz-\(v)"])
                #expect(!fm.fileExists(atPath: root.path + "/boot/ssi-initrd.img-\(v)"), "postrm.d/ssi left the image")

                // SSI_NETBOOT on a CFS init node: the newest kernel's install
                // refreshes the netboot folder; an older one's does not.
                try fm.copyItem(atPath: kernel.path, toPath: root.path + "/boot/vmlinuz-\(v)")
                try fm.copyItem(atPath: VMHost.packageRoot + "/configs/cfs-3node.conf", toPath: root.path + "/etc/ssi/cluster.conf")
                // The served image carries the init node's enrolled identity.
                let key = try root.run(["ssi-cluster", "node", "key", "new", "-o", "/etc/ssi/node.key"])
                #expect(key.stdout.contains("fingerprint: SHA256:"), "\(key.stdout)")
                let enrolled = try root.run(["ssi-cluster", "node", "enroll", "node1", "--key", "/etc/ssi/node.key"])
                #expect(enrolled.stdout.contains("enrolled node1 as SHA256:") && enrolled.stdout.contains("rebuild it"), "\(enrolled.stdout)")
                try "SSI_NETBOOT=/srv/ssi/netboot\n".write(toFile: root.path + "/etc/default/ssi", atomically: true, encoding: .utf8)
                let served = try root.run(["/etc/kernel/postinst.d/ssi", v, "/boot/vmlinuz-\(v)"], check: false)
                #expect(served.status == 0 && served.stderr.contains("/srv/ssi/netboot now serves \(v)"), "\(served.status) \(served.stderr)")
                for f in ["initrd.img", "vmlinuz", "boot.ipxe", "dhcp-hosts"] {
                    #expect(fm.fileExists(atPath: root.path + "/srv/ssi/netboot/" + f), "the hook's --netboot wrote no \(f)")
                }
                #expect(fm.contentsEqual(atPath: root.path + "/srv/ssi/netboot/vmlinuz", andPath: kernel.path), "the served kernel is \(v)'s")
                #expect(!fm.fileExists(atPath: root.path + "/boot/ssi-initrd.img-\(v)"), "SSI_MKINITRD is not set: no /boot image")
                try "k".write(toFile: root.path + "/boot/vmlinuz-99.1.0-1-amd64", atomically: true, encoding: .utf8)
                let older = try root.run(["/etc/kernel/postinst.d/ssi", v], check: false)
                #expect(older.status == 0 && older.stderr.contains("keeps serving 99.1.0-1-amd64, the newest kernel (not \(v))"), "\(older.stderr)")
                try "SSI_NETBOOT=srv/netboot\n".write(toFile: root.path + "/etc/default/ssi", atomically: true, encoding: .utf8)
                let relative = try root.run(["/etc/kernel/postinst.d/ssi", v], check: false)
                #expect(relative.status == 1 && relative.stderr.contains("give the netboot folder (an absolute path"), "\(relative.stderr)")
                try "SSI_NETBOOT=/srv/ssi/netboot\n".write(toFile: root.path + "/etc/default/ssi", atomically: true, encoding: .utf8)
                let missing = try root.run(["/etc/kernel/postinst.d/ssi", "6.1.0-98-missing"], check: false)
                #expect(missing.status == 0 && missing.stderr.contains("/boot/vmlinuz-6.1.0-98-missing does not exist, so /srv/ssi/netboot is left as it was"),
                        "\(missing.status) \(missing.stderr)")
                try fm.removeItem(atPath: root.path + "/boot/vmlinuz-99.1.0-1-amd64")
                try fm.removeItem(atPath: root.path + "/boot/vmlinuz-\(v)")
                try "SSI_MKINITRD=yes\n".write(toFile: root.path + "/etc/default/ssi", atomically: true, encoding: .utf8)
            }

            // ssi divert: before, enable (twice: idempotent), after.
            let before = try root.run(["ssi", "divert", "status"], check: false)
            #expect(before.status == 3, "divert status before enable: \(before.status)\n\(before.stdout)")

            // A failure on the last path (a stray fsck.distrib that
            // dpkg-divert --rename would not overwrite) undoes the four
            // commands diverted before it.
            let stray = root.path + "/usr/sbin/fsck.distrib"
            try "stray\n".write(toFile: stray, atomically: true, encoding: .utf8)
            let refused = try root.run(["ssi", "divert", "enable"], check: false)
            #expect(refused.status == 1 && refused.stderr.contains("/usr/sbin/fsck.distrib exists already")
                        && refused.stderr.contains("undone"), "enable with a stray fsck.distrib: \(refused.status) \(refused.stderr)")
            let rolledBack = try root.run(["ssi", "divert", "status"], check: false)
            #expect(rolledBack.status == 3, "not rolled back:\n\(rolledBack.stdout)")
            #expect(!(try root.run(["dpkg-divert", "--list"]).stdout.contains(" by ssi")), "diversions left by the failed enable")
            for path in Self.diverted {
                let type = try? fm.attributesOfItem(atPath: root.path + path)[.type] as? FileAttributeType
                #expect(type == .typeRegular, "\(path) is not the distro's file after the failed enable")
            }
            try fm.removeItem(atPath: stray)
            try root.run(["ssi", "divert", "enable"])
            try root.run(["ssi", "divert", "enable"])
            for path in Self.diverted {
                #expect((try? fm.destinationOfSymbolicLink(atPath: root.path + path)) == "/usr/sbin/ssi", "\(path) is not a link to ssi")
                let distrib = (try? fm.attributesOfItem(atPath: root.path + path + ".distrib")[.type] as? FileAttributeType)
                #expect(distrib == .typeRegular, "\(path).distrib is not the distro's file")
            }
            let status = try root.run(["ssi", "divert", "status"])
            for path in Self.diverted {
                #expect(status.stdout.contains("\(path): ssi (the distro's file is \(path).distrib)"), "divert status:\n\(status.stdout)")
            }
            let diversions = try root.run(["dpkg-divert", "--list"]).stdout
            #expect(diversions.contains("diversion of /usr/bin/mount to /usr/bin/mount.distrib by ssi"))
            #expect(diversions.contains("diversion of /bin/mount to /bin/mount.distrib by ssi"), "dpkg's own name for the file is not diverted:\n\(diversions)")

            // Purge: everything of ssi's goes, util-linux's commands are back.
            let purge = try root.run(["dpkg", "--purge", "ssi"], check: false)
            try #require(purge.status == 0, "dpkg --purge failed:\n\(purge.stdout)\(purge.stderr)")
            for name in Self.names {
                #expect(!fm.fileExists(atPath: root.path + "/usr/sbin/" + name), "/usr/sbin/\(name) is still there")
            }
            for file in ["/usr/share/man/man8/ssi.8.gz", "/usr/share/bash-completion/completions/ssi", "/etc/default/ssi",
                         "/etc/kernel/postinst.d/ssi", "/usr/lib/systemd/system-shutdown/ssi-gfs2-root", "/usr/share/doc/ssi",
                         "/etc/grub.d/09_ssi"] {
                #expect(!fm.fileExists(atPath: root.path + file), "\(file) is still there after the purge")
            }
            for path in Self.diverted {
                let type = try? fm.attributesOfItem(atPath: root.path + path)[.type] as? FileAttributeType
                #expect(type == .typeRegular, "\(path) is not a regular file after the purge")
                #expect(!fm.fileExists(atPath: root.path + path + ".distrib"), "\(path).distrib is still there")
            }
            let mountVersion = try root.run(["mount", "--version"]).stdout
            #expect(mountVersion.contains("util-linux"), "mount --version: \(mountVersion)")
            let fsck = try root.run(["fsck", "--version"]).stdout
            #expect(fsck.contains("util-linux"), "fsck --version: \(fsck)")
            let left = try root.run(["dpkg-divert", "--list"]).stdout
            #expect(!left.contains(" by ssi"), "diversions left after the purge:\n\(left)")
            let known = try root.run(["dpkg-query", "-W", "-f=${db:Status-Abbrev}", "ssi"], check: false)
            #expect(known.status != 0 || known.stdout.hasPrefix("un") || known.stdout.hasPrefix("pn"),
                    "dpkg still knows ssi: \(known.stdout)")
        }

        /// The cached Debian root of initramfs/testroot/mkdebian.sh, built
        /// (with a throwaway image) when missing. Never modified here.
        static func debianRoot() throws -> String {
            let root = cache + "/debian-root"
            if !FileManager.default.fileExists(atPath: root + "/var/lib/dpkg/status") {
                let scratch = try Chroot.temporaryDirectory("ssi-pkg-root")
                defer { try? FileManager.default.removeItem(atPath: scratch) }
                try Command.run([VMHost.testrootDirectory + "/mkdebian.sh", scratch + "/throwaway.img", "--cache", cache],
                                timeout: .seconds(600))
            }
            return root
        }
    }
}

/// A scratch copy of a root tree with /proc and /dev bound in, for running
/// commands in it with chroot. `remove()` unmounts and deletes it.
struct Chroot {
    let path: String
    private var bound: [String] = []

    init(debianRoot: String) throws {
        let scratch = try Chroot.temporaryDirectory("ssi-pkg")
        path = scratch + "/root"
        do {
            // Shared hold of mkdebian.sh's lock, as its own copies take it.
            let lock = (debianRoot as NSString).deletingLastPathComponent + "/.lock"
            try Command.run(["flock", "-s", lock, "cp", "-a", debianRoot + "/.", path + "/"], timeout: .seconds(300))
        } catch {
            try? FileManager.default.removeItem(atPath: scratch)
            throw error
        }
        for dir in ["/proc", "/dev"] {
            do {
                try Command.run(["mount", "--bind", dir, path + dir])
                bound.append(path + dir)
            } catch {
                remove()
                throw error
            }
        }
    }

    /// Binds a host folder at the same path inside the root.
    mutating func bind(_ dir: String, readOnly: Bool) throws {
        try FileManager.default.createDirectory(atPath: path + dir, withIntermediateDirectories: true)
        try Command.run(["mount", "--bind"] + (readOnly ? ["-o", "ro"] : []) + [dir, path + dir])
        bound.append(path + dir)
    }

    @discardableResult
    func run(_ argv: [String], check: Bool = true) throws -> CommandOutput {
        try Command.run(["chroot", path, "/usr/bin/env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"] + argv,
                        timeout: .seconds(120), check: check)
    }

    /// Unmounts what was bound (lazily when busy) and deletes the copy;
    /// never deletes while something is still mounted inside it.
    func remove() {
        var mounted = false
        for dir in bound.reversed() {
            if (try? Command.run(["umount", dir], check: true)) == nil {
                mounted = (try? Command.run(["umount", "-l", dir], check: true)) == nil || mounted
            }
        }
        guard !mounted else { return }
        // --one-file-system: never into anything still mounted inside.
        _ = try? Command.run(["rm", "-rf", "--one-file-system", (path as NSString).deletingLastPathComponent], timeout: .seconds(300))
    }

    static func temporaryDirectory(_ prefix: String) throws -> String {
        var template = Array("/tmp/\(prefix).XXXXXX".utf8CString)
        guard let p = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw HarnessError("mkdtemp /tmp/\(prefix).XXXXXX failed (errno \(errno))")
        }
        return String(cString: p)
    }
}
