import SSITestSupport
import Testing
import SSICore
@testable import SSIBoot

/// Numbers on the kernel command line reach PID 1's arithmetic: each is
/// bounded when parsed, with an error that names the parameter and range.
@Suite struct BootParameterBoundsTests {
    func parse(_ s: String) throws(SSIError) -> BootParameters {
        try BootParameters(KernelCommandLine(s))
    }

    func message(_ s: String) -> String? {
        do { _ = try parse(s); return nil } catch { return error.description }
    }

    /// rootdelay=<huge> trapped in `rootDelay * 1000`: a kernel panic.
    @Test(arguments: [
        ("rootdelay", "9223372036854775807", "0...3600"), ("rootdelay", "3601", "0...3600"),
        ("rootdelay", "99999999999999999999", "0...3600"), ("rootdelay", "-1", "0...3600"),
        ("rootwait", "86401", "0...86400"), ("ssi.timeout", "9223372036854775807", "0...86400"),
        ("ssi.quorum_wait", "100000", "0...86400"), ("ssi.root_wait", "0", "1...86400"),
        ("ssi.root_wait", "86401", "1...86400"), ("ssi.node", "2147483648", "1...2147483647"),
        ("ssi.node", "0", "1...2147483647"),
    ])
    func outOfRangeNumbersNameTheParameterAndRange(key: String, value: String, range: String) {
        let m = message("root=/dev/vda \(key)=\(value)")
        #expect(m?.contains("\(key)=\(value) is not") == true, "\(m ?? "accepted")")
        #expect(m?.contains(range) == true, "\(m ?? "accepted")")
    }

    @Test func theBoundsThemselvesAreAccepted() throws {
        let p = try parse("rootdelay=3600 rootwait=86400 ssi.quorum_wait=86400 ssi.root_wait=86400 ssi.node=2147483647")
        #expect(p.rootDelay == 3600 && p.rootTimeout == 86400 && p.quorumWait == 86400)
        #expect(p.clusterRootWait == 86400 && p.node == 2147483647)
        // What PID 1 computes from them does not overflow.
        #expect(p.rootDelay.multipliedReportingOverflow(by: 1000).overflow == false)
    }

    @Test func echoedValuesAreEscaped() {
        for line in ["init=x\u{1B}[2J", "rootdelay=5\u{1B}[2J", "root=/x\u{1B}[2J"] {
            let m = message(line)
            #expect(m != nil, "\(line)")
            #expect(m?.unicodeScalars.contains("\u{1B}") == false, "\(m ?? "")")
        }
        let w = (try? parse("ssi.break=x\u{1B}[2J"))?.warnings ?? []
        #expect(w.count == 1 && !w[0].unicodeScalars.contains("\u{1B}"), "\(w)")
        let e = (try? parse("root=LABEL=a\u{1B}[2J\u{0B}b rootflags=\u{1B}]0;x"))?.explanation ?? ""
        #expect(e.contains("LABEL=a\\u001B[2J") && !e.unicodeScalars.contains("\u{1B}"), "\(e)")
    }

    /// Mutated command lines through the parser ssi-init runs first: a
    /// value or an error, and every accepted number inside its range.
    @Test func bootParametersFuzz() {
        let seeds = Fuzz.seeds([
            "BOOT_IMAGE=/vmlinuz root=UUID=0a1b rootfstype=ext4 rootflags=noatime rw rootwait=30 rootdelay=2 init=/sbin/init",
            "root=/dev/vda ssi.node=3 ssi.quorum_wait=20 ssi.root_wait=60 ssi.timeout=5 ssi.break=root,modules quiet -- single",
            "root=\"LABEL=my root\" ro rootdelay=9223372036854775807 ssi.node=-1",
        ])
        Fuzz.run("boot-parameters", seeds: seeds, iterations: Fuzz.iterations(default: 1000)) { bytes in
            let p = try BootParameters(KernelCommandLine(String(decoding: bytes, as: UTF8.self)))
            #expect(BootParameters.rootDelayRange.contains(p.rootDelay))
            #expect(BootParameters.waitRange.contains(p.rootTimeout))
            #expect(p.node.map(BootParameters.nodeRange.contains) ?? true)
            #expect(p.quorumWait.map(BootParameters.waitRange.contains) ?? true)
            #expect(p.clusterRootWait.map(BootParameters.waitRange.contains) ?? true)
            #expect(p.initPath.hasPrefix("/"))
            let raw = p.explanation.unicodeScalars.contains { ($0.value < 0x20 && $0 != "\n") || $0.value == 0x7F }
            #expect(!raw, "the explanation prints the line's control characters raw")
        }
    }
}
