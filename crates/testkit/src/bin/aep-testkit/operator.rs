//! The operator under measurement as a child process of the benchmark: the benchmark starts it (after the
//! API-server baseline's setup, so that no operator runs during the baseline), restarts it mid-run to measure
//! the start-up burst, and stops it. Its pid is kept in a file so that `tools/bench.sh` can stop a process left
//! behind by a benchmark that was itself killed with SIGKILL.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

use crate::metrics::{self, ProcessSample};

/// How to start the operator: binary, arguments (the `run` command and its flags), kubeconfig, log.
pub struct OperatorCommand {
    pub binary: PathBuf,
    pub args: Vec<String>,
    pub kubeconfig: PathBuf,
    pub log: PathBuf,
    pub pid_file: PathBuf,
    /// `/readyz` of its metrics listener.
    pub readyz_url: String,
}

/// A running operator process; SIGKILLed if dropped without [`OperatorProcess::stop`] (an error path).
pub struct OperatorProcess {
    child: Child,
    pub pid: u32,
}

impl OperatorCommand {
    /// Starts the operator (its log appended to, so that a restart keeps the first process's lines) and waits
    /// until `/readyz` answers 200, at most `bound`. Returns the process and how long it took to be ready.
    pub async fn start(
        &self,
        http: &reqwest::Client,
        bound: Duration,
    ) -> anyhow::Result<(OperatorProcess, f64)> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        let started = Instant::now();
        let child = Command::new(&self.binary)
            .args(&self.args)
            .env("KUBECONFIG", &self.kubeconfig)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        let pid = child.id().context("the operator exited at once")?;
        std::fs::write(&self.pid_file, format!("{pid}\n"))?;
        let mut process = OperatorProcess { child, pid };
        loop {
            if let Some(status) = process.child.try_wait()? {
                bail!(
                    "the operator exited during start-up ({status}); see {}",
                    self.log.display()
                );
            }
            let ready = http
                .get(&self.readyz_url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok((process, started.elapsed().as_secs_f64()));
            }
            if started.elapsed() > bound {
                bail!(
                    "the operator did not answer {} within {bound:?}; see {}",
                    self.readyz_url,
                    self.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl OperatorProcess {
    /// Memory and CPU now; an error once the process is gone.
    pub fn sample(&self) -> anyhow::Result<ProcessSample> {
        metrics::process(self.pid)
            .with_context(|| format!("the operator (pid {}) is gone", self.pid))
    }

    /// Stops it as Kubernetes does: SIGTERM, then SIGKILL after 15 s. Returns the last sample taken while it
    /// still ran (its peak RSS and total CPU) and how long the stop took.
    pub async fn stop(mut self) -> anyhow::Result<(ProcessSample, f64)> {
        let last = self.sample()?;
        let started = Instant::now();
        // No signal API in the test kit's dependencies: kill(1), as the end-to-end harness does.
        std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .context("running kill -TERM")?;
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                crate::bench::log(&format!(
                    "the operator (pid {}) did not stop within 15 s of SIGTERM: SIGKILL",
                    self.pid
                ));
                self.child.kill().await?;
            }
        }
        Ok((last, started.elapsed().as_secs_f64()))
    }
}
