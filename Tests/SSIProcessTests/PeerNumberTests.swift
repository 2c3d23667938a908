import Testing
import Glibc
@testable import SSIProcess

/// Numbers in peers' requests: out of range is a refusal, never a wrap
/// (uid=4294967296 wrapped to 0, root, before; docs/PROTOCOLS.md).
@Suite struct PeerNumberTests {
    @Test func numbersFitExactlyOrAreRefused() {
        let f = Fields("kill", [("uid", "4294967296"), ("pid", "4294967297"), ("signal", "-1"), ("node", "2"), ("bad", "1x")])
        #expect(f.number("uid", as: uid_t.self) == nil)
        #expect(f.number("pid", as: pid_t.self) == nil)
        #expect(f.number("signal", as: Int32.self) == -1)
        #expect(f.number("node", as: UInt32.self) == 2)
        #expect(f.number("bad", as: Int32.self) == nil)
        #expect(f.number("missing", as: Int32.self) == nil)
        #expect(Fields("x", [("uid", "65534")]).number("uid", as: uid_t.self) == 65534)
    }
}
