//! The guest image, built from the host's own files on first use and cached:
//!
//! ```text
//! image_dir/<key>/
//!   vmlinux        Debian's kernel (linux-image-amd64), uncompressed out of its /boot
//!                  bzImage and booted directly (PVH): under TCG the kernel's own XZ
//!                  decompression takes seconds (`vmlinuz`, the bzImage, when it cannot)
//!   initrd.cpio    busybox + the modules that reach the root disk + initramfs-init.sh
//!   rootfs.img     ext4, mounted read-only: busybox, dockerd, containerd, runc,
//!                  iptables (nft) with the shared libraries they load, the kernel's
//!                  modules (net, fs, virtio, ...) with the load order of those the
//!                  init loads, containerd's config, guest-init.sh as /usr/sbin/berth-init
//! ```
//!
//! `<key>` is a hash of every input (the kernel, each program's size and mtime, the init
//! scripts, this builder's format), so an upgraded Debian package or a new berth makes a
//! new image and older ones are removed. Nothing is downloaded: the inputs are the
//! host's installed packages (scripts/deps.sh installs them).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::cpio::CpioWriter;
use super::{kernel, shim};

/// Bumped when the layout below changes.
const FORMAT: &str = "berth-vm-image-3";

const INITRAMFS_INIT: &str = include_str!("initramfs-init.sh");
const GUEST_INIT: &str = include_str!("guest-init.sh");
/// containerd's configuration: the paths dockerd gives the containerd it would start
/// itself, without the plugins Docker does not use (CRI, snapshotters that only probe).
const CONTAINERD_CONFIG: &str = include_str!("containerd.toml");

/// Programs copied into the root file system, with their Debian packages.
const PROGRAMS: &[(&str, &str)] = &[
    ("/usr/sbin/dockerd", "docker.io"),
    ("/usr/sbin/docker-proxy", "docker.io"),
    ("/usr/bin/containerd", "containerd"),
    ("/usr/bin/containerd-shim-runc-v2", "containerd"),
    ("/usr/sbin/runc", "runc"),
    ("/usr/sbin/xtables-nft-multi", "iptables"),
];

const BUSYBOX: (&str, &str) = ("/bin/busybox", "busybox-static");

/// The multi-call binary behind every iptables name.
const XTABLES: &str = "/usr/sbin/xtables-nft-multi";
/// Names dockerd runs iptables by: through the no-ASLR shim (`shim`), run often.
const IPTABLES_SHIMMED: &[&str] = &["iptables", "ip6tables"];
/// Names linked to the multi-call binary directly.
const IPTABLES_LINKED: &[&str] = &[
    "iptables-save",
    "iptables-restore",
    "ip6tables-save",
    "ip6tables-restore",
];

/// Module trees the guest may load from (dockerd and the kernel load on demand).
const MODULE_TREES: &[&str] = &[
    "kernel/net",
    "kernel/fs",
    "kernel/lib",
    "kernel/crypto",
    "kernel/arch",
    "kernel/drivers/virtio",
    "kernel/drivers/block",
    "kernel/drivers/char",
];

/// Modules the initramfs loads to mount the root disk (with their dependencies): the
/// virtio transports of both machine types (mmio: microvm, pci: q35).
const INITRAMFS_MODULES: &[&str] = &[
    "virtio_mmio",
    "virtio_pci",
    "virtio_blk",
    "crc32c_generic",
    "ext4",
];

/// Modules the guest init loads before it starts the network and mounts the shares
/// (no udev in the guest: device drivers are not loaded on their own).
const BOOT_MODULES: &[&str] = &["virtio_net", "9pnet_virtio", "9p", "overlay"];

/// Modules dockerd's bridge network and iptables rules use, loaded while containerd and
/// dockerd start rather than one `modprobe` at a time on demand. A name missing from
/// modules.dep is built in (or absent) and skipped.
const DOCKER_MODULES: &[&str] = &[
    "bridge",
    "br_netfilter",
    "veth",
    "nf_tables",
    "nft_compat",
    "nft_chain_nat",
    "nf_nat",
    "nf_conntrack",
    "xt_conntrack",
    "xt_MASQUERADE",
    "xt_addrtype",
    "xt_nat",
    "xt_tcpudp",
];

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GuestImage {
    /// `vmlinux` (PVH boot) or, failing that, `vmlinuz`.
    pub(crate) kernel: PathBuf,
    pub(crate) initrd: PathBuf,
    pub(crate) rootfs: PathBuf,
    /// The kernel release, e.g. `6.1.0-57-amd64`.
    pub(crate) release: String,
}

/// What the image is made of, found on the host.
#[derive(Debug)]
struct Inputs {
    release: String,
    vmlinuz: PathBuf,
    modules: PathBuf,
    key: String,
}

/// A failure to build: what and why (the caller adds the machine).
#[derive(Debug)]
pub(crate) struct BuildError(pub(crate) String);

impl From<io::Error> for BuildError {
    fn from(e: io::Error) -> Self {
        Self(e.to_string())
    }
}

fn fail<T>(message: impl Into<String>) -> Result<T, BuildError> {
    Err(BuildError(message.into()))
}

/// Returns the cached image under `image_dir`, building it first when missing or out of
/// date.
pub(crate) fn ensure(image_dir: &Path) -> Result<GuestImage, BuildError> {
    let inputs = Inputs::find()?;
    let dir = image_dir.join(&inputs.key);
    let image = |dir: &Path| GuestImage {
        kernel: [dir.join(VMLINUX), dir.join(VMLINUZ)]
            .into_iter()
            .find(|k| k.exists())
            .unwrap_or_else(|| dir.join(VMLINUZ)),
        initrd: dir.join("initrd.cpio"),
        rootfs: dir.join("rootfs.img"),
        release: inputs.release.clone(),
    };
    let cached = image(&dir);
    if cached.rootfs.exists() && cached.initrd.exists() && cached.kernel.exists() {
        return Ok(cached);
    }
    std::fs::create_dir_all(image_dir)
        .map_err(|e| BuildError(format!("create {}: {e}", image_dir.display())))?;
    let building = image_dir.join(format!("{}.building", inputs.key));
    remove_dir_if_present(&building)?;
    std::fs::create_dir_all(&building)?;
    let started = std::time::Instant::now();
    tracing::info!(dir = %dir.display(), kernel = %inputs.release, "building the VM guest image from the host's packages");
    build(&inputs, &building).inspect_err(|_| {
        let _ = std::fs::remove_dir_all(&building);
    })?;
    remove_dir_if_present(&dir)?;
    std::fs::rename(&building, &dir)?;
    // Older images (other keys) are no longer used by anyone running this berth.
    for entry in std::fs::read_dir(image_dir)?.flatten() {
        let name = entry.file_name();
        if name != inputs.key.as_str() && entry.path().is_dir() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    tracing::info!(dir = %dir.display(), elapsed = ?started.elapsed(), "VM guest image built");
    Ok(image(&dir))
}

impl Inputs {
    fn find() -> Result<Self, BuildError> {
        let (release, vmlinuz, modules) = find_kernel()?;
        let mut hash = Fnv::new();
        hash.add(FORMAT.as_bytes());
        hash.add(INITRAMFS_INIT.as_bytes());
        hash.add(GUEST_INIT.as_bytes());
        hash.add(CONTAINERD_CONFIG.as_bytes());
        hash.add(release.as_bytes());
        let files = PROGRAMS
            .iter()
            .chain(std::iter::once(&BUSYBOX))
            .map(|(path, package)| (PathBuf::from(path), *package))
            .chain(std::iter::once((vmlinuz.clone(), "linux-image-amd64")))
            .chain(std::iter::once((
                modules.join("modules.dep"),
                "linux-image-amd64",
            )));
        for (path, package) in files {
            let meta = std::fs::metadata(&path).map_err(|_| {
                BuildError(format!(
                    "{} not found: the VM guest image is built from it (apt-get install {package})",
                    path.display()
                ))
            })?;
            hash.add(path.as_os_str().as_encoded_bytes());
            hash.add(&meta.len().to_le_bytes());
            hash.add(&meta.mtime().to_le_bytes());
        }
        Ok(Self {
            key: format!("{:016x}", hash.0),
            release,
            vmlinuz,
            modules,
        })
    }
}

/// The newest `/boot/vmlinuz-<release>` whose modules are installed.
fn find_kernel() -> Result<(String, PathBuf, PathBuf), BuildError> {
    let mut found: Vec<(String, PathBuf, PathBuf)> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let release = name.strip_prefix("vmlinuz-")?.to_owned();
            let modules = PathBuf::from("/lib/modules").join(&release);
            modules
                .join("modules.dep")
                .exists()
                .then(|| (release, e.path(), modules))
        })
        .collect();
    found.sort_by_key(|k| version_key(&k.0));
    match found.pop() {
        Some(k) => Ok(k),
        None => fail(
            "no Debian kernel for the VM guest (/boot/vmlinuz-* with /lib/modules/*): \
             apt-get install linux-image-amd64",
        ),
    }
}

/// `6.1.0-57-amd64` → [6, 1, 0, 57]: numeric order for releases.
fn version_key(release: &str) -> Vec<u64> {
    release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse().ok())
        .collect()
}

const VMLINUX: &str = "vmlinux";
const VMLINUZ: &str = "vmlinuz";

fn build(inputs: &Inputs, dir: &Path) -> Result<(), BuildError> {
    let bzimage = std::fs::read(&inputs.vmlinuz)?;
    match kernel::uncompressed_pvh(&bzimage) {
        Ok(vmlinux) => std::fs::write(dir.join(VMLINUX), vmlinux)?,
        Err(why) => {
            tracing::info!(kernel = %inputs.vmlinuz.display(), %why, "the VM boots the compressed kernel (slower under TCG)");
            std::fs::write(dir.join(VMLINUZ), bzimage)?;
        }
    }
    let deps = ModuleDeps::read(&inputs.modules)?;
    write_initramfs(&dir.join("initrd.cpio"), &inputs.modules, &deps)?;
    let staging = dir.join("rootfs");
    stage_rootfs(&staging, inputs, &deps)?;
    make_ext4(&staging, &dir.join("rootfs.img"), "berth-root")?;
    std::fs::remove_dir_all(&staging)?;
    Ok(())
}

// === initramfs ===

fn write_initramfs(path: &Path, modules: &Path, deps: &ModuleDeps) -> Result<(), BuildError> {
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    let mut cpio = CpioWriter::new(file);
    for d in ["bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules"] {
        cpio.dir(d)?;
    }
    cpio.char_device("dev/console", 5, 1)?;
    cpio.file("bin/busybox", 0o755, &std::fs::read(BUSYBOX.0)?)?;
    for applet in [
        "sh",
        "mount",
        "umount",
        "insmod",
        "switch_root",
        "sleep",
        "echo",
        "cat",
        "poweroff",
    ] {
        cpio.symlink(&format!("bin/{applet}"), "busybox")?;
    }
    let order = deps.load_order(INITRAMFS_MODULES)?;
    let mut names = String::new();
    for rel in &order {
        let name = module_name(rel);
        cpio.file(
            &format!("lib/modules/{name}.ko"),
            0o644,
            &std::fs::read(modules.join(rel))?,
        )?;
        names.push_str(&name);
        names.push('\n');
    }
    cpio.file("lib/modules/order", 0o644, names.as_bytes())?;
    cpio.file("init", 0o755, INITRAMFS_INIT.as_bytes())?;
    cpio.finish()?;
    Ok(())
}

/// `kernel/fs/ext4/ext4.ko` → `ext4`.
fn module_name(rel: &str) -> String {
    let file = rel.rsplit('/').next().unwrap_or(rel);
    file.strip_suffix(".ko").unwrap_or(file).to_owned()
}

/// `modules.dep`: module path → the paths it needs.
struct ModuleDeps(BTreeMap<String, Vec<String>>);

impl ModuleDeps {
    fn read(modules: &Path) -> Result<Self, BuildError> {
        let text = std::fs::read_to_string(modules.join("modules.dep"))?;
        Ok(Self(
            text.lines()
                .filter_map(|line| {
                    let (module, needs) = line.split_once(':')?;
                    Some((
                        module.to_owned(),
                        needs.split_whitespace().map(str::to_owned).collect(),
                    ))
                })
                .collect(),
        ))
    }

    /// The modules named, with everything they need, dependencies first.
    fn load_order(&self, names: &[&str]) -> Result<Vec<String>, BuildError> {
        let mut order = Vec::new();
        for name in names {
            let Some(path) = self.find(name) else {
                return fail(format!("kernel module {name} not found in modules.dep"));
            };
            self.visit(path, &mut order);
        }
        Ok(order)
    }

    /// As [`load_order`](Self::load_order), skipping names modules.dep does not list
    /// (built into the kernel).
    fn load_order_present(&self, names: &[&str]) -> Vec<String> {
        let mut order = Vec::new();
        for path in names.iter().filter_map(|name| self.find(name)) {
            self.visit(path, &mut order);
        }
        order
    }

    fn find(&self, name: &str) -> Option<&String> {
        self.0.keys().find(|p| module_name(p) == name)
    }

    fn visit(&self, path: &str, order: &mut Vec<String>) {
        if order.iter().any(|p| p == path) {
            return;
        }
        // modules.dep lists a module's needs so that the last is loaded first.
        for need in self.0.get(path).into_iter().flatten().rev() {
            self.visit(need, order);
        }
        order.push(path.to_owned());
    }
}

// === root file system ===

fn stage_rootfs(root: &Path, inputs: &Inputs, deps: &ModuleDeps) -> Result<(), BuildError> {
    for d in [
        "usr/bin",
        "usr/sbin",
        "usr/lib",
        "usr/lib64",
        "etc/docker",
        "etc/containerd",
        "proc",
        "sys",
        "dev",
        "run",
        "tmp",
        "var/lib/docker",
        "root",
        "mnt",
    ] {
        std::fs::create_dir_all(root.join(d))?;
    }
    // Debian's merged /usr.
    for d in ["bin", "sbin", "lib", "lib64"] {
        symlink(format!("usr/{d}"), root.join(d))?;
    }
    symlink("../run", root.join("var/run"))?;

    let mut elves = BTreeSet::new();
    copy_file(Path::new(BUSYBOX.0), &root.join("usr/bin/busybox"))?;
    let applets = Command::new(BUSYBOX.0).arg("--list").output()?;
    for applet in String::from_utf8_lossy(&applets.stdout).split_whitespace() {
        let link = root.join("usr/bin").join(applet);
        if applet != "busybox" && !link.exists() {
            symlink("busybox", link)?;
        }
    }
    // The kernel runs /sbin/modprobe to load modules on demand.
    symlink("../bin/busybox", root.join("usr/sbin/modprobe"))?;

    for (program, _) in PROGRAMS {
        let canonical = std::fs::canonicalize(program)?;
        copy_file(&canonical, &under(root, &canonical))?;
        elves.insert(canonical);
    }
    for name in IPTABLES_SHIMMED {
        let path = root.join("usr/sbin").join(name);
        std::fs::write(&path, shim::no_aslr_exec(XTABLES))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    for name in IPTABLES_LINKED {
        symlink("xtables-nft-multi", root.join("usr/sbin").join(name))?;
    }
    // iptables' extensions (dlopened from the multiarch xtables directory).
    for entry in glob_dirs("/usr/lib", "xtables")? {
        for so in std::fs::read_dir(&entry)?.flatten() {
            let path = so.path();
            if path.extension().is_some_and(|e| e == "so") {
                copy_file(&path, &under(root, &path))?;
                elves.insert(path);
            }
        }
    }
    for lib in shared_libraries(&elves)? {
        let canonical = std::fs::canonicalize(&lib)?;
        copy_file(&canonical, &under(root, &canonical))?;
        let target = under(root, &lib);
        if lib != canonical && std::fs::symlink_metadata(&target).is_err() {
            std::fs::create_dir_all(target.parent().unwrap_or(root))?;
            symlink(&canonical, &target)?;
        }
    }

    let modules = root.join("usr/lib/modules").join(&inputs.release);
    for tree in MODULE_TREES {
        copy_tree(&inputs.modules.join(tree), &modules.join(tree))?;
    }
    for entry in std::fs::read_dir(inputs.modules.join("kernel/drivers/net"))?.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "ko") {
            copy_file(
                &path,
                &modules.join("kernel/drivers/net").join(entry.file_name()),
            )?;
        }
    }
    for entry in std::fs::read_dir(&inputs.modules)?.flatten() {
        if entry.file_name().to_string_lossy().starts_with("modules.") {
            copy_file(&entry.path(), &modules.join(entry.file_name()))?;
        }
    }
    // Load orders for the init's insmod (busybox modprobe reads all of modules.dep for
    // every module).
    for (file, names) in [
        ("berth-boot-modules", BOOT_MODULES),
        ("berth-docker-modules", DOCKER_MODULES),
    ] {
        let mut list = deps.load_order_present(names).join("\n");
        list.push('\n');
        std::fs::write(modules.join(file), list)?;
    }
    std::fs::write(root.join("etc/containerd/berth.toml"), CONTAINERD_CONFIG)?;

    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    std::fs::write(root.join("etc/group"), "root:x:0:\n")?;
    std::fs::write(
        root.join("etc/hosts"),
        "127.0.0.1 localhost\n::1 localhost\n",
    )?;
    std::fs::write(root.join("etc/resolv.conf"), "")?;
    std::fs::write(root.join("etc/hostname"), "berth-vm\n")?;
    let init = root.join("usr/sbin/berth-init");
    std::fs::write(&init, GUEST_INIT)?;
    std::fs::set_permissions(&init, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// `root` + an absolute `path`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `<base>/*/<name>` directories (the multiarch triplet is not hard-coded).
fn glob_dirs(base: &str, name: &str) -> Result<Vec<PathBuf>, BuildError> {
    Ok(std::fs::read_dir(base)?
        .flatten()
        .map(|e| e.path().join(name))
        .filter(|p| p.is_dir())
        .collect())
}

/// Every shared library (and the dynamic loader) the given ELF files load, by `ldd`.
fn shared_libraries(elves: &BTreeSet<PathBuf>) -> Result<BTreeSet<PathBuf>, BuildError> {
    let mut libs = BTreeSet::new();
    for elf in elves {
        let out = Command::new("ldd")
            .arg(elf)
            .output()
            .map_err(|e| BuildError(format!("cannot run ldd (apt-get install libc-bin): {e}")))?;
        // A static binary: "not a dynamic executable" on stderr, nothing to copy.
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let path = match line.split_once("=>") {
                Some((_, rest)) => rest.split_whitespace().next(),
                None => line.split_whitespace().next(),
            };
            if let Some(p) = path.filter(|p| p.starts_with('/')) {
                libs.insert(PathBuf::from(p));
            }
        }
    }
    Ok(libs)
}

fn copy_file(from: &Path, to: &Path) -> Result<(), BuildError> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::copy(from, to)
        .map_err(|e| BuildError(format!("copy {} to the guest image: {e}", from.display())))?;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BuildError> {
    let Ok(entries) = std::fs::read_dir(from) else {
        return Ok(());
    };
    std::fs::create_dir_all(to)?;
    for entry in entries.flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            copy_tree(&path, &target)?;
        } else if kind.is_file() {
            std::fs::copy(&path, &target)?;
        }
    }
    Ok(())
}

/// An ext4 image of `staging`, sized to fit (`mkfs.ext4 -d`, no root or mount needed).
fn make_ext4(staging: &Path, image: &Path, label: &str) -> Result<(), BuildError> {
    let bytes = tree_size(staging)?;
    let size = bytes + bytes / 4 + 64 * 1024 * 1024;
    std::fs::File::create(image)?.set_len(size)?;
    mkfs_ext4(image, label, Some(staging))
}

/// `mkfs.ext4` on a file, optionally filled from a directory.
pub(crate) fn mkfs_ext4(image: &Path, label: &str, from: Option<&Path>) -> Result<(), BuildError> {
    let mut command = Command::new("mkfs.ext4");
    command.args(["-q", "-F", "-L", label]);
    if let Some(dir) = from {
        command.arg("-d").arg(dir);
    }
    let out = command.arg(image).output().map_err(|e| {
        BuildError(format!(
            "cannot run mkfs.ext4 (apt-get install e2fsprogs): {e}"
        ))
    })?;
    if !out.status.success() {
        return fail(format!(
            "mkfs.ext4 {}: {}",
            image.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

fn tree_size(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)?.flatten() {
        let meta = entry.path().symlink_metadata()?;
        total += if meta.is_dir() {
            tree_size(&entry.path())? + 4096
        } else {
            meta.len().div_ceil(4096) * 4096
        };
    }
    Ok(total)
}

fn remove_dir_if_present(dir: &Path) -> Result<(), BuildError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => fail(format!("remove {}: {e}", dir.display())),
    }
}

/// FNV-1a, 64 bits: a cache key that is the same in every build of berth.
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn add(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
        // A separator, so ("ab", "c") and ("a", "bc") differ.
        self.0 = self.0.wrapping_mul(0x0100_0000_01b3) ^ 0xff;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modules_load_after_what_they_need() {
        let deps = ModuleDeps(
            [
                (
                    "kernel/fs/ext4/ext4.ko",
                    "kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko",
                ),
                ("kernel/lib/crc16.ko", ""),
                ("kernel/fs/mbcache.ko", ""),
                ("kernel/fs/jbd2/jbd2.ko", ""),
                (
                    "kernel/drivers/virtio/virtio_blk.ko",
                    "kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko",
                ),
                ("kernel/drivers/virtio/virtio.ko", ""),
                ("kernel/drivers/virtio/virtio_ring.ko", ""),
            ]
            .into_iter()
            .map(|(m, d)| {
                (
                    m.to_owned(),
                    d.split_whitespace().map(str::to_owned).collect(),
                )
            })
            .collect(),
        );
        let order: Vec<String> = deps
            .load_order(&["virtio_blk", "ext4"])
            .unwrap()
            .iter()
            .map(|p| module_name(p))
            .collect();
        assert_eq!(
            order,
            [
                "virtio_ring",
                "virtio",
                "virtio_blk",
                "jbd2",
                "mbcache",
                "crc16",
                "ext4"
            ]
        );
        assert!(deps.load_order(&["nope"]).is_err());
    }

    #[test]
    fn newest_kernel_release_sorts_last() {
        let mut r = ["6.1.0-9-amd64", "6.1.0-57-amd64", "6.1.0-10-amd64"];
        r.sort_by_key(|a| version_key(a));
        assert_eq!(r.last(), Some(&"6.1.0-57-amd64"));
    }
}
