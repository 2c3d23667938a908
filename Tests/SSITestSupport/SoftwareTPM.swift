// swtpm on loopback for the tests: a real TPM 2.0 implementation (libtpms,
// what qemu's guests get), and tpm2-tools (tpm2-tss) as the independent
// client that checks ssi's own TPM commands.

import Foundation

/// A running swtpm with its state in a directory, on a free loopback port
/// (and the next one, its control port), killed with this object.
public final class SoftwareTPM {
    /// Why the TPM tests cannot run here; nil when they can.
    public static let missing: String? = {
        for tool in ["swtpm", "tpm2_createprimary", "tpm2_hmac", "tpm2_flushcontext"]
        where !["/usr/bin/", "/usr/local/bin/"].contains(where: { FileManager.default.isExecutableFile(atPath: $0 + tool) }) {
            return "\(tool) is not installed (scripts/setup installs swtpm and tpm2-tools)"
        }
        return nil
    }()

    let process: Process
    public let port: UInt16

    /// Started, and listening: a client that connects at once is served
    /// (tpm2-tools run right after found nothing there under load, and a
    /// control port taken since `freePort` made swtpm exit: tried again on
    /// other ports, three times).
    public init(state: String) throws {
        try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
        for _ in 0..<3 {
            let port = try Self.freePort()
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/swtpm")
            process.arguments = ["socket", "--tpm2", "--tpmstate", "dir=\(state)",
                                 "--server", "type=tcp,port=\(port),bindaddr=127.0.0.1",
                                 "--ctrl", "type=tcp,port=\(port + 1),bindaddr=127.0.0.1",
                                 "--flags", "not-need-init,startup-clear"]
            process.standardInput = FileHandle.nullDevice
            process.standardOutput = FileHandle.nullDevice
            process.standardError = FileHandle.nullDevice
            try process.run()
            for _ in 0..<100 where process.isRunning && !Self.accepts(port) { usleep(50_000) }
            if process.isRunning && Self.accepts(port) {
                self.process = process
                self.port = port
                return
            }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        throw CocoaError(.executableLoad)
    }

    /// Whether something accepts TCP connections on 127.0.0.1:`port`.
    /// The socket is close-on-exec (a child spawned meanwhile by another
    /// test once kept it, and swtpm, which serves one client at a time,
    /// waited on it for good) and its connect is bounded to 2 s.
    static func accepts(_ port: UInt16) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var bound = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, socklen_t(MemoryLayout<timeval>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        sin.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
    }

    deinit {
        // KILL, not TERM: the test runner's threads block signals, and a
        // child inherits the mask (swtpm ignored TERM here). swtpm has
        // written its state by the time a command returns.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }

    /// A free loopback port whose successor (the control port) is free
    /// too, as far as anyone can tell, and below 65536.
    static func freePort() throws -> UInt16 {
        for _ in 0..<50 {
            if let port = freeLoopbackPort(), port > 1024, port < 65000 { return port }
        }
        throw CocoaError(.featureUnsupported)
    }

    /// tpm2-tools' HMAC of `label` with the key ssi derives from (an owner
    /// HMAC-SHA256 primary of the same template), with its files in `dir`.
    public func toolsHMAC(of label: [UInt8], in dir: String) throws -> [UInt8] {
        let tcti = "swtpm:host=127.0.0.1,port=\(port)"
        let attributes = "fixedtpm|fixedparent|sensitivedataorigin|userwithauth|noda|sign"
        let labelFile = dir + "/label", out = dir + "/hmac"
        try Data(label).write(to: URL(fileURLWithPath: labelFile))
        let script = "set -e; timeout 20 tpm2_createprimary -Q -C o -G hmac -a '\(attributes)' -c \(dir)/primary.ctx; "
            + "timeout 20 tpm2_hmac -c \(dir)/primary.ctx -o \(out) \(labelFile); timeout 20 tpm2_flushcontext -t"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", script]
        p.environment = ["TPM2TOOLS_TCTI": tcti, "PATH": "/usr/bin:/bin"]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw CocoaError(.executableLoad) }
        return [UInt8](try Data(contentsOf: URL(fileURLWithPath: out)))
    }

    /// What a node key file made from this TPM's identity seed holds
    /// (`ssi node identity v1`, the seed), computed by tpm2-tools: the
    /// host's view of a guest's TPM identity, for its fingerprint.
    public static func keyFileText(state: String, label: [UInt8], work: String) throws -> String {
        let tpm = try SoftwareTPM(state: state)
        var seed: [UInt8]?
        for _ in 0..<50 where seed == nil {
            seed = try? tpm.toolsHMAC(of: label, in: work)
            if seed == nil { usleep(100_000) }
        }
        guard let seed else { throw CocoaError(.executableLoad) }
        return "ssi node identity v1\nseed \(Data(seed).base64EncodedString())\n"
    }
}
