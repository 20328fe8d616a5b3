//! CPU time per process, from `/proc/<pid>/stat`, read before and after a
//! phase: the figure we steer by, since on a shared 2-core machine CPU per
//! event stays put where throughput moves by a third.
//!
//! Each role is a set of process trees (a root and every live descendant).
//! A process counts its own user and system time plus its reaped children's
//! (`cutime`/`cstime`), so a PostgreSQL backend that exits between the two
//! readings is still counted: through the postmaster that reaped it.

use std::collections::{BTreeMap, HashMap, HashSet};

use procfs::process::Process;

/// What each process was given to run, as `bench` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Gateway,
    Worker,
    Postgres,
    RabbitMq,
    /// The bench process itself, or the `wrk` it runs.
    LoadGenerator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Gateway => "gateway",
            Role::Worker => "worker",
            Role::Postgres => "PostgreSQL",
            Role::RabbitMq => "RabbitMQ",
            Role::LoadGenerator => "load generator",
        }
    }
}

/// The root processes of each role.
#[derive(Clone, Debug, Default)]
pub struct Processes {
    roots: BTreeMap<Role, Vec<i32>>,
}

impl Processes {
    /// This machine's PostgreSQL (every postmaster) and RabbitMQ (every
    /// Erlang VM), and this process as the load generator.
    pub fn services() -> Processes {
        let mut processes = Processes::default();
        let table = process_table();
        for (pid, entry) in &table {
            let parent_is_same = table
                .get(&entry.ppid)
                .is_some_and(|parent| parent.comm == entry.comm);
            if parent_is_same {
                continue;
            }
            match entry.comm.as_str() {
                "postgres" => processes.add(Role::Postgres, *pid),
                "beam.smp" => processes.add(Role::RabbitMq, *pid),
                _ => {}
            }
        }
        processes.add(Role::LoadGenerator, std::process::id() as i32);
        processes
    }

    pub fn add(&mut self, role: Role, pid: i32) {
        self.roots.entry(role).or_default().push(pid);
    }

    /// Every root's CPU ticks so far (its tree's).
    pub fn sample(&self) -> CpuSample {
        let table = process_table();
        let roots: HashSet<i32> = self.roots.values().flatten().copied().collect();
        let ticks = self
            .roots
            .iter()
            .flat_map(|(role, roots)| roots.iter().map(move |root| (*role, *root)))
            .map(|(role, root)| ((role, root), tree_ticks(&table, root, &roots)))
            .collect();
        CpuSample { ticks }
    }
}

/// CPU ticks of each role's process trees at one moment.
#[derive(Clone, Debug)]
pub struct CpuSample {
    ticks: BTreeMap<(Role, i32), u64>,
}

impl CpuSample {
    /// Microseconds of CPU per event of each role from `self` to `later`. A
    /// process started in between (a worker of a drain) counts from its start.
    pub fn per_event(&self, later: &CpuSample, events: usize) -> CpuPerEvent {
        let mut micros: BTreeMap<Role, f64> = BTreeMap::new();
        for ((role, pid), after) in &later.ticks {
            let before = self.ticks.get(&(*role, *pid)).copied().unwrap_or(0);
            let seconds = after.saturating_sub(before) as f64 / procfs::ticks_per_second() as f64;
            *micros.entry(*role).or_default() += seconds * 1e6 / events.max(1) as f64;
        }
        CpuPerEvent { micros }
    }
}

/// Microseconds of CPU per event, by role.
#[derive(Clone, Debug, Default)]
pub struct CpuPerEvent {
    pub micros: BTreeMap<Role, f64>,
}

impl CpuPerEvent {
    #[cfg(test)]
    pub fn of(&self, role: Role) -> Option<f64> {
        self.micros.get(&role).copied()
    }

    /// The intake's own share and the services' (without the load generator).
    pub fn system_total(&self) -> f64 {
        self.micros
            .iter()
            .filter(|(role, _)| **role != Role::LoadGenerator)
            .map(|(_, micros)| micros)
            .sum()
    }

    /// `gateway 35.1 µs, worker 42.0 µs, …; all 142.3 µs` (the load
    /// generator apart from the total).
    pub fn cells(&self) -> String {
        let parts: Vec<String> = self
            .micros
            .iter()
            .map(|(role, micros)| format!("{} {micros:.1} µs", role.as_str()))
            .collect();
        format!(
            "{}; intake and services {:.1} µs",
            parts.join(", "),
            self.system_total()
        )
    }
}

struct Entry {
    ppid: i32,
    comm: String,
    /// utime + stime + cutime + cstime, in clock ticks.
    ticks: u64,
}

fn process_table() -> HashMap<i32, Entry> {
    let Ok(all) = procfs::process::all_processes() else {
        return HashMap::new();
    };
    all.filter_map(Result::ok)
        .filter_map(|process: Process| {
            let stat = process.stat().ok()?;
            let children = (stat.cutime.max(0) + stat.cstime.max(0)) as u64;
            Some((
                stat.pid,
                Entry {
                    ppid: stat.ppid,
                    comm: stat.comm,
                    ticks: stat.utime + stat.stime + children,
                },
            ))
        })
        .collect()
}

/// A root's ticks and every live descendant's, except descendants that are
/// roots themselves (the gateway and workers are children of `bench`, the
/// load generator, and count as their own).
fn tree_ticks(table: &HashMap<i32, Entry>, root: i32, roots: &HashSet<i32>) -> u64 {
    let mut total = 0;
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        let Some(entry) = table.get(&pid) else {
            continue;
        };
        total += entry.ticks;
        pending.extend(
            table
                .iter()
                .filter(|(child, entry)| entry.ppid == pid && !roots.contains(child))
                .map(|(child, _)| *child),
        );
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This process's own CPU ticks, read directly.
    fn own_ticks() -> u64 {
        let stat = Process::myself().unwrap().stat().unwrap();
        stat.utime + stat.stime
    }

    #[test]
    fn a_busy_loop_in_this_process_is_counted_as_the_load_generator() {
        let processes = Processes::services();
        let before = processes.sample();
        // 0.3 s of CPU, however long that takes on a busy machine.
        let (start, wanted) = (own_ticks(), procfs::ticks_per_second() * 3 / 10);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut spin = 0u64;
        while own_ticks() - start < wanted && std::time::Instant::now() < deadline {
            for _ in 0..100_000 {
                spin = std::hint::black_box(spin.wrapping_add(1));
            }
        }
        let per_event = before.per_event(&processes.sample(), 1);
        let load = per_event.of(Role::LoadGenerator).unwrap();
        assert!(load >= 300_000.0, "{load} µs");
    }
}
