//! What the kernel accounts per process and for the machine, read from `/proc`: resident
//! memory, CPU time (with the share of a JVM's that went to its JIT compiler threads), core
//! count, memory size and load.
//!
//! No libc: the workspace forbids unsafe code, so the clock-tick rate that CPU times are
//! counted in comes from `getconf CLK_TCK` (and is assumed to be 100, the Linux default,
//! when that fails; the report says which).

use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    kib_field(line)
}

/// `MemTotal` of a `/proc/meminfo` text, in bytes.
pub fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    kib_field(line)
}

/// The number of a `Name:   1234 kB` line, in bytes.
fn kib_field(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace().skip(1);
    let value: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") => Some(value * 1024),
        None => Some(value),
        Some(_) => None,
    }
}

/// `utime + stime` of a `/proc/<pid>/stat` text, in clock ticks.
///
/// The command name (field 2) is in parentheses and may itself hold spaces and `)`, so the
/// fields are counted from the last `)`: state is the first after it, utime the 12th and
/// stime the 13th (fields 14 and 15 of proc(5)).
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy and total ticks of all cores, from the `cpu` line of `/proc/stat`. Idle and iowait
/// count as not busy.
pub fn parse_machine_ticks(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user]
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// Resident memory of `pid`, in bytes; `None` once it is gone.
pub fn rss(pid: u32) -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// CPU time (user + system) of `pid` so far, in clock ticks; `None` once it is gone.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    parse_cpu_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether a thread's name (`/proc/<pid>/task/<tid>/comm`, cut at 15 bytes) is one of
/// the JVM's JIT compiler threads (`C1 CompilerThread0`, `C2 CompilerThread1`, ...).
pub fn is_jit_thread(comm: &str) -> bool {
    comm.starts_with("C1 CompilerThre") || comm.starts_with("C2 CompilerThre")
}

/// CPU ticks so far of each JIT compiler thread of `pid`, by thread id. Empty for a process
/// that is not a JVM, or is gone.
pub fn jit_thread_ticks(pid: u32) -> HashMap<u32, u64> {
    let task = Path::new("/proc").join(pid.to_string()).join("task");
    let Ok(entries) = std::fs::read_dir(&task) else {
        return HashMap::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            if !is_jit_thread(comm.trim_end()) {
                return None;
            }
            let ticks = parse_cpu_ticks(&std::fs::read_to_string(e.path().join("stat")).ok()?)?;
            Some((tid, ticks))
        })
        .collect()
}

/// Busy and total ticks of the whole machine so far.
pub fn machine_ticks() -> Option<(u64, u64)> {
    parse_machine_ticks(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// Clock ticks per second, and whether that figure is assumed rather than read.
pub fn ticks_per_second() -> (u64, bool) {
    let read = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&t| t > 0);
    match read {
        Some(ticks) => (ticks, false),
        None => (100, true),
    }
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Total memory of the machine, in bytes.
pub fn mem_total() -> Option<u64> {
    parse_mem_total(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

/// The CPU model name, for the report.
pub fn cpu_model() -> Option<String> {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()?
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_owned())
}

/// Processes whose command line contains every one of `needles`: how the Java servers of
/// the emulators are found, since gcloud starts them as grandchildren in their own groups.
pub fn pids_matching(needles: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let Ok(raw) = std::fs::read(Path::new("/proc").join(pid.to_string()).join("cmdline")) else {
                return false;
            };
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            needles.iter().all(|n| cmdline.contains(n))
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// CPU used by named groups of processes over a stretch of time.
#[derive(Debug)]
pub struct CpuMeter {
    groups: Vec<MeteredGroup>,
    machine: Option<(u64, u64)>,
    started: Instant,
}

#[derive(Debug)]
struct MeteredGroup {
    name: String,
    pids: Vec<u32>,
    ticks_before: u64,
    /// Ticks of each JIT compiler thread at the start, by pid and thread id.
    jit_before: HashMap<(u32, u32), u64>,
}

/// What a [`CpuMeter`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct CpuReport {
    /// Wall time measured, seconds.
    pub wall_s: f64,
    /// Share of all cores busy over that time, by anything on the machine (other
    /// people's builds included).
    pub machine_busy_pct: Option<f64>,
    /// Each group.
    pub groups: Vec<CpuGroup>,
}

/// CPU of one group of processes.
#[derive(Clone, Debug, Serialize)]
pub struct CpuGroup {
    /// What the processes are.
    pub name: String,
    /// User + system CPU, seconds.
    pub cpu_s: f64,
    /// That per saga ended, milliseconds (equal to seconds per 1,000 sagas).
    pub ms_per_saga: Option<f64>,
    /// Of `cpu_s`, what the JVM's JIT compiler threads used, seconds; `None` for processes
    /// that have none (the services, the bench). The JVM ends idle compiler threads, and a
    /// thread that ended during the measurement takes its time with it, so this may fall
    /// short, never over.
    pub jit_s: Option<f64>,
}

impl CpuReport {
    /// The group called `name`.
    pub fn group(&self, name: &str) -> Option<&CpuGroup> {
        self.groups.iter().find(|g| g.name == name)
    }

    /// The share of the JVMs' CPU (the groups with JIT threads) that their JIT compilers
    /// used, per cent; `None` when no group is a JVM or they used no CPU.
    pub fn jit_pct(&self) -> Option<f64> {
        let jvms = || self.groups.iter().filter(|g| g.jit_s.is_some());
        let cpu: f64 = jvms().map(|g| g.cpu_s).sum();
        let jit: f64 = jvms().filter_map(|g| g.jit_s).sum();
        (cpu > 0.0).then(|| jit / cpu * 100.0)
    }
}

fn jit_ticks_of(pids: &[u32]) -> HashMap<(u32, u32), u64> {
    pids.iter()
        .flat_map(|&pid| {
            jit_thread_ticks(pid)
                .into_iter()
                .map(move |(tid, t)| ((pid, tid), t))
        })
        .collect()
}

fn ticks_of(pids: &[u32]) -> u64 {
    pids.iter().filter_map(|&p| cpu_ticks(p)).sum()
}

impl CpuMeter {
    /// Starts measuring `groups` of pids.
    pub fn start(groups: Vec<(String, Vec<u32>)>) -> Self {
        CpuMeter {
            groups: groups
                .into_iter()
                .map(|(name, pids)| MeteredGroup {
                    ticks_before: ticks_of(&pids),
                    jit_before: jit_ticks_of(&pids),
                    name,
                    pids,
                })
                .collect(),
            machine: machine_ticks(),
            started: Instant::now(),
        }
    }

    /// What each group used since the start; per saga when `sagas` is not zero.
    pub fn finish(self, sagas: usize) -> CpuReport {
        let (ticks, _) = ticks_per_second();
        let seconds = |t: u64| crate::stats::u64_as_f64(t) / crate::stats::u64_as_f64(ticks);
        let machine_busy_pct = match (self.machine, machine_ticks()) {
            (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => Some(
                crate::stats::u64_as_f64(b1.saturating_sub(b0)) / crate::stats::u64_as_f64(t1 - t0) * 100.0,
            ),
            _ => None,
        };
        CpuReport {
            wall_s: self.started.elapsed().as_secs_f64(),
            machine_busy_pct,
            groups: self
                .groups
                .into_iter()
                .map(|g| {
                    let cpu_s = seconds(ticks_of(&g.pids).saturating_sub(g.ticks_before));
                    let jit_now = jit_ticks_of(&g.pids);
                    // A thread born during the measurement counts from zero.
                    let jit_s = (!jit_now.is_empty() || !g.jit_before.is_empty()).then(|| {
                        seconds(
                            jit_now
                                .iter()
                                .map(|(k, t)| t.saturating_sub(g.jit_before.get(k).copied().unwrap_or(0)))
                                .sum(),
                        )
                    });
                    CpuGroup {
                        name: g.name,
                        cpu_s,
                        ms_per_saga: (sagas > 0).then(|| cpu_s * 1000.0 / crate::stats::as_f64(sagas)),
                        jit_s,
                    }
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_rss_is_read_in_bytes_from_a_status_file() {
        let status = "Name:\tfrontend\nVmPeak:\t  100000 kB\nVmRSS:\t    7420 kB\nRssAnon:\t 3000 kB\n";
        assert_eq!(parse_vm_rss(status), Some(7420 * 1024));
        assert_eq!(parse_vm_rss("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn cpu_ticks_add_user_and_system_time_even_with_a_parenthesis_in_the_name() {
        let stat = "4242 (a) b) S 1 4242 4242 0 -1 4194560 600 0 0 0 17 5 0 0 20 0 3 0 12345 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(22));
        assert_eq!(parse_cpu_ticks("4242 (x) S 1"), None);
    }

    #[test]
    fn machine_ticks_count_idle_and_iowait_as_not_busy() {
        let stat = "cpu  100 5 50 800 20 3 2 0 0 0\ncpu0 50 2 25 400 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_ticks(stat), Some((160, 980)));
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        let meminfo = "MemTotal:       24684544 kB\nMemFree:        10000000 kB\n";
        assert_eq!(parse_mem_total(meminfo), Some(24_684_544 * 1024));
    }

    #[test]
    fn hotspot_compiler_threads_are_told_from_the_others_by_their_cut_names() {
        assert!(is_jit_thread("C2 CompilerThre"));
        assert!(is_jit_thread("C1 CompilerThre"));
        assert!(!is_jit_thread("grpc-default-ex"));
        assert!(!is_jit_thread("GC Thread#0"));
        assert!(!is_jit_thread("tokio-runtime-w"));
    }

    #[test]
    fn the_jit_share_counts_only_the_jvms() {
        let group = |name: &str, cpu_s: f64, jit_s: Option<f64>| CpuGroup {
            name: name.to_owned(),
            cpu_s,
            ms_per_saga: None,
            jit_s,
        };
        let report = CpuReport {
            wall_s: 1.0,
            machine_busy_pct: None,
            groups: vec![
                group("orders", 5.0, None),
                group("Pub/Sub emulator", 3.0, Some(1.0)),
                group("Firestore emulator", 5.0, Some(1.0)),
            ],
        };
        assert_eq!(report.jit_pct(), Some(25.0));
        let rust_only = CpuReport {
            groups: vec![group("orders", 5.0, None)],
            ..report
        };
        assert_eq!(rust_only.jit_pct(), None);
    }

    #[test]
    fn a_process_without_compiler_threads_has_no_jit_ticks() {
        assert!(jit_thread_ticks(std::process::id()).is_empty());
    }

    #[test]
    fn this_process_can_be_measured() {
        let pid = std::process::id();
        assert!(rss(pid).is_some_and(|b| b > 0));
        assert!(cpu_ticks(pid).is_some());
        assert!(ticks_per_second().0 > 0);
    }
}
