import Foundation
import Testing
import SSICore
import SSILinux
@testable import SSITools
@testable import ssi

/// The one applet table against everything else that names commands: the
/// Debian package's links and man page links, `ssi divert`'s paths, and
/// the command tree's subcommands (what the man pages and completions
/// are generated from).
@Suite struct AppletTableTests {
    static func read(_ path: String) throws -> String {
        try String(contentsOfFile: packageRoot() + "/" + path, encoding: .utf8)
    }

    /// `NAME := a b c` from debian/rules.
    static func makeList(_ rules: String, _ name: String) -> [String] {
        for line in rules.split(separator: "\n") where line.hasPrefix(name + " :=") {
            return line.dropFirst(name.count + 3).split(separator: " ").map(String.init)
        }
        return []
    }

    @Test("every command has one row; names and subcommands are unique")
    func table() {
        #expect(Applet.Command.allCases.allSatisfy { c in Applet.all.filter { $0.command == c }.count == 1 })
        let names = Applet.all.flatMap(\.names)
        #expect(Set(names).count == names.count, "\(names)")
        let subs = Applet.all.compactMap(\.subcommand)
        #expect(Set(subs).count == subs.count)
        #expect(Applet.named("mount")?.command == .mount && Applet.named("ssi-init")?.command == .initProgram)
        #expect(Applet.named("ssi") == nil, "plain ssi is the command tree")
        #expect(Applet.subcommand("where_pid")?.ownCommandLine == true && Applet.subcommand("cluster")?.ownCommandLine == false)
    }

    @Test("debian/ssi.links is exactly the table's package links")
    func packageLinks() throws {
        let lines = try Self.read("debian/ssi.links").split(separator: "\n").map(String.init).filter { !$0.hasPrefix("#") && !$0.isEmpty }
        let expected = Applet.all.flatMap(\.packageLinks).map { "usr/sbin/ssi " + $0 }
        #expect(lines.sorted() == expected.sorted())
    }

    @Test("every link has a man page: its own (debian/ssi.manpages) or a link to its subcommand's (debian/rules)")
    func manPages() throws {
        let rules = try Self.read("debian/rules")
        let own = Set(try Self.read("debian/ssi.manpages").split(separator: "\n").map { basename(of: String($0)) })
        let linkNames = Self.makeList(rules, "LINK_NAMES")
        let plainNames = Self.makeList(rules, "PLAIN_NAMES")
        #expect(!linkNames.isEmpty && !plainNames.isEmpty, "debian/rules still has LINK_NAMES and PLAIN_NAMES")
        var wantLink: [String] = []
        var wantPlain: [String] = []
        for a in Applet.all {
            for link in a.packageLinks.map({ basename(of: $0) }) {
                if own.contains(link + ".8") { continue }
                // ssi-NAME.8 and NAME.8 link to ssi.SUBCOMMAND.8.
                #expect(a.subcommand != nil, "\(link) has neither a page nor a subcommand")
                if link.hasPrefix("ssi-") {
                    #expect(String(link.dropFirst(4)) == a.subcommand)
                    wantLink.append(String(link.dropFirst(4)))
                } else {
                    #expect(link == a.subcommand)
                    wantPlain.append(link)
                }
            }
        }
        #expect(linkNames.sorted() == wantLink.sorted())
        #expect(plainNames.sorted() == wantPlain.sorted())
    }

    @Test("ssi divert replaces exactly the table's util-linux commands")
    func diversions() {
        #expect(Set(Applet.all.compactMap(\.replaces)) == Set(SSIDiversion.paths))
        for a in Applet.all {
            if let r = a.replaces { #expect(a.names.contains(basename(of: r)), "\(r) runs \(a.command)") }
        }
    }

    @Test("the command tree's subcommands (man pages, completions) are the table's; its own-command-line ones pass their words through")
    func treeSubcommands() {
        let root = SSICommand.root
        #expect(root.subcommands.map(\.name) == Applet.all.compactMap(\.subcommand))
        for a in Applet.all {
            guard let name = a.subcommand else { continue }
            #expect(root.subcommand(name)?.passThrough == a.ownCommandLine, "\(name)")
        }
        // The program adds only its hidden build command to the root.
        #expect(SSICommand.program.root.subcommands.filter { !$0.internalOnly }.map(\.name) == root.subcommands.map(\.name))
    }
}
