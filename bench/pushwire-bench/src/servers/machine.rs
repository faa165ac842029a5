//! What `/proc` says about processes and the machine: CPU time, memory, load.

use std::path::Path;
use std::process::Command;

use crate::record::Machine;

/// Fewest clock ticks (10 ms each) of user plus kernel time between two samples for
/// their user/kernel split to be given: each tick count is off by less than one, so at
/// 20 the user share is within 5 percentage points.
const MIN_SPLIT_TICKS: u64 = 20;

/// CPU and memory of one or more processes at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    /// Run time of all threads, in nanoseconds.
    pub cpu_ns: u64,
    /// User and kernel time (`utime`, `stime`) in clock ticks.
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl ProcSample {
    pub(crate) fn add(&mut self, other: &ProcSample) {
        self.cpu_ns += other.cpu_ns;
        self.user_ticks += other.user_ticks;
        self.system_ticks += other.system_ticks;
        self.rss_kib += other.rss_kib;
        self.pss_kib += other.pss_kib;
    }

    /// The share of the CPU time since `before` spent in user space, or `None` when
    /// too few ticks passed to tell ([`MIN_SPLIT_TICKS`]). The kernel splits its
    /// precise run time into `utime` and `stime` by the same ratio, so applying this
    /// share to the `cpu_ns` difference is what the kernel itself reports.
    pub(crate) fn user_share_since(&self, before: &ProcSample) -> Option<f64> {
        let user = self.user_ticks.saturating_sub(before.user_ticks);
        let system = self.system_ticks.saturating_sub(before.system_ticks);
        (user + system >= MIN_SPLIT_TICKS).then(|| user as f64 / (user + system) as f64)
    }
}

/// CPU run time of all threads of `pid`, its user and kernel ticks, VmRSS and PSS.
pub(crate) fn process_sample(pid: u32) -> Option<ProcSample> {
    let mut cpu_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        cpu_ns += schedstat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
    }
    let (user_ticks, system_ticks) =
        user_and_system_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = kib_field(&status, "VmRSS:").unwrap_or(0);
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss_kib = kib_field(&rollup, "Pss:").unwrap_or(rss_kib);
    Some(ProcSample { cpu_ns, user_ticks, system_ticks, rss_kib, pss_kib })
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/<pid>/stat` line: all threads of
/// the process, exited ones included. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn user_and_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Busy CPU time of the whole machine so far (all cores), from `/proc/stat`.
pub(crate) fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    let busy: u64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // USER_HZ is 100 on Linux.
    Some(busy * 10_000_000)
}

/// The machine this runs on, from `/proc` and `rustc --version`.
pub(crate) fn describe_machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        memory_mib: kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024,
        rustc: Command::new("rustc")
            .arg("--version")
            .output()
            .map_or("unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        load_average_before: load_average(),
        load_average_after: String::new(),
    }
}

pub(crate) fn load_average() -> String {
    read_trimmed("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn read_trimmed(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).map_or("unknown".to_owned(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_the_command_name() {
        let stat = "4242 (nginx: worker) S 1 4242 4242 0 -1 4194624 96 0 0 0 731 2648 0 0 20 0 1 0 64887";
        assert_eq!(user_and_system_ticks(stat), Some((731, 2648)));
    }

    #[test]
    fn the_user_share_needs_enough_ticks() {
        let before = ProcSample { user_ticks: 100, system_ticks: 300, ..ProcSample::default() };
        let few = ProcSample { user_ticks: 105, system_ticks: 310, ..before };
        assert_eq!(few.user_share_since(&before), None);
        let enough = ProcSample { user_ticks: 110, system_ticks: 330, ..before };
        assert_eq!(enough.user_share_since(&before), Some(0.25));
    }
}
