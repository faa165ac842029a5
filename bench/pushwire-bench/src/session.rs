//! One measuring invocation: the servers and experiments the command line chose, run
//! in turn under one time budget and one progress bar, recorded as one [`Run`] in
//! `results.json` (the churn check: `churn.json`) with its reports beside it.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::fleet::FleetPlan;
use crate::matrix::run::Step;
use crate::network::NetworkRun;
use crate::record::{Http, Machine, Outcome, Run, Transport};
use crate::scenario::Load;
use crate::servers::{self, Server};
use crate::storm::StormPlan;
use crate::{churn, fleet, flood, matrix, network, progress, report, scale_out, storm};

/// When and where an invocation measures.
pub(crate) struct Session {
    begun: Instant,
    /// No new scenario starts after this.
    deadline: Instant,
    max_minutes: f64,
    /// UTC, ISO 8601.
    date: String,
    machine: Machine,
    /// Where the records and reports go.
    out: PathBuf,
}

/// What a measuring run does, in this order: the loopback matrix's steps, or the
/// network matrix, on every server; then the scale-out scenario on servers of its own.
pub(crate) struct Plan {
    pub servers: Vec<Server>,
    pub steps: Vec<Step>,
    pub idle_hold: Duration,
    pub network: Option<NetworkRun>,
    pub transports: Vec<Transport>,
    /// The loopback matrix's HTTP settings, the first the whole matrix's (see
    /// [`matrix::run::plan`]); recorded in the run when other than HTTP/1.1 alone.
    pub https: Vec<Http>,
    /// The pushwire binary (built with `--features redis`) and the loads.
    pub scale_out: Option<(PathBuf, Vec<Load>)>,
    /// The run record's `matrix` field.
    pub label: String,
    pub client_worker_threads: usize,
    pub client_nofile_limit: u64,
}

impl Session {
    /// Starts the clock, describes the machine and creates `out`.
    pub(crate) fn begin(date: String, out: PathBuf, max_minutes: f64) -> Result<Session, String> {
        let begun = Instant::now();
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(Session {
            begun,
            deadline: begun + Duration::from_secs_f64(max_minutes * 60.0),
            max_minutes,
            date,
            machine: servers::describe_machine(),
            out,
        })
    }

    /// The churn check against `server`: writes `churn.json` and `churn.md`, prints the
    /// table, and returns the JSON's path.
    pub(crate) async fn churn(
        self,
        server: &Server,
        transports: &[Transport],
        connections: u64,
    ) -> Result<PathBuf, String> {
        let outcomes = churn::run::run(server, transports, connections).await;
        let json = self.out.join("churn.json");
        let record = serde_json::json!({
            "date": self.date, "machine": self.machine, "server": server.facts, "outcomes": outcomes
        });
        std::fs::write(&json, serde_json::to_string_pretty(&record).expect("serializes"))
            .map_err(|e| format!("{}: {e}", json.display()))?;
        let md = churn::report::write(&outcomes, &json, &command()).map_err(|e| e.to_string())?;
        println!("{md}");
        Ok(json)
    }

    /// The restart storm with pushwire from `binary`: writes `storm.json`, `storm.md` and
    /// the plots, prints the tables, and returns the JSON's path.
    pub(crate) async fn storm(self, binary: &Path, plan: &StormPlan) -> Result<PathBuf, String> {
        let progress = progress::bar(storm::run::trials(plan) as u64);
        let outcomes = storm::run::run(binary, plan, &progress, self.deadline).await?;
        progress.finish_and_clear();
        let json = self.record("storm.json", binary, &outcomes)?;
        let md = storm::report::write(&outcomes, &self.out, &json.display().to_string(), &command())?;
        println!("{md}");
        Ok(json)
    }

    /// Writes `name` into the output folder: the run's facts (pushwire from `binary`)
    /// and `outcomes`; returns its path.
    fn record(&self, name: &str, binary: &Path, outcomes: &impl serde::Serialize) -> Result<PathBuf, String> {
        let json = self.out.join(name);
        let record = serde_json::json!({
            "date": self.date,
            "machine": self.machine,
            "command": command(),
            "pushwire": servers::version_of(&servers::Launch::Pushwire { binary: binary.to_owned(), bus: None, tls: false }),
            "wall_time_s": self.begun.elapsed().as_secs_f64(),
            "outcomes": outcomes,
        });
        std::fs::write(&json, serde_json::to_string_pretty(&record).expect("serializes"))
            .map_err(|e| format!("{}: {e}", json.display()))?;
        Ok(json)
    }

    /// The fleet of `plan` with pushwire from `binary`: writes `fleet.json` and
    /// `fleet.md`, prints the tables, and returns the JSON's path.
    pub(crate) async fn fleet(self, binary: &Path, plan: &FleetPlan) -> Result<PathBuf, String> {
        let progress = progress::bar(plan.instances.len() as u64);
        let outcomes = fleet::run::run(binary, plan, &progress, self.deadline).await?;
        progress.finish_and_clear();
        let json = self.record("fleet.json", binary, &outcomes)?;
        let md = fleet::report::write(&outcomes, &self.out, &json.display().to_string(), &command())?;
        println!("{md}");
        Ok(json)
    }

    /// The publish flood with pushwire from `binary`, `subscribers` per transport.
    pub(crate) async fn flood(
        self,
        binary: &Path,
        transports: &[Transport],
        subscribers: usize,
    ) -> Result<PathBuf, String> {
        let progress = progress::bar(2 * transports.len() as u64);
        let json = flood::run(binary, transports, subscribers, &self.out, &progress, self.deadline).await;
        progress.finish_and_clear();
        json
    }

    /// Runs `plan`, writes `results.json` and its reports, and returns the JSON's path.
    /// A scale-out part that cannot start (no redis-server, a binary without the
    /// feature) fails the run, after the other results are written.
    pub(crate) async fn measure(mut self, plan: Plan) -> Result<PathBuf, String> {
        let Plan { mut servers, steps, idle_hold, network, transports, https, scale_out, label, .. } = plan;
        let network_steps = network.as_ref().map_or(0, |n| network::run::steps(&n.matrix, &n.profiles, &transports));
        let scale_out_steps = scale_out.as_ref().map_or(0, |(_, loads)| loads.len() * 2);
        let progress = progress::bar(((steps.len() + network_steps) * servers.len() + scale_out_steps) as u64);
        let (deadline, max_minutes) = (self.deadline, self.max_minutes);
        let mut outcomes: Vec<Outcome> =
            matrix::run::run(&mut servers, &steps, idle_hold, &progress, deadline, max_minutes).await;
        if let Some(network_run) = &network {
            outcomes.extend(network::run::run(&mut servers, network_run, &transports, &progress, deadline).await);
        }
        for server in &mut servers {
            server.stop();
        }
        let mut server_facts: Vec<_> = servers.iter().map(|s| s.facts.clone()).collect();
        let mut failure = None;
        if let Some((binary, loads)) = &scale_out {
            match scale_out::run::run(binary, loads, &progress, deadline).await {
                Ok((facts, measured)) => {
                    server_facts.extend(facts);
                    outcomes.extend(measured);
                }
                Err(e) => failure = Some(format!("scale-out: {e}")),
            }
        }
        progress.finish_and_clear();
        self.machine.load_average_after = servers::load_average();
        if outcomes.is_empty()
            && let Some(failure) = failure
        {
            return Err(failure);
        }
        let run = Run {
            tool: format!("pushwire-bench {}", env!("CARGO_PKG_VERSION")),
            date: self.date,
            command: command(),
            matrix: label,
            machine: self.machine,
            client_worker_threads: plan.client_worker_threads,
            client_nofile_limit: plan.client_nofile_limit,
            servers: server_facts,
            outcomes,
            wall_time_s: self.begun.elapsed().as_secs_f64(),
            // HTTP/1.1 alone is what a run without the field means.
            http: if https == [Http::H1] || steps.is_empty() { Vec::new() } else { https },
        };
        let json_path = write(&run, &self.out)?;
        match failure {
            Some(failure) => Err(format!("{failure} (the other results are in {})", json_path.display())),
            None => Ok(json_path),
        }
    }
}

/// Writes `results.json` and the reports generated from it into `out`.
fn write(run: &Run, out: &Path) -> Result<PathBuf, String> {
    let json_path = out.join("results.json");
    let json = serde_json::to_string_pretty(run).expect("the run serializes");
    std::fs::write(&json_path, json).map_err(|e| format!("{}: {e}", json_path.display()))?;
    report::write(run, out, &json_path.display().to_string()).map_err(|e| e.to_string())?;
    Ok(json_path)
}

/// The command line of this invocation, as the records cite it.
fn command() -> String {
    std::env::args().collect::<Vec<_>>().join(" ")
}
