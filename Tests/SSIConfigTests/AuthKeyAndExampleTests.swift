import Foundation
import Testing
@testable import SSIConfig
import SSICore

@Suite struct AuthKeyTests {
    @Test func writesARandomKeyMode0400() throws {
        let dir = try TempDir()
        let path = dir.path + "/authkey"
        try AuthKey.write(to: path, force: false)
        var st = stat()
        #expect(stat(path, &st) == 0)
        #expect(st.st_mode & 0o7777 == 0o400)
        #expect(st.st_size == 256)
        let key = try AuthKey.read(path: path)
        #expect(key.count == 256)
        #expect(Set(key).count > 100, "random bytes")
        // No temporary file left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["authkey"])
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        let dir = try TempDir()
        let path = dir.path + "/authkey"
        try AuthKey.write(to: path, force: false)
        let before = try AuthKey.read(path: path)
        let e = #expect(throws: SSIError.self) { try AuthKey.write(to: path, force: false) }
        #expect(e?.description.contains("exists") == true)
        #expect(e?.hint?.contains("--force") == true)
        #expect(try AuthKey.read(path: path) == before)
        try AuthKey.write(to: path, size: 512, force: true)
        let after = try AuthKey.read(path: path)
        #expect(after.count == 512)
        #expect(after != before)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["authkey"])
    }

    @Test func sizesAndReadChecks() throws {
        #expect(throws: SSIError.self) { try AuthKey.generate(size: 64) }
        #expect(throws: SSIError.self) { try AuthKey.generate(size: 4097) }
        #expect(try AuthKey.generate(size: 4096).count == 4096)

        let dir = try TempDir()
        let open = dir.path + "/open"
        #expect(FileManager.default.createFile(atPath: open, contents: Data(repeating: 1, count: 256), attributes: [.posixPermissions: 0o644]))
        let e = #expect(throws: SSIError.self) { try AuthKey.read(path: open) }
        #expect(e?.message.contains("mode 644") == true)
        let short = dir.path + "/short"
        #expect(FileManager.default.createFile(atPath: short, contents: Data(repeating: 1, count: 16), attributes: [.posixPermissions: 0o400]))
        #expect(throws: SSIError.self) { try AuthKey.read(path: short) }
        let missing = #expect(throws: SSIError.self) { try AuthKey.read(path: dir.path + "/none") }
        #expect(missing?.hint?.contains("ssi cluster keygen") == true)
    }

    @Test func writeIntoAMissingDirectoryNamesIt() throws {
        let dir = try TempDir()
        let e = #expect(throws: SSIError.self) { try AuthKey.write(to: dir.path + "/no/such/authkey", force: false) }
        #expect(e?.message.contains(dir.path + "/no/such") == true)
    }
}

@Suite struct ExampleConfigTests {
    @Test(arguments: ["cfs-3node.conf", "gfs2-3node.conf"])
    func examplesPassTheCheck(name: String) throws {
        let c = try ClusterConfig.load(path: configsDirectory + "/" + name)
        #expect(c.cluster.name == "ssi")
        #expect(c.network.prefix.description == "10.77.0.0/24")
        for n in 1...3 {
            let node = try #require(c.node(number: n))
            #expect(node.address.description == "10.77.0.\(n)")
            #expect(node.macs.map(\.description) == ["52:54:00:00:00:0\(n)"])
            #expect(c.nodeForMAC("52:54:00:00:00:0\(n)")?.number == n)
        }
    }

    @Test func gfs2ExampleMatchesItsDisk() throws {
        let c = try ClusterConfig.load(path: configsDirectory + "/gfs2-3node.conf")
        guard case .gfs2(let g) = c.root else { Issue.record("not gfs2"); return }
        #expect(g.lockTable.hasPrefix(c.cluster.name + ":"))
        #expect(c.quorum.waitForAll)
    }
}
