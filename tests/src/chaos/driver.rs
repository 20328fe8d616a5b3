//! The load driver: sends a workload over HTTP the way the senders do, one
//! request in flight per subject (so "newest" is well defined) and many
//! subjects at once, and records what each sender was told.
//!
//! LT resends until it gets 200 (on 503 or a connection error, after a
//! short backoff); LINA never resends, so a LINA call that did not get 200
//! is only recorded as not acknowledged (it may still have been applied:
//! a gateway can die after spooling or publishing, before answering).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};

use super::workload::{Sender, Workload};
use crate::app::{LINA_SECRET, TEST_TOKEN};

/// How long LT keeps resending one event before the driver gives up (a
/// give-up fails the scenario).
const LT_PATIENCE: Duration = Duration::from_secs(90);

/// What the senders were told, per subject and event.
#[derive(Debug, Default)]
pub struct Results {
    /// `acked[subject][event]`: answered 200.
    pub acked: Vec<Vec<bool>>,
    /// LT attempts beyond the first (503s and connection errors).
    pub lt_resends: usize,
    /// LT events still without a 200 after `LT_PATIENCE`.
    pub lt_gave_up: usize,
    /// LINA calls not answered 200, by what they got instead.
    pub lina_refused: std::collections::BTreeMap<String, usize>,
    /// Answers no sender should ever get here (a 4xx: a bug in the test or the gateway).
    pub unexpected: Vec<String>,
}

impl Results {
    pub fn sent(&self) -> usize {
        self.acked.iter().map(Vec::len).sum()
    }

    pub fn acknowledged(&self) -> usize {
        self.acked.iter().flatten().filter(|acked| **acked).count()
    }
}

/// How far the load is, for the fault to start at the right moment.
#[derive(Debug, Default)]
pub struct Progress {
    done: AtomicUsize,
    total: AtomicUsize,
}

impl Progress {
    /// Waits until `fraction` of the events have been answered (or given up on).
    pub async fn reached(&self, fraction: f64) {
        loop {
            let total = self.total.load(Ordering::Relaxed);
            if total > 0 && self.done.load(Ordering::Relaxed) as f64 >= fraction * total as f64 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub struct Driver {
    pub http: reqwest::Client,
    /// `http://127.0.0.1:<port>` of the gateway the senders post to.
    pub base: String,
    /// Subjects with a request in flight at once, shared between the
    /// senders by their share of the events, each sender with lanes of its
    /// own: LT and LINA are separate systems, and LT resending through an
    /// outage must not hold back LINA's calls.
    pub concurrency: usize,
    /// New events per second (resends are not counted), so that the load
    /// spans the fault instead of finishing before it.
    pub rate: u32,
    pub progress: std::sync::Arc<Progress>,
}

/// One subject's state in the driver's queue: which event comes next.
type Next = (usize, usize);

/// One sender's side of the load: its subjects whose turn it is, and its
/// own pace (LT resending through an outage does not slow LINA down, nor
/// does LINA catch up by taking LT's share).
struct SenderLoad {
    ready: Mutex<VecDeque<Next>>,
    pacer: tokio::sync::Mutex<tokio::time::Interval>,
}

struct Shared<'a> {
    workload: &'a Workload,
    results: Mutex<Results>,
}

impl Driver {
    pub fn new(base: String, rate: u32) -> Driver {
        Driver {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
            base,
            concurrency: 16,
            rate,
            progress: Default::default(),
        }
    }

    /// Sends every event of `workload`; returns what the senders were told.
    pub async fn run(&self, workload: &Workload) -> Results {
        let total = workload.events().max(1);
        self.progress.total.store(total, Ordering::Relaxed);
        let shared = Shared {
            workload,
            results: Mutex::new(Results {
                acked: workload
                    .subjects
                    .iter()
                    .map(|subject| vec![false; subject.events.len()])
                    .collect(),
                ..Results::default()
            }),
        };
        let senders = [Sender::Lt, Sender::Lina].map(|sender| self.sender_load(workload, sender));
        let mut lanes = Vec::new();
        for (sender, load) in [Sender::Lt, Sender::Lina].iter().zip(&senders) {
            let share = events_of(workload, *sender) as f64 / total as f64;
            let count = ((self.concurrency as f64 * share).round() as usize).max(1);
            lanes.extend((0..count).map(|_| self.lane(&shared, load)));
        }
        futures_util::future::join_all(lanes).await;
        shared.results.into_inner().unwrap()
    }

    /// `sender`'s subjects, paced at its share of the rate.
    fn sender_load(&self, workload: &Workload, sender: Sender) -> SenderLoad {
        let share = events_of(workload, sender) as f64 / workload.events().max(1) as f64;
        let rate = (f64::from(self.rate) * share).max(1.0);
        let mut pacer = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        pacer.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let subjects = workload.subjects.iter().enumerate();
        SenderLoad {
            ready: Mutex::new(
                subjects
                    .filter(|(_, subject)| subject.sender == sender)
                    .map(|(n, _)| (n, 0))
                    .collect(),
            ),
            pacer: tokio::sync::Mutex::new(pacer),
        }
    }

    /// Takes the next subject whose turn it is, sends its next event, puts
    /// it back at the end: a subject is never in two lanes at once.
    async fn lane(&self, shared: &Shared<'_>, load: &SenderLoad) {
        loop {
            let Some((subject, event)) = load.ready.lock().unwrap().pop_front() else {
                return;
            };
            load.pacer.lock().await.tick().await;
            let who = &shared.workload.subjects[subject];
            let body = &who.events[event].body;
            let acked = match who.sender {
                Sender::Lt => self.send_lt(body, &shared.results).await,
                Sender::Lina => self.send_lina(body, &shared.results).await,
            };
            shared.results.lock().unwrap().acked[subject][event] = acked;
            self.progress.done.fetch_add(1, Ordering::Relaxed);
            if event + 1 < who.events.len() {
                load.ready.lock().unwrap().push_back((subject, event + 1));
            }
        }
    }

    /// As LT does: resends until 200.
    async fn send_lt(&self, body: &str, results: &Mutex<Results>) -> bool {
        let deadline = Instant::now() + LT_PATIENCE;
        let mut backoff = Duration::from_millis(50);
        loop {
            let answer = self
                .http
                .post(format!("{}/webhooks/lt", self.base))
                .bearer_auth(TEST_TOKEN)
                .header("Content-Type", "application/json")
                .body(body.to_owned())
                .send()
                .await;
            match answer.map(|response| response.status().as_u16()) {
                Ok(200) => return true,
                Ok(503) | Err(_) => {}
                Ok(status) => {
                    results
                        .lock()
                        .unwrap()
                        .unexpected
                        .push(format!("LT answered {status}"));
                    return false;
                }
            }
            if Instant::now() >= deadline {
                results.lock().unwrap().lt_gave_up += 1;
                return false;
            }
            results.lock().unwrap().lt_resends += 1;
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    /// As LINA does: once, whatever the answer.
    async fn send_lina(&self, body: &str, results: &Mutex<Results>) -> bool {
        let answer = self
            .http
            .post(format!("{}/webhooks/lina/{LINA_SECRET}", self.base))
            .header("Content-Type", "application/json")
            .body(body.to_owned())
            .send()
            .await;
        let refused = match answer.map(|response| response.status().as_u16()) {
            Ok(200) => return true,
            // The gateway was down or dying, or the spool full: LINA's loss.
            Ok(503) => "503".to_owned(),
            Err(error) => lina_error(&error),
            Ok(status) => {
                results
                    .lock()
                    .unwrap()
                    .unexpected
                    .push(format!("LINA answered {status}"));
                return false;
            }
        };
        *results
            .lock()
            .unwrap()
            .lina_refused
            .entry(refused)
            .or_default() += 1;
        false
    }
}

/// What kind of failure a LINA call met, for the report.
fn lina_error(error: &reqwest::Error) -> String {
    let kind = if error.is_connect() {
        "connect"
    } else if error.is_timeout() {
        "timeout"
    } else if error.is_request() {
        "request"
    } else {
        "other"
    };
    let mut source = std::error::Error::source(error);
    let mut innermost = String::new();
    while let Some(cause) = source {
        innermost = cause.to_string();
        source = cause.source();
    }
    format!("{kind} error ({innermost})")
}

fn events_of(workload: &Workload, sender: Sender) -> usize {
    workload
        .subjects
        .iter()
        .filter(|subject| subject.sender == sender)
        .map(|subject| subject.events.len())
        .sum()
}
