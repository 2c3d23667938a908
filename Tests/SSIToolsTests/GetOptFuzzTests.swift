import Testing
import SSITestSupport
@testable import SSITools

/// Mutated command lines (words split on NUL, as in /proc/PID/cmdline)
/// through every tool's table: each parse returns or throws a usage
/// error, never traps, and gives back only pieces of the words it got.
@Suite struct GetOptFuzzTests {
    static let seeds = Fuzz.seeds([
        "/dev/vdb\u{0}-nvt\u{0}ext4\u{0}/mnt\u{0}-oro,noatime\u{0}--options=nodev",
        "-a\u{0}--fake\u{0}-T\u{0}/etc/fstab\u{0}-O\u{0}no_netdev\u{0}--\u{0}-x",
        "--discard=once\u{0}-donce\u{0}--show=NAME,SIZE\u{0}-p\u{0}5\u{0}-L\u{0}swap\u{0}-U\u{0}1234",
        "--make-rshared\u{0}-m0700\u{0}--mkdir\u{0}--r\u{0}--opt\u{0}--=x\u{0}-\u{0}--",
        "-A\u{0}-R\u{0}-C0\u{0}-t\u{0}ext4\u{0}-fy\u{0}/dev/vdb\u{0}--\u{0}-E\u{0}discard=x\u{0}-rx\u{0}-C",
    ])

    static func words(_ bytes: [UInt8]) -> [String] {
        bytes.split(separator: 0, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
    }

    @Test("Fuzz: getopt_long through mount's, umount's, swapon's and swapoff's tables never traps",
          arguments: UtilLinuxTable.all)
    func getopt(_ t: UtilLinuxTable) {
        Fuzz.run("getopt-\(t.tool)", seeds: Self.seeds, iterations: Fuzz.iterations(default: 400)) { bytes in
            let args = Self.words(bytes)
            do throws(GetOpt.Failure) {
                let p = try t.ours.parse(args, program: t.tool)
                // Checked in bulk: an #expect per option is slower than the parse.
                let given = Set(args)
                let keys = Set(t.ours.options.map(\.key))
                let strays = p.options.filter { o in
                    !keys.contains(o.key) || o.value.map { v in !v.isEmpty && !args.contains { $0.contains(v) } } == true
                }
                #expect(strays.isEmpty, "\(strays) from \(args)")
                #expect(p.operands.allSatisfy(given.contains), "\(p.operands) from \(args)")
            } catch {
                #expect(error.message.hasPrefix(t.tool + ": "))
                #expect(!error.message.unicodeScalars.contains { $0.value < 0x20 }, "no control character reaches the terminal")
            }
        }
    }

    @Test("Fuzz: mount's and fsck's command lines into invocations never trap")
    func invocations() {
        Fuzz.run("mount-invocation", seeds: Self.seeds, iterations: Fuzz.iterations(default: 400)) { bytes in
            _ = try? MountTool.parse(Self.words(bytes), program: "mount")
        }
        Fuzz.run("fsck-invocation", seeds: Self.seeds, iterations: Fuzz.iterations(default: 400)) { bytes in
            let args = Self.words(bytes)
            if let v = try? FsckTool.parse(args) {
                #expect(v.devices.count <= FsckTool.maxDevices && v.checkerOptions.count <= FsckTool.maxArguments)
            }
        }
    }
}
