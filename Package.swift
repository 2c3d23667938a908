// swift-tools-version:6.0
import PackageDescription

// One multi-call executable, `ssi`; everything else is a library target so
// that the unit tests reach it. C libraries come from Debian's -dev packages
// through system library targets (pkg-config), never vendored.
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

// The directory this manifest is in: the release link's linker/ (below).
let packageRoot = String(#filePath.dropLast("/Package.swift".count))

let package = Package(
    name: "ssi",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ssi", targets: ["ssi"]),
    ],
    // None: the command line is parsed by our own (SSITools/CommandLine,
    // over glibc's getopt_long), which keeps Foundation out of the binary.
    dependencies: [],
    targets: [
        .systemLibrary(name: "CKmod", providers: [.apt(["libkmod-dev"])]),
        .systemLibrary(name: "CBlkid", pkgConfig: "blkid", providers: [.apt(["libblkid-dev"])]),
        // Loaded on use (ssi_lazy.h) like the libraries below: an image
        // without a cluster never mounts through libmount, and leaves it
        // out with libselinux and libpcre2 (1.2 MB) that it brings.
        .systemLibrary(name: "CMount", providers: [.apt(["libmount-dev"])]),
        // Device enumeration and the kernel's uevent monitor for ssi-init's
        // coldplug, hotplug and root-device wait (no udevd needed).
        .systemLibrary(name: "CUdev", providers: [.apt(["libudev-dev"])]),
        .systemLibrary(name: "CZstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CLzma", providers: [.apt(["liblzma-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        // The process agents' channel crypto (secretstream, BLAKE2b).
        .systemLibrary(name: "CSodium", providers: [.apt(["libsodium-dev"])]),
        // corosync's client libraries. Linked from the module map, not
        // pkg-config: their .pc files add -pthread, which SwiftPM refuses.
        .systemLibrary(name: "CCorosync",
                       providers: [.apt(["libcpg-dev", "libquorum-dev", "libvotequorum-dev", "libcmap-dev"])]),
        // The few syscalls Glibc does not wrap (openat2) and errno access.
        .target(name: "CSSIShim"),
        // The libraries above that only some commands need, loaded with
        // dlopen on first use (ssi_lazy.h): none of CKmod, CUdev, CZstd,
        // CLzma, CZlib, CSodium, CCorosync or CMount is linked.
        .target(name: "CSSILazy", linkerSettings: [.linkedLibrary("dl")]),

        .target(
            name: "SSICore",
            swiftSettings: strict),
        .target(
            name: "SSILinux",
            dependencies: ["SSICore", "CSSIShim", "CKmod", "CBlkid", "CMount", "CUdev", "CSSILazy"],
            swiftSettings: strict),
        .target(
            name: "SSIInitramfs",
            dependencies: ["SSICore", "SSILinux", "CKmod", "CZstd", "CLzma", "CZlib"],
            swiftSettings: strict),
        // The cluster configuration: format, validation, corosync.conf,
        // OpenSSI clustertab import.
        .target(
            name: "SSIConfig",
            dependencies: ["SSICore"],
            swiftSettings: strict),
        // corosync bindings, the membership agent and the cluster view.
        .target(
            name: "SSIMembership",
            dependencies: ["SSICore", "SSILinux", "SSIConfig", "SSITrust", "CCorosync", "CSSIShim"],
            swiftSettings: strict),
        // Cluster roots: node-private paths, the CFS export and network
        // boot files, generated from the configuration.
        .target(
            name: "SSIClusterFS",
            dependencies: ["SSICore", "SSILinux", "SSIConfig"],
            swiftSettings: strict),
        // The cluster-aware replacements for util-linux's mount, umount,
        // swapon, swapoff and fsck.
        .target(
            name: "SSITools",
            dependencies: ["SSICore", "SSILinux", "SSIMembership", "SSIConfig"],
            swiftSettings: strict),
        // Process migration (CRIU), fd shipping, onnode, where_pid: the
        // process agent and its commands.
        .target(
            name: "SSIProcess",
            dependencies: ["SSICore", "SSILinux", "SSIMembership", "SSIConfig", "SSITools", "CSodium", "CSSIShim"],
            swiftSettings: strict),
        .target(
            name: "SSITrust",
            dependencies: ["SSICore", "SSILinux", "SSIConfig", "CSodium", "CSSILazy"],
            swiftSettings: strict),
        .target(
            name: "SSIBoot",
            dependencies: ["SSICore", "SSILinux", "SSIConfig", "SSIMembership", "SSIClusterFS", "SSITrust", "CSSIShim"],
            swiftSettings: strict),
        .executableTarget(
            name: "ssi",
            dependencies: ["SSICore", "SSILinux", "SSIInitramfs", "SSIBoot", "SSIConfig", "SSIMembership", "SSIClusterFS", "SSITools", "SSIProcess", "SSITrust"],
            swiftSettings: strict,
            // The binary rides in every image: no symbol tables or debug
            // info in release builds (about 12 MB less), and identical
            // functions folded into one (generic specializations repeat).
            // lld, for DT_RELR (gold has no -z pack-relative-relocs).
            //
            // Start-up is most of a local mount's time (issue 19: within
            // 1.3x of util-linux), so the release link also cuts what the
            // loader does before main (DESIGN-NOTES, "Start-up"):
            // - a fixed-address executable (-no-pie): the loader no longer
            //   relocates 24,000 pointers, which dirtied 72 pages of
            //   Swift metadata in every command;
            // - libstdc++ and libgcc linked in (only what the Swift runtime
            //   uses, +94 KB): two libraries fewer to map, relocate and
            //   initialise, and two fewer in every image. The toolchain's
            //   -lstdc++ comes before any flag of ours, so linker/ holds a
            //   linker script by that name that asks for libstdc++.a;
            // - no exported symbols (the toolchain's -export-dynamic put
            //   all 5,600 Swift symbols in .dynsym; nothing dlopens us).
            linkerSettings: [.unsafeFlags([
                "-use-ld=lld", "-Xlinker", "--strip-all", "-Xlinker", "--icf=all",
                "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs",
                "-Xclang-linker", "-no-pie", "-Xclang-linker", "-static-libgcc",
                "-L\(packageRoot)/linker", "-Xlinker", "--no-export-dynamic",
            ], .when(configuration: .release))]),

        .testTarget(
            name: "SSICoreTests",
            dependencies: ["SSITestSupport", "SSICore"],
            swiftSettings: strict),
        // The qemu harness every VM test uses: guests, a test-made network
        // namespace with a bridge and taps, serial logs, markers, cleanup.
        // What the unit tests share: the seeded mutation fuzzer.
        .target(
            name: "SSITestSupport",
            path: "Tests/SSITestSupport"),
        .target(
            name: "SSIVMHarness",
            dependencies: ["SSITestSupport"],
            path: "Tests/SSIVMHarness"),
        // The demo and the benchmarks run on the same harness (not tests).
        .executableTarget(
            name: "ssi-demo",
            dependencies: ["SSIVMHarness"],
            path: "demo"),
        .executableTarget(
            name: "ssi-bench-membership",
            dependencies: ["SSIVMHarness"],
            path: "bench/membership"),
        .executableTarget(
            name: "ssi-bench-cfs",
            dependencies: ["SSIVMHarness"],
            path: "bench/cfs"),
        .executableTarget(
            name: "ssi-bench-gfs2",
            dependencies: ["SSIVMHarness"],
            path: "bench/gfs2"),
        .executableTarget(
            name: "ssi-bench-tools",
            dependencies: ["SSIVMHarness"],
            path: "bench/tools"),
        .executableTarget(
            name: "ssi-bench-level",
            dependencies: ["SSIVMHarness"],
            path: "bench/level"),
        .executableTarget(
            name: "ssi-bench-migrate",
            dependencies: ["SSIVMHarness"],
            path: "bench/migrate"),
        .testTarget(
            name: "VMTests",
            dependencies: ["SSIVMHarness", "SSITestSupport"]),
        .testTarget(
            name: "SSITrustTests",
            dependencies: ["SSITestSupport", "SSITrust", "SSIConfig", "SSICore", "SSILinux"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIConfigTests",
            dependencies: ["SSITestSupport", "SSIConfig", "SSICore"],
            swiftSettings: strict),
        .testTarget(
            name: "SSILinuxTests",
            dependencies: ["SSITestSupport", "SSILinux", "SSICore"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIMembershipTests",
            dependencies: ["SSITestSupport", "SSIMembership", "SSICore", "SSILinux", "CSSIShim"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIClusterFSTests",
            dependencies: ["SSITestSupport", "SSIClusterFS", "SSIConfig", "SSILinux", "SSICore"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIToolsTests",
            // "ssi": the command tree itself (its man pages, completions and
            // parse are tested in-process, without running a command).
            dependencies: ["SSITestSupport", "SSITools", "SSILinux", "SSIMembership", "SSICore", "SSIConfig", "SSITrust", "ssi"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIProcessTests",
            dependencies: ["SSITestSupport", "SSIProcess", "SSIMembership", "SSILinux", "SSICore", "CSSIShim"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIBootTests",
            dependencies: ["SSITestSupport", "SSIBoot", "SSICore", "SSILinux", "SSIConfig", "SSIMembership", "SSITrust"],
            swiftSettings: strict),
        .testTarget(
            name: "SSIInitramfsTests",
            dependencies: ["SSITestSupport", "SSIInitramfs", "SSILinux", "CKmod"],
            swiftSettings: strict),
    ]
)
