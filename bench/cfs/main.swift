// CFS benchmark (not a test). On one init node booted from a Debian 12 disk
// and serving it (ssi's CFS: the distro's NFS server, dnsmasq), it measures
//  - a diskless node's network boot to systemd's multi-user.target, on the
//    host clock from qemu's start: once with ssi's image (join, NFSv4 root
//    with ssi's options: the top level and /usr cached, every other
//    top-level directory coherent, the private /var and /tmp cached), once
//    with the same image but nothing cached (`[root] cached = []`,
//    `cache_private = false`: every lookup a round trip), once with
//    dracut's NFS root
//    (dracut-network, root=nfs4:..., ip=dhcp) on the same VMs and served
//    the same way (PXE, TFTP);
//  - when the init node's NFS server and network boot were ready, against
//    when ssi-init had mounted its root (what starting them from the
//    initramfs would gain at most);
//  - file create/stat/read/unlink rates on the CFS root (from the diskless
//    node) against the init node's local disk, with the mount options;
//  - what the tunnel costs ([tunnel], the example's): the same rates on the
//    root mounted from the init node's cluster address instead (an export
//    to the cluster network made for the bench, which dracut's boot needs
//    too), and TCP throughput to the init node inside and outside it.
//
//   swift run -c release ssi-bench-cfs [--ssi PATH] [--files N] [--mtu N] [--cached T1,T2]
//
// --mtu 9000: a jumbo-frame test network (bridge and taps), the example's
// `[network] mtu` set to it, and dracut's node given it by the init node's
// DHCP (option 26); default 1500, the NICs' own. --cached: the first boot's
// `[root] cached` trees instead of the example's (/usr).
//
// Needs root, qemu, a Debian kernel, debootstrap, dracut-core,
// dracut-network and nfs-common (scripts/setup --bench).

import Foundation
import SSIVMHarness

let seconds = Bench.seconds
func fmt(_ v: Double, _ digits: Int = 1) -> String { Bench.format(v, digits) }

struct Boot { var hostSeconds: Double; var guestUptime: String }

@main
struct CFSBench {
    static func main() async {
        var values = ["files": "300", "mtu": "1500", "cached": ""]
        let ssi = Bench.arguments(usage: "ssi-bench-cfs [--ssi PATH] [--files N] [--mtu N] [--cached T1,T2]", values: &values)
        let files = Bench.number(values, "files")
        guard let mtu = Int(values["mtu"]!), (1280...65535).contains(mtu) else { Bench.fail("--mtu takes a number, 1280 to 65535") }
        for tool in ["dracut", "mount.nfs"] where Command.find(tool) == nil {
            FileHandle.standardError.write(Data("cannot run: \(tool) missing (scripts/setup --bench)\n".utf8))
            exit(2)
        }
        let cached = values["cached"]!.split(separator: ",").map(String.init)
        await Bench.run { try await run(ssi: ssi, files: files, mtu: mtu, cached: cached) }
    }

    static func run(ssi: String, files: Int, mtu: Int, cached: [String]) async throws {
        let kernel = VMHost.kernel!
        try await VMTest.run("bench-cfs") { vm in
            let key = vm.path("authkey")
            try Command.run([ssi, "cluster", "keygen", "-o", key])
            let conf = try vm.exampleCFSConfig(authkey: key, mtu: mtu == 1500 ? nil : mtu)
            if !cached.isEmpty {
                let text = try String(contentsOfFile: conf, encoding: .utf8)
                guard text.contains("cached = [\"/usr\"]\n") else { Bench.fail("\(conf): no cached = [\"/usr\"] line to replace") }
                try text.replacingOccurrences(of: "cached = [\"/usr\"]\n", with: "cached = [" + cached.map { "\"\($0)\"" }.joined(separator: ", ") + "]\n")
                    .write(toFile: conf, atomically: true, encoding: .utf8)
            }
            // Node 1 boots its own image; the served one holds no secret,
            // and node 2 proves its identity (its key disk) for the key.
            let (netboot, own, etc) = try vm.cfsImages(ssi: ssi, config: conf, authkey: key, kernel: kernel, enrolled: [2])
            // The same cluster with no cached trees: the whole root coherent.
            let coherentConf = vm.path("cluster-coherent.conf")
            let confText = try String(contentsOfFile: conf, encoding: .utf8)
            let cachedLine = confText.split(separator: "\n").first { $0.hasPrefix("cached = [") }.map { $0 + "\n" }
            guard let cachedLine, confText.contains("cache_private = true\n") else {
                Bench.fail("\(conf): no cached = [...] or cache_private = true line to turn off")
            }
            try confText.replacingOccurrences(of: cachedLine, with: "cached = []\n")
                .replacingOccurrences(of: "cache_private = true\n", with: "cache_private = false\n")
                .write(toFile: coherentConf, atomically: true, encoding: .utf8)
            // A served image too (no key, no node's key file): built into a
            // folder of its own, its image served beside ours.
            let coherentDir = vm.path("netboot-coherent")
            try Command.run([ssi, "mkinitrd", "--config", coherentConf, "--kver", kernel.version, "--netboot", coherentDir,
                             "--kernel-image", kernel.path, "-q"], timeout: .seconds(300))
            try FileManager.default.copyItem(atPath: coherentDir + "/initrd.img", toPath: netboot + "/initrd-coherent.img")
            chmod(netboot + "/initrd-coherent.img", 0o644)
            // dracut's NFS root image, served beside ours.
            let dracutArgs = ["dracut", "-q", "--no-hostonly", "--force", "--kver", kernel.version,
                              // network-legacy (dhclient): with systemd-networkd
                              // (what dracut picks when systemd is installed)
                              // ip=dhcp never configured the NIC here.
                              "--add", "nfs network-legacy",
                              "--omit", "crypt dm nvdimm qemu virtiofs overlay-root systemd-networkd network-manager",
                              "--drivers", "virtio_pci virtio_net nfsv4", netboot + "/dracut.img"]
            let started = ContinuousClock.now
            try Command.run(dracutArgs, timeout: .seconds(600))
            // dracut writes its image mode 0600; dnsmasq serves TFTP as nobody.
            chmod(netboot + "/dracut.img", 0o644)
            FileHandle.standardError.write(Data("dracut image built in \(fmt(seconds(ContinuousClock.now - started))) s: \(Command.commandLine(dracutArgs))\n".utf8))
            try """
                #!ipxe
                kernel vmlinuz initrd=dracut.img root=nfs4:10.77.0.1:/ rw ip=dhcp rd.neednet=1 console=ttyS0 panic=-1 virtio_net.napi_tx=0
                initrd dracut.img
                boot

                """.write(toFile: netboot + "/boot-dracut.ipxe", atomically: true, encoding: .utf8)
            try FileManager.default.copyItem(atPath: netboot + "/boot.ipxe", toPath: netboot + "/boot-ssi.ipxe")
            let ipxe = try String(contentsOfFile: netboot + "/boot.ipxe", encoding: .utf8)
            guard ipxe.contains("initrd.img") else { Bench.fail("\(netboot)/boot.ipxe does not name initrd.img") }
            try ipxe.replacingOccurrences(of: "initrd.img", with: "initrd-coherent.img")
                .write(toFile: netboot + "/boot-ssi-coherent.ipxe", atomically: true, encoding: .utf8)

            let debian = vm.path("debian.img")
            let uuid = "0de0de0d-3333-4222-8333-444455556666"
            try Command.run([VMHost.packageRoot + "/initramfs/testroot/mkdebian.sh", debian, "--uuid", uuid,
                             "--size", "1500M", "--copy", netboot + ":/srv/ssi/netboot", "--copy", etc + ":/etc/ssi"],
                            timeout: .seconds(900))
            let network = try vm.network(mtu: mtu)
            var c1 = GuestConfig(name: "node1", initrd: own,
                                 kernelArguments: ["root=UUID=\(uuid)", "ro", "ssi.quorum_wait=5"])
            c1.memoryMB = 640
            c1.disks = [Disk(debian, snapshot: true)]
            c1.timeLimit = .seconds(2400)
            c1.nics = [try network.addNIC(mac: Cluster.mac(node: 1))]
            let node1 = try vm.start(c1)
            let rootMounted = try await node1.waitFor(.containsInOrder("ssi-init:", "root: mounted"), timeout: .seconds(300))
            try await node1.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(600))
            try await node1.waitForAnywhere("ABSOLUTELY NO WARRANTY")
            // When the services were up (monotonic seconds since boot, the
            // clock of the kernel's printk times).
            let ready = try await node1.run("for u in nfs-server ssi-netboot; do systemctl show -P ActiveEnterTimestampMonotonic $u; done",
                                            timeout: .seconds(60)).output.split(separator: "\n").compactMap { Double($0) }
            let mountedAt = rootMounted.split(separator: "]").first.flatMap { Double($0.split(separator: "[").last?.trimmingCharacters(in: .whitespaces) ?? "") }

            var boots: [String: Boot] = [:]
            var rates: [String: [String]] = [:]
            let local = try await node1.run(FileRates.script(dir: "/root/bench-local", files: files), timeout: .seconds(600)).output
            rates["init node, local ext4"] = local.split(separator: " ").map(String.init)
            var options = ""
            var usrOptions = ""
            var throughput: [String: [Double]] = [:]
            var nfsRead: [String: String] = [:], nicMTU: [String: String] = [:], rootOps: [String: String] = [:]
            // dracut has no tunnel: its NFS root comes from the cluster
            // network, which the export (to the tunnel only) refuses. The
            // bench exports the root there too; ssi's nodes do not use it.
            try await node1.run("exportfs -o rw,sync,no_subtree_check,no_root_squash,fsid=0,sec=sys 10.77.0.0/24:/", timeout: .seconds(60))
            // A sink for the throughput runs: reads whatever comes, 8 times.
            try await node1.run("(perl -MIO::Socket::INET -e '$s = IO::Socket::INET->new(LocalPort => 7100, Listen => 8, ReuseAddr => 1) or die; "
                                + "for (1..8) { $c = $s->accept or next; 1 while sysread($c, $b, 65536) > 0; close $c }' >/dev/null 2>&1 &)")
            let kinds = ["ssi", "ssi-coherent", "dracut"]
            for kind in kinds {
                try await node1.run("cp /srv/ssi/netboot/boot-\(kind).ipxe /srv/ssi/netboot/boot.ipxe")
                var c = GuestConfig(name: "node2-\(kind)")
                c.networkBoot = true
                c.memoryMB = 512
                c.disks = [Disk(vm.identityDisk(node: 2), snapshot: true)]
                c.timeLimit = .seconds(1200)
                c.nics = [try network.addNIC(mac: Cluster.mac(node: 2))]
                let g = try vm.start(c)
                let marker = try await g.waitFor(.contains("SSI-TEST multi-user"), timeout: .seconds(900))
                let host = seconds(ContinuousClock.now - g.startedAt)
                boots[kind] = Boot(hostSeconds: host, guestUptime: String(marker.split(separator: " ").last ?? "?"))
                print("\(kind): multi-user \(fmt(host)) s after qemu started (guest uptime \(boots[kind]!.guestUptime) s)")
                // What the boot read from the NFS server (every NFS mount's
                // server read bytes, /proc/self/mountstats; mounts of one
                // file system share a superblock and its counters, counted
                // once) and the NIC's MTU.
                try await g.waitForAnywhere("ABSOLUTELY NO WARRANTY")
                let read = try await g.run("awk '/^device .* nfs4? /{nfs=1; next} /^device /{nfs=0} nfs && $1==\"bytes:\" && !seen[$0]++{s+=$6} END{printf \"%.1f\", s/1048576}' /proc/self/mountstats; "
                                           + "echo; cat /sys/class/net/e*/mtu | head -1", timeout: .seconds(60)).output.split(separator: "\n")
                nfsRead[kind] = read.first.map(String.init) ?? "?"
                nicMTU[kind] = read.dropFirst().first.map(String.init) ?? "?"
                // The root mount's busiest NFS operations by then: where
                // the round trips went.
                rootOps[kind] = try await g.run("awk '/^device /{root = ($5 == \"/\")} root && /^[[:space:]]*[A-Z_]+: [0-9]+ /{sub(\":\", \"\", $1); print $2, $1}' /proc/self/mountstats "
                                                + "| sort -rn | head -6 | awk '{printf \"%s %s, \", $2, $1}'", timeout: .seconds(60)).output
                if kind == "ssi" {
                    options = try await g.run("findmnt -n -o OPTIONS /", timeout: .seconds(60)).output
                    usrOptions = try await g.run("findmnt -n -t nfs4 -o TARGET,SOURCE,OPTIONS | cat", timeout: .seconds(60)).output
                    let cfs = try await g.run(FileRates.script(dir: "/root/bench-cfs", files: files), timeout: .seconds(900)).output
                    rates["diskless node, CFS root (NFSv4)"] = cfs.split(separator: " ").map(String.init)
                    let mount = "mkdir -p /mnt/plain && mount -t nfs4 -o vers=4.2,proto=tcp,hard,timeo=600,retrans=2,actimeo=0,lookupcache=none,"
                        + "addr=10.77.0.1,clientaddr=10.77.0.2 10.77.0.1:/ /mnt/plain"
                    let plain = try await g.run(mount + " && " + FileRates.script(dir: "/mnt/plain/root/bench-plain", files: files),
                                                timeout: .seconds(900)).output
                    rates["diskless node, the same root without the tunnel"] = plain.split(separator: " ").map(String.init)
                    // 64 MiB to node 1, alternating, four times each; KiB/s.
                    for _ in 1...4 {
                        for (label, address) in [("tunnel", "10.78.0.1"), ("cluster network", "10.77.0.1")] {
                            let kib = try await g.run("bash -c 't0=$(date +%s%N); dd if=/dev/zero bs=64k count=1024 2>/dev/null "
                                                      + "> /dev/tcp/\(address)/7100; t1=$(date +%s%N); echo $(( 65536 * 1000000000 / (t1 - t0) ))'",
                                                      timeout: .seconds(300)).output
                            throughput[label, default: []].append(Double(kib) ?? 0)
                        }
                    }
                }
                g.kill()
                _ = try? await g.waitForExit(timeout: .seconds(30))
            }

            print("\nCFS benchmark: qemu TCG guests (init node 640 MB, diskless 512 MB, 1 vCPU each) on \(ProcessInfo.processInfo.activeProcessorCount) host cores; kernel \(kernel.version)\n")
            print("network MTU \(mtu)\n")
            print("| diskless boot to multi-user.target | host s from qemu start | guest uptime s | / ssi | MB read from NFS by then | NIC MTU |")
            print("|---|---|---|---|---|---|")
            let names = ["ssi": "ssi (join, NFSv4 root: / and /usr cached 10 s, the other top-level trees coherent; private /var, /tmp cached)",
                         "ssi-coherent": "ssi, nothing cached (`cached = []`, `cache_private = false`)",
                         "dracut": "dracut 059 NFS root (dracut-network)"]
            for kind in kinds {
                guard let b = boots[kind], let s = boots["ssi"] else { continue }
                print("| \(names[kind] ?? kind) | \(fmt(b.hostSeconds)) | \(b.guestUptime) | \(fmt(b.hostSeconds / s.hostSeconds, 2))x | \(nfsRead[kind] ?? "?") | \(nicMTU[kind] ?? "?") |")
            }
            print("\nthe root mount's busiest NFS operations at the login prompt (count):")
            for kind in kinds { print("- \(kind): \(rootOps[kind] ?? "?")") }
            if let m = mountedAt, ready.count == 2 {
                let nfs = ready[0] / 1e6, dhcp = ready[1] / 1e6
                print("\ninit node (guest uptime, s): root mounted by ssi-init \(fmt(m, 2)); nfs-server.service active \(fmt(nfs, 2)); ssi-netboot.service active \(fmt(dhcp, 2)); starting them in the initramfs would gain at most \(fmt(max(nfs, dhcp) - m, 1)) s")
            }
            print("\nfile rates, \(files) files of 100 bytes, operations per second (perl, one process)")
            print("| where | create | stat | read | unlink |")
            print("|---|---|---|---|---|")
            for (k, v) in rates.sorted(by: { $0.key > $1.key }) where v.count == 4 {
                print("| \(k) | \(v.joined(separator: " | ")) |")
            }
            if let l = rates["init node, local ext4"], let c = rates["diskless node, CFS root (NFSv4)"], l.count == 4, c.count == 4 {
                let ratio = zip(c, l).map { pair -> String in
                    guard let a = Double(pair.0), let b = Double(pair.1), b > 0 else { return "?" }
                    return fmt(a / b, 3) + "x"
                }
                print("| CFS / local | \(ratio.joined(separator: " | ")) |")
            }
            if let t = rates["diskless node, CFS root (NFSv4)"], let p = rates["diskless node, the same root without the tunnel"],
               t.count == 4, p.count == 4 {
                let ratio = zip(t, p).map { pair -> String in
                    guard let a = Double(pair.0), let b = Double(pair.1), b > 0 else { return "?" }
                    return fmt(a / b, 3) + "x"
                }
                print("| tunnel / without | \(ratio.joined(separator: " | ")) |")
            }
            if let t = throughput["tunnel"], let p = throughput["cluster network"], !t.isEmpty, !p.isEmpty {
                let median = { (v: [Double]) in v.sorted()[v.count / 2] / 1024 }
                print("\nTCP to the init node, 64 MiB, median of \(t.count) (MiB/s): tunnel \(fmt(median(t))), cluster network \(fmt(median(p))); "
                      + "tunnel / plain \(fmt(median(t) / median(p), 2))x (runs: \(t.map { fmt($0 / 1024) }) and \(p.map { fmt($0 / 1024) }))")
            }
            print("\nCFS mount options: \(options)")
            print("cached mounts:\n\(usrOptions)")
        }
    }
}
