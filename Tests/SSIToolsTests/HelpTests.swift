import Testing
@testable import SSITools

/// Every option a tool accepts is in its --help (parity row 42: the texts
/// are ours, the option lists util-linux's). Built from the option tables
/// themselves, so a new option without a help line fails here.
@Suite struct HelpTests {
    static func help(_ run: (Output) -> Int32) -> (code: Int32, text: String) {
        let c = Captured()
        let code = run(c.output)
        return (code, c.out.joined(separator: "\n"))
    }

    static func missing(_ table: GetOpt, in text: String) -> [String] {
        var missing: [String] = []
        for o in table.options {
            for long in o.long where !text.contains("--\(long)") { missing.append("--\(long)") }
            if let s = o.short, !text.contains("-\(s)") { missing.append("-\(s)") }
        }
        return missing
    }

    @Test("mount, umount, swapon and swapoff: every option of the table is in --help, exit 0")
    func everyOptionListed() {
        let tools: [(String, GetOpt, (Output) -> Int32)] = [
            ("mount", MountTool.getopt, { MountTool(program: "mount", output: $0).run(["--help"]) }),
            ("umount", UmountTool.getopt, { UmountTool(program: "umount", output: $0).run(["--help"]) }),
            ("swapon", SwapTool.swaponOptions, { SwapTool(program: "swapon", off: false, output: $0).run(["--help"]) }),
            ("swapoff", SwapTool.swapoffOptions, { SwapTool(program: "swapoff", off: true, output: $0).run(["--help"]) }),
        ]
        for (name, table, run) in tools {
            let (code, text) = Self.help(run)
            #expect(code == 0, "\(name) --help")
            #expect(Self.missing(table, in: text).isEmpty, "\(name) --help lacks \(Self.missing(table, in: text))")
            #expect(text.contains("Usage:"), "\(name): \(text)")
        }
    }

    @Test("fsck: every letter fsck itself takes is in --help, as are -? and --version")
    func fsckOptionsListed() {
        let (code, text) = Self.help { FsckTool(program: "fsck", output: $0).run(["--help"]) }
        #expect(code == 0)
        for letter in ["-A", "-C", "-l", "-M", "-N", "-P", "-r", "-R", "-s", "-t", "-T", "-V", "-?", "--version", "opts="] {
            #expect(text.contains(letter), "fsck --help lacks \(letter)")
        }
    }
}
