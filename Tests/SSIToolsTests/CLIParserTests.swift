import Testing
@testable import SSITools

/// A small tree with one of each kind of option and argument: the
/// framework's rules, apart from ssi's own commands.
enum Sample {
    static let make = CLICommand(
        "make", abstract: "Make it.", discussion: "Makes the thing.\n\nA second paragraph.",
        arguments: [CLIArgument("file", help: "The input.", default: "/etc/x")],
        options: [
            .value("output", short: "o", "file", help: "Where to write it."),
            .flag("force", help: "Replace what is there."),
            .flag("quiet", short: "q", help: "Say nothing."),
            .integer("port", as: UInt16.self, help: "The port.", default: 7791),
            .repeated("add", "a,b", help: "Things to add; repeatable."),
            .repeated("install", "path", help: "Files to install.", upToNextOption: true),
        ]) { _ in }
    static let leaf = CLICommand("leaf", abstract: "A leaf.",
                                 arguments: [CLIArgument("name", help: "A name."), CLIArgument("rest", help: "The rest.", optional: true, repeated: true)]) { _ in }
    static let needs = CLICommand("needs", abstract: "Needs an option.",
                                  options: [.value("entry", help: "The entry.", required: true)]) { _ in }
    static let root = CLICommand(
        "tool", abstract: "A tool.",
        subcommands: [make, CLICommand("group", abstract: "A group.", subcommands: [leaf]), needs,
                      CLICommand("secret", abstract: "Hidden.", hidden: true) { _ in },
                      CLICommand("own", abstract: "Parses its own words.", arguments: [CLIArgument("arguments", help: "Anything.", optional: true, repeated: true)],
                                 passThrough: true) { _ in }])
    static let program = CLIProgram(root: root, version: "1.2.3")

    static func parse(_ args: [String]) -> CLIInvocation { program.parser.parse(args) }

    /// The values of a command that runs, else nil.
    static func values(_ args: [String]) -> CLIValues? {
        if case .run(_, let v) = parse(args) { return v }
        return nil
    }

    /// The usage error's message, else nil.
    static func error(_ args: [String]) -> String? {
        if case .usageError(_, let m) = parse(args) { return m }
        return nil
    }

    static func helpPath(_ args: [String]) -> [String]? {
        if case .help(let path) = parse(args) { return path.map(\.name) }
        return nil
    }
}

@Suite struct CLIParserTests {
    @Test("long and short options: --opt=v, --opt v, -o v, -ov, bundles, unique prefixes")
    func optionForms() throws {
        for args in [["make", "--output=/x"], ["make", "--output", "/x"], ["make", "-o", "/x"], ["make", "-o/x"], ["make", "--out", "/x"]] {
            #expect(Sample.values(args)?.string("output") == "/x", "\(args)")
        }
        let v = try #require(Sample.values(["make", "-qo", "/x", "--force"]))
        #expect(v.flag("quiet") && v.flag("force") && v.string("output") == "/x")
        #expect(Sample.values(["make"])?.flag("force") == false)
    }

    @Test("a value given twice: the last counts; a repeatable one keeps all, in order")
    func repeated() throws {
        let v = try #require(Sample.values(["make", "-o", "a", "--add", "x", "-o", "b", "--add=y,z"]))
        #expect(v.string("output") == "b" && v.strings("output") == ["a", "b"])
        #expect(v.strings("add") == ["x", "y,z"])
    }

    @Test("positionals: optional with default, required, repeated, mixed with options, after --")
    func positionals() throws {
        #expect(Sample.values(["make"])?.argument("file") == nil)
        #expect(Sample.values(["make", "in", "-q"])?.argument("file") == "in")
        #expect(Sample.values(["make", "-q", "--", "-x"])?.argument("file") == "-x")
        let v = try #require(Sample.values(["group", "leaf", "a", "b", "-", "c"]))
        #expect(v.argument("name") == "a" && v.argumentList("rest") == ["b", "-", "c"])
        #expect(Sample.error(["group", "leaf"]) == "Missing expected argument '<name>'")
        #expect(Sample.error(["make", "a", "b"]) == "Unexpected argument 'b'")
    }

    @Test("an option that takes the words after it up to the next option")
    func upToNextOption() throws {
        let v = try #require(Sample.values(["make", "--install", "/a", "/b", "-q", "in"]))
        #expect(v.strings("install") == ["/a", "/b"] && v.flag("quiet") && v.argument("file") == "in")
        let w = try #require(Sample.values(["make", "in", "--install=/a", "--install", "/b", "/c"]))
        #expect(w.strings("install") == ["/a", "/b", "/c"] && w.argument("file") == "in")
        #expect(Sample.error(["make", "in", "--install", "/a", "--", "x", "y"]) != nil, "after --, words are operands")
    }

    @Test("usage errors name the option: unknown, missing value, value to a flag, required, ambiguous")
    func usageErrors() {
        #expect(Sample.error(["make", "--bogus"]) == "Unrecognized option '--bogus'")
        #expect(Sample.error(["make", "-z"]) == "Invalid option -- 'z'")
        #expect(Sample.error(["make", "--output"]) == "Option '--output' requires an argument")
        #expect(Sample.error(["make", "-o"]) == "Option requires an argument -- 'o'")
        #expect(Sample.error(["make", "--force=yes"]) == "Option '--force' doesn't allow an argument")
        #expect(Sample.error(["needs"]) == "Missing expected argument '--entry <entry>'")
        #expect(Sample.values(["needs", "--entry", "e"])?.string("entry") == "e")
        #expect(Sample.error(["nothing"]) == "Unexpected argument 'nothing'")
        #expect(Sample.error(["--bogus"]) == "Unrecognized option '--bogus'")
    }

    @Test("numbers are checked against the type's range: no trap, the option named",
          arguments: ["abc", "65536", "-1", "", "99999999999999999999999", "0x10", "1e3", " 1"])
    func badNumbers(_ text: String) {
        let message = Sample.error(["make", "--port", text])
        #expect(message?.hasPrefix("The value '\(text)' is invalid for '--port <port>'") == true, "\(message ?? "accepted")")
    }

    @Test("numbers in range are read as the type")
    func goodNumbers() {
        #expect(Sample.values(["make", "--port", "65535"])?.integer("port", as: UInt16.self) == 65535)
        #expect(Sample.values(["make", "--port=0"])?.integer("port", as: UInt16.self) == 0)
        #expect(Sample.values(["make"])?.integer("port", as: UInt16.self) == nil)
    }

    @Test("-h, --help, help SUB..., a group without a subcommand: the help; --version")
    func helpAndVersion() {
        #expect(Sample.helpPath(["make", "-h"]) == ["tool", "make"])
        #expect(Sample.helpPath(["make", "--help", "--bogus"]) == ["tool", "make"])
        #expect(Sample.helpPath(["make", "--bogus", "-h"]) == ["tool", "make"], "help wins over a usage error")
        #expect(Sample.helpPath(["help", "group", "leaf"]) == ["tool", "group", "leaf"])
        #expect(Sample.helpPath(["help", "nothing"]) == ["tool"])
        #expect(Sample.helpPath(["group"]) == ["tool", "group"])
        #expect(Sample.helpPath([]) == ["tool"])
        #expect(Sample.helpPath(["--help"]) == ["tool"])
        if case .version = Sample.parse(["--version"]) {} else { Issue.record("--version") }
        if case .version = Sample.parse(["group", "leaf", "--version"]) {} else { Issue.record("leaf --version") }
        #expect(Sample.program.respond(to: .version) == CLIProgram.Output(status: 0, stdout: "1.2.3\n"))
    }

    @Test("hidden commands parse but are not listed; pass-through commands get their words untouched")
    func hiddenAndPassThrough() {
        #expect(Sample.values(["secret"]) != nil)
        #expect(!CLIHelp.text([Sample.program.root]).contains("secret"))
        if case .passThrough(_, let words) = Sample.parse(["own", "-x", "--y=z", "--", "a"]) {
            #expect(words == ["-x", "--y=z", "--", "a"])
        } else {
            Issue.record("own is not pass-through")
        }
    }

    @Test("a usage error: Error:, the usage line, where to look; stderr, exit 64")
    func usageErrorOutput() throws {
        let out = try #require(Sample.program.respond(to: Sample.parse(["make", "--port", "x"])))
        #expect(out.status == 64 && out.stdout.isEmpty)
        let lines = out.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.first?.hasPrefix("Error: The value 'x' is invalid for '--port <port>'") == true)
        #expect(lines.dropFirst().first == "Usage: tool make [<file>] [--output <file>] [--force] [--quiet] [--port <port>] [--add <a,b> ...] [--install <path> ...]")
        #expect(lines.last == "  See 'tool make --help' for more information.")
    }

    @Test("words that are not printable reach no terminal raw")
    func unprintable() throws {
        let message = try #require(Sample.error(["make", "a", "\u{1B}[2J\u{FFFD}"]))
        #expect(!message.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F })
        let option = try #require(Sample.error(["make", "--\u{1B}x"]))
        #expect(!option.unicodeScalars.contains { $0.value < 0x20 })
    }

    @Test("the help lists every option with its value name and default, every argument, the visible subcommands")
    func helpText() {
        let help = CLIHelp.text([Sample.root, Sample.make])
        #expect(help.hasPrefix("OVERVIEW: Make it.\n\nMakes the thing.\n\nA second paragraph.\n\nUSAGE: tool make "))
        for label in ["-o, --output <file>", "--force", "-q, --quiet", "--port <port>", "--add <a,b>", "--install <path>",
                      "<file>", "--version", "-h, --help", "(default: 7791)", "(default: /etc/x)"] {
            #expect(help.contains(label), "\(label)")
        }
        // Wrapped before column 80 (the usage line is one line, to be copied).
        #expect(help.split(separator: "\n").allSatisfy { $0.count < 80 || $0.hasPrefix("USAGE: ") })
        let root = CLIHelp.text([Sample.root])
        #expect(root.contains("  make                    Make it.") && root.contains("See 'tool help <subcommand>' for detailed help."))
        #expect(CLIHelp.text([Sample.root, Sample.root.subcommands[1]]).contains("See 'tool help group <subcommand>'"))
    }
}
