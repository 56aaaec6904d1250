//! The operator's Flow Service call rate, second by second: a background task reads the operator's
//! `aep_operator_flow_requests_total` every second, so that a window shows whether resync reads are spread
//! over the interval or come in a burst (at start-up, after a restart). The emulator's request log has no
//! timestamps and, at thousands of objects, is too large to fetch every second; the operator's counters are
//! a few hundred bytes. IMS token requests (operation `token`) are counted apart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::metrics::{self, round};

/// One reading: seconds since the sampler started, Flow calls and IMS calls so far (of the process that
/// answered; a restarted operator starts again from 0).
#[derive(Clone, Copy)]
struct Reading {
    at_s: f64,
    flow: f64,
    token: f64,
}

/// A running sampler; [`Sampler::finish`] stops it and summarizes.
pub struct Sampler {
    readings: Arc<Mutex<Vec<Reading>>>,
    task: tokio::task::JoinHandle<()>,
    started: Instant,
    /// The operator process starts after the sampler (a restart): its first reading is all increase.
    /// Otherwise the first reading is the base.
    from_zero: bool,
}

impl Sampler {
    /// Starts reading `metrics_url` once a second (the first reading at once). A failed read (the operator
    /// restarting) is skipped. `from_zero`: the process measured starts after this call.
    pub fn start(http: reqwest::Client, metrics_url: String, from_zero: bool) -> Self {
        let readings = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let shared = readings.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Ok(response) = http.get(&metrics_url).send().await else {
                    continue;
                };
                let Ok(text) = response.text().await else {
                    continue;
                };
                let sample = metrics::parse(&text, &["aep_operator_flow_requests_total"]);
                let (mut flow, mut token) = (0.0, 0.0);
                for ((_, labels), value) in &sample {
                    let is_token = labels.iter().any(|(k, v)| k == "operation" && v == "token");
                    if is_token {
                        token += value;
                    } else {
                        flow += value;
                    }
                }
                shared.lock().unwrap().push(Reading {
                    at_s: started.elapsed().as_secs_f64(),
                    flow,
                    token,
                });
            }
        });
        Self {
            readings,
            task,
            started,
            from_zero,
        }
    }

    /// Stops sampling. Returns the calls per second (each reading's increase over the previous one, divided
    /// by the time between them) and a summary: peak and median rate, the share of all calls made in the
    /// window's first 10 %, and when half and 90 % of them had been made. Calls spread evenly over the window
    /// give a first-10 % share near 0.1; a start-up burst, close to 1.
    pub fn finish(self) -> Value {
        self.task.abort();
        let window = self.started.elapsed().as_secs_f64();
        let readings = self.readings.lock().unwrap().clone();
        summarize(readings, window, self.from_zero)
    }
}

/// See [`Sampler::finish`].
fn summarize(readings: Vec<Reading>, window: f64, from_zero: bool) -> Value {
    {
        let mut per_second = Vec::new();
        let mut cumulative = Vec::new();
        let (mut total, mut tokens) = (0.0, 0.0);
        let mut readings = readings.into_iter();
        let mut previous = if from_zero {
            Reading {
                at_s: 0.0,
                flow: 0.0,
                token: 0.0,
            }
        } else {
            match readings.next() {
                Some(first) => first,
                None => {
                    return json!({"window_s": round(window, 1), "flow_calls": 0, "per_second": []});
                }
            }
        };
        for reading in readings {
            let increase = |now: f64, before: f64| if now >= before { now - before } else { now };
            let flow = increase(reading.flow, previous.flow);
            tokens += increase(reading.token, previous.token);
            total += flow;
            let seconds = (reading.at_s - previous.at_s).max(0.001);
            per_second.push(round(flow / seconds, 1));
            cumulative.push((reading.at_s, total));
            previous = reading;
        }
        let share_by = |fraction: f64| -> Option<f64> {
            (total > 0.0).then(|| {
                cumulative
                    .iter()
                    .find(|(_, calls)| *calls >= fraction * total)
                    .map_or(window, |(at, _)| round(*at, 1))
            })
        };
        let first_tenth = cumulative
            .iter()
            .take_while(|(at, _)| *at <= window * 0.1 + 0.5)
            .last()
            .map_or(0.0, |(_, calls)| *calls);
        let mut ordered = per_second.clone();
        ordered.sort_by(f64::total_cmp);
        json!({
            "window_s": round(window, 1),
            "flow_calls": total,
            "ims_token_calls": tokens,
            "peak_per_s": ordered.last().copied().unwrap_or(0.0),
            "median_per_s": if ordered.is_empty() { 0.0 } else { ordered[ordered.len() / 2] },
            "mean_per_s": round(total / window.max(0.001), 2),
            "share_in_first_tenth": if total > 0.0 { round(first_tenth / total, 2) } else { 0.0 },
            "half_done_after_s": share_by(0.5),
            "ninety_percent_done_after_s": share_by(0.9),
            "per_second": per_second,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readings(calls: &[f64]) -> Vec<Reading> {
        calls
            .iter()
            .enumerate()
            .map(|(second, &flow)| Reading {
                at_s: second as f64,
                flow,
                token: 0.0,
            })
            .collect()
    }

    #[test]
    fn reads_spread_over_the_window_show_a_tenth_early_and_a_flat_rate() {
        // 10 calls a second for 100 s, counted from a base of 500 (the process ran before the window).
        let cumulative: Vec<f64> = (0..=100).map(|s| 500.0 + 10.0 * s as f64).collect();
        let summary = summarize(readings(&cumulative), 100.0, false);
        assert_eq!(summary["flow_calls"], 1000.0);
        assert_eq!(summary["peak_per_s"], 10.0);
        assert_eq!(summary["median_per_s"], 10.0);
        assert!(summary["share_in_first_tenth"].as_f64().unwrap() <= 0.11);
        assert_eq!(summary["ninety_percent_done_after_s"], 90.0);
    }

    #[test]
    fn a_restart_burst_counts_from_zero_and_is_done_early() {
        // A new process: 200 calls a second for 3 s, then nothing for the rest of a 60 s window.
        let mut cumulative = vec![200.0, 400.0, 600.0];
        cumulative.extend(std::iter::repeat_n(600.0, 57));
        let summary = summarize(readings(&cumulative), 60.0, true);
        assert_eq!(summary["flow_calls"], 600.0);
        assert_eq!(summary["share_in_first_tenth"], 1.0);
        assert_eq!(summary["ninety_percent_done_after_s"], 2.0);
        assert!(summary["peak_per_s"].as_f64().unwrap() >= 200.0);
    }
}
