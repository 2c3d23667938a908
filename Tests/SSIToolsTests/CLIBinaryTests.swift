import Foundation
import Testing
import SSIMembership

/// The built ssi (SSI_BIN; scripts/test and the brief's `swift test` set
/// it): what a script sees of the command line, streams and exit codes.
@Suite struct CLIBinaryTests {
    static let ssi = ProcessInfo.processInfo.environment["SSI_BIN"].flatMap { $0.isEmpty ? nil : $0 }

    static func run(_ args: [String], environment: [String: String]? = nil) throws -> (status: Int32, out: String, err: String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: try #require(ssi))
        p.arguments = args
        if let environment { p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        // Both pipes hold far less than a pipe's buffer: read after the exit.
        p.waitUntilExit()
        return (p.terminationStatus,
                String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
    }

    @Test("migrate and onnode parse with getopt_long: errors in getopt's words (exit 2), bundles, prefixes, options after operands for migrate, none after the node for onnode",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func procCommandLines() throws {
        // No agent there: a command line that parses fails to connect
        // (migrate exits 1; onnode 255, as ssh does, since 1 may be the
        // command's own).
        let none = ["SSI_STATE_DIR": "/nonexistent-ssi-state"]
        let bogus = try Self.run(["migrate", "--bogus", "1", "2"], environment: none)
        #expect(bogus.status == 2 && bogus.err.contains("unrecognized option '--bogus'") && bogus.err.contains("--help' for more information"), "\(bogus.err)")
        let letter = try Self.run(["onnode", "-x", "2", "true"], environment: none)
        #expect(letter.status == 2 && letter.err.contains("invalid option -- 'x'"), "\(letter.err)")
        for ok in [["migrate", "--thr", "--stop", "1", "2"], ["migrate", "1", "2", "-t"], ["migrate", "-t", "--", "1", "2"],
                   ["onnode", "2", "ls", "-l", "--bogus"], ["onnode", "-p", "--", "2", "true"], ["onnode", "-b", "2", "true"]] {
            let r = try Self.run(ok, environment: none)
            #expect(r.status == (ok[0] == "onnode" ? 255 : 1) && r.err.contains("no process agent"), "\(ok): \(r.status) \(r.err)")
        }
        let operands = try Self.run(["migrate", "1"], environment: none)
        #expect(operands.status == 2 && operands.err.contains("missing operand"), "\(operands.err)")
    }

    @Test("OpenSSI's `cluster` (argv[0]): the up nodes' numbers; -v each node's state; -V its name and address too; NODEs: exit 0 only if all are up; bad words refused",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func openSSICluster() throws {
        let dir = NSTemporaryDirectory() + "ssi-cluster-\(getpid())"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ClusterView(clusterName: "ssi", localNode: 1, quorate: true, expectedVotes: 3, totalVotes: 2, quorum: 2,
                        nodes: [NodeRecord(number: 3, name: "node3", address: "10.77.0.3", state: .up, stage: ""),
                                NodeRecord(number: 1, name: "node1", address: "10.77.0.1", state: .up, stage: ""),
                                NodeRecord(number: 2, name: "node2", address: "10.77.0.2", state: .down, stage: "")]).write(directory: dir)
        try FileManager.default.createSymbolicLink(atPath: dir + "/cluster", withDestinationPath: try #require(Self.ssi))
        func cluster(_ args: [String]) throws -> (status: Int32, out: String, err: String) {
            let p = Foundation.Process()
            p.executableURL = URL(fileURLWithPath: dir + "/cluster")
            p.arguments = args
            p.environment = ProcessInfo.processInfo.environment.merging(["SSI_STATE_DIR": dir]) { $1 }
            let out = Pipe(), err = Pipe()
            p.standardOutput = out
            p.standardError = err
            try p.run()
            p.waitUntilExit()
            return (p.terminationStatus, String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self),
                    String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self))
        }
        let plain = try cluster([])
        #expect(plain.status == 0 && plain.out == "1\n3\n", "\(plain)")
        let v = try cluster(["-v"])
        #expect(v.status == 0 && v.out == "1: UP\n2: DOWN\n3: UP\n", "\(v)")
        let bigV = try cluster(["-V", "2"])
        #expect(bigV.status == 1 && bigV.out == "2: DOWN node2 10.77.0.2\n", "one node, down: exit 1: \(bigV)")
        #expect(try cluster(["1", "3"]).status == 0, "both up")
        let unknown = try cluster(["7"])
        #expect(unknown.status == 1 && unknown.err.contains("node 7 is not in the cluster's configuration"), "\(unknown)")
        let bad = try cluster(["-x"])
        #expect(bad.status != 0 && bad.err.contains("unknown option: -x"), "\(bad)")
    }

    @Test("usage error: stderr, exit 64, the option named; help and version: stdout, exit 0",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func streams() throws {
        let bad = try Self.run(["cluster", "proc-agent", "--port", "65536"])
        #expect(bad.status == 64 && bad.out.isEmpty)
        #expect(bad.err.hasPrefix("Error: The value '65536' is invalid for '--port <port>'"), "\(bad.err)")
        #expect(bad.err.contains("See 'ssi cluster proc-agent --help' for more information."))
        let unknown = try Self.run(["mkinitrd", "--bogus"])
        #expect(unknown.status == 64 && unknown.err.hasPrefix("Error: Unrecognized option '--bogus'\n"), "\(unknown.err)")
        let help = try Self.run(["help", "cluster", "keygen"])
        #expect(help.status == 0 && help.err.isEmpty && help.out.contains("  --size <bytes>          Key size in bytes, 128-4096. (default: 256)"))
        let group = try Self.run(["cluster"])
        #expect(group.status == 0 && group.out.contains("SUBCOMMANDS:") && !group.out.contains("mount-apply"))
        let version = try Self.run(["--version"])
        #expect(version.status == 0 && version.out == "0.1.0\n")
        let bash = try Self.run(["--generate-completion-script", "bash"])
        #expect(bash.status == 0 && bash.out.contains("complete -F _ssi ssi") && !bash.out.hasPrefix("#!"))
    }

    @Test("shutdown and reboot off the cluster: the command's own step, why (no agent's view) and where to run it; reboot's bad words refused",
          .enabled(if: ssi != nil, "SSI_BIN is not set"))
    func wholeClusterCommandsNeedAMember() throws {
        let dir = "/nonexistent-ssi-state-\(getpid())"
        for verb in ["shutdown", "reboot"] {
            let r = try Self.run(["cluster", verb, "--dry-run", "--state-dir", dir] + (verb == "reboot" ? ["2"] : []))
            #expect(r.status == 1 && r.out.isEmpty, "\(verb): \(r.status) \(r.out)")
            #expect(r.err.contains("ssi-cluster: \(verb): no cluster view at \(dir)/members")
                    && r.err.contains("this node is not a running member of a cluster")
                    && r.err.contains("run ssi cluster \(verb) on a node booted into the cluster"), "\(verb): \(r.err)")
        }
        let timeout = try Self.run(["cluster", "reboot", "--timeout", "0", "2"])
        #expect(timeout.status == 1 && timeout.err.contains("--timeout 0: want whole seconds from 1 to 7200"), "\(timeout.err)")
    }
}
