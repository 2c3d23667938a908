// ssi-init boots in qemu: an image from `ssi mkinitrd`, the test root disk,
// and assertions on what ssi-init and the root's init print on the console.

import Foundation
import SSIVMHarness
import Synchronization
import Testing

/// The ssi binary under test: SSI_BIN, else <package>/.build/release/ssi.
enum SSIBinary {
    static let path: String = {
        if let env = ProcessInfo.processInfo.environment["SSI_BIN"], !env.isEmpty { return env }
        return VMHost.packageRoot + "/.build/release/ssi"
    }()

    /// Fails the test (it does not skip it) when the binary is missing: a
    /// VM-capable host without it means the build step was forgotten.
    static func require() throws -> String {
        try #require(FileManager.default.isExecutableFile(atPath: path),
                     "ssi binary not found at \(path): build it first with `swift build -c release --static-swift-stdlib` (or set SSI_BIN)")
        return path
    }
}

/// One image per test process, built on first use with
/// `ssi mkinitrd -o IMG --kver VER --force -q` and removed at exit.
actor SSIImage {
    static let shared = SSIImage()
    private var built: Result<String, HarnessError>?

    func path(ssi: String) throws -> String {
        if let built { return try built.get() }
        let result: Result<String, HarnessError>
        do {
            guard let kernel = VMHost.kernel else { throw HarnessError(VMHost.kernelProblem ?? "no kernel") }
            // ssi-vm-<pid>-*: collected like a scratch folder if this run crashes.
            let dir = (VMHost.environment("TMPDIR") ?? "/tmp") + "/ssi-vm-\(getpid())-initrd"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            imageDirectory.withLock { $0 = dir }
            atexit { removeImageDirectory() }
            let image = dir + "/ssi-initrd.img"
            let started = ContinuousClock.now
            try Command.run([ssi, "mkinitrd", "-o", image, "--kver", kernel.version, "--force", "-q"],
                            timeout: .seconds(300))
            log("ssi mkinitrd: \(image) in \(Guest.seconds(.now - started))")
            result = .success(image)
        } catch let error as HarnessError {
            result = .failure(error)
        } catch {
            result = .failure(HarnessError("\(error)"))
        }
        built = result
        return try result.get()
    }
}

private let imageDirectory = Mutex<String?>(nil)

private func removeImageDirectory() {
    if let dir = imageDirectory.withLock({ $0 }), !VMHost.keepScratch {
        try? FileManager.default.removeItem(atPath: dir)
    }
}

/// Line matchers for ssi-init's console lines: "ssi-init: [ t] STEP: ...".
enum SSIInit {
    static func step(_ step: String, _ words: String...) -> LineMatch {
        LineMatch.containsInOrder(["ssi-init:", "] \(step):"] + words)
    }

    static func error(_ step: String, _ words: String...) -> LineMatch {
        LineMatch.containsInOrder(["ssi-init:", "] \(step):", "ERROR:"] + words)
    }

    /// Any ssi-init error: ends a wait at once in a boot that should work.
    static let anyError = LineMatch.containsInOrder(["ssi-init:", "ERROR:"])
    static let failFast = Guest.defaultFailOn + [anyError]
}

/// A guest booting the ssi image with one test root disk.
func bootSSI(_ vm: VMTest, ssi: String, root: RootDisk, _ arguments: [String]) async throws -> Guest {
    let image = try await SSIImage.shared.path(ssi: ssi)
    var config = GuestConfig(name: "ssi", initrd: image, kernelArguments: arguments)
    config.disks = [Disk(root.path)]
    return try vm.start(config)
}

/// The markers of the test root's init after a good hand-off, through its
/// power-off.
func expectRealInit(_ guest: Guest, root: RootDisk, device: String = "/dev/vda") async throws {
    try await guest.waitFor(.exactly(RootDisk.Marker.realInitPID1), timeout: .seconds(60), failOn: SSIInit.failFast)
    log("\(guest.name): real init after \(Guest.seconds(guest.elapsed))")
    try await guest.waitFor(.exactly(RootDisk.Marker.procYes), timeout: .seconds(10))
    try await guest.waitFor(.exactly(RootDisk.Marker.devConsoleYes), timeout: .seconds(10))
    let mount = try await guest.waitFor(.contains(RootDisk.Marker.rootMount), timeout: .seconds(10))
    #expect(mount.contains("=\(device) / ext4 ro"), "root mount line: \(mount)")
    let uptime = try await guest.waitFor(.contains(RootDisk.Marker.uptime), timeout: .seconds(10))
    log("\(guest.name): \(uptime)")
    try await guest.waitFor(.exactly(RootDisk.Marker.poweroff), timeout: .seconds(10))
    #expect(try await guest.waitForExit(timeout: .seconds(30)) == 0)
}

let bootSkipReason: String? = VMHost.bootSkipReason

/// The modules a modules-step line reports loaded: "loaded 2 modules (a
/// 4 ms, b 5 ms (after a)), still loading c, d after 230 ms: ...".
func loadedModuleNames(_ line: String) -> Set<String> {
    guard let start = line.range(of: "] modules: loaded "),
          let open = line[start.upperBound...].firstIndex(of: "(") else { return [] }
    var list = line[line.index(after: open)...]
    if let end = list.range(of: "), still loading") { list = list[..<end.lowerBound] }
    return Set(list.components(separatedBy: ", ").compactMap { $0.split(separator: " ").first.map(String.init) })
}

extension VM {
    @Suite struct BootTests {
        @Test("ssi-init loads modules, finds the root by UUID and hands off to its init",
              .enabled(if: bootSkipReason == nil, Comment(rawValue: bootSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func goodBoot() async throws {
            let ssi = try SSIBinary.require()
            try await VMTest.run("ssi-good") { vm in
                let root = try vm.rootDisk(label: "ssi-good")
                let guest = try await bootSSI(vm, ssi: ssi, root: root, [root.rootByUUID, "ro"])
                let fail = SSIInit.failFast

                try await guest.waitFor(SSIInit.step("start"), timeout: .seconds(120), failOn: fail)
                log("ssi-init started after \(Guest.seconds(guest.elapsed))")
                // The step's line: what it loaded, or what it left loading.
                let modules = try await guest.waitFor(SSIInit.step("modules"), timeout: .seconds(60), failOn: fail)
                #expect(modules.contains("] modules: loaded") || modules.contains("] modules: still loading"), "\(modules)")
                // A local root's boot leaves driver loads running (ahci's
                // probe) and looks for the disk meanwhile: virtio_blk is
                // loaded by the step, or from its device's event by the
                // root wait, before the root is found; the rest are waited
                // for once it is mounted, before the hand-off.
                let found = try await guest.waitFor(SSIInit.step("root", "found", "UUID=\(root.uuid)", "/dev/vda", "ext4"),
                                                    timeout: .seconds(30), failOn: fail)
                // (Or the step left it loading, waiting for virtio_pci's
                // load: DriverLoads; the disk found proves it loaded.)
                let beforeRoot = guest.lines.prefix { $0 != found }
                #expect(beforeRoot.contains { $0.contains("] modules: loaded") && $0.contains("virtio_blk") }
                        || (modules.components(separatedBy: "still loading ").last ?? "").contains("virtio_blk"),
                        "virtio_blk loaded before the root was found: \(modules)")
                try await guest.waitFor(SSIInit.step("root", "mounted", "/dev/vda", "/sysroot"),
                                        timeout: .seconds(30), failOn: fail)
                if modules.contains("still loading") {
                    // One look names each load once: loaded or still loading.
                    let slowNames = Set((modules.components(separatedBy: "still loading ").last ?? "")
                        .components(separatedBy: " after ").first?.components(separatedBy: ", ") ?? [])
                    let loadedNames = loadedModuleNames(modules)
                    #expect(loadedNames.isEmpty == !modules.contains("] modules: loaded "), "\(modules): \(loadedNames)")
                    #expect(!slowNames.isEmpty && slowNames.isDisjoint(with: loadedNames), "\(modules)")
                    // Each load left running is reported, with its time,
                    // once the root is mounted and before the hand-off.
                    let joined = try await guest.waitFor(SSIInit.step("modules", "then loaded"), timeout: .seconds(30), failOn: fail)
                    let left = modules.components(separatedBy: "still loading ").last?.components(separatedBy: ",").first ?? ""
                    #expect(!left.isEmpty && joined.contains(left.trimmingCharacters(in: .whitespaces) + " "), "\(modules) / \(joined)")
                }
                try await guest.waitFor(SSIInit.step("switch-root", "handing off", "/sbin/init"),
                                        timeout: .seconds(30), failOn: fail)
                try await expectRealInit(guest, root: root)
                let cmdline = guest.lines.first { $0.hasPrefix(RootDisk.Marker.cmdline) } ?? ""
                #expect(cmdline.contains(root.rootByUUID), "the real init sees the kernel command line: \(cmdline)")
                #expect(!guest.lines.contains { SSIInit.anyError.matches($0) })

                // scripts/build packs the binary (BinaryArchive): the image
                // this guest booted appended that archive, the kernel
                // unpacked both, and the /init that ran came from it.
                let real = URL(fileURLWithPath: ssi).resolvingSymlinksInPath().path
                let packedDir = ((real as NSString).deletingLastPathComponent as NSString).deletingLastPathComponent + "/lib/ssi"
                let packed = ((try? FileManager.default.contentsOfDirectory(atPath: packedDir)) ?? []).filter { $0.hasSuffix(".cpio.zst") }
                let listing = try Command.run([ssi, "mkinitrd", "--list", try await SSIImage.shared.path(ssi: ssi)]).stdout
                let archives = listing.split(separator: "\n").filter { $0.hasPrefix("# archive ") }
                if packed.isEmpty {
                    log("no packed binary beside \(real): the image compressed it (run scripts/build to pack it)")
                    #expect(archives.count == 1, "\(archives)")
                } else {
                    #expect(archives.count == 2, "main archive + packed binary: \(archives)")
                    let last = listing.components(separatedBy: "# archive 2").last ?? ""
                    #expect(last.contains(" usr/bin/ssi\n"), "the packed archive holds /init's binary: \(last)")
                }
            }
        }

        @Test("a node with its own disk boots ssi's image through GRUB: the package's 09_ssi entry is the default and hands off to the root's init",
              .enabled(if: bootSkipReason == nil && RootDisk.grubDiskSkipReason == nil,
                       Comment(rawValue: bootSkipReason ?? RootDisk.grubDiskSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func grubBoot() async throws {
            let ssi = try SSIBinary.require()
            let kernel = try #require(VMHost.kernel)
            try await VMTest.run("ssi-grub") { vm in
                // The image the kernel hook's `ssi-mkinitrd -u` writes as
                // /boot/ssi-initrd.img-VERSION (the package test runs the
                // hook); here the same build, on a disk with GRUB.
                let image = try await SSIImage.shared.path(ssi: ssi)
                let root = try RootDisk.makeGrubDisk(at: vm.path("grub-disk.img"), kernel: kernel.path,
                                                     version: kernel.version, image: image)
                var config = GuestConfig(name: "grub")
                config.diskBoot = true
                config.disks = [Disk(root.path)]
                let guest = try vm.start(config)
                let fail = SSIInit.failFast + [.contains("error: ")]   // GRUB's errors

                try await guest.waitFor(.contains("Booting from Hard Disk"), timeout: .seconds(60), failOn: fail)
                // GRUB's default entry is the newest ssi one (no menu wait).
                try await guest.waitFor(.containsInOrder(["Booting `", "with Linux \(kernel.version) (ssi)'"]),
                                        timeout: .seconds(60), failOn: fail)
                try await guest.waitFor(.contains("Loading Linux \(kernel.version) with its ssi image"), timeout: .seconds(30), failOn: fail)
                log("grub: GRUB chose the ssi entry after \(Guest.seconds(guest.elapsed))")
                try await guest.waitFor(SSIInit.step("start"), timeout: .seconds(180), failOn: fail)
                try await guest.waitFor(SSIInit.step("root", "found", "UUID=\(root.uuid)", "/dev/vda1", "ext4"),
                                        timeout: .seconds(60), failOn: fail)
                try await guest.waitFor(SSIInit.step("switch-root", "handing off", "/sbin/init"),
                                        timeout: .seconds(30), failOn: fail)
                try await expectRealInit(guest, root: root, device: "/dev/vda1")
                let cmdline = guest.lines.first { $0.hasPrefix(RootDisk.Marker.cmdline) } ?? ""
                #expect(cmdline.contains("BOOT_IMAGE=/boot/vmlinuz-\(kernel.version) \(root.rootByUUID) ro console=ttyS0"),
                        "the kernel command line 09_ssi wrote: \(cmdline)")
                #expect(!guest.lines.contains { SSIInit.anyError.matches($0) })
            }
        }

        @Test("a root that is not there: a named error listing the disks seen, then a working emergency shell",
              .enabled(if: bootSkipReason == nil, Comment(rawValue: bootSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func missingRoot() async throws {
            let ssi = try SSIBinary.require()
            try await VMTest.run("ssi-noroot") { vm in
                let root = try vm.rootDisk(label: "ssi-other")
                let missing = "00000000-0000-0000-0000-000000000000"
                let guest = try await bootSSI(vm, ssi: ssi, root: root, ["root=UUID=\(missing)", "ssi.timeout=5"])

                let error = try await guest.waitFor(SSIInit.error("root", "UUID=\(missing)", "not found"),
                                                    timeout: .seconds(150))
                #expect(error.contains("vda"), "the error lists the disks seen: \(error)")
                #expect(error.contains(root.uuid) || error.contains(root.label), "\(error)")
                try await guest.waitFor(SSIInit.step("emergency"), timeout: .seconds(30))
                #expect(try await guest.run("echo hello-$((1+1))").output == "hello-2")
                let cmdline = try await guest.run("cat /proc/cmdline").output
                #expect(cmdline.contains("ssi.timeout=5"))
                #expect(try await guest.run("[ -b /dev/vda ]", expectStatus: nil).status == 0,
                        "the emergency shell sees the disk")
                #expect(!guest.log.contains(RootDisk.Marker.realInit))
            }
        }

        @Test("ssi.break=root stops in a shell before the root; exiting it boots on (root by LABEL) into a clean hand-off",
              .enabled(if: bootSkipReason == nil, Comment(rawValue: bootSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func breakAtRoot() async throws {
            let ssi = try SSIBinary.require()
            try await VMTest.run("ssi-break") { vm in
                let root = try vm.rootDisk(label: "ssi-label")
                let guest = try await bootSSI(vm, ssi: ssi, root: root,
                                              [root.rootByLabel, "ro", "ssi.break=root", RootDisk.Marker.shellArgument])
                let fail = SSIInit.failFast

                try await guest.waitFor(SSIInit.step("break", "ssi.break=root"), timeout: .seconds(150), failOn: fail)
                try await guest.waitFor(SSIInit.step("emergency"), timeout: .seconds(30), failOn: fail)
                let cmdline = try await guest.run("cat /proc/cmdline").output
                #expect(cmdline.contains("ssi.break=root"))
                #expect(cmdline.contains(root.rootByLabel))
                let mounted = try await guest.run("grep -c ' /sysroot ' /proc/mounts", expectStatus: nil).output
                #expect(mounted == "0", "the root is not mounted yet at the break")

                try guest.send("exit\n")
                try await guest.waitFor(SSIInit.step("root", "found", "LABEL=\(root.label)", "/dev/vda"),
                                        timeout: .seconds(60), failOn: fail)
                try await guest.waitFor(SSIInit.step("switch-root", "handing off", "/sbin/init"),
                                        timeout: .seconds(30), failOn: fail)
                try await guest.waitFor(.exactly(RootDisk.Marker.realInitPID1), timeout: .seconds(60), failOn: fail)
                try await guest.waitFor(.exactly(RootDisk.Marker.shell), timeout: .seconds(30))

                // The handed-off system: the API file systems were moved,
                // not remounted; ssi-init's log is in the kernel's ring
                // buffer; no process of the initramfs survived.
                for (mountPoint, type) in [("/proc", "proc"), ("/sys", "sysfs"), ("/dev", "devtmpfs"), ("/run", "tmpfs")] {
                    let line = try await guest.run("grep ' \(mountPoint) ' /proc/mounts", expectStatus: nil).output
                    #expect(line.hasPrefix(type + " \(mountPoint) \(type)"), "\(mountPoint): \(line)")
                }
                let kmsg = try await guest.run("dmesg | grep -c 'ssi-init: switch-root: handing off'", expectStatus: nil).output
                #expect(kmsg == "1", "ssi-init logs to /dev/kmsg")
                let pids = try await guest.run("ls -d /proc/[0-9]* | wc -l", expectStatus: nil).output
                let comm = try await guest.run("cat /proc/[0-9]*/comm | sort -u | tr '\\n' ' '", expectStatus: nil).output
                #expect(!comm.contains("ssi"), "no initramfs process left: \(comm) (\(pids) processes)")
                try guest.send("poweroff -f\n")
                #expect(try await guest.waitForExit(timeout: .seconds(30)) == 0)
            }
        }

        @Test("an image without the disk's driver: the root error says no disk was seen and names the fix",
              .enabled(if: bootSkipReason == nil, Comment(rawValue: bootSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func missingDiskDriver() async throws {
            let ssi = try SSIBinary.require()
            try await VMTest.run("ssi-nodriver") { vm in
                let root = try vm.rootDisk(label: "ssi-nodrv")
                let image = vm.path("nodriver.img")
                try Command.run([ssi, "mkinitrd", "-o", image, "--kver", VMHost.kernel!.version, "-q",
                                 "--no-default-modules", "--add-modules", "ext4"], timeout: .seconds(300))
                var config = GuestConfig(name: "nodriver", initrd: image,
                                         kernelArguments: [root.rootByUUID, "ro", "ssi.timeout=3"])
                config.disks = [Disk(root.path)]
                let guest = try vm.start(config)
                let error = try await guest.waitFor(SSIInit.error("root", "UUID=\(root.uuid)", "not found after 3 s"),
                                                    timeout: .seconds(150))
                #expect(error.contains("block devices seen: none"), "\(error)")
                #expect(error.contains("--add-modules"), "the hint names the fix: \(error)")
                try await guest.waitFor(SSIInit.step("emergency"), timeout: .seconds(30))
                // The driver is not in the image: loading it by hand fails.
                let modprobe = try await guest.run("modprobe virtio_blk", expectStatus: nil)
                #expect(modprobe.status != 0)
            }
        }

        @Test("a root whose /sbin/init is not executable: an error naming init, then the emergency shell",
              .enabled(if: bootSkipReason == nil, Comment(rawValue: bootSkipReason ?? "")),
              .timeLimit(.minutes(5)))
        func initNotExecutable() async throws {
            let ssi = try SSIBinary.require()
            try await VMTest.run("ssi-noexec") { vm in
                let root = try vm.rootDisk(label: "ssi-noexec", initExecutable: false)
                let guest = try await bootSSI(vm, ssi: ssi, root: root, [root.rootByUUID, "ro"])

                try await guest.waitFor(SSIInit.step("root", "mounted", "/dev/vda"), timeout: .seconds(150),
                                        failOn: SSIInit.failFast)
                let error = try await guest.waitFor(SSIInit.error("init", "/sbin/init"), timeout: .seconds(30))
                #expect(error.contains("not executable"), "\(error)")
                try await guest.waitFor(SSIInit.step("emergency"), timeout: .seconds(30))
                let ls = try await guest.run("ls -l /sysroot/sbin/init").output
                #expect(ls.hasPrefix("-rw-r--r--"), "\(ls)")
                #expect(!guest.log.contains(RootDisk.Marker.realInit))
            }
        }
    }
}
