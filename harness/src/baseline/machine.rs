//! A fingerprint of the machine a run was measured on, so that a baseline
//! from another day, runner or a busier moment is not mistaken for a
//! regression: a short fixed CPU probe and a loopback round-trip probe run
//! before the load, with the load average, core count and kernel.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub cores: usize,
    pub kernel: String,
    /// The 1-minute load average before the load started.
    pub load_average: f64,
    /// Median time of a fixed CPU task (SHA-256 of 4 MiB) run on every core
    /// at once, the slowest core's, in milliseconds: a neighbour on one core
    /// of two shows as a slower probe.
    pub cpu_probe_ms: f64,
    /// Median loopback TCP round trip of 64 bytes, in microseconds.
    pub loopback_probe_us: f64,
}

/// How far two fingerprints may differ before the gate stops trusting a
/// comparison between their runs.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineMargin {
    /// The CPU probe may be this much slower (0.3 = 30 %).
    pub cpu: f64,
    /// The loopback probe, likewise.
    pub loopback: f64,
    /// The CPU probe may take this share of the baseline's and no less
    /// (0.5: a machine twice as fast): beyond, a regression could hide.
    pub faster: f64,
}

impl Default for MachineMargin {
    fn default() -> MachineMargin {
        MachineMargin {
            cpu: 0.30,
            loopback: 1.0,
            faster: 0.5,
        }
    }
}

const CPU_ROUNDS: usize = 7;
const LOOPBACK_ROUND_TRIPS: usize = 200;

impl Fingerprint {
    /// Measures this machine now (about a quarter of a second).
    pub async fn measure() -> anyhow::Result<Fingerprint> {
        let cpu_probe_ms = tokio::task::spawn_blocking(cpu_probe).await?;
        let loopback_probe_us = loopback_probe().await?;
        let system = nix::sys::utsname::uname()?;
        Ok(Fingerprint {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kernel: system.release().to_string_lossy().into_owned(),
            load_average: load_average().unwrap_or(0.0),
            cpu_probe_ms,
            loopback_probe_us,
        })
    }

    /// The busier of two measurements of the same run (before and after the
    /// load): a neighbour that started during the run shows in the second.
    pub fn busier(self, other: Fingerprint) -> Fingerprint {
        Fingerprint {
            load_average: self.load_average.max(other.load_average),
            cpu_probe_ms: self.cpu_probe_ms.max(other.cpu_probe_ms),
            loopback_probe_us: self.loopback_probe_us.max(other.loopback_probe_us),
            ..self
        }
    }

    /// How `now` differs from `then` beyond `margin`, in words; empty when
    /// the machines are alike.
    pub fn differences(&self, now: &Fingerprint, margin: &MachineMargin) -> Vec<String> {
        let mut said = Vec::new();
        if self.cores != now.cores {
            said.push(format!("{} cores then, {} now", self.cores, now.cores));
        }
        let ratio = |then: f64, now: f64| now / then.max(f64::MIN_POSITIVE);
        // The load average is only told, never a trigger: it lags by a
        // minute, and the previous run's own load is still in it.
        // Only a slower CPU: a faster one makes nothing look worse (and a
        // baseline saved on a busy machine is faster to beat, which a WORSE
        // verdict does not need excusing for). Seen in the gate test: the
        // saved runs' probes ran beside the previous run's teardown.
        let cpu = ratio(self.cpu_probe_ms, now.cpu_probe_ms);
        if cpu > 1.0 + margin.cpu {
            said.push(format!(
                "the CPU probe took {:.1} ms then, {:.1} ms now (×{cpu:.2}; load average {:.2} then, {:.2} now)",
                self.cpu_probe_ms, now.cpu_probe_ms, self.load_average, now.load_average
            ));
        }
        // Only a slower loopback: a busy machine's is often faster (its
        // cores never sleep), and a faster one makes nothing look worse.
        let loopback = ratio(self.loopback_probe_us, now.loopback_probe_us);
        if loopback > 1.0 + margin.loopback {
            said.push(format!(
                "a loopback round trip took {:.0} µs then, {:.0} µs now (×{loopback:.2})",
                self.loopback_probe_us, now.loopback_probe_us
            ));
        }
        said
    }
}

impl Fingerprint {
    /// How many times slower `now` is than `self`, by the CPU probe and the
    /// cores it has (1 when it is no slower): what it could make a figure
    /// look worse by, at most, in a run that holds its users fixed.
    pub fn slowdown(&self, now: &Fingerprint) -> f64 {
        let cpu = now.cpu_probe_ms / self.cpu_probe_ms.max(f64::MIN_POSITIVE);
        let cores = self.cores as f64 / now.cores.max(1) as f64;
        cpu.max(cores).max(1.0)
    }

    /// How much faster `now` is than `self`, in words, when it is beyond
    /// `margin.faster`: a regression could hide behind the speed-up, so
    /// nothing but a WORSE can be trusted.
    pub fn much_faster(&self, now: &Fingerprint, margin: &MachineMargin) -> Option<String> {
        let ratio = now.cpu_probe_ms / self.cpu_probe_ms.max(f64::MIN_POSITIVE);
        (ratio < margin.faster).then(|| {
            format!(
                "the CPU probe took {:.1} ms then, {:.1} ms now (×{ratio:.2}): this machine is \
                 much faster, and a regression could hide behind the speed-up",
                self.cpu_probe_ms, now.cpu_probe_ms
            )
        })
    }
}

fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The median of a few rounds of hashing 4 MiB on every core at once (the
/// slowest core's time each round): enough to see a slower CPU or a busy
/// neighbour, short enough to run before every suite.
fn cpu_probe() -> f64 {
    let data = vec![0x5au8; 4 << 20];
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let hash = || {
        let started = Instant::now();
        std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&data)));
        started.elapsed().as_secs_f64() * 1000.0
    };
    let mut times: Vec<f64> = (0..CPU_ROUNDS)
        .map(|_| {
            std::thread::scope(|scope| {
                let threads: Vec<_> = (0..cores).map(|_| scope.spawn(hash)).collect();
                threads
                    .into_iter()
                    .map(|t| t.join().unwrap_or(f64::INFINITY))
                    .fold(0.0, f64::max)
            })
        })
        .collect();
    median(&mut times)
}

async fn loopback_probe() -> anyhow::Result<f64> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let echo = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        socket.set_nodelay(true)?;
        let mut buffer = [0u8; 64];
        loop {
            match socket.read_exact(&mut buffer).await {
                Ok(_) => socket.write_all(&buffer).await?,
                Err(_) => return anyhow::Ok(()),
            }
        }
    });
    let mut client = tokio::net::TcpStream::connect(address).await?;
    client.set_nodelay(true)?;
    let mut buffer = [7u8; 64];
    let mut times = Vec::with_capacity(LOOPBACK_ROUND_TRIPS);
    for _ in 0..LOOPBACK_ROUND_TRIPS {
        let started = Instant::now();
        client.write_all(&buffer).await?;
        client.read_exact(&mut buffer).await?;
        times.push(started.elapsed().as_secs_f64() * 1e6);
    }
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(1), echo).await;
    Ok(median(&mut times))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(cpu: f64, load: f64) -> Fingerprint {
        Fingerprint {
            cores: 2,
            kernel: "6.1".into(),
            load_average: load,
            cpu_probe_ms: cpu,
            loopback_probe_us: 30.0,
        }
    }

    #[test]
    fn alike_machines_have_no_differences_and_busy_ones_say_how_much() {
        let margin = MachineMargin::default();
        assert!(
            machine(10.0, 0.2)
                .differences(&machine(11.0, 0.4), &margin)
                .is_empty()
        );
        let said = machine(10.0, 0.2).differences(&machine(19.0, 2.4), &margin);
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(said[0].contains("×1.90"), "{said:?}");
        assert!(said[0].contains("0.20 then, 2.40 now"), "{said:?}");
        // A load average left by the previous run alone is no difference.
        assert!(
            machine(10.0, 0.2)
                .differences(&machine(10.5, 1.9), &margin)
                .is_empty()
        );
        // Nor a faster CPU probe.
        assert!(
            machine(10.0, 1.4)
                .differences(&machine(7.1, 0.8), &margin)
                .is_empty()
        );
        // Nor a faster loopback.
        let mut quick = machine(10.0, 0.2);
        quick.loopback_probe_us = 5.0;
        assert!(machine(10.0, 0.2).differences(&quick, &margin).is_empty());
    }

    #[tokio::test]
    async fn this_machine_measures() {
        let here = Fingerprint::measure().await.unwrap();
        assert!(
            here.cpu_probe_ms > 0.0 && here.loopback_probe_us > 0.0,
            "{here:?}"
        );
        assert!(here.cores >= 1 && !here.kernel.is_empty());
    }
}
