import Foundation
import Testing
import SSITestSupport

/// debian/grub.d-ssi (the package's /etc/grub.d/09_ssi) run as
/// grub-mkconfig runs it, with Debian's grub-mkconfig_lib, on a fake /boot;
/// its output checked by GRUB's own grub-script-check.
enum GrubTools {
    static let lib = "/usr/share/grub/grub-mkconfig_lib"
    static let skipReason: String? = {
        if !FileManager.default.fileExists(atPath: lib) { return "needs grub-common (\(lib)); scripts/setup installs it" }
        if !FileManager.default.isExecutableFile(atPath: "/usr/bin/grub-script-check") { return "needs grub-script-check (grub-common)" }
        return nil
    }()
}

@Suite(.enabled(if: GrubTools.skipReason == nil, Comment(rawValue: GrubTools.skipReason ?? "")))
struct GrubEntryTests {
    static let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("debian/grub.d-ssi").path

    struct Run { var status: Int32; var out: String; var err: String }

    func run(boot: String, _ env: [String: String]) throws -> Run {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = [Self.script]
        var e = ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "pkgdatadir": "/usr/share/grub", "SSI_GRUB_BOOT": boot]
        e.merge(env) { $1 }
        p.environment = e
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), r = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Run(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: r, as: UTF8.self))
    }

    func fakeBoot(kernels: [String], images: [String]) throws -> String {
        let boot = NSTemporaryDirectory() + "ssi-grub-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: boot, withIntermediateDirectories: true)
        for k in kernels { try Data("k".utf8).write(to: URL(fileURLWithPath: "\(boot)/vmlinuz-\(k)")) }
        for i in images { try Data("i".utf8).write(to: URL(fileURLWithPath: "\(boot)/ssi-initrd.img-\(i)")) }
        return boot
    }

    @Test("an entry per kernel with an ssi image, newest first, GRUB-valid; an image without its kernel is named and skipped")
    func entries() throws {
        let boot = try fakeBoot(kernels: ["6.1.0-56-amd64", "6.1.0-57-amd64", "6.1.0-58-amd64"],
                                images: ["6.1.0-56-amd64", "6.1.0-57-amd64", "6.1.0-99-amd64"])
        defer { try? FileManager.default.removeItem(atPath: boot) }
        let r = try run(boot: boot, ["GRUB_DEVICE": "/dev/vda1", "GRUB_DEVICE_UUID": "0de0de0d-1111",
                                     "GRUB_CMDLINE_LINUX": "console=ttyS0", "GRUB_CMDLINE_LINUX_DEFAULT": "quiet",
                                     "GRUB_DISTRIBUTOR": "Debian", "SSI_GRUB_CMDLINE": "ssi.quorum_wait=30"])
        #expect(r.status == 0, "\(r.err)")
        let titles = r.out.split(separator: "\n").filter { $0.hasPrefix("menuentry ") }
        #expect(titles.count == 2, "\(r.out)")
        #expect(titles.first?.contains("'Debian GNU/Linux, with Linux 6.1.0-57-amd64 (ssi)'") == true, "the newest first: \(titles)")
        #expect(titles.last?.contains("6.1.0-56-amd64") == true)
        #expect(!r.out.contains("6.1.0-58-amd64"), "a kernel without an ssi image gets no ssi entry")
        #expect(r.out.contains("\tlinux\t\(boot)/vmlinuz-6.1.0-57-amd64 root=UUID=0de0de0d-1111 ro console=ttyS0 quiet ssi.quorum_wait=30\n"), "\(r.out)")
        #expect(r.out.contains("\tinitrd\t\(boot)/ssi-initrd.img-6.1.0-57-amd64\n"), "\(r.out)")
        #expect(r.err.contains("ssi-initrd.img-6.1.0-99-amd64 has no kernel"), "\(r.err)")
        // GRUB's parser accepts what we wrote.
        let cfg = boot + "/grub.cfg"
        try r.out.write(toFile: cfg, atomically: true, encoding: .utf8)
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/grub-script-check")
        check.arguments = [cfg]
        try check.run()
        check.waitUntilExit()
        #expect(check.terminationStatus == 0, "grub-script-check refused:\n\(r.out)")
    }

    @Test("SSI_GRUB=no, no ssi image, or no root device: no entry and exit 0 (update-grub goes on)")
    func nothingToDo() throws {
        let boot = try fakeBoot(kernels: ["6.1.0-57-amd64"], images: ["6.1.0-57-amd64"])
        defer { try? FileManager.default.removeItem(atPath: boot) }
        let off = try run(boot: boot, ["GRUB_DEVICE": "/dev/vda1", "SSI_GRUB": "no"])
        #expect(off.status == 0 && off.out.isEmpty, "\(off)")
        let noRoot = try run(boot: boot, [:])
        #expect(noRoot.status == 0 && noRoot.out.isEmpty && noRoot.err.contains("no root device"), "\(noRoot)")
        let empty = try fakeBoot(kernels: ["6.1.0-57-amd64"], images: [])
        defer { try? FileManager.default.removeItem(atPath: empty) }
        let none = try run(boot: empty, ["GRUB_DEVICE": "/dev/vda1"])
        #expect(none.status == 0 && none.out.isEmpty, "\(none)")
        // Without a UUID (or with it disabled), the device itself.
        let dev = try run(boot: boot, ["GRUB_DEVICE": "/dev/vda1", "GRUB_DEVICE_UUID": "x", "GRUB_DISABLE_LINUX_UUID": "true"])
        #expect(dev.out.contains(" root=/dev/vda1 ro"), "\(dev.out)")
    }
}
