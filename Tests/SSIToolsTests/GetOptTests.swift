import Testing
@testable import SSITools

/// The command lines, compared with util-linux's for the same inputs.
@Suite struct MountCommandLineTests {
    @Test("mixed options and operands, bundles, glued values, = values, --")
    func getoptForms() throws {
        let v = try MountTool.parse(["/dev/vdb", "-nvt", "ext4", "/mnt", "-oro,noatime", "--options=nodev"], program: "mount")
        #expect(v.source == "/dev/vdb" && v.target == "/mnt")
        #expect(v.noMtab && v.verbose && v.types == "ext4")
        #expect(v.optionString == "ro,noatime,nodev")
        let w = try MountTool.parse(["-L", "data", "-w", "--", "/srv"], program: "mount")
        #expect(w.source == "LABEL=data" && w.target == "/srv" && w.optionString == "rw")
        let one = try MountTool.parse(["/home"], program: "mount")
        #expect(one.target == "/home" && one.source == nil, "one operand is looked up as a target first")
        let abbreviated = try MountTool.parse(["--verb", "--bind", "/a", "/b"], program: "mount")
        #expect(abbreviated.verbose && abbreviated.bind)
    }

    @Test("usage errors: the same words as util-linux's getopt")
    func usageErrors() {
        func message(_ args: [String]) -> String? {
            do { _ = try MountTool.parse(args, program: "mount"); return nil } catch { return error.message }
        }
        #expect(message(["--foo"]) == "mount: unrecognized option '--foo'")
        #expect(message(["-z"]) == "mount: invalid option -- 'z'")
        #expect(message(["-o"]) == "mount: option requires an argument -- 'o'")
        #expect(message(["--options"]) == "mount: option '--options' requires an argument")
        #expect(message(["--bind=x"]) == "mount: option '--bind' doesn't allow an argument")
        #expect(message(["--r"])?.hasPrefix("mount: option '--r' is ambiguous; possibilities:") == true)
    }
}

@Suite struct FsckCommandLineTests {
    @Test("fsck's own options, the checker's, and everything after --")
    func split() throws {
        let v = try FsckTool.parse(["-A", "-R", "-a", "-C0", "-t", "ext4", "-fy", "/dev/vdb", "--", "-E", "discard"])
        #expect(v.all && v.skipRoot && v.types == "ext4" && v.progressFD == "0")
        #expect(v.checkerOptions == ["-a", "-fy", "-E", "discard"])
        #expect(v.devices == ["/dev/vdb"])
        let n = try FsckTool.parse(["-nT", "LABEL=x"])
        #expect(n.noTitle && n.checkerOptions == ["-n"] && n.devices == ["LABEL=x"])
    }
}
