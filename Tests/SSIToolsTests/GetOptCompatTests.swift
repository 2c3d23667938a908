import Foundation
import Testing
@testable import SSITools

/// util-linux 2.38.1's own option tables, transcribed from its sources
/// (sys-utils/mount.c, umount.c, swapon.c, swapoff.c: the getopt_long
/// short string and the longopts array, in order). The tools' tables must
/// give every option the same argument kind; HostGetOptTests checks these
/// transcriptions against the util-linux installed on the host.
struct UtilLinuxTable: Sendable, CustomStringConvertible {
    var tool: String
    var shorts: String
    var longs: [(String, GetOpt.Argument)]
    /// Options ssi has on top (a later util-linux's), with their kind.
    var extraShorts: String = ""
    var extraLongs: [(String, GetOpt.Argument)] = []
    var ours: GetOpt
    var description: String { tool }

    static let mount = UtilLinuxTable(
        tool: "mount", shorts: "aBcfFhilL:m::Mno:O:rRsU:vVwt:T:N:",
        longs: [("all", .none), ("fake", .none), ("fstab", .required), ("fork", .none), ("help", .none), ("no-mtab", .none),
                ("read-only", .none), ("ro", .none), ("verbose", .none), ("version", .none), ("read-write", .none), ("rw", .none),
                ("options", .required), ("test-opts", .required), ("types", .required), ("uuid", .required), ("label", .required),
                ("bind", .none), ("move", .none), ("rbind", .none), ("make-shared", .none), ("make-slave", .none),
                ("make-private", .none), ("make-unbindable", .none), ("make-rshared", .none), ("make-rslave", .none),
                ("make-rprivate", .none), ("make-runbindable", .none), ("mkdir", .optional), ("no-canonicalize", .none),
                ("internal-only", .none), ("show-labels", .none), ("target", .required), ("target-prefix", .required),
                ("source", .required), ("options-mode", .required), ("options-source", .required),
                ("options-source-force", .none), ("namespace", .required)],
        ours: MountTool.getopt)
    static let umount = UtilLinuxTable(
        tool: "umount", shorts: "aAcdfhilnqRrO:t:vVN:",
        longs: [("all", .none), ("all-targets", .none), ("detach-loop", .none), ("fake", .none), ("force", .none),
                ("help", .none), ("internal-only", .none), ("lazy", .none), ("no-canonicalize", .none), ("no-mtab", .none),
                ("quiet", .none), ("read-only", .none), ("recursive", .none), ("test-opts", .required), ("types", .required),
                ("verbose", .none), ("version", .none), ("namespace", .required)],
        ours: UmountTool.getopt)
    static let swapon = UtilLinuxTable(
        tool: "swapon", shorts: "ahd::efo:p:svVL:U:",
        longs: [("priority", .required), ("discard", .optional), ("ifexists", .none), ("options", .optional),
                ("summary", .none), ("fixpgsz", .none), ("all", .none), ("help", .none), ("verbose", .none),
                ("version", .none), ("show", .optional), ("output-all", .none), ("noheadings", .none), ("raw", .none),
                ("bytes", .none)],
        // util-linux 2.39 added -T/--fstab; ssi-swapon had it before.
        extraShorts: "T:", extraLongs: [("fstab", .required)],
        ours: SwapTool.swaponOptions)
    static let swapoff = UtilLinuxTable(
        tool: "swapoff", shorts: "ahvVL:U:",
        longs: [("all", .none), ("help", .none), ("verbose", .none), ("version", .none)],
        ours: SwapTool.swapoffOptions)
    static let all = [mount, umount, swapon, swapoff]

    /// "ab:c::" as [(a, none), (b, required), (c, optional)].
    static func parseShorts(_ s: String) -> [(Character, GetOpt.Argument)] {
        var out: [(Character, GetOpt.Argument)] = []
        let c = Array(s)
        var i = 0
        while i < c.count {
            if i + 2 < c.count && c[i + 1] == ":" && c[i + 2] == ":" { out.append((c[i], .optional)); i += 3 }
            else if i + 1 < c.count && c[i + 1] == ":" { out.append((c[i], .required)); i += 2 }
            else { out.append((c[i], .none)); i += 1 }
        }
        return out
    }

    var allShorts: [(Character, GetOpt.Argument)] { Self.parseShorts(shorts + extraShorts) }
    var allLongs: [(String, GetOpt.Argument)] { longs + extraLongs }
}

@Suite struct GetOptCompatTests {
    @Test("every short and long option has util-linux's argument kind, and there are no others",
          arguments: UtilLinuxTable.all)
    func kinds(_ t: UtilLinuxTable) {
        let ourShorts = t.ours.options.compactMap { o in o.short.map { ($0, o.argument) } }
        // Every short option is one getopt can take (an invalid one is left out, not trapped on).
        #expect(ourShorts.allSatisfy { GetOpt.isValidShort($0.0) })
        #expect(ourShorts.map { "\($0.0)\($0.1)" }.sorted() == t.allShorts.map { "\($0.0)\($0.1)" }.sorted())
        // In util-linux's order: it decides what an ambiguous prefix lists.
        #expect(t.ours.longs.map { "\($0.name) \($0.argument)" } == t.allLongs.map { "\($0.0) \($0.1)" })
    }

    @Test("each option parses in every form util-linux accepts, and refuses what it refuses",
          arguments: UtilLinuxTable.all)
    func forms(_ t: UtilLinuxTable) throws {
        let g = t.ours
        func parse(_ args: [String]) throws(GetOpt.Failure) -> GetOpt.Parsed { try g.parse(args, program: t.tool) }
        func failure(_ args: [String]) -> String? {
            do { _ = try parse(args); return nil } catch { return error.message }
        }
        for (name, kind) in t.allLongs {
            let key = g.options[g.longs.first { $0.name == name }!.option].key
            switch kind {
            case .none:
                #expect(try parse(["--" + name, "x"]) == .init(options: [.init(key)], operands: ["x"]))
                #expect(failure(["--\(name)=v"]) == "\(t.tool): option '--\(name)' doesn't allow an argument")
            case .required:
                #expect(try parse(["--\(name)=v", "x"]) == .init(options: [.init(key, "v")], operands: ["x"]))
                #expect(try parse(["x", "--" + name, "v"]) == .init(options: [.init(key, "v")], operands: ["x"]))
                #expect(try parse(["--\(name)="]).options == [.init(key, "")])
                #expect(failure(["--" + name]) == "\(t.tool): option '--\(name)' requires an argument")
            case .optional:
                #expect(try parse(["--\(name)=v"]).options == [.init(key, "v")])
                // Not glued: the next word is an operand, as in util-linux.
                #expect(try parse(["--" + name, "v"]) == .init(options: [.init(key)], operands: ["v"]))
            }
        }
        for (c, kind) in t.allShorts {
            let key = g.options.first { $0.short == c }!.key
            switch kind {
            case .none:
                #expect(try parse(["-\(c)", "x"]) == .init(options: [.init(key)], operands: ["x"]))
            case .required:
                #expect(try parse(["-\(c)v", "x"]) == .init(options: [.init(key, "v")], operands: ["x"]))
                #expect(try parse(["x", "-\(c)", "v"]) == .init(options: [.init(key, "v")], operands: ["x"]))
                #expect(failure(["-\(c)"]) == "\(t.tool): option requires an argument -- '\(c)'")
            case .optional:
                #expect(try parse(["-\(c)v"]).options == [.init(key, "v")])
                #expect(try parse(["-\(c)", "v"]) == .init(options: [.init(key)], operands: ["v"]))
            }
        }
    }

    @Test("the optional arguments of the issue: swapon --discard=once, -donce, --show=NAME,SIZE")
    func optionalArguments() throws {
        let g = SwapTool.swaponOptions
        #expect(try g.parse(["--discard=once", "/dev/vdb"], program: "swapon") == .init(options: [.init("discard", "once")], operands: ["/dev/vdb"]))
        #expect(try g.parse(["-donce"], program: "swapon").options == [.init("discard", "once")])
        #expect(try g.parse(["-ad"], program: "swapon").options == [.init("all"), .init("discard")])
        #expect(try g.parse(["--show=NAME,SIZE"], program: "swapon").options == [.init("show", "NAME,SIZE")])
        // swapon's -o needs its list; --options takes it only glued.
        #expect(try g.parse(["-o", "pri=1"], program: "swapon").options == [.init("options", "pri=1")])
        #expect(try g.parse(["--options", "x"], program: "swapon") == .init(options: [.init("options")], operands: ["x"]))
        #expect(try MountTool.parse(["-m0700", "/a", "/b"], program: "mount").optionString == "X-mount.mkdir=0700")
        #expect(try MountTool.parse(["--mkdir", "/a", "/b"], program: "mount").optionString == "X-mount.mkdir")
    }

    @Test("getopt's ordering: permutation, --, bundles, prefixes, and its error words")
    func ordering() throws {
        let g = MountTool.getopt
        #expect(try g.parse(["/dev/x", "-vo", "ro", "/mnt", "--", "-a"], program: "mount")
            == .init(options: [.init("verbose"), .init("options", "ro")], operands: ["/dev/x", "/mnt", "-a"]))
        #expect(try g.parse(["-", "--verb"], program: "mount") == .init(options: [.init("verbose")], operands: ["-"]))
        #expect(try g.parse(["--ro", "--rw"], program: "mount").options == [.init("read-only"), .init("read-write")])
        func message(_ args: [String], _ program: String = "mount") -> String? {
            do { _ = try g.parse(args, program: program); return nil } catch { return error.message }
        }
        #expect(message(["--bogus=1"]) == "mount: unrecognized option '--bogus=1'")
        // After permutation the word in error is still the one named.
        #expect(message(["a", "b", "--bogus=2", "c"]) == "mount: unrecognized option '--bogus=2'")
        #expect(message(["a", "--bind=x", "b"]) == "mount: option '--bind' doesn't allow an argument")
        #expect(message(["--r=x"]) == "mount: option '--r=x' is ambiguous; possibilities: '--read-only' '--read-write' '--rw' '--rbind'")
        #expect(message(["--make-r"]) == "mount: option '--make-r' is ambiguous; possibilities: '--make-rshared' '--make-rslave' '--make-rprivate' '--make-runbindable'")
        #expect(message(["--ro=1"]) == "mount: option '--ro' doesn't allow an argument")
        #expect(message(["--verb=1"]) == "mount: option '--verbose' doesn't allow an argument")
        #expect(message(["-a-"]) == "mount: invalid option -- '-'")
        #expect(message(["-é"]) == "mount: invalid option -- '\\xc3'")
        #expect(message(["--\u{1B}[2J"]) == "mount: unrecognized option '--\\u001B[2J'", "a terminal escape is shown, not sent")
        #expect(message(["-x"], "/usr/bin/mount") == "/usr/bin/mount: invalid option -- 'x'", "argv[0] as given, as glibc prints it")
        #expect(message(["a\u{0}b"])?.contains("NUL") == true)
        #expect(try SwapTool.swapoffOptions.parse([], program: "swapoff") == .init(options: [], operands: []))
        // The + ordering (commands that run commands): options end at the first operand.
        let inOrder = GetOpt([.init("p", nil)], ordering: .requireOrder)
        #expect(try inOrder.parse(["-p", "2", "ls", "-p"], program: "onnode") == .init(options: [.init("p")], operands: ["2", "ls", "-p"]))
    }

    @Test("messages escape the control characters of names from outside, and only those")
    func escaping() {
        #expect("a\u{1B}[2Jb\n\u{85}é/x y".escapedForTerminal == "a\\u001B[2Jb\\n\\u0085é/x y")
        let c = Captured()
        #expect(c.output.fail("cannot open /dev/\u{1B}x", program: "/sbin/swapon\u{7}", code: 255) == 255)
        #expect(c.output.usage("swapon: bad usage", program: "/sbin/swapon", code: 1) == 1)
        #expect(c.err == ["swapon\\u0007: cannot open /dev/\\u001Bx", "swapon: bad usage", "Try 'swapon --help' for more information."])
    }

    @Test("getopt's global state is one parse at a time: parses from many threads agree")
    func threads() async {
        let args = ["/dev/x", "-vo", "ro", "--bind", "/mnt", "-t", "ext4"]
        let expected = try? MountTool.getopt.parse(args, program: "mount")
        #expect(expected != nil)
        let results = await withTaskGroup(of: GetOpt.Parsed?.self) { group in
            for i in 0..<64 {
                group.addTask {
                    i % 2 == 0 ? try? MountTool.getopt.parse(args, program: "mount") : try? SwapTool.swaponOptions.parse(["-donce", "x"], program: "swapon")
                }
            }
            var all: [GetOpt.Parsed?] = []
            for await r in group { all.append(r) }
            return all
        }
        let mounts = results.filter { $0?.operands.count == 2 }
        let swaps = results.filter { $0?.operands == ["x"] }
        #expect(mounts.count == 32 && mounts.allSatisfy { $0 == expected })
        #expect(swaps.count == 32 && swaps.allSatisfy { $0?.options == [.init("discard", "once")] })
    }

    @Test("fsck's own rules (it has no getopt): devices, checker words, -C, -r, -t once, -- and the bounds")
    func fsck() throws {
        let v = try FsckTool.parse(["sda", "-C", "/dev/vdb", "LABEL=x", "-Cx", "-VN", "--", "/dev/vdc", "-E", "a=b"])
        #expect(v.devices == ["/dev/vdb", "LABEL=x", "a=b"], "'/' before --, or '=' anywhere, is a device")
        #expect(v.checkerOptions == ["sda", "-x", "/dev/vdc", "-E"])
        #expect(v.progressFD == "0" && v.verbose && v.dryRun)
        #expect(try FsckTool.parse(["-C3", "-fy"]) == { var i = FsckTool.Invocation(); i.progressFD = "3"; i.checkerOptions = ["-fy"]; return i }())
        #expect(try FsckTool.parse(["-C", "4", "/dev/x"]).progressFD == "4")
        #expect(try FsckTool.parse(["-r", "5", "/dev/x"]).devices == ["/dev/x"])
        #expect(try FsckTool.parse(["-a-fy"]).checkerOptions == ["-afy"], "after a '-' letter the rest is the checker's")
        #expect(try FsckTool.parse(["-tnoext4"]).types == "noext4")
        #expect(try FsckTool.parse(["--help", "-t"]).help)
        #expect(try FsckTool.parse(["--", "--help"]).checkerOptions == ["--help"])
        func error(_ args: [String]) -> FsckTool.CommandLineError? {
            do { _ = try FsckTool.parse(args); return nil } catch { return error }
        }
        #expect(error(["-t"]) == .init(message: "option '-t' requires an argument", code: 16))
        #expect(error(["-t", "a", "-tb"]) == .init(message: "option '-t' may be specified only once", code: 16))
        #expect(error(["-rx"]) == .init(message: "invalid argument of -r: 'x'", code: 16))
        #expect(error((0...32).map { "/dev/d\($0)" }) == .init(message: "too many devices", code: 8))
        #expect(error((0...32).map { "-x\($0)" }) == .init(message: "too many arguments", code: 8))
        let c = Captured()
        #expect(FsckTool(program: "/usr/sbin/fsck", output: c.output).run(["-t"]) == 16)
        #expect(c.err == ["fsck: option '-t' requires an argument"], "errx(): the short name, no Try line")
    }
}

/// The transcribed tables and our error words against the util-linux on
/// this host. Each probe ends in a getopt error before util-linux acts on
/// anything, and runs as nobody with no_new_privs (mount's setuid bit
/// ignored), so even a probe that went on could change nothing.
@Suite(.enabled(if: getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/setpriv")
                && FileManager.default.isExecutableFile(atPath: "/usr/bin/mount"),
                "needs root (to become nobody), setpriv and util-linux's commands to compare with"))
struct HostGetOptTests {
    static func path(_ tool: String) -> String {
        ["/usr/bin/", "/usr/sbin/", "/bin/", "/sbin/"].map { $0 + tool }.first { FileManager.default.isExecutableFile(atPath: $0) } ?? tool
    }

    /// (stderr lines, exit code) of util-linux's `tool args`, argv[0] its path.
    static func host(_ tool: String, _ args: [String]) throws -> (err: [String], code: Int32) {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setpriv")
        p.arguments = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--no-new-privs", path(tool)] + args
        var env = ProcessInfo.processInfo.environment
        env["LC_ALL"] = "C"
        env.removeValue(forKey: "POSIXLY_CORRECT")
        p.environment = env
        let err = Pipe()
        p.standardOutput = FileHandle.nullDevice
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let data = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (String(decoding: data, as: UTF8.self).split(separator: "\n").map(String.init), p.terminationStatus)
    }

    @Test("each long option's argument kind, as the host's util-linux takes it", arguments: UtilLinuxTable.all)
    func longKinds(_ t: UtilLinuxTable) throws {
        let bogus = "--zz-ssi-bogus"
        for (name, kind) in t.longs {
            // --NAME=x errs at once if NAME takes no argument.
            let glued = try Self.host(t.tool, ["--\(name)=x", bogus])
            let refused = glued.err.first?.hasSuffix("option '--\(name)' doesn't allow an argument") == true
            #expect(refused == (kind == .none), "\(t.tool) --\(name)=x: \(glued.err)")
            if kind == .none { continue }
            // Alone, it errs if the argument is required; optional: the
            // next word is not taken, and getopt errs on it.
            let alone = try Self.host(t.tool, kind == .required ? ["--" + name] : ["--" + name, bogus])
            let expected = kind == .required ? "option '--\(name)' requires an argument" : "unrecognized option '\(bogus)'"
            #expect(alone.err.first?.hasSuffix(expected) == true, "\(t.tool) --\(name): \(alone.err)")
        }
    }

    @Test("each short option's argument kind, as the host's util-linux takes it", arguments: UtilLinuxTable.all)
    func shortKinds(_ t: UtilLinuxTable) throws {
        // -h, -V and swapon's -s act as soon as getopt returns them.
        for (c, kind) in UtilLinuxTable.parseShorts(t.shorts) where !"hVs".contains(c) {
            switch kind {
            case .required:
                let r = try Self.host(t.tool, ["-\(c)"])
                #expect(r.err.first?.hasSuffix("option requires an argument -- '\(c)'") == true, "\(t.tool) -\(c): \(r.err)")
            case .none:
                // -X@: '@' is the next option.
                let r = try Self.host(t.tool, ["-\(c)@"])
                #expect(r.err.first?.hasSuffix("invalid option -- '@'") == true, "\(t.tool) -\(c)@: \(r.err)")
            case .optional:
                // Glued, '@' is X's argument; not glued, it is not taken.
                let glued = try Self.host(t.tool, ["-\(c)@"])
                #expect(!glued.err.contains { $0.hasSuffix("invalid option -- '@'") }, "\(t.tool) -\(c)@: \(glued.err)")
                let s = try Self.host(t.tool, ["-\(c)", "-@"])
                #expect(s.err.first?.hasSuffix("invalid option -- '@'") == true, "\(t.tool) -\(c) -@: \(s.err)")
            }
        }
    }

    @Test("every option in the host's --help is in the transcribed table", arguments: UtilLinuxTable.all)
    func helpListsNothingElse(_ t: UtilLinuxTable) throws {
        let p = Foundation.Process()
        p.executableURL = URL(fileURLWithPath: Self.path(t.tool))
        p.arguments = ["--help"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        let longs = Set(t.longs.map(\.0))
        let shorts = Set(UtilLinuxTable.parseShorts(t.shorts).map(\.0))
        var seen = 0
        for line in text.split(separator: "\n") where line.drop(while: { $0 == " " }).hasPrefix("-") {
            for word in line.split(separator: " ").prefix(4) {
                let w = word.trimmingCharacters(in: CharacterSet(charactersIn: ","))
                if w.hasPrefix("--") {
                    let name = String(w.dropFirst(2).prefix { $0 != "[" && $0 != "=" })
                    #expect(longs.contains(name), "\(t.tool) --help lists --\(name)")
                    seen += 1
                } else if w.count == 2, w.hasPrefix("-"), let c = w.last {
                    #expect(shorts.contains(c), "\(t.tool) --help lists -\(c)")
                    seen += 1
                }
            }
        }
        #expect(seen > 3, "the help was read: \(text)")
    }

    @Test("usage errors: the same lines and exit code as util-linux",
          arguments: [("mount", ["--bogus=1"]), ("mount", ["--r"]), ("mount", ["-a-"]), ("mount", ["-o"]), ("mount", ["--ro=1"]),
                      ("mount", ["--opt"]), ("umount", ["-z"]), ("umount", ["--types"]), ("swapon", ["--bogus"]),
                      ("swapon", ["-p"]), ("swapon", ["--discard=bogus", "/x"]), ("swapon", ["--show=FOO"]),
                      ("swapon", ["-e", "/x"]), ("swapon", ["--show="]), ("swapon", ["--show=name,Size"]), ("swapon", ["-d=pages", "-d", "/x"]), ("swapon", ["--priority=x", "/x"]), ("swapoff", ["--=x"]),
                      ("swapoff", ["-e"]), ("swapoff", []), ("fsck", ["-t"]), ("fsck", ["-t", "a", "-t", "b"]), ("fsck", ["-rx"])])
    func usage(_ tool: String, _ args: [String]) throws {
        let expected = try Self.host(tool, args)
        let c = Captured()
        let program = Self.path(tool)
        let code: Int32 = switch tool {
        case "mount": MountTool(program: program, output: c.output).run(args)
        case "umount": UmountTool(program: program, output: c.output).run(args)
        case "swapon": SwapTool(program: program, off: false, output: c.output).run(args)
        case "swapoff": SwapTool(program: program, off: true, output: c.output).run(args)
        default: FsckTool(program: program, output: c.output).run(args)
        }
        #expect(code == expected.code, "\(tool) \(args): util-linux \(expected)")
        #expect(c.err == expected.err, "\(tool) \(args)")
    }
}
