//! `EngineSupervisor`: one per managed machine. Lazy start, single-flight, restart with
//! backoff, adoption of a dockerd left by an earlier berth, clean stop.
//!
//! Concurrency, in one paragraph: the request path calls `ensure_running`, which on a
//! running machine is one atomic load ([`StateCell`]). Otherwise the first caller spawns
//! a *start task* and every caller (first and later) waits on the same `watch` channel
//! for its outcome, so N concurrent callers cause one start, and a caller that gives up
//! (its request was cancelled) does not cancel the start for the others. Start and stop
//! serialise on the `lifecycle` lock, which also owns the running [`DockerdProcess`].
//! An *exit watcher* task per run notices dockerd's exit and, unless `stop` asked for
//! it, retires that generation (Running → Stopped) so the next `ensure_running`
//! restarts it.
//!
//! Leftover dockerd (berth was killed): found through `dockerd.pid` at the next start
//! (or stop). If it runs in this machine's namespace and answers `/_ping`, it is
//! **adopted**: containers keep running, and the supervisor watches it through a pidfd.
//! Otherwise it is stopped (SIGTERM, then SIGKILL) and a fresh one started.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;

use crate::launcher::{
    find_leftover, unmount_leftovers, DockerdLauncher, DockerdLog, DockerdProcess, MachineLayout,
};
use crate::netns::{self, IpCommand, MachineNetns, Teardown};
use crate::prerequisites::Programs;
use crate::readiness::{self, Generation, MachineState, MachineStatus, Phase, StateCell};
use crate::vm::{VmFacts, VmLauncher};
use crate::{EngineError, MachineConfig};

/// Log lines carried by start errors.
const ERROR_TAIL_LINES: usize = 20;

/// How long a leftover dockerd gets to answer `/_ping` before it is replaced.
const ADOPTION_PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Grace for a dockerd that failed to become ready (it is not serving anything).
const FAILED_START_GRACE: Duration = Duration::from_secs(5);

/// Longest pause between two readiness probes while dockerd starts.
const MAX_PROBE_PAUSE: Duration = Duration::from_millis(10);

/// Liveness probes of a running engine: at most this far apart...
const MAX_LIVENESS_INTERVAL: Duration = Duration::from_secs(10);
/// ...and at least this many missed in a row, besides the liveness timeout, before the
/// engine counts as wedged (one slow answer is not a wedge).
const LIVENESS_MISSES: u32 = 3;

type StartOutcome = Result<Generation, EngineError>;

/// Supervises the dockerd of one managed machine. Cheap to clone: clones share the
/// machine.
#[derive(Clone)]
pub struct EngineSupervisor {
    shared: Arc<Shared>,
}

struct Shared {
    config: MachineConfig,
    layout: MachineLayout,
    engine: Engine,
    netns: MachineNetns<IpCommand>,
    log: DockerdLog,
    /// Generation + phase: what the request path reads.
    cell: StateCell,
    /// Details for `status` and the backoff; never held across an `.await`.
    record: Mutex<Record>,
    /// The start in flight, if any: callers subscribe to its outcome.
    inflight: Mutex<Option<watch::Receiver<Option<StartOutcome>>>>,
    /// Serialises start and stop; holds the dockerd of the current run.
    lifecycle: tokio::sync::Mutex<Option<DockerdProcess>>,
    /// Bumped by `stop` before it waits for the lifecycle lock, so a start that is
    /// sleeping (backoff) or waiting for `/_ping` gives way instead of making stop wait.
    stop_epoch: watch::Sender<u64>,
}

/// What runs dockerd: a process in the machine's namespace, or a VM.
#[derive(Debug)]
enum Engine {
    Namespace(DockerdLauncher),
    Vm(VmLauncher),
}

#[derive(Debug, Default)]
struct Record {
    pid: Option<u32>,
    started_at: Option<SystemTime>,
    ready_at: Option<Instant>,
    adopted: bool,
    failures: u32,
    last_failure: Option<Failure>,
}

#[derive(Debug, Clone)]
struct Failure {
    at: Instant,
    error: EngineError,
}

// === impl EngineSupervisor ===

impl EngineSupervisor {
    /// Checks the configuration and the prerequisites (dockerd, containerd, runc,
    /// nsenter, ip; root). Starts nothing: the engine starts at the first
    /// `ensure_running`.
    pub fn new(config: MachineConfig) -> Result<Self, EngineError> {
        MachineConfig::validate_name(&config.name)?;
        let programs = Programs::find(&config.dockerd, std::env::var_os("PATH").as_deref())?;
        let uid = nix::unistd::geteuid();
        if !uid.is_root() {
            return Err(EngineError::NotRoot {
                machine: config.name.clone(),
                uid: uid.as_raw(),
            });
        }
        let state_dir = std::path::absolute(&config.state_dir)
            .map_err(|e| EngineError::io(&config.name, "resolve", config.state_dir.clone(), e))?;
        let layout = MachineLayout::new(&state_dir);
        let netns = MachineNetns::new(&config.name, IpCommand::new(programs.ip.clone()));
        let (engine, log) = match &config.vm {
            Some(vm) => (
                Engine::Vm(VmLauncher::new(
                    &config,
                    vm,
                    &state_dir,
                    &programs,
                    netns.path(),
                )?),
                VmLauncher::log_path(&state_dir),
            ),
            None => {
                layout.check_socket_lengths()?;
                (
                    Engine::Namespace(DockerdLauncher::new(
                        &config.name,
                        layout.clone(),
                        programs,
                        netns.path().to_path_buf(),
                        config.dockerd_args.clone(),
                    )),
                    layout.log.clone(),
                )
            }
        };
        let pidfile = match &engine {
            Engine::Namespace(_) => layout.pidfile.clone(),
            Engine::Vm(vm) => vm.pidfile(),
        };
        if let Some(pid) = find_leftover(&pidfile) {
            tracing::info!(
                machine = %config.name,
                pid,
                "found dockerd left running by an earlier berth: adopted at the next start if it \
                 answers /_ping, else replaced"
            );
        }
        Ok(Self {
            shared: Arc::new(Shared {
                log: DockerdLog::new(log),
                config,
                layout,
                engine,
                netns,
                cell: StateCell::default(),
                record: Mutex::new(Record::default()),
                inflight: Mutex::new(None),
                lifecycle: tokio::sync::Mutex::new(None),
                stop_epoch: watch::Sender::new(0),
            }),
        })
    }

    /// The machine's name.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    /// The unix socket dockerd listens on: `<state_dir>/docker.sock`.
    pub fn socket_path(&self) -> std::path::PathBuf {
        self.shared.layout.socket.clone()
    }

    /// A VM machine's dockerd address inside [`netns_path`](Self::netns_path); `None`
    /// for a namespace machine (it listens on [`socket_path`](Self::socket_path)).
    pub fn vm_api_addr(&self) -> Option<std::net::SocketAddr> {
        matches!(self.shared.engine, Engine::Vm(_)).then(VmLauncher::api_addr)
    }

    /// A VM machine's vCPUs, memory and accelerator; `None` for a namespace machine.
    pub fn vm_facts(&self) -> Option<VmFacts> {
        match &self.shared.engine {
            Engine::Vm(vm) => Some(vm.facts()),
            Engine::Namespace(_) => None,
        }
    }

    /// The machine's network namespace: `/var/run/netns/berth-<name>`. Stable for the
    /// machine's life (kept across restarts and `stop`).
    pub fn netns_path(&self) -> std::path::PathBuf {
        self.shared.netns.path().to_path_buf()
    }

    /// Returns once dockerd answers `GET /_ping`, starting it if needed, and the
    /// generation of the dockerd that answered.
    ///
    /// Running: one atomic load, no syscall, no lock. Otherwise concurrent callers share
    /// one start; a dockerd that died since is started again (after a backoff wait when
    /// failures repeat); after `give_up_after` consecutive failures this fails at once
    /// with [`EngineError::GaveUp`] until [`stop`](Self::stop). Start errors carry the
    /// last lines of dockerd's log ([`EngineError::log_tail`]). Dropping the future does
    /// not cancel the start.
    #[inline]
    pub async fn ensure_running(&self) -> Result<Generation, EngineError> {
        if let Some(generation) = self.shared.cell.running_generation() {
            return Ok(generation);
        }
        self.join_start().await
    }

    /// The generation of the dockerd that runs now; `None` while stopped, starting or
    /// failed. One atomic load.
    pub fn running_generation(&self) -> Option<Generation> {
        self.shared.cell.running_generation()
    }

    /// The current generation: 0 before the first start, +1 at every (re)start.
    pub fn generation(&self) -> Generation {
        self.shared.cell.load().0
    }

    /// Stops dockerd cleanly (SIGTERM; SIGKILL after `stop_timeout`), unmounts what it
    /// left, and clears the "was running" marker: the machine stays stopped at the next
    /// berth start. Data (images, volumes, containers) and the netns are kept. Resets a
    /// `Failed` machine to `Stopped`. Waits for a start in progress to finish first.
    pub async fn stop(&self) -> Result<(), EngineError> {
        self.shared.halt(MarkerUpdate::Clear).await
    }

    /// Like [`stop`](Self::stop), but for berth itself exiting: the "was running" marker
    /// is kept, so a machine that was running is started again at the next berth start.
    pub async fn shutdown(&self) -> Result<(), EngineError> {
        self.shared.halt(MarkerUpdate::Keep).await
    }

    /// [`stop`](Self::stop), then removes the network namespace if no process is left in
    /// it (for `machine rm` and tests). Data is kept.
    pub async fn teardown(&self) -> Result<(), EngineError> {
        self.stop().await?;
        let shared = self.shared.clone();
        let outcome = tokio::task::spawn_blocking(move || shared.netns.teardown())
            .await
            .map_err(|_| self.shared.cancelled())??;
        if let Teardown::Kept { occupants } = outcome {
            tracing::warn!(
                machine = %self.name(),
                ?occupants,
                "network namespace kept: processes are still inside"
            );
        }
        Ok(())
    }

    /// A snapshot for status displays.
    pub fn status(&self) -> MachineStatus {
        let (generation, phase) = self.shared.cell.load();
        let record = self.shared.record();
        let state = match phase {
            Phase::Stopped => MachineState::Stopped,
            Phase::Starting => MachineState::Starting,
            Phase::Running => MachineState::Running,
            Phase::Stopping => MachineState::Stopping,
            Phase::Failed => MachineState::Failed {
                reason: record
                    .last_failure
                    .as_ref()
                    .map_or_else(|| "unknown".to_owned(), |f| f.error.to_string()),
            },
        };
        MachineStatus {
            state,
            pid: record.pid,
            started_at: record.started_at,
            uptime: record.started_at.and_then(|t| t.elapsed().ok()),
            generation,
            adopted: record.adopted,
            consecutive_failures: record.failures,
            last_failure: record
                .last_failure
                .as_ref()
                .map(|f| (f.error.to_string(), f.at.elapsed())),
        }
    }

    /// The last `lines` lines of `dockerd.log` (the current or last run).
    pub fn log_tail(&self, lines: usize) -> String {
        self.shared.log.tail(lines)
    }

    /// Whether the machine was running when berth last stopped (or was killed): then
    /// berth should `ensure_running` it at start. False for a machine never started or
    /// stopped with [`stop`](Self::stop).
    pub fn was_running_at_last_shutdown(&self) -> bool {
        self.shared.layout.marker.exists()
    }

    /// The slow path of `ensure_running`: join the start in flight or begin one.
    async fn join_start(&self) -> Result<Generation, EngineError> {
        let mut outcome = {
            let mut inflight = self
                .shared
                .inflight
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(generation) = self.shared.cell.running_generation() {
                return Ok(generation);
            }
            if self.shared.cell.load().1 == Phase::Failed {
                return Err(self.shared.gave_up(&self.shared.record()));
            }
            match inflight.as_ref() {
                // A start task that died (runtime shutdown, panic) leaves a closed
                // channel: start a new one instead of waiting on it.
                Some(outcome) if outcome.has_changed().is_ok() => outcome.clone(),
                _ => {
                    let (tx, outcome) = watch::channel(None);
                    *inflight = Some(outcome.clone());
                    tokio::spawn(Shared::run_start(self.shared.clone(), tx));
                    outcome
                }
            }
        };
        let result = match outcome.wait_for(Option::is_some).await {
            Ok(result) => result.clone(),
            Err(_) => None,
        };
        result.unwrap_or_else(|| Err(self.shared.cancelled()))
    }
}

impl fmt::Debug for EngineSupervisor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (generation, phase) = self.shared.cell.load();
        f.debug_struct("EngineSupervisor")
            .field("name", &self.shared.config.name)
            .field("state_dir", &self.shared.layout.state_dir)
            .field("phase", &phase)
            .field("generation", &generation)
            .finish()
    }
}

// === impl Shared ===

/// What `halt` does with the "was running" marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkerUpdate {
    Clear,
    Keep,
}

impl Shared {
    fn record(&self) -> MutexGuard<'_, Record> {
        self.record.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The start task: runs one start and publishes its outcome to every waiter.
    async fn run_start(self: Arc<Self>, tx: watch::Sender<Option<StartOutcome>>) {
        let outcome = self.start().await;
        // The state is final before the slot is cleared: a caller arriving after this
        // sees Running (fast path) or begins a new attempt.
        *self.inflight.lock().unwrap_or_else(PoisonError::into_inner) = None;
        tx.send_replace(Some(outcome));
    }

    async fn start(self: &Arc<Self>) -> StartOutcome {
        let mut lifecycle = self.lifecycle.lock().await;
        if let Some(generation) = self.cell.running_generation() {
            return Ok(generation);
        }
        // Stops requested from here on abandon this start.
        let mut stop = self.stop_epoch.subscribe();
        let (generation, _) = self.cell.load();
        let backoff = self.config.restart_backoff;
        let wait = {
            let record = self.record();
            if backoff.gives_up_at(record.failures) {
                self.cell.store(generation, Phase::Failed);
                return Err(self.gave_up(&record));
            }
            record.last_failure.as_ref().map_or(Duration::ZERO, |f| {
                backoff
                    .delay_after(record.failures)
                    .saturating_sub(f.at.elapsed())
            })
        };
        self.cell.store(generation, Phase::Starting);
        if !wait.is_zero() {
            tracing::info!(machine = %self.config.name, ?wait, "waiting before restarting dockerd");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {
                    self.cell.store(generation, Phase::Stopped);
                    return Err(self.stop_requested());
                }
            }
        }

        let begun = Instant::now();
        match self.launch(&mut lifecycle, &mut stop).await {
            Ok(process) => {
                let next = generation.next();
                {
                    let mut record = self.record();
                    record.pid = Some(process.pid());
                    record.started_at = Some(SystemTime::now());
                    record.ready_at = Some(Instant::now());
                    record.adopted = process.is_adopted();
                }
                self.write_marker();
                let exit = process.exit_watch();
                tracing::info!(
                    machine = %self.config.name,
                    generation = %next,
                    pid = process.pid(),
                    adopted = process.is_adopted(),
                    elapsed = ?begun.elapsed(),
                    "engine ready"
                );
                *lifecycle = Some(process);
                // Running first, then the watcher: an exit that happens in between is
                // still in the channel when the watcher looks.
                self.cell.store(next, Phase::Running);
                tokio::spawn(watch_exit(Arc::downgrade(self), next, exit));
                if let Some(timeout) = self.config.liveness_timeout {
                    tokio::spawn(liveness_task(Arc::downgrade(self), next, timeout));
                }
                Ok(next)
            }
            Err(error @ EngineError::StopRequested { .. }) => {
                self.cell.store(generation, Phase::Stopped);
                Err(error)
            }
            Err(error) => {
                let failures = {
                    let mut record = self.record();
                    record.failures += 1;
                    record.last_failure = Some(Failure {
                        at: Instant::now(),
                        error: error.clone(),
                    });
                    record.failures
                };
                let phase = if backoff.gives_up_at(failures) {
                    Phase::Failed
                } else {
                    Phase::Stopped
                };
                self.cell.store(generation, phase);
                tracing::warn!(machine = %self.config.name, failures, %error, "engine failed to start");
                Err(error)
            }
        }
    }

    /// Brings up a ready dockerd: reuses a leftover that answers, or spawns one.
    async fn launch(
        self: &Arc<Self>,
        lifecycle: &mut Option<DockerdProcess>,
        stop: &mut watch::Receiver<u64>,
    ) -> Result<DockerdProcess, EngineError> {
        // A dockerd of ours that an earlier stop could not end.
        if let Some(old) = lifecycle.take() {
            if let Err(e) = self.terminate(&old).await {
                *lifecycle = Some(old);
                return Err(e);
            }
        }

        // `ip` runs as a child process (and a VM's image may be built): keep it off the
        // runtime's threads.
        let shared = self.clone();
        let image = tokio::task::spawn_blocking(move || {
            shared.netns.ensure()?;
            match &shared.engine {
                Engine::Namespace(launcher) => launcher.prepare().map(|()| None),
                Engine::Vm(vm) => vm.prepare().map(Some),
            }
        })
        .await
        .map_err(|_| self.cancelled())??;

        if let Some(pid) = find_leftover(&self.pidfile()) {
            if let Some(adopted) = self.adopt_or_replace(pid).await? {
                return Ok(adopted);
            }
        }

        let process = match (&self.engine, image) {
            (Engine::Vm(vm), Some(image)) => {
                vm.remove_stale_files()?;
                vm.spawn(&image, &self.log).await?
            }
            (Engine::Vm(_), None) => {
                return Err(EngineError::Vm {
                    machine: self.config.name.clone(),
                    message: "no guest image was prepared".to_owned(),
                })
            }
            (Engine::Namespace(launcher), _) => {
                launcher.remove_stale_files()?;
                launcher.spawn()?
            }
        };
        if let Err(error) = self.wait_ready(&process, stop).await {
            if let Err(e) = self.terminate_with(&process, FAILED_START_GRACE).await {
                tracing::warn!(machine = %self.config.name, %e, "could not stop a dockerd that failed to start");
            }
            self.sweep_mounts();
            return Err(error);
        }
        Ok(process)
    }

    /// A dockerd left by an earlier berth: adopt it if it runs in our namespace and
    /// answers `/_ping`, else stop it.
    async fn adopt_or_replace(&self, pid: u32) -> Result<Option<DockerdProcess>, EngineError> {
        let in_our_netns = netns::process_is_in(pid, self.netns.path());
        if in_our_netns && self.ping(ADOPTION_PING_TIMEOUT).await {
            match DockerdProcess::adopt(pid) {
                Ok(process) => {
                    tracing::info!(machine = %self.config.name, pid, "adopted dockerd left running by an earlier berth");
                    return Ok(Some(process));
                }
                // Exited meanwhile: start a new one.
                Err(e) => {
                    tracing::info!(machine = %self.config.name, pid, %e, "leftover dockerd went away")
                }
            }
            return Ok(None);
        }
        tracing::warn!(
            machine = %self.config.name,
            pid,
            in_our_netns,
            "dockerd left by an earlier berth is not usable: stopping it"
        );
        if let Ok(process) = DockerdProcess::adopt(pid) {
            self.terminate(&process).await?;
        }
        self.sweep_mounts();
        Ok(None)
    }

    /// Polls `/_ping` until it answers, dockerd exits, `start_timeout` passes, or a stop
    /// is requested.
    async fn wait_ready(
        &self,
        process: &DockerdProcess,
        stop: &mut watch::Receiver<u64>,
    ) -> Result<(), EngineError> {
        let deadline = Instant::now() + self.config.start_timeout;
        let mut pause = Duration::from_millis(5);
        loop {
            if let Some(exit) = process.exit_info() {
                return Err(EngineError::Exited {
                    machine: self.config.name.clone(),
                    status: exit.0,
                    log_tail: self.log.tail(ERROR_TAIL_LINES),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(EngineError::StartTimeout {
                    machine: self.config.name.clone(),
                    after: self.config.start_timeout,
                    log_tail: self.log.tail(ERROR_TAIL_LINES),
                });
            }
            if self.ping(left.min(Duration::from_secs(1))).await {
                return Ok(());
            }
            // Sleep, but wake at once if dockerd exits.
            let mut exit = process.exit_watch();
            let exited = async move {
                if exit.wait_for(Option::is_some).await.is_err() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = tokio::time::sleep(pause.min(left)) => {}
                () = exited => {}
                _ = stop.changed() => return Err(self.stop_requested()),
            }
            pause = (pause * 2).min(MAX_PROBE_PAUSE);
        }
    }

    async fn halt(self: &Arc<Self>, marker: MarkerUpdate) -> Result<(), EngineError> {
        self.stop_epoch.send_modify(|epoch| *epoch += 1);
        let mut lifecycle = self.lifecycle.lock().await;
        let (generation, _) = self.cell.load();
        self.cell.store(generation, Phase::Stopping);
        let result = self.halt_locked(&mut lifecycle).await;
        *self.record() = Record::default();
        if marker == MarkerUpdate::Clear {
            self.remove_marker();
        }
        self.cell.store(generation, Phase::Stopped);
        result
    }

    async fn halt_locked(&self, lifecycle: &mut Option<DockerdProcess>) -> Result<(), EngineError> {
        if let Some(process) = lifecycle.as_ref() {
            self.terminate(process).await?;
            tracing::info!(
                machine = %self.config.name,
                pid = process.pid(),
                exit = process.exit_info().map(|e| e.0).unwrap_or_default(),
                "dockerd stopped"
            );
        }
        *lifecycle = None;
        // Left by an earlier berth and never adopted by this one.
        if let Some(pid) = find_leftover(&self.pidfile()) {
            if let Ok(process) = DockerdProcess::adopt(pid) {
                self.terminate(&process).await?;
            }
        }
        self.sweep_mounts();
        Ok(())
    }

    /// A clean stop: SIGTERM to dockerd; a VM is asked to power off (its dockerd stops
    /// and its disks are unmounted), and QEMU is only signalled if that fails.
    async fn terminate(&self, process: &DockerdProcess) -> Result<(), EngineError> {
        if let Engine::Vm(vm) = &self.engine {
            if process.exit_info().is_some()
                || (vm.request_poweroff().await
                    && process.wait_exit(self.config.stop_timeout).await)
            {
                return Ok(());
            }
            tracing::warn!(machine = %self.config.name, "the VM did not power off: stopping QEMU");
            return self.terminate_with(process, FAILED_START_GRACE).await;
        }
        self.terminate_with(process, self.config.stop_timeout).await
    }

    /// Where the engine's process writes its pid.
    fn pidfile(&self) -> std::path::PathBuf {
        match &self.engine {
            Engine::Namespace(_) => self.layout.pidfile.clone(),
            Engine::Vm(vm) => vm.pidfile(),
        }
    }

    /// `GET /_ping` answered within `timeout`.
    async fn ping(&self, timeout: Duration) -> bool {
        match &self.engine {
            Engine::Namespace(_) => readiness::ping(&self.layout.socket, timeout).await,
            Engine::Vm(vm) => tokio::time::timeout(timeout, async {
                match vm.connect_api().await {
                    Ok(stream) => readiness::ping_stream(stream).await,
                    Err(_) => false,
                }
            })
            .await
            .unwrap_or(false),
        }
    }

    async fn terminate_with(
        &self,
        process: &DockerdProcess,
        grace: Duration,
    ) -> Result<(), EngineError> {
        match process.terminate(grace).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(EngineError::StopTimeout {
                machine: self.config.name.clone(),
                pid: process.pid(),
            }),
            Err(e) => Err(EngineError::Signal {
                machine: self.config.name.clone(),
                pid: process.pid(),
                source: Arc::new(e),
            }),
        }
    }

    /// Forgets the ended run and counts its failure; returns the failures in a row.
    fn record_failure(&self, error: EngineError) -> u32 {
        let mut record = self.record();
        let ran_for = record.ready_at.map(|t| t.elapsed()).unwrap_or_default();
        // A long healthy run forgets earlier failures.
        record.failures = if ran_for >= self.config.restart_backoff.max {
            1
        } else {
            record.failures + 1
        };
        record.pid = None;
        record.started_at = None;
        record.ready_at = None;
        record.adopted = false;
        record.last_failure = Some(Failure {
            at: Instant::now(),
            error,
        });
        record.failures
    }

    /// An exit `stop` did not ask for: retire the generation and count a failure.
    fn on_unexpected_exit(&self, generation: Generation, status: String) {
        if !self
            .cell
            .transition(generation, Phase::Running, Phase::Stopped)
        {
            // `stop` is ending it, or a newer run has begun.
            return;
        }
        let failures = self.record_failure(EngineError::Exited {
            machine: self.config.name.clone(),
            status: status.clone(),
            log_tail: self.log.tail(ERROR_TAIL_LINES),
        });
        if self.config.restart_backoff.gives_up_at(failures) {
            self.cell
                .transition(generation, Phase::Stopped, Phase::Failed);
        }
        tracing::warn!(
            machine = %self.config.name,
            %generation,
            %status,
            failures,
            "dockerd exited unexpectedly; the next ensure_running restarts it"
        );
    }

    /// The liveness watcher found the running engine wedged: kill it, abort the
    /// connections still waiting on it, count a failure, and start it again (with the
    /// backoff). Requests that come meanwhile wait for that start.
    async fn on_wedged(
        self: &Arc<Self>,
        generation: Generation,
        silent_for: Duration,
        misses: u32,
    ) {
        let mut lifecycle = self.lifecycle.lock().await;
        // A stop or an exit came first.
        if !self
            .cell
            .transition(generation, Phase::Running, Phase::Stopping)
        {
            return;
        }
        let Some(process) = lifecycle.take() else {
            self.cell.store(generation, Phase::Stopped);
            return;
        };
        let error = EngineError::Wedged {
            machine: self.config.name.clone(),
            pid: process.pid(),
            silent_for: Duration::from_secs(silent_for.as_secs()),
            misses,
        };
        tracing::error!(machine = %self.config.name, %error, "engine wedged: killing and restarting it");
        // A wedged guest cannot power off, and QEMU's own exit saves nothing more than
        // SIGKILL does (its writes are in the host's page cache): SIGKILL at once. A
        // dockerd gets SIGTERM first (it may stop its containers).
        let killed = match &self.engine {
            Engine::Vm(_) => match process.signal(rustix::process::Signal::KILL) {
                Ok(()) => process.wait_exit(Duration::from_secs(10)).await,
                Err(_) => false,
            },
            Engine::Namespace(_) => self
                .terminate_with(&process, FAILED_START_GRACE)
                .await
                .is_ok(),
        };
        if !killed {
            // The next start tries again and fails rather than run a second engine.
            tracing::warn!(machine = %self.config.name, pid = process.pid(), "the wedged engine did not exit");
            *lifecycle = Some(process);
        }
        if let Engine::Vm(vm) = &self.engine {
            // Nothing answers or resets them now: a client would wait for ever.
            vm.abort_connections().await;
        }
        self.sweep_mounts();
        let failures = self.record_failure(error);
        let phase = if self.config.restart_backoff.gives_up_at(failures) {
            Phase::Failed
        } else {
            Phase::Stopped
        };
        self.cell.store(generation, phase);
        drop(lifecycle);
        if phase == Phase::Stopped {
            let supervisor = EngineSupervisor {
                shared: self.clone(),
            };
            // Errors are logged by the start itself; the next request retries.
            let _ = supervisor.ensure_running().await;
        }
    }

    fn sweep_mounts(&self) {
        if matches!(self.engine, Engine::Vm(_)) {
            // Nothing of a VM is mounted on the host.
            return;
        }
        for (path, error) in unmount_leftovers(&self.layout) {
            tracing::warn!(machine = %self.config.name, path = %path.display(), %error, "cannot unmount leftover");
        }
    }

    fn write_marker(&self) {
        let text = "berth started this machine; `berth machine stop` removes this file\n";
        if let Err(e) = std::fs::write(&self.layout.marker, text) {
            tracing::warn!(machine = %self.config.name, %e, "cannot write the was-running marker");
        }
    }

    fn remove_marker(&self) {
        match std::fs::remove_file(&self.layout.marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(machine = %self.config.name, %e, "cannot remove the was-running marker")
            }
        }
    }

    fn gave_up(&self, record: &Record) -> EngineError {
        let (reason, log_tail) = match &record.last_failure {
            Some(f) => (
                f.error.to_string(),
                f.error.log_tail().unwrap_or_default().to_owned(),
            ),
            None => ("unknown".to_owned(), String::new()),
        };
        EngineError::GaveUp {
            machine: self.config.name.clone(),
            failures: record.failures,
            reason,
            log_tail,
        }
    }

    fn stop_requested(&self) -> EngineError {
        EngineError::StopRequested {
            machine: self.config.name.clone(),
        }
    }

    fn cancelled(&self) -> EngineError {
        EngineError::Cancelled {
            machine: self.config.name.clone(),
        }
    }
}

/// [`watch_liveness`] as a named future type: it may restart the engine, whose start
/// spawns the next watcher (the compiler cannot infer a recursive future's type).
fn liveness_task(
    shared: Weak<Shared>,
    generation: Generation,
    timeout: Duration,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    Box::pin(watch_liveness(shared, generation, timeout))
}

/// The liveness watcher of one run: `GET /_ping` every `interval`, each allowed
/// `interval`; no answer for `timeout` and [`LIVENESS_MISSES`] probes in a row means
/// the engine is wedged. Ends with the run.
async fn watch_liveness(shared: Weak<Shared>, generation: Generation, timeout: Duration) {
    let interval = (timeout / 4).clamp(Duration::from_millis(250), MAX_LIVENESS_INTERVAL);
    let mut answered = Instant::now();
    let mut misses = 0;
    loop {
        tokio::time::sleep(interval).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if shared.cell.running_generation() != Some(generation) {
            return;
        }
        let alive = shared.ping(interval).await;
        // Stopped or restarted while the probe ran: not this watcher's business.
        if shared.cell.running_generation() != Some(generation) {
            return;
        }
        if alive {
            answered = Instant::now();
            misses = 0;
            continue;
        }
        misses += 1;
        let silent_for = answered.elapsed();
        tracing::debug!(machine = %shared.config.name, misses, ?silent_for, "liveness probe not answered");
        if misses >= LIVENESS_MISSES && silent_for >= timeout {
            shared.on_wedged(generation, silent_for, misses).await;
            return;
        }
    }
}

/// The exit watcher of one run.
async fn watch_exit(
    shared: Weak<Shared>,
    generation: Generation,
    mut exit: watch::Receiver<Option<crate::launcher::ExitInfo>>,
) {
    let status = match exit.wait_for(Option::is_some).await {
        Ok(info) => info.as_ref().map(|i| i.0.clone()).unwrap_or_default(),
        Err(_) => return,
    };
    if let Some(shared) = shared.upgrade() {
        shared.on_unexpected_exit(generation, status);
    }
}
