// The CFS cluster the drop-in tools are tested and measured on: node 1
// boots its own disk and serves the root; diskless nodes network-boot from
// it. Every node has three swap disks (ssi-swap-1..3, each node's own swap
// in cluster.conf) and one shared ext4 disk (ssi-shared) attached; node 1
// alone has the "data" disk (ext4, ssi-data). The root carries a slow fsck
// checker (fsck.slow: logs its start and end to the shared /root) for the
// cluster lock test. Used by the VM test and the benchmark.

import Foundation

public struct ToolsCluster: Sendable {
    /// The ssi binary ssi-init left in the daemons' root, run in the distro.
    public static let ssi = "/run/ssi/root/usr/bin/ssi"

    public let network: TestNetwork
    public let netboot: String
    public let commonDisks: [Disk]
    public let node1: Guest

    /// Builds the image and the disks, boots node 1 to multi-user. `deb`:
    /// the ssi package, installed in the root (mkdebian.sh --deb). `files`:
    /// more files for the root, by path in it (mode 0755: test programs).
    /// `rootMB`: the root disk's size (a sparse file).
    public static func boot(in vm: VMTest, ssi: String, kernel: Kernel, deb: String? = nil,
                            files: [String: String] = [:], memoryMB: Int = 640, rootMB: Int = 1500) async throws -> ToolsCluster {
        let key = vm.path("authkey")
        try Command.run([ssi, "cluster", "keygen", "-o", key])
        let conf = try vm.exampleCFSConfig(authkey: key)
        var text = try String(contentsOfFile: conf, encoding: .utf8)
        for n in 1...3 {
            text = text.replacingOccurrences(of: "address = \"10.77.0.\(n)\"\n",
                                             with: "address = \"10.77.0.\(n)\"\nswap = \"LABEL=ssi-swap-\(n)\"\n")
        }
        try text.write(toFile: conf, atomically: true, encoding: .utf8)
        // The root gets the image's modules (below): CRIU's socket
        // diagnostics and nf_tables come along for process migration, as a
        // distro root's /lib/modules would have them. Node 1 boots its own
        // image (it carries the key); the served one holds no secret.
        let (netboot, own, etc) = try vm.cfsImages(
            ssi: ssi, config: conf, authkey: key, kernel: kernel, enrolled: [2, 3],
            extraArguments: ["--add-modules", "unix_diag,inet_diag,tcp_diag,udp_diag,raw_diag,netlink_diag,af_packet_diag,nf_tables,tun,veth"])

        let data = try vm.blankDisk(name: "data", megabytes: 64)
        try Command.run(["mkfs.ext4", "-q", "-F", "-L", "ssi-data", data])
        let shared = try vm.blankDisk(name: "shared", megabytes: 64)
        try Command.run(["mkfs.ext4", "-q", "-F", "-L", "ssi-shared", shared])
        var swaps: [String] = []
        for n in 1...3 {
            let s = try vm.blankDisk(name: "swap\(n)", megabytes: 32)
            try Command.run(["mkswap", "-L", "ssi-swap-\(n)", s])
            swaps.append(s)
        }
        let slow = vm.path("fsck.slow")
        try """
            #!/bin/sh
            echo "$(hostname) start" >> /root/fsck-order
            sleep 4
            /usr/sbin/fsck.ext4 "$@"; rc=$?
            echo "$(hostname) end" >> /root/fsck-order
            exit $rc

            """.write(toFile: slow, atomically: true, encoding: .utf8)
        chmod(slow, 0o755)

        var copies: [String] = []
        for (n, (dest, text)) in files.sorted(by: { $0.key < $1.key }).enumerated() {
            let local = vm.path("file\(n)")
            try text.write(toFile: local, atomically: true, encoding: .utf8)
            chmod(local, 0o755)
            copies += ["--copy", local + ":" + dest]
        }
        let unpacked = vm.path("unpacked")
        try FileManager.default.createDirectory(atPath: unpacked, withIntermediateDirectories: true)
        try Command.run(["sh", "-c", "cd \(unpacked) && zstd -dc \(netboot)/initrd.img | cpio -id --quiet 'usr/lib/modules/*'"],
                        timeout: .seconds(120))
        let debian = vm.path("debian.img")
        let uuid = "0de0de0d-3333-4333-8333-444455556666"
        try Command.run([VMHost.packageRoot + "/initramfs/testroot/mkdebian.sh", debian, "--uuid", uuid,
                         "--size", "\(rootMB)M", "--copy", netboot + ":/srv/ssi/netboot", "--copy", etc + ":/etc/ssi",
                         "--copy", slow + ":/usr/sbin/fsck.slow", "--copy", try SourceTree.lua() + ":" + SourceTree.luaInRoot,
                         "--copy", unpacked + "/usr/lib/modules:/usr/lib/modules"] + copies + (deb.map { ["--deb", $0] } ?? []),
                        timeout: .seconds(900))

        let common = swaps.map { Disk($0, shared: true) } + [Disk(shared, shared: true)]
        let network = try vm.network()
        var c1 = GuestConfig(name: "node1", initrd: own,
                             kernelArguments: ["root=UUID=\(uuid)", "ro", "ssi.quorum_wait=5"])
        c1.memoryMB = memoryMB
        c1.disks = [Disk(debian, snapshot: true), Disk(data)] + common
        // The tools' boot carries the most scenarios (mounts, migration,
        // deputies, a leveled build, a shell's jobs): 25 min on a slow
        // day's 2 cores reached the old 1500 s bound while still passing,
        // and a CI run on a slower one was 1500 s in with a third to go.
        c1.timeLimit = .seconds(3300)
        c1.nics = [try network.addNIC(mac: Cluster.mac(node: 1))]
        let node1 = try vm.start(c1)
        try await node1.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600),
                                failOn: Guest.defaultFailOn + [.containsInOrder(["ssi-init:", "ERROR:"])])
        try await node1.waitForAnywhere("ABSOLUTELY NO WARRANTY")
        return ToolsCluster(network: network, netboot: netboot, commonDisks: common, node1: node1)
    }

    /// Starts diskless node `n` (it network-boots from node 1); does not wait.
    public func startDiskless(_ n: Int, in vm: VMTest, memoryMB: Int = 512) throws -> Guest {
        var c = GuestConfig(name: "node\(n)")
        c.networkBoot = true
        c.memoryMB = memoryMB
        c.timeLimit = .seconds(3300)
        // The node's key disk first: /dev/vda, the configuration's [identity] device.
        c.disks = [Disk(vm.identityDisk(node: n), snapshot: true)] + commonDisks
        c.nics = [try network.addNIC(mac: Cluster.mac(node: n))]
        return try vm.start(c)
    }

    /// Waits for a node to reach multi-user and its login shell.
    public static func waitUp(_ g: Guest) async throws {
        try await g.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600), failOn: Guest.defaultFailOn + [.containsInOrder(["ssi-init:", "ERROR:"])])
        try await g.waitForAnywhere("ABSOLUTELY NO WARRANTY")
    }
}
