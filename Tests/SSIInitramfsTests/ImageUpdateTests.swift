import Foundation
import Testing
import SSICore
@testable import SSIInitramfs

/// ssi-mkinitrd -u: which kernels get an image, and where it goes.
@Suite struct ImageUpdateTests {
    /// A module root with kernels (modules.order) and a removed kernel's
    /// leftover (only depmod's files).
    func moduleRoot() throws -> TempDir {
        let dir = TempDir()
        for k in ["6.1.0-57-amd64", "6.1.0-12-amd64"] {
            try FileManager.default.createDirectory(atPath: dir.file(k), withIntermediateDirectories: true)
            try "kernel/fs/ext4/ext4.ko\n".write(toFile: dir.file(k + "/modules.order"), atomically: true, encoding: .utf8)
        }
        try FileManager.default.createDirectory(atPath: dir.file("6.1.0-9-amd64"), withIntermediateDirectories: true)
        try "".write(toFile: dir.file("6.1.0-9-amd64/modules.dep"), atomically: true, encoding: .utf8)
        return dir
    }

    @Test func imageHasItsOwnNameBesideInitramfsTools() {
        #expect(ImageUpdate.imagePath(kernel: "6.1.0-57-amd64") == "/boot/ssi-initrd.img-6.1.0-57-amd64")
        #expect(ImageUpdate.imagePath(kernel: "6.1.0-57-amd64") != "/boot/initrd.img-6.1.0-57-amd64")
    }

    @Test func installedKernelsSkipLeftovers() throws {
        let dir = try moduleRoot()
        #expect(ImageUpdate.installedKernels(moduleRoot: dir.path) == ["6.1.0-12-amd64", "6.1.0-57-amd64"])
    }

    @Test func allIsEveryInstalledKernel() throws {
        let dir = try moduleRoot()
        #expect(try ImageUpdate.kernels(for: "all", running: "x", moduleRoot: dir.path) == ["6.1.0-12-amd64", "6.1.0-57-amd64"])
    }

    @Test func oneKernelOrTheRunningOne() throws {
        let dir = try moduleRoot()
        #expect(try ImageUpdate.kernels(for: "6.1.0-12-amd64", running: "6.1.0-57-amd64", moduleRoot: dir.path) == ["6.1.0-12-amd64"])
        #expect(try ImageUpdate.kernels(for: nil, running: "6.1.0-57-amd64", moduleRoot: dir.path) == ["6.1.0-57-amd64"])
    }

    func failure(_ kver: String?, running: String = "6.1.0-57-amd64", root: String) -> SSIError? {
        do {
            _ = try ImageUpdate.kernels(for: kver, running: running, moduleRoot: root)
            return nil
        } catch {
            return error
        }
    }

    @Test func aKernelNotInstalledIsNamedWithTheInstalledOnes() throws {
        let dir = try moduleRoot()
        let e = try #require(failure("6.1.0-9-amd64", root: dir.path))
        #expect(e.message.contains("kernel 6.1.0-9-amd64 is not installed"))
        #expect(e.hint == "pass -k with one of: 6.1.0-12-amd64, 6.1.0-57-amd64, or -k all")
        let running = try #require(failure(nil, running: "6.5.0-1-amd64", root: dir.path))
        #expect(running.message.contains("the running kernel 6.5.0-1-amd64 is not installed"))
    }

    @Test func noKernelAtAll() throws {
        let empty = TempDir()
        let all = try #require(failure("all", root: empty.path))
        #expect(all.message.contains("no kernel is installed"))
        #expect(all.hint?.contains("linux-image") == true)
        let one = try #require(failure("6.1.0-57-amd64", root: empty.path))
        #expect(one.hint == "install its linux-image package first")
    }

    @Test func aPathIsNotAVersion() throws {
        let dir = try moduleRoot()
        let e = try #require(failure("../6.1.0-57-amd64", root: dir.path))
        #expect(e.message.contains("not a kernel version"))
        #expect(failure("", root: dir.path) != nil)
    }
}
