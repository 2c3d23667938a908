import Foundation
import Testing
@testable import SSIBoot

/// The exit root ssi-init makes for a GFS2 root, and the decisions of the
/// program systemd-shutdown runs there. The power-off itself (PID 1,
/// unmounting the root, the clean leave) is proved in the GFS2 VM test.
@Suite struct ExitRootTests {
    static func tempDir() throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("ssi-exitroot-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    static func inode(_ path: String) throws -> UInt64 {
        (try FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
    }

    /// A daemons' root as AgentsRoot.prepare leaves it: ssi, a library and
    /// its link, a private key and a fence configuration, the top links.
    static func agentsRoot(in dir: String) throws -> (path: String, list: [String]) {
        let root = dir + "/agents"
        let fm = FileManager.default
        for d in ["usr/bin", "usr/lib/x86_64-linux-gnu", "etc/corosync", "etc/dlm"] {
            try fm.createDirectory(atPath: root + "/" + d, withIntermediateDirectories: true)
        }
        _ = fm.createFile(atPath: root + "/usr/bin/ssi", contents: Data("ELF".utf8), attributes: [.posixPermissions: 0o755])
        _ = fm.createFile(atPath: root + "/usr/lib/x86_64-linux-gnu/libc.so.6", contents: Data("lib".utf8), attributes: [.posixPermissions: 0o644])
        try fm.createSymbolicLink(atPath: root + "/usr/lib/x86_64-linux-gnu/libc.so", withDestinationPath: "libc.so.6")
        _ = fm.createFile(atPath: root + "/etc/corosync/authkey", contents: Data("secret".utf8), attributes: [.posixPermissions: 0o400])
        _ = fm.createFile(atPath: root + "/etc/dlm/dlm.conf", contents: Data("password=x".utf8), attributes: [.posixPermissions: 0o600])
        for (link, target) in [("bin", "usr/bin"), ("lib", "usr/lib")] {
            try fm.createSymbolicLink(atPath: root + "/" + link, withDestinationPath: target)
        }
        return (root, ["usr/bin/ssi", "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/x86_64-linux-gnu/libc.so",
                       "etc/corosync/authkey", "etc/dlm/dlm.conf", "usr/share/missing"])
    }

    @Test("made of hard links to the daemons' root, symlinks copied, nothing private, systemd-shutdown's program and mount points")
    func makesTheTree() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (agents, list) = try Self.agentsRoot(in: dir)
        let exit = dir + "/initramfs"
        let linked = try ExitRoot.make(from: agents, list: list, at: exit)
        #expect(linked == 2)
        #expect(try Self.inode(exit + "/usr/bin/ssi") == Self.inode(agents + "/usr/bin/ssi"), "a link, not a copy")
        #expect(try Self.inode(exit + "/usr/lib/x86_64-linux-gnu/libc.so.6") == Self.inode(agents + "/usr/lib/x86_64-linux-gnu/libc.so.6"))
        let fm = FileManager.default
        #expect(try fm.destinationOfSymbolicLink(atPath: exit + "/usr/lib/x86_64-linux-gnu/libc.so") == "libc.so.6")
        #expect(try fm.destinationOfSymbolicLink(atPath: exit + "/bin") == "usr/bin")
        #expect(try fm.destinationOfSymbolicLink(atPath: exit + "/shutdown") == "usr/bin/ssi")
        #expect(!fm.fileExists(atPath: exit + "/etc/corosync/authkey"), "the cluster key is not linked")
        #expect(!fm.fileExists(atPath: exit + "/etc/dlm/dlm.conf"), "fence secrets are not linked")
        #expect(fm.fileExists(atPath: exit + "/" + ExitRoot.marker))
        for d in ExitRoot.mountPoints {
            var isDir: ObjCBool = false
            #expect(fm.fileExists(atPath: exit + "/" + d, isDirectory: &isDir) && isDir.boolValue, "\(d)")
        }
        #expect(!fm.fileExists(atPath: exit + ".ssi-new"))
    }

    @Test("made again at the next boot: the old tree is replaced whole")
    func replacesAnOldTree() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (agents, list) = try Self.agentsRoot(in: dir)
        let exit = dir + "/initramfs"
        try FileManager.default.createDirectory(atPath: exit + "/stale/deep", withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: exit + "/stale/deep/file", contents: Data())
        _ = try ExitRoot.make(from: agents, list: list, at: exit)
        _ = try ExitRoot.make(from: agents, list: list, at: exit)
        #expect(!FileManager.default.fileExists(atPath: exit + "/stale"))
        #expect(FileManager.default.fileExists(atPath: exit + "/usr/bin/ssi"))
    }

    @Test("without ssi in the daemons' root there is no exit root, and the old one stays")
    func refusesWithoutSSI() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (agents, list) = try Self.agentsRoot(in: dir)
        try FileManager.default.removeItem(atPath: agents + "/usr/bin/ssi")
        let exit = dir + "/initramfs"
        try FileManager.default.createDirectory(atPath: exit, withIntermediateDirectories: true)
        _ = FileManager.default.createFile(atPath: exit + "/old", contents: Data())
        #expect(throws: (any Error).self) { _ = try ExitRoot.make(from: agents, list: list, at: exit) }
        #expect(FileManager.default.fileExists(atPath: exit + "/old"))
    }

    @Test("the verb is systemd-shutdown's first word that is one; exit powers off; none is nil")
    func verbs() {
        #expect(ShutdownProgram.parseVerb(["/shutdown", "poweroff", "--log-level", "info"]) == .poweroff)
        #expect(ShutdownProgram.parseVerb(["/shutdown", "--timeout", "90000000us", "reboot"]) == .reboot)
        #expect(ShutdownProgram.parseVerb(["/shutdown", "halt"]) == .halt)
        #expect(ShutdownProgram.parseVerb(["/shutdown", "kexec"]) == .kexec)
        #expect(ShutdownProgram.parseVerb(["/shutdown", "exit"]) == .poweroff)
        #expect(ShutdownProgram.parseVerb(["/shutdown"]) == nil)
        #expect(ShutdownProgram.parseVerb(["/shutdown", "--log-target", "kmsg"]) == nil)
        #expect(ShutdownProgram.Verb.kexec.command == ShutdownProgram.Verb.reboot.command)
        #expect(Set(ShutdownProgram.Verb.allCases.map(\.command)).count == 3)
    }

    @Test("the agents stop first, then dlm_controld, then corosync; an empty group is left out")
    func stopOrder() {
        let daemons: [ShutdownProgram.Daemon] = [
            .init(pid: 10, argv0: "@/usr/sbin/corosync"), .init(pid: 11, argv0: "@/usr/bin/ssi"),
            .init(pid: 12, argv0: "@/usr/sbin/dlm_controld"), .init(pid: 13, argv0: "@/usr/bin/ssi"),
            .init(pid: 14, argv0: "@sbin/mdmon"),
        ]
        let order = ShutdownProgram.stopOrder(daemons)
        #expect(order.map(\.what) == ["the agents", "dlm_controld", "corosync"])
        #expect(order.map(\.pids) == [[11, 13, 14], [12], [10]])
        #expect(ShutdownProgram.stopOrder([.init(pid: 3, argv0: "@/usr/sbin/corosync")]).map(\.what) == ["corosync"])
        #expect(ShutdownProgram.stopOrder([]).isEmpty)
    }

    @Test("the daemons are the processes whose argv[0] starts with @; the rest, odd names and unreadable ones are skipped")
    func daemonsFromProc() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        for (pid, cmdline) in [("7", "@/usr/sbin/corosync\0-f\0"), ("8", "/usr/bin/bash\0"), ("9", "@/usr/bin/ssi\0cluster\0agent\0"),
                               ("self", "@/x\0"), ("0", "@/y\0")] {
            try fm.createDirectory(atPath: dir + "/" + pid, withIntermediateDirectories: true)
            _ = fm.createFile(atPath: dir + "/" + pid + "/cmdline", contents: Data(cmdline.utf8))
        }
        try fm.createDirectory(atPath: dir + "/10", withIntermediateDirectories: true)  // a process already gone
        #expect(ShutdownProgram.daemons(proc: dir) == [.init(pid: 7, argv0: "@/usr/sbin/corosync"), .init(pid: 9, argv0: "@/usr/bin/ssi")])
    }

    @Test("what is left: the dlm's lockspaces and GFS2's file systems, each a directory in sysfs")
    func remainingFromSys() throws {
        let dir = try Self.tempDir()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        #expect(ShutdownProgram.remaining(sys: dir).lockspaces.isEmpty && ShutdownProgram.remaining(sys: dir).gfs2.isEmpty)
        let fm = FileManager.default
        for d in ["kernel/dlm/root", "fs/gfs2/ssi:root"] { try fm.createDirectory(atPath: dir + "/" + d, withIntermediateDirectories: true) }
        _ = fm.createFile(atPath: dir + "/kernel/dlm/not-a-lockspace", contents: Data())
        let left = ShutdownProgram.remaining(sys: dir)
        #expect(left.lockspaces == ["root"] && left.gfs2 == ["ssi:root"])
    }
}
