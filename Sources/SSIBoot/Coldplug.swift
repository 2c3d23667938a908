import SSILinux

/// The modalias of every device the kernel knows, read from sysfs: what
/// udev's coldplug would feed to modprobe.
enum Coldplug {
    static func modaliases() -> [String] {
        var out: [String] = []
        guard let buses = try? FileSystem.list("/sys/bus") else { return out }
        for bus in buses.sorted() {
            let devices = "/sys/bus/\(bus)/devices"
            guard let names = try? FileSystem.list(devices) else { continue }
            for dev in names.sorted() {
                guard let text = try? FileSystem.readText("\(devices)/\(dev)/modalias") else { continue }
                let alias = String(text.prefix { $0 != "\n" })
                if !alias.isEmpty { out.append(alias) }
            }
        }
        return out
    }
}
