// The shared GFS2 root the VM tests and the GFS2 benchmark boot: a maker
// guest (Debian on its own disk, with ssi, the cluster's configuration
// and the gfs2 module loaded by its initramfs) runs `ssi cluster root
// create` onto a blank disk. The host's kernel need not have GFS2.

import Foundation

public struct GFS2Root: Sendable {
    /// The cluster configuration on the host (configs/gfs2-3node.conf).
    public let config: String
    /// The cluster key on the host only: images carry it sealed to the
    /// nodes' TPM identities, and the shared root not at all.
    public let authkey: String
    /// The nodes' image, built from `config`.
    public let image: String
    /// The raw disk every node shares.
    public let disk: String
    /// What `ssi cluster root create` printed.
    public let createOutput: String
    /// The maker, still running (it sees the disk as /dev/vdb).
    public let maker: Guest
    /// Node N's TPM state is this path followed by N.
    let tpmBase: String

    /// Builds the configuration, the nodes' image, the maker and the root.
    /// `extraRootArguments` go to `ssi cluster root create`.
    public static func make(in vm: VMTest, ssi: String, network: TestNetwork, extraRootArguments: String = "",
                            diskMiB: Int = 2048) async throws -> GFS2Root {
        let kernel = VMHost.kernel!
        let key = vm.path("authkey")
        try Command.run([ssi, "cluster", "keygen", "-o", key])
        // The identities and the sealed key where the administrator's
        // machine keeps them (here: the test's folder; the shared root's
        // /etc/ssi gets copies).
        let conf = try vm.exampleGFS2Config(authkey: key)
        // Each node's identity comes from its TPM (the default): computed
        // on this host from the TPM's state, enrolled, and the key sealed
        // to all three. The image carries the sealed key, not the key.
        for n in 1...3 {
            try Command.run([ssi, "cluster", "node", "enroll", "node\(n)", "--key", try vm.tpmKeyFile(tpmState(vm, n)), "--config", conf])
        }
        try Command.run([ssi, "cluster", "key", "seal", "--config", conf])
        let image = vm.path("cluster.img")
        try Command.run([ssi, "mkinitrd", "--config", conf, "--kver", kernel.version, "-o", image], timeout: .seconds(300))
        let makerImage = vm.path("maker.img")
        try Command.run([ssi, "mkinitrd", "--kver", kernel.version, "-o", makerImage, "--force-modules", "gfs2"], timeout: .seconds(300))
        // The shared root holds the key only sealed: no authkey in its /etc/ssi.
        let etc = try vm.etcSSI(config: conf, authkey: key, copyKey: false)
        let debian = vm.path("debian.img")
        let uuid = "0de0de0d-5555-4222-8333-444455556666"
        try Command.run([VMHost.packageRoot + "/initramfs/testroot/mkdebian.sh", debian, "--uuid", uuid, "--size", "1500M",
                         "--copy", ssi + ":/usr/local/sbin/ssi", "--copy", etc + ":/etc/ssi"], timeout: .seconds(900))
        let disk = try vm.blankDisk(name: "shared", megabytes: diskMiB)
        var m = GuestConfig(name: "maker", initrd: makerImage, kernelArguments: ["root=UUID=\(uuid)", "ro"])
        m.memoryMB = 640
        m.disks = [Disk(debian, snapshot: true), Disk(disk, shared: true)]
        let maker = try vm.start(m)
        try await maker.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600))
        try await maker.waitForAnywhere("ABSOLUTELY NO WARRANTY")
        // The test root carries an NFS server and client for the CFS test;
        // the GFS2 nodes use neither (and their images carry no NFS).
        try await maker.run("mount -o remount,rw / && systemctl mask nfs-server.service proc-fs-nfsd.mount nfs-mountd.service "
                            + "nfsdcld.service run-rpc_pipefs.mount rpc-gssd.service rpc-svcgssd.service >/dev/null 2>&1")
        let created = try await maker.run("ssi cluster root create --gfs2 /dev/vdb --from / \(extraRootArguments) 2>&1",
                                          timeout: .seconds(1200)).output
        return GFS2Root(config: conf, authkey: key, image: image, disk: disk, createOutput: created, maker: maker,
                        tpmBase: vm.path("tpm-node"))
    }

    /// Node N's TPM state (swtpm), the same for every boot of node N.
    static func tpmState(_ vm: VMTest, _ n: Int) -> String { vm.path("tpm-node\(n)") }
    public func tpmState(_ n: Int) -> String { tpmBase + "\(n)" }
    /// The key file the host computed from node N's TPM (VMTest.tpmKeyFile).
    public func tpmKeyFile(_ n: Int) -> String {
        (tpmBase as NSString).deletingLastPathComponent + "/tpm-work-tpm-node\(n)/node.key"
    }

    /// A node of the GFS2 cluster: the shared disk is its only disk.
    public func nodeConfig(_ n: Int, name: String? = nil, image: String? = nil, network: TestNetwork,
                           arguments: [String] = ["ssi.quorum_wait=300"]) throws -> GuestConfig {
        var c = GuestConfig(name: name ?? "node\(n)", initrd: image ?? self.image, kernelArguments: arguments)
        c.memoryMB = 512
        c.timeLimit = .seconds(2700)
        c.nics = [try network.addNIC(mac: Cluster.mac(node: n))]
        c.disks = [Disk(disk, shared: true)]
        c.tpmState = tpmState(n)
        return c
    }
}

/// Benchmark helpers shared by the VM benchmarks.
public enum FileRates {
    /// A shell line that makes, stats, reads and removes `files` files of
    /// 100 bytes in `dir` with perl (in Debian's minbase; perl-base has no
    /// Time::HiRes, so `date` times each phase), one process per phase, so
    /// that the rates are the file system's, not fork's. It prints four
    /// operations-per-second figures.
    public static func script(dir: String, files: Int) -> String {
        let phases = [
            "mkdir $ARGV[0]; for $i (1..$ARGV[1]) { open(F, \">$ARGV[0]/f$i\") or die; print F \"x\" x 100; close F }",
            "for $i (1..$ARGV[1]) { @s = stat(\"$ARGV[0]/f$i\") or die }",
            "for $i (1..$ARGV[1]) { open(F, \"<$ARGV[0]/f$i\") or die; $x = <F>; close F }",
            "for $i (1..$ARGV[1]) { unlink(\"$ARGV[0]/f$i\") or die } rmdir $ARGV[0]",
        ]
        var script = "r=\"\"; "
        for p in phases {
            script += "t0=$(date +%s%N); perl -e '\(p)' \(dir) \(files); t1=$(date +%s%N); "
                + "r=\"$r $(( \(files) * 1000000000 / (t1 - t0) ))\"; "
        }
        return script + "echo $r"
    }
}
