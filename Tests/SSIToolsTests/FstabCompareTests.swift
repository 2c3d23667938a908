import Foundation
import Testing
@testable import SSITools

/// ssi-mount against util-linux's mount on the same fstab, both in fake
/// mode (-f: everything but the mount(2) call), without a cluster: the
/// same lines on stdout and stderr and the same exit code. node= is
/// OpenSSI's and means nothing to util-linux; with no cluster ssi-mount
/// drops it, so its entries behave like the others.
@Suite(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/mount"),
                "needs root and util-linux's /usr/bin/mount to compare with"))
struct FstabCompareTests {
    static func fstab() throws -> (String, String) {
        let dir = NSTemporaryDirectory() + "ssi-fstab-\(getpid())-\(Int.random(in: 0...1_000_000))"
        for d in ["a", "b", "c", "d", "e"] {
            try FileManager.default.createDirectory(atPath: dir + "/" + d, withIntermediateDirectories: true)
        }
        let text = """
            # a comment
            tmpfs \(dir)/a tmpfs defaults 0 0
            tmpfs \(dir)/b tmpfs noauto 0 0
            tmpfs \(dir)/c tmpfs size=1m,mode=0700 0 0
            proc /proc proc defaults 0 0
            tmpfs \(dir)/d tmpfs size=2m,_netdev 0 0
            sysfs \(dir)/e sysfs ro 0 0

            """
        let path = dir + "/fstab"
        try text.write(toFile: path, atomically: true, encoding: .utf8)
        return (dir, path)
    }

    struct Run: Equatable {
        var out: [String]
        var err: [String]
        var code: Int32
    }

    static func utilLinux(_ args: [String]) throws -> Run {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/mount")
        p.arguments = args
        var env = ProcessInfo.processInfo.environment
        env["LC_ALL"] = "C"
        p.environment = env
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        func lines(_ pipe: Pipe) -> [String] {
            String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n").map(String.init)
        }
        return Run(out: lines(out), err: lines(err), code: p.terminationStatus)
    }

    static func ours(_ args: [String]) -> Run {
        final class Box: @unchecked Sendable { var out: [String] = []; var err: [String] = [] }
        let box = Box()
        let tool = MountTool(program: "mount", output: Output(out: { box.out.append($0) }, error: { box.err.append($0) }))
        let code = tool.run(args)
        return Run(out: box.out, err: box.err, code: code)
    }

    @Test("mount -a, -a -t, -a -O, and one entry by its mount point: the same output and code as util-linux",
          arguments: [["-a"], ["-a", "-t", "tmpfs"], ["-a", "-t", "nosysfs,proc"], ["-a", "-O", "_netdev"], ["-a", "-O", "no_netdev"],
                      ["MP:a"], ["MP:c"], ["MP:b"]])
    func sameAsUtilLinux(_ args: [String]) throws {
        let (dir, path) = try Self.fstab()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let real = args.map { $0.hasPrefix("MP:") ? dir + "/" + $0.dropFirst(3) : $0 }
        let full = ["--fake", "-v", "-T", path] + real
        let expected = try Self.utilLinux(full)
        let got = Self.ours(full)
        #expect(got == expected, "util-linux: \(expected)\nssi-mount: \(got)")
        #expect(!expected.out.isEmpty || !expected.err.isEmpty, "util-linux said something to compare with")
    }

    @Test("node= in fstab without a cluster: dropped, the entry mounts like the others")
    func nodeOptionWithoutCluster() throws {
        let (dir, path) = try Self.fstab()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "tmpfs \(dir)/a tmpfs size=1m,node=2 0 0\ntmpfs \(dir)/b tmpfs node=* 0 0\n".write(toFile: path, atomically: true, encoding: .utf8)
        let got = Self.ours(["--fake", "-v", "-a", "-T", path])
        #expect(got.code == 0, "\(got)")
        #expect(got.out.contains { $0.hasPrefix(dir + "/a") && $0.hasSuffix(": successfully mounted") }, "\(got)")
        #expect(got.out.contains { $0.hasPrefix(dir + "/b") && $0.hasSuffix(": successfully mounted") }, "\(got)")
    }

    @Test("listing: mount, mount -l, mount -t: the same lines as util-linux (tried up to 3 times: other tests may mount meanwhile)",
          arguments: [[String](), ["-l"], ["-t", "proc,sysfs,tmpfs"]])
    func listing(_ args: [String]) throws {
        var last: (Run, Run)?
        for _ in 0..<3 {
            let expected = try Self.utilLinux(args)
            let got = Self.ours(args)
            if got == expected { return }
            last = (expected, got)
        }
        Issue.record("util-linux: \(last!.0)\nssi-mount: \(last!.1)")
    }

    @Test("usage errors print util-linux's words, full argv[0] first, and exit 1",
          arguments: [["--foo"], ["-z"], ["-o"], ["--options"]])
    func usage(_ args: [String]) throws {
        let expected = try Self.utilLinux(args)
        let got = Self.ours(args)
        #expect(got.code == expected.code && got.code == 1)
        #expect(got.err == expected.err.map { $0.replacingOccurrences(of: "/usr/bin/mount:", with: "mount:") })
    }
}
