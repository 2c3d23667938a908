import SSITestSupport
import Testing
@testable import SSILinux

@Suite struct MountOptionsTests {
    @Test func valuesFlagsAndAbsentOptions() {
        #expect(MountOptions.value(of: "node", in: "rw,node=3,noatime") == "3")
        #expect(MountOptions.value(of: "noatime", in: "rw,node=3,noatime") == "")
        #expect(MountOptions.value(of: "remount", in: "rw,node=3") == nil)
        #expect(MountOptions.value(of: "x", in: #"a,x="b,c",d"#) == #""b,c""#)
        #expect(MountOptions.removing("node", from: "node=1,rw,node=2,noatime") == "rw,noatime")
        #expect(MountOptions.removing("node", from: "rw") == "rw")
    }

    /// The value was copied from a C string that had already been freed:
    /// with a value of a few KB the copy read reused memory (wrong bytes or
    /// a crash of `ssi mount -o node=...`).
    @Test(arguments: [100, 4096, 65536])
    func longValuesAreCopiedWhileTheirStringLives(length: Int) {
        let long = String(repeating: "7", count: length)
        let options = "rw,node=\(long),remount=\(String(repeating: "r", count: length)),noatime"
        for _ in 0..<50 {
            #expect(MountOptions.value(of: "node", in: options) == long)
            #expect(MountOptions.value(of: "remount", in: options)?.utf8.count == length)
        }
        #expect(MountOptions.removing("node", from: options) == "rw,remount=\(String(repeating: "r", count: length)),noatime")
    }

    /// Names that are not one option (empty, with a separator or NUL) match
    /// nothing instead of something unexpected, and do not loop.
    @Test func namesThatAreNotOneOptionMatchNothing() {
        for name in ["", ",", "a,b", "node=1", "no\0de", "\""] {
            #expect(MountOptions.value(of: name, in: "a,,node=1,b") == nil, "\(name)")
            #expect(MountOptions.removing(name, from: "a,,node=1,b") == "a,,node=1,b", "\(name)")
        }
    }

    /// Mutated option strings through both helpers: no trap, and after
    /// `removing(name)` the name has no value left.
    @Test func optionStringsFuzz() {
        let seeds = Fuzz.seeds([
            "rw,node=1,noatime", "defaults,node=2,remount", #"x-foo="a,b",node=3,pri=5"#,
            "node=\(String(repeating: "9", count: 3000))", "remount,ro,node=,=", #"a="unclosed,node=4"#,
        ])
        Fuzz.run("mount-options", seeds: seeds, iterations: Fuzz.iterations(default: 1000)) { bytes in
            let options = String(decoding: bytes, as: UTF8.self)
            for name in ["node", "remount", "pri", "rw"] {
                _ = MountOptions.value(of: name, in: options)
                let rest = MountOptions.removing(name, from: options)
                #expect(rest.utf8.count <= options.utf8.count)
                if !options.contains("\"") && !options.contains("\0") {
                    #expect(MountOptions.value(of: name, in: rest) == nil, "\(name) in \(rest)")
                }
            }
        }
    }
}
