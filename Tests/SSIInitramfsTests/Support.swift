import Foundation
import SSILinux

/// A kernel module tree of the build host, when one is installed (Debian's
/// linux-image-amd64 in CI). Tests that need real modules are enabled only
/// when it exists and say so when they skip.
enum HostKernel {
    static let version: String? = {
        guard let names = try? FileSystem.list("/lib/modules") else { return nil }
        return names.sorted().last { FileSystem.exists("/lib/modules/\($0)/modules.dep.bin") }
    }()

    static var directory: String { "/lib/modules/\(version!)" }
    static let skipReason = "needs a kernel's modules under /lib/modules (apt-get install linux-image-amd64)"
}

/// A temporary directory removed when the value goes away.
final class TempDir {
    let path: String

    init() {
        var template = Array("/tmp/ssi-test-XXXXXX".utf8CString)
        let p = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        path = String(cString: p!)
    }

    deinit {
        try? FileManager.default.removeItem(atPath: path)
    }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Runs a host program and returns its exit status and standard output.
func runHost(_ args: [String], stdin: [UInt8]? = nil) throws -> (status: Int32, output: String) {
    let p = Foundation.Process()
    p.executableURL = URL(fileURLWithPath: args[0])
    p.arguments = Array(args.dropFirst())
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    let inPipe = Pipe()
    if stdin != nil { p.standardInput = inPipe }
    try p.run()
    if let stdin {
        inPipe.fileHandleForWriting.write(Data(stdin))
        try inPipe.fileHandleForWriting.close()
    }
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    return (p.terminationStatus, String(decoding: data, as: UTF8.self))
}
