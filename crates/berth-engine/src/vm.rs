//! VM machines: dockerd in a QEMU guest with its own kernel, reached over a tap device
//! inside the machine's network namespace.
//!
//! ```text
//!  host                         netns berth-<name>                 guest (microvm)
//!  berth ── socket made in ──►  berth0 10.89.0.1/30 ══ tap ══►  eth0 10.89.0.2/30
//!           the netns (thread)  routes 172.16/12, 192.168/16        dockerd tcp :2375
//!                               via 10.89.0.2 (container IPs)       control  tcp :2376
//!  nsenter --net=… qemu-system-x86_64 -M microvm …  (the supervised process)
//! ```
//!
//! Only processes inside the namespace reach the guest, and the only one there is QEMU:
//! the API never listens on a host port. The guest drops API and control connections
//! that do not come in on eth0, so containers cannot reach them either.
//!
//! Start: the image is built or reused (`image`), the data disk made once (ext4,
//! sparse), the tap and routes put in the namespace, then QEMU starts with KVM when
//! `/dev/kvm` opens and a KVM guest was not seen hanging, else TCG (`accel`), on a
//! `microvm` machine where this QEMU has one and it starts, else `q35`
//! (`machine_type`). A clean
//! stop asks the guest to power off (dockerd stops, the data disk is unmounted); QEMU
//! exits with it.

mod accel;
mod cpio;
mod image;
mod kernel;
mod machine_type;
mod shim;

use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use berth_guest::netns::NetnsSockets;
use tokio::io::AsyncWriteExt;

pub use accel::Accelerator;
pub use machine_type::MachineType;

use crate::launcher::{spawn_engine, DockerdLog, DockerdProcess};
use crate::netns::IpCommand;
use crate::prerequisites::Programs;
use crate::{EngineError, MachineConfig, VmConfig};

/// The tap device in the machine's namespace.
const TAP: &str = "berth0";
/// The namespace's side of the tap.
const HOST_ADDR: &str = "10.89.0.1/30";
/// The guest's address: dockerd listens here.
pub(crate) const GUEST_IP: Ipv4Addr = Ipv4Addr::new(10, 89, 0, 2);
const GUEST_PREFIX: u8 = 30;
/// dockerd's API port in the guest.
const API_PORT: u16 = 2375;
/// The guest init's control port (`poweroff`).
const CONTROL_PORT: u16 = 2376;
/// Docker's default address pools: container addresses the forwarder dials directly.
const CONTAINER_ROUTES: &[&str] = &["172.16.0.0/12", "192.168.0.0/16"];
/// Longest time a KVM guest may take to print its first initramfs line.
const KVM_BOOT_BOUND: Duration = Duration::from_secs(5);
/// How long a TCG start watches for that line (or QEMU's exit) before it leaves the
/// rest to the readiness wait: a busy host can slow a TCG boot a lot.
const TCG_BOOT_WATCH: Duration = Duration::from_secs(30);
/// What the initramfs prints first (initramfs-init.sh).
const BOOT_MARKER: &str = "berth-initramfs: booting";

/// What `berth status` shows about a VM machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFacts {
    /// Virtual CPUs.
    pub cpus: u32,
    /// Guest memory in MiB.
    pub memory_mib: u64,
    /// The accelerator of the current run (none before the first start).
    pub accelerator: Option<Accelerator>,
    /// Why that accelerator, e.g. that a KVM guest hung at boot.
    pub accelerator_note: Option<String>,
    /// The QEMU machine type of the current run.
    pub machine_type: Option<MachineType>,
    /// Why that machine type, e.g. that microvm did not start.
    pub machine_type_note: Option<String>,
}

/// What the current run was started with, and why.
#[derive(Debug, Clone)]
struct Chosen {
    accelerator: Accelerator,
    accelerator_note: Option<String>,
    machine_type: MachineType,
    machine_type_note: Option<String>,
}

/// How a fresh QEMU's boot began.
enum Boot {
    /// The initramfs printed its first line.
    Marker,
    /// QEMU exited first.
    Exited,
    /// Neither within the bound.
    Silent,
}

/// Builds, starts, stops and reaches one machine's VM.
#[derive(Debug)]
pub(crate) struct VmLauncher {
    machine: String,
    config: VmConfig,
    state_dir: PathBuf,
    netns_name: String,
    netns_path: PathBuf,
    qemu: PathBuf,
    nsenter: PathBuf,
    /// `ss` (iproute2): aborts the connections into a wedged guest.
    ss: PathBuf,
    ip: IpCommand,
    search_path: OsString,
    /// Sockets made inside the namespace: the readiness ping and the poweroff request.
    sockets: NetnsSockets,
    /// The accelerator and machine type of the current run, and why.
    chosen: Mutex<Option<Chosen>>,
    /// Whether this QEMU has `microvm` (asked once).
    has_microvm: std::sync::OnceLock<Result<bool, String>>,
}

impl VmLauncher {
    pub(crate) fn new(
        config: &MachineConfig,
        vm: &VmConfig,
        state_dir: &Path,
        programs: &Programs,
        netns_path: &Path,
    ) -> Result<Self, EngineError> {
        let qemu = programs.find_extra("qemu-system-x86_64", "qemu-system-x86")?;
        let ss = programs.find_extra("ss", "iproute2")?;
        for share in &vm.shares {
            if !share.is_absolute() || share.to_string_lossy().contains([' ', ',', '\t', '\n']) {
                return Err(EngineError::Vm {
                    machine: config.name.clone(),
                    message: format!(
                        "shares: {share:?} must be an absolute path without spaces or commas"
                    ),
                });
            }
        }
        let sockets = NetnsSockets::new(netns_path).map_err(|e| {
            EngineError::io(
                &config.name,
                "start a thread for",
                netns_path.to_path_buf(),
                e,
            )
        })?;
        Ok(Self {
            machine: config.name.clone(),
            config: vm.clone(),
            state_dir: state_dir.to_path_buf(),
            netns_name: format!("berth-{}", config.name),
            netns_path: netns_path.to_path_buf(),
            qemu,
            nsenter: programs.nsenter.clone(),
            ss,
            ip: IpCommand::new(programs.ip.clone()),
            search_path: programs.search_path.clone(),
            sockets,
            chosen: Mutex::new(None),
            has_microvm: std::sync::OnceLock::new(),
        })
    }

    /// The engine's API address inside the namespace.
    pub(crate) fn api_addr() -> SocketAddr {
        SocketAddr::new(IpAddr::V4(GUEST_IP), API_PORT)
    }

    pub(crate) fn pidfile(&self) -> PathBuf {
        self.state_dir.join("qemu.pid")
    }

    pub(crate) fn log_path(state_dir: &Path) -> PathBuf {
        state_dir.join("vm.log")
    }

    fn data_disk(&self) -> PathBuf {
        self.state_dir.join("docker-data.img")
    }

    pub(crate) fn facts(&self) -> VmFacts {
        let chosen = self
            .chosen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        VmFacts {
            cpus: self.config.cpus,
            memory_mib: self.config.memory_mib,
            accelerator: chosen.as_ref().map(|c| c.accelerator),
            accelerator_note: chosen.as_ref().and_then(|c| c.accelerator_note.clone()),
            machine_type: chosen.as_ref().map(|c| c.machine_type),
            machine_type_note: chosen.and_then(|c| c.machine_type_note),
        }
    }

    /// Blocking: the image (built on first use), the data disk, the tap and routes.
    pub(crate) fn prepare(&self) -> Result<image::GuestImage, EngineError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|e| {
            EngineError::io(&self.machine, "create directory", self.state_dir.clone(), e)
        })?;
        let image = image::ensure(&self.config.image_dir)
            .map_err(|e| self.error(format!("guest image: {}", e.0)))?;
        let disk = self.data_disk();
        if !disk.exists() {
            let creating = disk.with_extension("img.new");
            std::fs::File::create(&creating)
                .and_then(|f| f.set_len(self.config.disk_size_mib * 1024 * 1024))
                .map_err(|e| EngineError::io(&self.machine, "create", creating.clone(), e))?;
            image::mkfs_ext4(&creating, "berth-data", None)
                .map_err(|e| self.error(format!("data disk: {}", e.0)))?;
            std::fs::rename(&creating, &disk)
                .map_err(|e| EngineError::io(&self.machine, "rename", disk.clone(), e))?;
        }
        self.ensure_tap()?;
        Ok(image)
    }

    fn ensure_tap(&self) -> Result<(), EngineError> {
        let ns = self.netns_name.as_str();
        let ip = |args: &[&str]| {
            let mut all = vec!["-n", ns];
            all.extend_from_slice(args);
            self.ip.run(&all).map_err(|message| EngineError::Netns {
                machine: self.machine.clone(),
                netns: ns.to_owned(),
                message,
            })
        };
        if ip(&["link", "show", TAP]).is_err() {
            ip(&["tuntap", "add", "dev", TAP, "mode", "tap"])?;
        }
        ip(&["addr", "replace", HOST_ADDR, "dev", TAP])?;
        ip(&["link", "set", TAP, "up"])?;
        let gateway = GUEST_IP.to_string();
        for net in CONTAINER_ROUTES {
            ip(&["route", "replace", net, "via", &gateway])?;
        }
        Ok(())
    }

    /// Removes the pidfile of a QEMU that is gone.
    pub(crate) fn remove_stale_files(&self) -> Result<(), EngineError> {
        match std::fs::remove_file(self.pidfile()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(EngineError::io(&self.machine, "remove", self.pidfile(), e)),
        }
    }

    /// Starts QEMU: with KVM if it boots within [`KVM_BOOT_BOUND`], else with TCG; on
    /// microvm unless this QEMU has none or it exits before the guest boots, else q35.
    pub(crate) async fn spawn(
        &self,
        image: &image::GuestImage,
        log: &DockerdLog,
    ) -> Result<DockerdProcess, EngineError> {
        let log_path = Self::log_path(&self.state_dir);
        log.rotate()
            .map_err(|e| EngineError::io(&self.machine, "rotate log", log_path.clone(), e))?;
        let (mut machine_type, mut machine_type_note) = self.machine_type();
        let kvm = accel::kvm_worth_trying(&self.config.image_dir);
        if let Err(reason) = &kvm {
            tracing::info!(machine = %self.machine, %reason, "VM uses TCG");
        }
        let (mut accelerator, mut accelerator_note) = match kvm {
            Ok(()) => (Accelerator::Kvm, None),
            Err(reason) => (Accelerator::Tcg, Some(reason)),
        };
        let process = loop {
            let start = log_len(&log_path);
            let process = self.spawn_qemu(image, log, accelerator, machine_type)?;
            let bound = match accelerator {
                Accelerator::Kvm => KVM_BOOT_BOUND,
                Accelerator::Tcg => TCG_BOOT_WATCH,
            };
            match self.watch_boot(&process, start, bound).await {
                Boot::Marker => break process,
                Boot::Exited
                    if machine_type == MachineType::Microvm
                        && self.config.machine_type.is_none() =>
                {
                    let note = format!(
                        "microvm did not start ({}): fell back to q35",
                        last_line(&log_since(&log_path, start))
                    );
                    tracing::warn!(machine = %self.machine, "{note}");
                    machine_type = MachineType::Q35;
                    machine_type_note = Some(note);
                }
                Boot::Exited if accelerator == Accelerator::Kvm => {
                    let note = format!(
                        "a KVM guest exited at boot ({}): fell back to TCG",
                        last_line(&log_since(&log_path, start))
                    );
                    tracing::warn!(machine = %self.machine, "{note}");
                    accelerator = Accelerator::Tcg;
                    accelerator_note = Some(note);
                }
                Boot::Silent if accelerator == Accelerator::Kvm => {
                    let note = format!(
                        "a KVM guest did not boot within {}s (nested virtualization?): fell back to TCG",
                        KVM_BOOT_BOUND.as_secs()
                    );
                    tracing::warn!(machine = %self.machine, "{note}");
                    let _ = process.terminate(Duration::from_secs(2)).await;
                    accel::remember_kvm_hang(&self.config.image_dir);
                    accelerator = Accelerator::Tcg;
                    accelerator_note = Some(note);
                }
                // The readiness wait reports an exit (with the log) or keeps waiting.
                Boot::Exited | Boot::Silent => break process,
            }
        };
        *self.chosen.lock().unwrap_or_else(PoisonError::into_inner) = Some(Chosen {
            accelerator,
            accelerator_note,
            machine_type,
            machine_type_note,
        });
        Ok(process)
    }

    /// The configured machine type, else microvm if this QEMU has it, else q35.
    fn machine_type(&self) -> (MachineType, Option<String>) {
        if let Some(set) = self.config.machine_type {
            return (set, Some("set by machine_type".to_owned()));
        }
        match self
            .has_microvm
            .get_or_init(|| machine_type::qemu_has_microvm(&self.qemu))
        {
            Ok(true) => (MachineType::Microvm, None),
            Ok(false) => {
                let note = "this QEMU has no microvm machine type: using q35".to_owned();
                tracing::warn!(machine = %self.machine, "{note}");
                (MachineType::Q35, Some(note))
            }
            Err(e) => {
                tracing::warn!(machine = %self.machine, error = %e, "cannot list QEMU's machine types: trying microvm");
                (MachineType::Microvm, None)
            }
        }
    }

    /// Watches the log after byte `from` for the boot marker, until `bound` or QEMU's exit.
    async fn watch_boot(&self, process: &DockerdProcess, from: u64, bound: Duration) -> Boot {
        let path = Self::log_path(&self.state_dir);
        let deadline = tokio::time::Instant::now() + bound;
        loop {
            if log_since(&path, from).contains(BOOT_MARKER) {
                return Boot::Marker;
            }
            if process.exit_info().is_some() {
                return Boot::Exited;
            }
            if tokio::time::Instant::now() >= deadline {
                return Boot::Silent;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spawn_qemu(
        &self,
        image: &image::GuestImage,
        log: &DockerdLog,
        accel: Accelerator,
        machine_type: MachineType,
    ) -> Result<DockerdProcess, EngineError> {
        let argv = self.argv(image, accel, machine_type);
        tracing::info!(machine = %self.machine, accelerator = %accel, %machine_type, cpus = self.config.cpus, memory_mib = self.config.memory_mib, "starting VM");
        spawn_engine(&self.machine, &argv, &self.search_path, log, &self.qemu)
    }

    /// `nsenter --net=<netns> -- qemu-system-x86_64 -M microvm …`.
    fn argv(
        &self,
        image: &image::GuestImage,
        accel: Accelerator,
        machine_type: MachineType,
    ) -> Vec<OsString> {
        // `loglevel=5` after `quiet`: warnings too (3 lines at boot), so a soft lockup or
        // an RCU stall prints its stacks into vm.log (vm.log.1 once berth restarted a
        // wedged guest).
        let mut append = format!(
            "console=ttyS0 quiet loglevel=5 panic=-1 berth.addr={GUEST_IP}/{GUEST_PREFIX} \
             berth.gw={} berth.port={API_PORT} berth.control={CONTROL_PORT}",
            HOST_ADDR.split('/').next().unwrap_or_default()
        );
        if accel == Accelerator::Tcg {
            // TCG has no kvmclock and microvm no HPET: without these the kernel cannot
            // calibrate its clock and stops early in boot. TCG's TSC is the host's
            // (constant rate), but the kernel finds the vCPUs' TSCs out of sync and
            // falls back to jiffies, which lose time whenever the host is busy:
            // `tsc=reliable` keeps the guest's clock right.
            if let Some(khz) = accel::host_tsc_khz() {
                append.push_str(&format!(
                    " tsc_early_khz={khz} lpj={} tsc=reliable",
                    khz * 4
                ));
            }
        }
        let mut net = OsString::from("--net=");
        net.push(&self.netns_path);
        let mut argv: Vec<OsString> = vec![
            self.nsenter.clone().into(),
            net,
            "--".into(),
            self.qemu.clone().into(),
        ];
        let name = format!("berth-{}", self.machine);
        let cpus = self.config.cpus.to_string();
        let memory = format!("{}M", self.config.memory_mib);
        argv.extend(
            [
                "-name",
                &name,
                "-M",
                machine_type.qemu_machine(),
                "-accel",
                accel.qemu_accel(),
                "-cpu",
                accel.qemu_cpu(),
                "-smp",
                &cpus,
                "-m",
                &memory,
                "-nodefaults",
                "-no-user-config",
                "-display",
                "none",
                "-monitor",
                "none",
                "-no-reboot",
            ]
            .map(OsString::from),
        );
        let mut opt = |flag: &str, value: OsString| {
            argv.push(flag.into());
            argv.push(value);
        };
        opt("-kernel", image.kernel.clone().into());
        opt("-initrd", image.initrd.clone().into());
        let log = Self::log_path(&self.state_dir);
        opt("-chardev", chardev_file(&log));
        opt("-serial", "chardev:console".into());
        opt("-drive", drive("root", &image.rootfs, "readonly=on"));
        let blk = machine_type.virtio("virtio-blk");
        opt("-device", format!("{blk},drive=root").into());
        opt(
            "-drive",
            drive("data", &self.data_disk(), "cache=writeback"),
        );
        opt("-device", format!("{blk},drive=data").into());
        opt(
            "-netdev",
            format!("tap,id=net0,ifname={TAP},script=no,downscript=no").into(),
        );
        opt(
            "-device",
            format!(
                "{},netdev=net0{}",
                machine_type.virtio("virtio-net"),
                machine_type.nic_options()
            )
            .into(),
        );
        for (i, share) in self.config.shares.iter().enumerate() {
            let mut fsdev = OsString::from(format!(
                "local,id=share{i},security_model=passthrough,path="
            ));
            fsdev.push(share);
            opt("-fsdev", fsdev);
            opt(
                "-device",
                format!(
                    "{},fsdev=share{i},mount_tag=share{i}",
                    machine_type.virtio("virtio-9p")
                )
                .into(),
            );
            append.push_str(&format!(" berth.share=share{i},{}", share.display()));
        }
        opt("-append", append.into());
        opt("-pidfile", self.pidfile().into());
        argv
    }

    /// Opens a stream to the guest's dockerd (inside the namespace).
    pub(crate) async fn connect_api(&self) -> std::io::Result<tokio::net::TcpStream> {
        self.sockets.connect_tcp(Self::api_addr()).await
    }

    /// Aborts every TCP connection in the machine's namespace (`ss -K`, the kernel's
    /// socket destroy): all of them lead into the guest (API, forwarded ports), and once
    /// its QEMU is killed nothing would ever answer or reset them.
    pub(crate) async fn abort_connections(&self) {
        let mut net = OsString::from("--net=");
        net.push(&self.netns_path);
        let out = tokio::process::Command::new(&self.nsenter)
            .arg(net)
            .arg("--")
            .arg(&self.ss)
            .args(["-K", "-t", "-n", "-H", "state", "connected"])
            .stdin(std::process::Stdio::null())
            .output()
            .await;
        match out {
            Ok(out) if out.status.success() => {
                let aborted = out
                    .stdout
                    .split(|&b| b == b'\n')
                    .filter(|l| !l.is_empty())
                    .count();
                tracing::info!(machine = %self.machine, aborted, "aborted the connections into the guest");
            }
            Ok(out) => {
                tracing::warn!(machine = %self.machine, status = %out.status, stderr = %String::from_utf8_lossy(&out.stderr), "cannot abort the connections into the guest")
            }
            Err(e) => {
                tracing::warn!(machine = %self.machine, error = %e, "cannot run ss to abort the connections into the guest")
            }
        }
    }

    /// Asks the guest to power off cleanly; false if the request could not be sent.
    pub(crate) async fn request_poweroff(&self) -> bool {
        let addr = SocketAddr::new(IpAddr::V4(GUEST_IP), CONTROL_PORT);
        let sent = async {
            let mut s = self.sockets.connect_tcp(addr).await?;
            s.write_all(b"poweroff\n").await?;
            s.shutdown().await
        };
        match tokio::time::timeout(Duration::from_secs(3), sent).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                tracing::warn!(machine = %self.machine, error = %e, "cannot ask the guest to power off");
                false
            }
            Err(_) => false,
        }
    }

    fn error(&self, message: String) -> EngineError {
        EngineError::Vm {
            machine: self.machine.clone(),
            message,
        }
    }
}

/// `file,id=console,path=<log>,append=on` (the console joins QEMU's own messages).
fn chardev_file(log: &Path) -> OsString {
    let mut s = OsString::from("file,id=console,append=on,path=");
    s.push(log);
    s
}

fn drive(id: &str, file: &Path, extra: &str) -> OsString {
    let mut s = OsString::from(format!("id={id},format=raw,if=none,{extra},file="));
    s.push(file);
    s
}

/// The last non-empty line of `text` (QEMU's error when it exits at once).
fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
}

fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The log's text after byte `from` (at most 64 KiB of it).
fn log_since(path: &Path, from: u64) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return String::new();
    };
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(from)).is_ok() {
        let _ = f.take(64 * 1024).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}
