import Testing
@testable import SSILinux

@Suite struct MountInfoTests {
    @Test func parsesDevicesPlacesAndTypesWithOptionalFieldsAndEscapes() {
        let text = """
            22 1 254:1 / / rw,relatime shared:1 - gfs2 /dev/vda rw,lockproto=lock_dlm
            23 22 0:21 / /proc rw,nosuid - proc proc rw
            40 22 7:0 / /run/my\\040disk rw master:3 shared:5 - ext4 /dev/loop0 rw
            bad line
            """
        let e = Mount.parseMountInfo(text)
        #expect(e.count == 3)
        #expect(e[0] == Mount.Entry(device: "254:1", mountPoint: "/", type: "gfs2", source: "/dev/vda"))
        #expect(e[1].type == "proc" && e[1].device == "0:21")
        #expect(e[2] == Mount.Entry(device: "7:0", mountPoint: "/run/my disk", type: "ext4", source: "/dev/loop0"))
    }

    @Test func thisProcessSeesItsRoot() {
        #expect(Mount.entries().contains { $0.mountPoint == "/" })
    }
}
