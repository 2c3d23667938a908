import Foundation
import Testing
@testable import SSIBoot

/// The Debian package ships /usr/lib/systemd/system-shutdown/ssi-gfs2-root
/// (debian/ssi-gfs2-root); ssi-init writes the same file on a GFS2 root
/// when it differs. They must be byte for byte the same, or every GFS2
/// boot would overwrite the package's file.
@Suite struct ShutdownHookTests {
    @Test func packageFileIsWhatSSIInitWrites() throws {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        let packaged = try String(contentsOf: url.appendingPathComponent("debian/ssi-gfs2-root"), encoding: .utf8)
        #expect(packaged == Boot.shutdownHook)
        #expect(Boot.shutdownHookDirectory + "/" + Boot.shutdownHookName == "/usr/lib/systemd/system-shutdown/ssi-gfs2-root")
    }
}
