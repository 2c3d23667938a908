import Testing
#if canImport(Glibc)
import Glibc
#endif
import SSICore
@testable import SSILinux

/// A fresh folder under /tmp, removed at the end of the test.
final class ScratchDirectory {
    let path: String
    init() {
        var template = Array("/tmp/ssi-treecopy.XXXXXX".utf8CString)
        path = String(cString: template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!)! })
    }
    deinit { try? FileSystem.removeTree(path) }
}

@Suite struct TreeCopyTests {
    /// etc/x (mode 0640), etc/link -> x, bin/ (0711), a FIFO.
    func makeSource(_ dir: String) throws {
        try FileSystem.makeDirectories(dir + "/etc")
        try FileSystem.makeDirectories(dir + "/bin", mode: 0o711)
        try FileSystem.writeFile(dir + "/etc/x", "hello\n", mode: 0o640)
        chmod(dir + "/etc/x", 0o640)
        chmod(dir + "/bin", 0o711)
        try FileSystem.symlink(target: "x", at: dir + "/etc/link")
        #expect(mkfifo(dir + "/fifo", 0o600) == 0)
    }

    @Test func copiesFilesLinksFifosAndModes() throws {
        let scratch = ScratchDirectory()
        let src = scratch.path + "/src", dest = scratch.path + "/dest"
        try makeSource(src)
        let n = try FileSystem.copyTree(src, to: dest)
        #expect(n == 6)  // src, etc, x, link, bin, fifo
        #expect(try FileSystem.readText(dest + "/etc/x") == "hello\n")
        #expect(try FileSystem.readLink(dest + "/etc/link") == "x")
        #expect(try FileSystem.status(dest + "/etc/x").mode == 0o640)
        #expect(try FileSystem.status(dest + "/bin").mode == 0o711)
        #expect(try FileSystem.status(dest + "/fifo").kind == .fifo)
    }

    @Test func anExistingDestinationIsRefusedUnlessAskedToFillIt() throws {
        let scratch = ScratchDirectory()
        let src = scratch.path + "/src", dest = scratch.path + "/fs-root"
        try makeSource(src)
        chmod(src, 0o755)
        try FileSystem.makeDirectories(dest, mode: 0o700)
        let e = #expect(throws: SystemCallError.self) { try FileSystem.copyTree(src, to: dest) }
        #expect(e?.errno == EEXIST)
        // A new file system's root: filled, and given the source's mode.
        try FileSystem.copyTree(src + "/", to: dest, intoExisting: true)
        #expect(try FileSystem.readText(dest + "/etc/x") == "hello\n")
        #expect(try FileSystem.status(dest).mode == 0o755)
        #expect(try FileSystem.list(dest).sorted() == ["bin", "etc", "fifo"])
    }
}
