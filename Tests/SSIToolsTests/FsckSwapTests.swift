import Foundation
import Testing
@testable import SSITools
import SSILinux

final class Captured: @unchecked Sendable {
    var out: [String] = []
    var err: [String] = []
    var output: Output { Output(out: { self.out.append($0) }, error: { self.err.append($0) }) }
}

func run(_ argv: [String]) throws -> (out: String, code: Int32) {
    let p = Foundation.Process()
    p.executableURL = URL(fileURLWithPath: argv[0])
    p.arguments = Array(argv.dropFirst())
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    p.waitUntilExit()
    return (String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self), p.terminationStatus)
}

/// ssi-fsck without a cluster is util-linux's fsck: the same checker, the
/// same exit code, the same dry-run line.
@Suite(.enabled(if: FileManager.default.isExecutableFile(atPath: "/usr/sbin/fsck.ext4") && FileManager.default.isExecutableFile(atPath: "/usr/sbin/mkfs.ext4"),
                "needs e2fsprogs (fsck.ext4, mkfs.ext4) to compare with"))
struct FsckCompareTests {
    static func image(_ name: String) throws -> String {
        let path = NSTemporaryDirectory() + "ssi-fsck-\(getpid())-\(name).img"
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        try FileHandle(forWritingAtPath: path)!.truncate(atOffset: 8 << 20)
        _ = try run(["/usr/sbin/mkfs.ext4", "-q", "-F", path])
        return path
    }

    @Test("-N prints the checker it would run, as util-linux's fsck does")
    func dryRun() throws {
        let img = try Self.image("dry")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let c = Captured()
        let code = FsckTool(program: "fsck", output: c.output).run(["-N", "-T", img])
        let util = try run(["/usr/sbin/fsck", "-N", "-T", img])
        #expect(code == util.code && code == 0)
        #expect(c.out == util.out.split(separator: "\n").map(String.init), "util-linux: \(util.out)")
    }

    @Test("-r: each checker's statistics line in util-linux's form, on stdout and on a descriptor (the numbers masked)")
    func statistics() throws {
        let img = try Self.image("stats")
        defer { try? FileManager.default.removeItem(atPath: img) }
        func mask(_ s: String) -> String { s.replacing(/[0-9]+/, with: "N") }
        func statsLines(_ text: String) -> [String] {
            text.split(separator: "\n").map(String.init).filter { $0.contains(", rss ") || $0.hasPrefix(img + " ") }.map(mask)
        }
        let c = Captured()
        #expect(FsckTool(program: "fsck", output: c.output).run(["-T", "-r", "-n", img]) == 0)
        let util = try run(["/usr/sbin/fsck", "-T", "-r", "-n", img])
        #expect(statsLines(util.out).count == 1, "util-linux: \(util.out)")
        #expect(c.out.map(mask) == statsLines(util.out), "ours: \(c.out)")
        // -r3: the same numbers, space-separated, on descriptor 3.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        let d = Captured()
        #expect(FsckTool(program: "fsck", output: d.output).run(["-T", "-r\(fds[1])", "-n", img]) == 0)
        close(fds[1])
        let ours = String(decoding: FileHandle(fileDescriptor: fds[0], closeOnDealloc: true).readDataToEndOfFile(), as: UTF8.self)
        let utilFD = try run(["/bin/bash", "-c", "/usr/sbin/fsck -T -r3 -n \(img) 3>&1 >/dev/null"])
        #expect(d.out.isEmpty, "nothing on stdout with a descriptor: \(d.out)")
        #expect(statsLines(ours) == statsLines(utilFD.out) && statsLines(ours).count == 1, "ours: \(ours) util-linux: \(utilFD.out)")
        #expect(FsckTool.statistics(device: "/dev/x", status: 4, maxRSS: 2836, realMicros: 4_700,
                                    user: timeval(tv_sec: 1, tv_usec: 5), system: timeval(tv_sec: 0, tv_usec: 123_456), forDescriptor: false)
                == "/dev/x: status 4, rss 2836, real 0.004700, user 1.000005, sys 0.123456")
    }

    @Test("-n on a clean file system and on a damaged one: fsck.ext4's exit codes, like util-linux's fsck")
    func exitCodes() throws {
        let img = try Self.image("codes")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let c = Captured()
        let clean = FsckTool(program: "fsck", output: c.output).run(["-T", "-n", img])
        let utilClean = try run(["/usr/sbin/fsck", "-T", "-n", img])
        #expect(clean == utilClean.code && clean == 0)
        // Zero the superblock's magic: both must fail the same way.
        let fh = FileHandle(forWritingAtPath: img)!
        try fh.seek(toOffset: 1024 + 56)
        fh.write(Data([0, 0]))
        try fh.close()
        let broken = FsckTool(program: "fsck", output: c.output).run(["-T", "-n", "-t", "ext4", img])
        let util = try run(["/usr/sbin/fsck", "-T", "-n", "-t", "ext4", img])
        #expect(broken == util.code && broken != 0, "ssi-fsck \(broken), util-linux \(util.code): \(util.out)")
    }

    @Test("-A reads $FSTAB_FILE as util-linux's fsck does, and names the fstab line's mount point; a missing one checks nothing")
    func allFromFstabFile() throws {
        let img = try Self.image("all")
        defer { try? FileManager.default.removeItem(atPath: img) }
        let fstab = NSTemporaryDirectory() + "ssi-fsck-\(getpid()).fstab"
        try "\(img) /mnt/ssi-all ext4 defaults 0 2\n\(img) /mnt/ssi-never ext4 defaults 0 0\n".write(toFile: fstab, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: fstab) }
        for file in [fstab, fstab + ".missing"] {
            let c = Captured()
            var tool = FsckTool(program: "fsck", output: c.output)
            tool.fstabFile = file
            let code = tool.run(["-A", "-N", "-T"])
            let util = try run(["/usr/bin/env", "FSTAB_FILE=" + file, "/usr/sbin/fsck", "-A", "-N", "-T"])
            #expect(code == util.code && code == 0, "\(file)")
            #expect(c.out == util.out.split(separator: "\n").map(String.init), "util-linux: \(util.out)")
            #expect(file != fstab || c.out == ["[/usr/sbin/fsck.ext4 (1) -- /mnt/ssi-all] fsck.ext4 \(img) "], "\(c.out)")
        }
    }

    @Test("a missing device: exit 8, as util-linux's fsck")
    func missing() throws {
        let c = Captured()
        let code = FsckTool(program: "fsck", output: c.output).run(["-T", "-n", "/dev/ssi-no-such-disk"])
        let util = try run(["/usr/sbin/fsck", "-T", "-n", "/dev/ssi-no-such-disk"])
        #expect(code == 8 && code == util.code, "util-linux: \(util.code) \(util.out)")
    }
}

@Suite struct SwapOwnersTests {
    @Test("owners from cluster.conf swap and fstab node=N; fstab lines without node= are anyone's for -a")
    func owners() throws {
        let dir = NSTemporaryDirectory() + "ssi-swap-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conf = try String(contentsOfFile: packageRoot() + "/configs/cfs-3node.conf", encoding: .utf8)
            .replacingOccurrences(of: "address = \"10.77.0.2\"\n", with: "address = \"10.77.0.2\"\nswap = \"LABEL=swap-two\"\n")
        try conf.write(toFile: dir + "/cluster.conf", atomically: true, encoding: .utf8)
        try """
            UUID=0000-3333 none swap sw,node=3,pri=5 0 0
            /dev/vdz none swap sw 0 0
            /dev/vdy none swap sw,noauto 0 0
            UUID=0000-4444 none swap sw,node=3,noauto 0 0

            """.write(toFile: dir + "/fstab", atomically: true, encoding: .utf8)
        let o = SwapOwners(configPath: dir + "/cluster.conf", fstab: dir + "/fstab")
        // noauto lines are kept, marked: -a passes them over (saying so
        // with -v), swapoff -a tries them, and they still name an owner.
        #expect(o.areas(for: 2).map(\.spec) == ["LABEL=swap-two", "/dev/vdz", "/dev/vdy"])
        #expect(o.areas(for: 2).map(\.noAuto) == [false, false, true])
        #expect(o.areas(for: 3).map(\.spec) == ["UUID=0000-3333", "UUID=0000-4444", "/dev/vdz", "/dev/vdy"])
        #expect(o.areas(for: 3).map(\.noAuto) == [false, true, false, true])
        #expect(o.fstab.map(\.spec) == ["UUID=0000-3333", "/dev/vdz", "/dev/vdy", "UUID=0000-4444"])
        #expect(o.owner(of: .init(name: "vdf", path: "/dev/vdf", type: "swap", uuid: "0000-4444"))?.node == 3)
        #expect(o.areas(for: 3).first?.priority == 5)
        #expect(o.owner(of: .init(name: "vdc", path: "/dev/vdc", type: "swap", label: "swap-two"))?.node == 2)
        #expect(o.owner(of: .init(name: "vdd", path: "/dev/vdd", type: "swap", uuid: "0000-3333"))?.node == 3)
        #expect(o.owner(of: .init(name: "vde", path: "/dev/vde", type: "swap", uuid: "9999"))  == nil)
    }

    @Test("usage errors and a missing area: util-linux swapon's words and codes")
    func errors() {
        let c = Captured()
        #expect(SwapTool(program: "swapon", off: false, output: c.output).run(["--foo"]) == 1)
        #expect(c.err == ["swapon: unrecognized option '--foo'", "Try 'swapon --help' for more information."])
        let d = Captured()
        #expect(SwapTool(program: "swapon", off: false, output: d.output).run(["/nonexistent-swap"]) == 255)
        #expect(d.err == ["swapon: cannot open /nonexistent-swap: No such file or directory"])
        let e = Captured()
        #expect(SwapTool(program: "swapoff", off: true, output: e.output).run(["--bar"]) == 16)
    }
}

func packageRoot() -> String {
    var url = URL(fileURLWithPath: #filePath)
    while url.path != "/" {
        url.deleteLastPathComponent()
        if FileManager.default.fileExists(atPath: url.path + "/Package.swift") { return url.path }
    }
    return "."
}
