import Testing
import SSICore
import SSILinux
@testable import SSIBoot

@Suite struct BootParametersTests {
    func parse(_ s: String) throws -> BootParameters {
        try BootParameters(KernelCommandLine(s))
    }

    @Test func defaults() throws {
        let p = try parse("console=ttyS0")
        #expect(p.root == nil)
        #expect(p.readOnly)
        #expect(p.initPath == "/sbin/init")
        #expect(p.rootTimeout == 30)
        #expect(p.breaks.isEmpty)
    }

    @Test func rootForms() throws {
        #expect(try parse("root=UUID=ABCD-1234").root == .uuid("abcd-1234"))
        #expect(try parse("root=LABEL=Root").root == .label("Root"))
        #expect(try parse("root=PARTUUID=0A-01").root == .partUUID("0a-01"))
        #expect(try parse("root=PARTLABEL=system").root == .partLabel("system"))
        #expect(try parse("root=/dev/vda1").root == .path("/dev/vda1"))
    }

    @Test func badRootIsAnErrorNamingTheForms() {
        #expect {
            try parse("root=vda1")
        } throws: { error in
            let e = error as? SSIError
            return e?.step == "root" && e!.message.contains("root=vda1") && e!.hint!.contains("UUID=")
        }
        #expect(throws: SSIError.self) { try parse("root=UUID=") }
    }

    @Test func mountOptions() throws {
        let p = try parse("root=/dev/vda rootfstype=ext4 rootflags=data=journal,noatime rw")
        #expect(p.rootFSType == "ext4")
        #expect(p.rootFlags == "data=journal,noatime")
        #expect(!p.readOnly)
        #expect(try parse("rw ro").readOnly)
    }

    @Test func timeouts() throws {
        #expect(try parse("rootwait=7").rootTimeout == 7)
        #expect(try parse("ssi.timeout=5").rootTimeout == 5)
        #expect(try parse("rootwait").rootTimeout == 30)
        #expect(try parse("rootdelay=2").rootDelay == 2)
        #expect(throws: SSIError.self) { try parse("ssi.timeout=soon") }
        #expect(throws: SSIError.self) { try parse("rootwait=-1") }
    }

    @Test func clusterParameters() throws {
        let p = try parse("ssi.node=3 ssi.quorum_wait=20")
        #expect(p.node == 3)
        #expect(p.quorumWait == 20)
        #expect(try parse("quiet").node == nil)
        #expect(throws: SSIError.self) { try parse("ssi.node=0") }
        #expect(throws: SSIError.self) { try parse("ssi.node=three") }
        #expect(throws: SSIError.self) { try parse("ssi.quorum_wait=-5") }
        #expect(try parse("ssi.node=2").explanation.contains("node: 2"))
    }

    @Test func initMustBeAbsolute() throws {
        #expect(try parse("init=/lib/systemd/systemd").initPath == "/lib/systemd/systemd")
        #expect(throws: SSIError.self) { try parse("init=bash") }
    }

    @Test func breakPoints() throws {
        #expect(try parse("ssi.break=root").breaks == [.root])
        #expect(try parse("ssi.break=modules,pre-pivot").breaks == [.modules, .prePivot])
        #expect(try parse("ssi.break").breaks == [.prePivot])
        let p = try parse("ssi.break=nowhere")
        #expect(p.breaks.isEmpty)
        #expect(p.warnings.count == 1)
        #expect(p.warnings[0].contains("ssi.break=nowhere"))
    }

    @Test func explanationListsEverything() throws {
        let text = try parse("root=LABEL=r ssi.break=root ssi.timeout=9").explanation
        #expect(text.contains("root: LABEL=r"))
        #expect(text.contains("wait for root: 9 s"))
        #expect(text.contains("break at: root"))
    }
}

@Suite struct DeviceSpecTests {
    let dev = BlockDevice(name: "vda1", path: "/dev/vda1", type: "ext4", uuid: "1234-ab",
                          label: "root", partUUID: "5-6", partLabel: "sys")

    @Test func matching() throws {
        #expect(DeviceSpec.uuid("1234-ab").matches(dev))
        #expect(!DeviceSpec.uuid("1234-ac").matches(dev))
        #expect(DeviceSpec.label("root").matches(dev))
        #expect(!DeviceSpec.label("Root").matches(dev))
        #expect(DeviceSpec.path("/dev/vda1").matches(dev))
        #expect(DeviceSpec.partUUID("5-6").matches(dev))
        #expect(DeviceSpec.partLabel("sys").matches(dev))
    }

    @Test func describesSeenDevices() {
        #expect(dev.description == "vda1 (ext4, LABEL=root, UUID=1234-ab)")
        #expect(BlockDevice(name: "vdb", path: "/dev/vdb").description == "vdb (no file system)")
    }
}
