//! `BERTRT_CPU_PROFILE=1`: wall time per kind of op, summed over every run of a backend
//! and printed to stderr when the backend is dropped (with the model). For finding where a
//! forward's time goes without a profiler; off, it costs one branch per op.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::graph::Op;

/// The environment variable that turns the summary on.
const PROFILE_ENV: &str = "BERTRT_CPU_PROFILE";

/// Time per op label; `None` when profiling is off.
#[derive(Debug)]
pub struct OpTimes(Option<Mutex<BTreeMap<String, (Duration, u64)>>>);

impl OpTimes {
    /// On when `BERTRT_CPU_PROFILE` is set to anything but empty or "0".
    pub fn from_env() -> Self {
        let on = std::env::var(PROFILE_ENV).is_ok_and(|v| !v.is_empty() && v != "0");
        OpTimes(on.then(Mutex::default))
    }

    /// Whether ops are being timed.
    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// Adds one op's time (no-op when off).
    pub fn add(&self, op: &Op, took: Duration) {
        let Some(times) = &self.0 else { return };
        if let Ok(mut times) = times.lock() {
            let entry = times.entry(op.to_string()).or_default();
            entry.0 += took;
            entry.1 += 1;
        }
    }

    /// The summary table, slowest first (empty when off or nothing ran).
    pub fn summary(&self) -> String {
        let Some(Ok(times)) = self.0.as_ref().map(Mutex::lock) else {
            return String::new();
        };
        let total: Duration = times.values().map(|t| t.0).sum();
        if total.is_zero() {
            return String::new();
        }
        let mut rows: Vec<_> = times.iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1 .0));
        let mut out = format!("{PROFILE_ENV}: {:.3} ms over all ops\n", ms(total));
        out += &format!(
            "{:>10} {:>6} {:>8} {:>10}  op\n",
            "ms", "%", "calls", "ms/call"
        );
        for (name, &(took, calls)) in rows {
            out += &format!(
                "{:>10.3} {:>6.1} {:>8} {:>10.4}  {name}\n",
                ms(took),
                100.0 * took.as_secs_f64() / total.as_secs_f64(),
                calls,
                ms(took) / calls as f64,
            );
        }
        out
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{op, BufId};
    use crate::weights::WeightId;

    #[test]
    fn sums_per_label_slowest_first() {
        let times = OpTimes(Some(Mutex::default()));
        let linear = |n| {
            Op::Linear(op::Linear {
                x: BufId(0),
                w: WeightId(0),
                b: None,
                act: None,
                rows: 1,
                k: 4,
                n,
                out: BufId(1),
            })
        };
        times.add(&linear(8), Duration::from_millis(1));
        times.add(&linear(8), Duration::from_millis(2));
        times.add(&linear(2), Duration::from_millis(1));
        let summary = times.summary();
        let lines: Vec<&str> = summary.lines().collect();
        assert!(lines[0].contains("4.000 ms over all ops"), "{summary}");
        assert!(
            lines[2].contains("75.0") && lines[2].ends_with("linear 4->8"),
            "{summary}"
        );
        assert!(lines[2].contains(" 2 "), "two calls: {summary}");
        assert!(lines[3].ends_with("linear 4->2"), "{summary}");
        assert_eq!(OpTimes(None).summary(), "");
    }
}
