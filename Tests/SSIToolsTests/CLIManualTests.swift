import Foundation
import Testing
@testable import SSITools
@testable import ssi

/// The man pages and completion scripts, from the sample tree and from
/// ssi's own (what debian/rules installs).
@Suite struct CLIManualTests {
    static let ssiRoot = SSICommand.program.root

    /// The pages debian/rules has installed since swift-argument-parser's
    /// generate-manual wrote them (PackageTests looks for some by name).
    static let expectedPages = [
        "ssi", "ssi.mkinitrd", "ssi.init", "ssi.cluster", "ssi.cluster.status", "ssi.cluster.node-num", "ssi.cluster.config",
        "ssi.cluster.config.check", "ssi.cluster.config.import-clustertab", "ssi.cluster.config.corosync", "ssi.cluster.keygen", "ssi.cluster.key", "ssi.cluster.key.seal",
        "ssi.cluster.agent", "ssi.cluster.reload", "ssi.cluster.root", "ssi.cluster.root.create", "ssi.cluster.root.add-journal",
        "ssi.cluster.mount-apply", "ssi.cluster.ps", "ssi.cluster.proc-agent", "ssi.mount", "ssi.umount", "ssi.swapon",
        "ssi.swapoff", "ssi.fsck", "ssi.divert", "ssi.divert.enable", "ssi.divert.disable", "ssi.divert.status", "ssi.migrate",
        "ssi.onnode", "ssi.where_pid", "ssi.kill", "ssi.loadlevel", "ssi.ll", "ssi.loads", "ssi.onall", "ssi.clusternode_num", "ssi.cluster.node", "ssi.cluster.node.key", "ssi.cluster.node.key.new",
        "ssi.cluster.node.key.show", "ssi.cluster.node.enroll", "ssi.cluster.node.remove", "ssi.cluster.node.list",
        "ssi.cluster.keyserver", "ssi.cluster.tunnel", "ssi.cluster.shutdown", "ssi.cluster.reboot",
    ].map { $0 + ".8" }

    @Test("one page per command, named by its path; no page for the build's own generate-manual")
    func pageSet() {
        let pages = CLIManual.pages(Self.ssiRoot, section: 8, date: "2025-11-30")
        #expect(pages.map(\.fileName).sorted() == Self.expectedPages.sorted())
    }

    @Test("no page has an empty line (groff warns of each one, and lintian shows it: loads and clusternode_num had one)")
    func noEmptyLines() {
        for page in CLIManual.pages(Self.ssiRoot, section: 8, date: "2025-11-30") {
            let lines = page.text.split(separator: "\n", omittingEmptySubsequences: false).dropLast()
            #expect(!lines.contains { $0.trimmingCharacters(in: .whitespaces).isEmpty }, "\(page.fileName)")
        }
    }

    @Test("every command's help lists each of its options and arguments, and its visible subcommands")
    func everyHelp() {
        func visit(_ path: [CLICommand]) {
            guard let c = path.last else { return }
            let help = CLIHelp.text(path)
            #expect(help.hasPrefix("OVERVIEW: " + c.abstract + "\n"))
            for o in c.options { #expect(help.contains("  " + o.helpLabel), "\(path.map(\.name)): \(o.helpLabel)") }
            for a in c.arguments { #expect(help.contains("  <\(a.name)>"), "\(path.map(\.name)): <\(a.name)>") }
            for s in c.subcommands where !s.hidden { #expect(help.contains("\n  \(s.name) "), "\(path.map(\.name)): \(s.name)") }
            for s in c.subcommands { visit(path + [s]) }
        }
        visit([Self.ssiRoot])
    }

    @Test("ssi.mkinitrd.8: -u/--update and -k/--kver as mdoc renders them (PackageTests checks the same)")
    func mkinitrdPage() throws {
        let page = try #require(CLIManual.pages(Self.ssiRoot, section: 8, date: "2025-11-30").first { $0.fileName == "ssi.mkinitrd.8" })
        #expect(page.text.contains(".It Fl u , -update\n"))
        #expect(page.text.contains(".It Fl k , -kver Ar version\n"))
        #expect(page.text.contains(".Op Fl -install Ar path...\n"))
        #expect(page.text.contains(".Dd November 30, 2025\n.Dt SSI.MKINITRD 8\n"))
        // whatis/apropos read NAME: the page's own name, one word.
        #expect(page.text.contains(".Sh NAME\n.Nm ssi.mkinitrd\n.Nd \"Build the initramfs that brings a node into the cluster.\"\n"))
        #expect(page.text.contains(".Sh SYNOPSIS\n.Nm \"ssi mkinitrd\"\n"))
    }

    @Test("a group's page lists its subcommands' pages; required and optional arguments; paragraphs; escapes")
    func pageForms() throws {
        let pages = CLIManual.pages(Sample.root, section: 1, date: "2024-02-29")
        let make = try #require(pages.first { $0.fileName == "tool.make.1" }).text
        #expect(make.contains(".Dd February 29, 2024\n"))
        #expect(make.contains(".Op Ar file\n") && make.contains(".It Fl o , -output Ar file\n") && make.contains(".Op Fl -add Ar a,b...\n"))
        #expect(make.contains("Makes the thing.\n.Pp\nA second paragraph.\n"))
        let needs = try #require(pages.first { $0.fileName == "tool.needs.1" }).text
        #expect(needs.contains("\n.Fl -entry Ar entry\n"), "a required option is not in brackets")
        let root = try #require(pages.first { $0.fileName == "tool.1" }).text
        #expect(root.contains(".Sh \"SEE ALSO\"\n.Xr tool.group 1 ,\n.Xr tool.make 1 ,\n"))
        #expect(CLIManual.escaped(".starts with a dot") == "\\&.starts with a dot")
        #expect(CLIManual.escaped("a\\b") == "a\\eb")
        #expect(CLIManual.mdocDate("2025-13-01") == "2025-13-01")
        #expect(CLIProgram.civilDate(days: 0) == "1970-01-01" && CLIProgram.civilDate(days: 20422) == "2025-11-30")
        // SOURCE_DATE_EPOCH is outside input: a value that would overflow
        // the day arithmetic is the epoch, not a trap.
        let saved = getenv("SOURCE_DATE_EPOCH").map { String(cString: $0) }
        defer { if let saved { setenv("SOURCE_DATE_EPOCH", saved, 1) } else { unsetenv("SOURCE_DATE_EPOCH") } }
        for (given, date) in [("-9223372036854775808", "1970-01-01"), ("9223372036854775807", "1970-01-01"), ("1764460800", "2025-11-30")] {
            setenv("SOURCE_DATE_EPOCH", given, 1)
            #expect(CLIProgram.sourceDate() == date, "SOURCE_DATE_EPOCH=\(given)")
        }
    }

    static func run(_ argv: [String], input: String) throws -> (status: Int32, out: String) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: argv[0])
        p.arguments = Array(argv.dropFirst())
        let stdin = Pipe(), stdout = Pipe()
        p.standardInput = stdin
        p.standardOutput = stdout
        p.standardError = stdout
        try p.run()
        stdin.fileHandleForWriting.write(Data(input.utf8))
        try stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test("the bash completion is valid bash (bash -n), has no #! and names every visible command and option")
    func bash() throws {
        let script = CLICompletions.script(Self.ssiRoot, shell: "bash")
        #expect(!script.hasPrefix("#!") && script.contains("complete -F _ssi ssi"))
        let check = try Self.run(["/bin/bash", "-n"], input: script)
        #expect(check.status == 0, "\(check.out)")
        try checkNames(script)
        // Completing: the subcommands of `ssi cluster ro`, the options of `ssi cluster keygen --`.
        let probe = script + """
            COMP_WORDS=(ssi cluster ro); COMP_CWORD=2; _ssi; echo "1:${COMPREPLY[*]}"
            COMP_WORDS=(ssi cluster keygen --s); COMP_CWORD=3; _ssi; echo "2:${COMPREPLY[*]}"
            """
        let out = try Self.run(["/bin/bash", "-s"], input: probe)
        #expect(out.out.contains("1:root\n") && out.out.contains("2:--size\n"), "\(out.out)")
    }

    @Test("zsh and fish: the same commands and options (their shells are not installed here: structure only)",
          arguments: ["zsh", "fish"])
    func otherShells(_ shell: String) throws {
        let script = CLICompletions.script(Self.ssiRoot, shell: shell)
        #expect(script.hasPrefix(shell == "zsh" ? "#compdef ssi\n" : "# fish completion for ssi"))
        try checkNames(script)
        // Balanced quotes on every line (a description's apostrophe is escaped).
        for line in script.split(separator: "\n") where !line.hasPrefix("#") {
            let unescaped = shell == "fish" ? line.replacingOccurrences(of: "\\'", with: "") : line.replacingOccurrences(of: "'\\''", with: "")
            #expect(unescaped.filter { $0 == "'" }.count % 2 == 0, "\(line)")
        }
    }

    /// Every visible command's name and every option of it is in the script;
    /// hidden and internal commands are not.
    func checkNames(_ script: String) throws {
        for (path, command) in Self.ssiRoot.walk() {
            if command.hidden || command.internalOnly {
                #expect(!script.contains(" " + command.name + " ") && !script.contains("'" + command.name + "'"), "\(path)")
                continue
            }
            if path.count > 1 { #expect(script.contains(path.joined(separator: " ")), "\(path)") }
            for o in command.options {
                if let l = o.long { #expect(script.contains("--" + l) || script.contains("-l " + l), "\(path) --\(l)") }
            }
        }
    }
}
