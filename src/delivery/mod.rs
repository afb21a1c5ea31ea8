//! Delivery: one worker per recipient claims due deliveries and sends each stored projected body.
//!
//! A worker hands its deliveries over through an [`Outbound`]: an HTTP POST ([`client`]) or a
//! NATS JetStream publication ([`nats`]); leases, caps, backoff, breakers, dead letters and the
//! audit are the same for both. Pull recipients have no worker: their [`mailbox`] waits for them.
//! Every delivery is signed with the gateway's key, once per attempt, over its stored body and
//! the facts fixed at acceptance ([`signature`]), so a retry or a replay carries the same bytes.
//!
//! Each recipient has its own worker, client, circuit breaker and concurrency cap, so a slow or
//! dead recipient only ever occupies its own slots: the others keep their pace. Workers lease
//! deliveries from the store (see [`crate::store::Store::claim_due`]); a worker that dies leaves
//! leases that expire, and the delivery is claimed again, here or in another process. A fresh
//! record's delivery is offered to its worker as the record commits and, taken, reaches it
//! without a claim ([`handoff`]); a declined one wakes the worker once committed. A poll interval
//! covers work from other processes and retries coming due. The results of the attempts that
//! end together are written in one store call ([`recorder`]).
//!
//! **Invariant:** a delivery's body is the one stored at acceptance; nothing here re-projects.

pub mod backoff;
pub mod batch;
pub mod breaker;
pub mod client;
pub mod handoff;
pub mod mailbox;
pub mod nats;
pub mod recorder;
pub mod signature;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use crate::audit::notary::Notary;
use crate::clock;
use crate::ids::PartnerId;
use crate::store::{AttemptResult, AttemptUpdate, ClaimRequest, ClaimWitness, ClaimedDelivery, Store, Taker};
use crate::telemetry::events::{BacklogObserved, DeliveryAttempted, DeliveryHandedOver, RecipientRemoved};
use crate::telemetry::trace::{Hop, HopKind, TraceContext};
use crate::telemetry::{DeliveryOutcome, Metrics};
use backoff::{Backoff, Failure};
use batch::{BatchRecord, BatchSettings};
use breaker::{Admission, Breaker};
use client::{AttemptOutcome, RecipientClient};
pub use mailbox::{InboxSettings, Mailboxes};
use nats::{NatsCredentials, NatsEndpoint, NatsPublisher};
use recorder::{InFlight, Recorder};
use tracing::Instrument;

/// Retry policy and worker settings for deliveries.
/// How every recipient is delivered to (`[delivery]`).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub max_attempts: u32,
    pub max_age: Duration,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub attempt_timeout: Duration,
    pub lease: Duration,
    pub poll_interval: Duration,
    pub concurrency_per_recipient: usize,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
    pub ca_files: Vec<PathBuf>,
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// How pull recipients take their deliveries.
    pub inbox: InboxSettings,
    /// Sign every delivery (`Passerelle-Signature`, or an inbox delivery's `signature`).
    pub sign: bool,
}

impl DeliverySettings {
    /// The retry policy: the same for push attempts and pull recipients' refusals.
    pub fn backoff(&self) -> Backoff {
        Backoff {
            initial: self.initial_backoff,
            max: self.max_backoff,
            max_attempts: self.max_attempts,
            max_age: self.max_age,
        }
    }
}

/// How the gateway reaches a partner that receives records.
#[derive(Debug, Clone)]
pub struct DeliveryEndpoint {
    /// Base URL; a record of type `T` goes to `{endpoint}/T`.
    pub endpoint: String,
    /// CA bundle used to verify the recipient's certificate (HTTPS endpoints).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key the gateway presents to this recipient.
    pub client_cert_file: Option<PathBuf>,
    pub client_key_file: Option<PathBuf>,
    /// Environment variable holding a bearer token for this recipient.
    pub bearer_token_env: Option<String>,
    pub timeout: Duration,
    /// Deliveries in flight to this recipient at once (POSTs, for a batch recipient).
    pub concurrency: usize,
    /// Several records per POST, when the recipient asks for it (`batch`).
    pub batch: Option<BatchSettings>,
}

/// How a recipient takes its deliveries (`[partner.delivery] mode`).
#[derive(Debug, Clone)]
pub enum DeliveryMode {
    /// The gateway POSTs each delivery to the recipient's endpoint.
    Push(DeliveryEndpoint),
    /// The recipient takes its deliveries from its mailbox over the partner API
    /// (`GET /v1/inbox`), from behind a firewall that lets no connection in.
    Pull,
    /// The gateway publishes each delivery to a NATS JetStream stream.
    Nats(NatsEndpoint),
}

impl DeliveryMode {
    /// The endpoint the gateway connects to, for a push recipient.
    pub fn endpoint(&self) -> Option<&DeliveryEndpoint> {
        match self {
            DeliveryMode::Push(endpoint) => Some(endpoint),
            DeliveryMode::Pull | DeliveryMode::Nats(_) => None,
        }
    }

    /// `push`, `pull` or `nats`, as the configuration writes it.
    pub fn as_str(&self) -> &'static str {
        match self {
            DeliveryMode::Push(_) => "push",
            DeliveryMode::Pull => "pull",
            DeliveryMode::Nats(_) => "nats",
        }
    }

    /// The files holding this recipient's secrets: the key of the gateway's certificate toward
    /// it, and a NATS credentials file.
    pub fn secret_files(&self) -> Vec<PathBuf> {
        match self {
            DeliveryMode::Push(endpoint) => endpoint.client_key_file.iter().cloned().collect(),
            DeliveryMode::Pull => Vec::new(),
            DeliveryMode::Nats(endpoint) => {
                let creds = match &endpoint.auth {
                    nats::NatsAuth::CredsFile(file) => Some(file.clone()),
                    _ => None,
                };
                endpoint.client_key_file.iter().cloned().chain(creds).collect()
            }
        }
    }
}

/// What a configuration puts in force for delivery.
#[derive(Debug, Clone)]
pub struct DeliveryPlan {
    pub settings: DeliverySettings,
    pub recipients: Vec<PlannedRecipient>,
}

/// One recipient of a plan.
#[derive(Debug, Clone)]
pub struct PlannedRecipient {
    pub id: PartnerId,
    pub transport: Transport,
    /// One delivery in flight at a time, in acceptance order (an agreement asks it).
    pub ordered: bool,
}

/// How the gateway hands a recipient its deliveries.
#[derive(Debug, Clone)]
pub enum Transport {
    /// A worker POSTs each delivery to the endpoint.
    Http {
        endpoint: DeliveryEndpoint,
        /// The TLS client configuration for this recipient (its CAs, the gateway's certificate).
        tls: Arc<rustls::ClientConfig>,
    },
    /// The deliveries wait in the recipient's mailbox until it takes them.
    Mailbox,
    /// A worker publishes each delivery to the recipient's NATS server.
    Nats {
        endpoint: NatsEndpoint,
        /// The TLS client configuration toward the server (its CAs, the gateway's certificate).
        tls: Arc<rustls::ClientConfig>,
        /// The credentials file's contents, when the endpoint names one.
        credentials: Option<NatsCredentials>,
        /// The record types it receives, whose subjects are checked for a stream at start.
        record_types: BTreeSet<String>,
    },
}

/// How a worker hands a delivery over: the seam between the worker and the wire.
pub enum Outbound {
    /// POSTed to the recipient's endpoint.
    Http(RecipientClient),
    /// Published on the recipient's NATS server, acknowledged by JetStream.
    Nats(NatsPublisher),
}

impl Outbound {
    /// Sends one stored projected body, with its `signature` if it is signed, as the hop
    /// `trace` of its record's trace, returning the outcome and how long it took.
    pub async fn send(
        &self,
        delivery: &ClaimedDelivery,
        signature: Option<&str>,
        trace: &TraceContext,
    ) -> (AttemptOutcome, Duration) {
        match self {
            Outbound::Http(client) => client.send(delivery, signature, trace).await,
            Outbound::Nats(publisher) => publisher.send(delivery, signature, trace).await,
        }
    }

    /// Opens what can be opened before the first delivery (the NATS connection).
    async fn open(&self) {
        if let Outbound::Nats(publisher) = self {
            publisher.open().await;
        }
    }
}

/// How much longer than an attempt a delivery's lease must last (the result is recorded after it).
pub const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// What the gateway keeps per recipient: shared by its delivery worker and by request/response
/// calls to it.
pub struct Recipient {
    pub id: String,
    /// Wakes the worker when new deliveries are committed or replayed.
    pub wake: Notify,
    /// Kept across reloads (unless its settings change): a reload does not forget that a
    /// recipient is down.
    pub breaker: Arc<Breaker>,
    pub outbound: Outbound,
    /// Caps the requests in flight to this recipient (its slots) and, as many again, the attempts
    /// whose results wait for the store. Kept across reloads while the cap is the same, so the
    /// attempts a retired worker still has in flight count against the new worker's cap.
    slots: Arc<Semaphore>,
    recording: Arc<Semaphore>,
    concurrency: usize,
    /// Deliveries handed over while every slot was busy, in line for the next to free; kept
    /// across reloads, so a retiring worker's line still goes before the new worker's work.
    waiting: Arc<std::sync::Mutex<handoff::Waiting>>,
    /// Whether its worker takes hand-offs ([`handoff`]); kept across reloads.
    handing: Arc<handoff::Handing>,
}

impl Recipient {
    /// The HTTP client of a push recipient: what request/response calls go through.
    pub fn http(&self) -> Option<&RecipientClient> {
        match &self.outbound {
            Outbound::Http(client) => Some(client),
            Outbound::Nats(_) => None,
        }
    }
}

/// Every configured recipient, by id: the set in force, swapped whole by a reload.
#[derive(Clone, Default)]
pub struct Recipients {
    by_id: Arc<ArcSwap<HashMap<String, Arc<Recipient>>>>,
}

impl Recipients {
    /// Tells `recipient`'s worker there is new work.
    pub fn wake(&self, recipient: &str) {
        if let Some(r) = self.by_id.load().get(recipient) {
            r.wake.notify_one();
        }
    }

    pub fn get(&self, recipient: &str) -> Option<Arc<Recipient>> {
        self.by_id.load().get(recipient).cloned()
    }

    /// The ids of the recipients in force.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.by_id.load().keys().cloned().collect();
        ids.sort();
        ids
    }
}

/// The running delivery workers: one generation per configuration. A reload starts a new
/// generation from the new configuration and tells the old one to stop claiming; the old
/// workers finish the attempts they have in flight (under the settings they started with) and
/// exit. Leases keep the two generations from sending the same delivery, and an ordered
/// recipient's head stays leased until its attempt ends, so order holds across the switch.
pub struct Dispatcher {
    /// Push and NATS recipients: their workers' wake-ups, breakers and clients.
    pub recipients: Recipients,
    /// Pull recipients' mailboxes.
    pub mailboxes: Mailboxes,
    /// The workers in force that take hand-offs (neither ordered nor batched), by recipient; not
    /// kept alive by this (a worker's recorder ends with the last reference to it).
    takers: ArcSwap<HashMap<String, Weak<Worker>>>,
    store: Arc<dyn Store>,
    metrics: Metrics,
    /// Holds the key deliveries are signed with (the audit key, fixed for the process).
    notary: Arc<Notary>,
    /// Names this process's leases; a generation number is added per worker.
    instance: String,
    shutdown: watch::Receiver<bool>,
    workers: std::sync::Mutex<Generation>,
}

struct Generation {
    number: u64,
    /// Tells this generation's workers to stop claiming.
    stop: watch::Sender<bool>,
    /// Every worker of every generation still running, and the backlog observer.
    tasks: JoinSet<()>,
}

struct Worker {
    recipient: Arc<Recipient>,
    ordered: bool,
    /// Several records per POST (a push recipient that asks for it, and is not ordered).
    batch: Option<BatchSettings>,
    /// A unique name for this worker's leases.
    worker_id: String,
    /// Caps the requests in flight to this recipient; claims never exceed the free slots and
    /// free places in line.
    slots: Arc<Semaphore>,
    /// Caps the attempts whose request has ended and whose result waits for the store.
    recording: Arc<Semaphore>,
    concurrency: usize,
    store: Arc<dyn Store>,
    /// Writes the results of the attempts that end together in one store call.
    recorder: Recorder,
    metrics: Metrics,
    settings: DeliverySettings,
    backoff: Backoff,
    /// The key each delivery is signed with, unless `[delivery] sign = false`.
    signer: Option<Arc<Notary>>,
    /// Whether it takes hand-offs ([`handoff`]): neither ordered nor batched.
    takes_handoffs: bool,
    /// Whether deliveries may wait in line for a slot ([`handoff::line_fits_lease`]): hand-offs
    /// and, if it takes them, what it claims.
    line: bool,
    /// Where its attempts run, also when a hand-off starts one from the store's writer thread.
    runtime: tokio::runtime::Handle,
    /// Its attempts started and not ended (results written included), and a wake-up as each
    /// ends: what a retiring worker waits for.
    running: AtomicUsize,
    attempt_ended: Notify,
    /// Its generation was retired by a reload: it stops claiming and takes no more offers.
    retired: watch::Receiver<bool>,
    /// The gateway stops: the same.
    shutdown: watch::Receiver<bool>,
}

impl Dispatcher {
    /// Starts one worker per recipient of `plan`, signing with `notary`'s key, and the backlog
    /// gauge updater.
    pub fn start(
        plan: &DeliveryPlan,
        store: Arc<dyn Store>,
        metrics: Metrics,
        notary: Arc<Notary>,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let mut tasks = JoinSet::new();
        let (recipients, mailboxes) = (Recipients::default(), Mailboxes::default());
        let observed = (recipients.clone(), mailboxes.clone());
        tasks.spawn(observe_backlog(observed, store.clone(), metrics.clone(), shutdown.clone()));
        let dispatcher = Dispatcher {
            recipients,
            mailboxes,
            takers: ArcSwap::default(),
            store,
            metrics,
            notary,
            instance: uuid::Uuid::now_v7().simple().to_string(),
            shutdown,
            workers: std::sync::Mutex::new(Generation { number: 0, stop: watch::channel(false).0, tasks }),
        };
        dispatcher.apply(plan);
        dispatcher
    }

    /// Puts `plan`'s recipients in force: a new generation of workers, with new clients (so new
    /// endpoints, CAs and certificates apply), each recipient's breaker carried over; recipients
    /// no longer configured stop being delivered to (their deliveries wait in the store).
    pub fn apply(&self, plan: &DeliveryPlan) {
        let mut generation = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        if *self.shutdown.borrow() {
            return;
        }
        let settings = &plan.settings;
        let backoff = settings.backoff();
        let previous = self.recipients.by_id.load_full();
        let (stop, stop_rx) = watch::channel(false);
        let number = generation.number + 1;
        let mut by_id = HashMap::new();
        let mut takers = HashMap::new();
        let mut mailboxes = Vec::new();
        for planned in &plan.recipients {
            let (partner, ordered) = (&planned.id, planned.ordered);
            let (outbound, concurrency, batch, timeout) = match &planned.transport {
                Transport::Http { endpoint, tls } => {
                    // Strict order sends one record at a time: an ordered recipient is never batched.
                    let batch = endpoint.batch.filter(|_| !ordered);
                    (Outbound::Http(RecipientClient::new(endpoint, tls)), endpoint.concurrency, batch, endpoint.timeout)
                }
                Transport::Nats { endpoint, tls, credentials, record_types } => {
                    let publisher = NatsPublisher::new(partner, endpoint, tls, credentials.clone(), record_types);
                    (Outbound::Nats(publisher), endpoint.concurrency, None, endpoint.timeout)
                }
                Transport::Mailbox => {
                    mailboxes.push((partner.to_string(), ordered));
                    continue;
                }
            };
            let (threshold, open_for) = (settings.breaker_failures, settings.breaker_open);
            let kept = previous.get(&partner.to_string()).map(|r| r.breaker.clone());
            let breaker = kept
                .filter(|b| b.has_settings(threshold, open_for))
                .unwrap_or_else(|| Arc::new(Breaker::new(partner, threshold, open_for, self.metrics.clone())));
            let concurrency = if ordered { 1 } else { concurrency };
            // A changed cap starts afresh: for one attempt timeout both caps may be in use.
            let (slots, recording) = previous
                .get(&partner.to_string())
                .filter(|r| r.concurrency == concurrency)
                .map(|r| (r.slots.clone(), r.recording.clone()))
                .unwrap_or_else(|| (Arc::new(Semaphore::new(concurrency)), Arc::new(Semaphore::new(concurrency))));
            // The line is kept whatever the cap: a retiring worker's line goes first.
            let waiting = previous.get(&partner.to_string()).map(|r| r.waiting.clone()).unwrap_or_default();
            // What the store holds for the recipient does not change with its worker; a worker
            // that takes no hand-offs starts afresh, so it never counts itself caught up.
            let takes_handoffs = !ordered && batch.is_none();
            let handing = previous
                .get(&partner.to_string())
                .filter(|_| takes_handoffs)
                .map(|r| r.handing.clone())
                .unwrap_or_default();
            let recipient = Arc::new(Recipient {
                id: partner.to_string(),
                wake: Notify::new(),
                breaker,
                outbound,
                slots: slots.clone(),
                recording: recording.clone(),
                concurrency,
                waiting,
                handing,
            });
            by_id.insert(partner.to_string(), recipient.clone());
            let in_flight = InFlight { slots: slots.clone(), recording: recording.clone(), concurrency };
            let (recorder, writing) = Recorder::new(self.store.clone(), in_flight);
            generation.tasks.spawn(writing);
            let worker = Worker {
                recipient,
                ordered,
                batch,
                worker_id: format!("{}/{partner}/{number}", self.instance),
                slots,
                recording,
                concurrency,
                store: self.store.clone(),
                recorder,
                metrics: self.metrics.clone(),
                settings: settings.clone(),
                backoff: backoff.clone(),
                signer: settings.sign.then(|| self.notary.clone()),
                takes_handoffs,
                line: handoff::line_fits_lease(timeout, settings.lease),
                runtime: tokio::runtime::Handle::current(),
                running: AtomicUsize::new(0),
                attempt_ended: Notify::new(),
                retired: stop_rx.clone(),
                shutdown: self.shutdown.clone(),
            };
            let worker = Arc::new(worker);
            if takes_handoffs {
                takers.insert(partner.to_string(), Arc::downgrade(&worker));
            }
            generation.tasks.spawn(worker.run());
        }
        // A recipient no longer configured is no longer measured: its gauges go, rather than
        // freeze at their last value (its deliveries wait in the store).
        let pulled = self.mailboxes.apply(&mailboxes, &settings.inbox);
        let pushed = previous.keys().filter(|id| !by_id.contains_key(*id)).cloned();
        for gone in pushed.chain(pulled).filter(|id| !by_id.contains_key(id) && self.mailboxes.get(id).is_none()) {
            RecipientRemoved { recipient: &gone }.emit(&self.metrics);
        }
        self.recipients.by_id.store(Arc::new(by_id));
        self.takers.store(Arc::new(takers));
        // Workers of earlier generations that have finished are reaped here, not at shutdown.
        while generation.tasks.try_join_next().is_some() {}
        let _ = generation.stop.send(true);
        generation.stop = stop;
        generation.number = number;
    }

    /// What the store offers `delivery` to as its record commits: `recipient`'s worker, if it
    /// takes hand-offs ([`handoff`]); `None`: the delivery is stored for a claim, and its
    /// recipient is to be woken once committed.
    /// `body` is the delivery's projection in plaintext; `ordered` as the record was routed (a
    /// worker in force that takes hand-offs is offered it only to be marked behind).
    pub fn taker(&self, recipient: &str, ordered: bool, body: &Bytes) -> Option<Arc<dyn Taker>> {
        let worker = self.takers.load().get(recipient).and_then(Weak::upgrade)?;
        let offered = handoff::Offered::new(&worker, self.recipients.clone(), body.clone(), ordered);
        Some(Arc::new(offered))
    }

    /// Tells `recipient` there is new work: its worker, or the callers waiting on its mailbox.
    pub fn wake(&self, recipient: &str) {
        if !self.mailboxes.wake(recipient) {
            self.recipients.wake(recipient);
        }
    }

    /// Waits for the workers to stop after shutdown was signalled.
    pub async fn join(&self) {
        let mut tasks = std::mem::take(&mut self.workers.lock().unwrap_or_else(|e| e.into_inner()).tasks);
        while tasks.join_next().await.is_some() {}
    }
}

impl Worker {
    /// Claims and sends until the gateway shuts down or a reload retires this worker's generation.
    async fn run(self: Arc<Self>) {
        let (mut shutdown, mut retired) = (self.shutdown.clone(), self.retired.clone());
        self.recipient.outbound.open().await;
        loop {
            if *shutdown.borrow() || *retired.borrow() {
                break;
            }
            let free = self.slots.available_permits();
            // The breaker decides how much may go: all free slots (and free places in line), one
            // probe, or nothing yet.
            let admission = self.recipient.breaker.admit();
            let room = if admission == Admission::Go { self.room_in_line() } else { 0 };
            let (limit, wait) = match admission {
                _ if free + room == 0 => (0, None),
                // At most `concurrency` at once, so the line stays within twice that.
                Admission::Go => ((free + room).min(self.concurrency), None),
                Admission::Probe => (1, None),
                Admission::Wait(d) => (0, Some(d)),
            };
            // A batch fills one slot with up to `max_records`; a probe is one record alone.
            let records = match self.batch {
                Some(batch) if limit > 0 && admission == Admission::Go => batch.max_records,
                _ => limit,
            };
            let before = (records > 0 && self.takes_handoffs).then(|| self.recipient.handing.before_claim());
            let witness = before.as_ref().map(handoff::BeforeClaim::witness);
            let claimed = if records == 0 { Some(Vec::new()) } else { self.claim(records, witness).await };
            // Whether the store has nothing more due, once what was claimed has started (or is
            // in line).
            let (asked, got) = (records, claimed.as_ref().map(Vec::len));
            let claimed = claimed.unwrap_or_default();
            let caught_up = move |worker: &Self| {
                if let Some(before) = before {
                    worker.recipient.handing.after_claim(before, asked, got);
                }
            };
            if limit == 1 && claimed.is_empty() && self.recipient.breaker.is_probing() {
                self.recipient.breaker.cancel_probe();
            }
            if claimed.is_empty() {
                caught_up(&self);
                let idle = wait.unwrap_or(self.settings.poll_interval).min(self.settings.poll_interval);
                tokio::select! {
                    _ = self.recipient.wake.notified() => {}
                    _ = tokio::time::sleep(idle) => {}
                    // A caught-up worker's slots free up with nothing to claim. A slot that
                    // frees goes first to what was handed over and waits in line.
                    slot = self.slots.clone().acquire_owned(), if free == 0 && !self.caught_up() => {
                        if let Ok(slot) = slot {
                            drop(self.start_waiting(slot));
                        }
                    }
                    _ = shutdown.changed() => {}
                    _ = retired.changed() => {}
                }
                // A slot given back by a branch not taken may have been one a hand-off waited for.
                self.start_all_waiting();
                continue;
            }
            if let Some(batch) = self.batch {
                // A probe goes alone, at once.
                let claimed = match admission {
                    Admission::Go => self.fill(claimed, batch, &mut shutdown, &mut retired).await,
                    _ => claimed,
                };
                if !self.in_a_slot(|worker, slot| async move { worker.attempt_batch(claimed, slot).await }).await {
                    return;
                }
                continue;
            }
            if self.claims_join_line() {
                // Claimed deliveries queue behind those waiting, and start as slots free.
                self.join_line(claimed);
                self.start_all_waiting();
            } else {
                for delivery in claimed {
                    if !self.in_a_slot(|worker, slot| async move { worker.attempt(delivery, slot).await }).await {
                        return;
                    }
                }
            }
            caught_up(&self);
        }
        // Start what was handed over and still waits for a slot, then let attempts in flight
        // finish (each is bounded by its timeout) and their results be written.
        while self.has_own_waiting() {
            let Ok(slot) = self.slots.clone().acquire_owned().await else { break };
            if let Some(slot) = self.start_waiting(slot) {
                // The first in line waits for its record's commit to end (bounded by the
                // store's commit timeout).
                drop(slot);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        self.own_attempts_ended().await;
        // A hand-off whose record committed meanwhile.
        self.start_all_waiting();
    }

    /// Waits for a free slot, then runs `attempt` in its own task, giving it the slot; false
    /// when the slots are closed.
    async fn in_a_slot<F, A>(self: &Arc<Self>, attempt: A) -> bool
    where
        A: FnOnce(Arc<Self>, OwnedSemaphorePermit) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        // What waits in line now was handed over before this was claimed, so before it was
        // stored or came due again: it leaves first. What joins the line later does not hold
        // this back (a retry's lease is running).
        let mut ahead = self.waiting_count();
        loop {
            let Ok(slot) = self.slots.clone().acquire_owned().await else { return false };
            if ahead == 0 {
                self.spawn_in(slot, attempt);
                return true;
            }
            ahead -= 1;
            if let Some(slot) = self.start_waiting(slot) {
                self.spawn_in(slot, attempt);
                return true;
            }
        }
    }

    /// Counts an attempt of this worker until the returned value is dropped.
    fn attempting(self: &Arc<Self>) -> Attempting {
        self.running.fetch_add(1, SeqCst);
        Attempting(self.clone())
    }

    /// Waits until every attempt this worker started has ended and its result is written: not
    /// for its recipient's slots, which its successor after a reload shares and keeps using.
    async fn own_attempts_ended(&self) {
        loop {
            let ended = self.attempt_ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.running.load(SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }

    /// Runs `attempt` in its own task with `slot`, which it holds for its request and trades,
    /// once the request has ended, for a place among the results waiting for the store
    /// ([`Worker::exchanged`]).
    fn spawn_in<F, A>(self: &Arc<Self>, slot: OwnedSemaphorePermit, attempt: A)
    where
        A: FnOnce(Arc<Self>, OwnedSemaphorePermit) -> F,
        F: Future<Output = ()> + Send + 'static,
    {
        let worker = self.clone();
        let counted = self.attempting();
        // Boxed: an attempt's future is several kilobytes (the HTTP client's, the span's), and a
        // task moves its future whole on spawn and on completion; a box moves as a pointer
        // (callgrind: memcpy fell from 13 % of a delivery's instructions).
        let attempt = Box::pin(attempt(self.clone(), slot));
        self.runtime.spawn(async move {
            attempt.await;
            // An ordered attempt gives its slot back only now (others did once answered).
            if worker.ordered {
                worker.start_all_waiting();
            }
            // A recorded result may let the next claim through (a retry, an ordered recipient's
            // next head), unless nothing waits to be claimed.
            if !worker.caught_up() {
                worker.recipient.wake.notify_one();
            }
            drop(counted);
        });
    }

    /// What an attempt holds once its request has ended, until its result is written: a place
    /// among the results waiting for the store, for which it gives its slot back, so the next
    /// request can start while the store writes. When `concurrency` results already wait, it
    /// keeps its slot until one is written: a slow store stops new requests. An ordered
    /// recipient's attempt keeps its slot (its one slot), so its next delivery is claimed only
    /// once this result is written.
    async fn exchanged(self: &Arc<Self>, slot: OwnedSemaphorePermit) -> OwnedSemaphorePermit {
        if self.ordered {
            return slot;
        }
        let place = recorder::trade_for_place(slot, &self.recording).await;
        self.start_all_waiting();
        place
    }

    /// Whether a reload retired it, or the gateway stops.
    fn retired(&self) -> bool {
        *self.retired.borrow() || *self.shutdown.borrow()
    }

    /// Whether it takes hand-offs now, with nothing left in the store to claim.
    fn caught_up(&self) -> bool {
        self.takes_handoffs && self.recipient.handing.caught_up()
    }

    /// Counts a delivery handed over at acceptance.
    fn handed_over(&self) {
        DeliveryHandedOver { recipient: &self.recipient.id }.emit(&self.metrics);
    }

    /// `None` when the claim failed (logged). `witness` is told when the claim reads, if the
    /// store can say.
    async fn claim(&self, limit: usize, witness: Option<Arc<dyn ClaimWitness>>) -> Option<Vec<ClaimedDelivery>> {
        let now = clock::now_ms();
        let claim = ClaimRequest {
            recipient: self.recipient.id.clone(),
            worker: self.worker_id.clone(),
            limit,
            now,
            lease_until: now + self.settings.lease.as_millis() as i64,
            head_only: self.ordered,
            witness,
        };
        match self.store.claim_due(claim).await {
            Ok(c) => Some(c),
            Err(error) => {
                tracing::warn!(message = "Claiming deliveries failed.", recipient = %self.recipient.id, %error);
                None
            }
        }
    }

    /// Tops a batch up to `max_records`, claiming again as more deliveries come due, for at most
    /// `max_wait` (less when the gateway stops or this worker is retired).
    async fn fill(
        &self,
        mut claimed: Vec<ClaimedDelivery>,
        batch: BatchSettings,
        shutdown: &mut watch::Receiver<bool>,
        retired: &mut watch::Receiver<bool>,
    ) -> Vec<ClaimedDelivery> {
        let deadline = tokio::time::Instant::now() + batch.max_wait;
        while claimed.len() < batch.max_records && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = self.recipient.wake.notified() => {}
                _ = tokio::time::sleep_until(deadline) => {}
                _ = shutdown.changed() => break,
                _ = retired.changed() => break,
            }
            claimed.extend(self.claim(batch.max_records - claimed.len(), None).await.unwrap_or_default());
        }
        claimed
    }

    /// Each attempt is a hop of the record's trace: its own span, the record's intake as parent.
    fn hop(d: &ClaimedDelivery) -> Hop {
        let parent = d.traceparent.as_deref().and_then(TraceContext::parse_traceparent).map(|mut parent| {
            parent.state = d.tracestate.clone();
            parent
        });
        Hop::start("delivery", HopKind::Client, parent.as_ref())
    }

    fn sign(&self, d: &ClaimedDelivery) -> Option<String> {
        self.signer.as_ref().map(|notary| signature::sign_delivery(&notary.key, d))
    }

    async fn attempt(self: &Arc<Self>, d: ClaimedDelivery, slot: OwnedSemaphorePermit) {
        let hop = Self::hop(&d);
        let signature = self.sign(&d);
        let (outcome, duration) =
            self.recipient.outbound.send(&d, signature.as_deref(), &hop.context).instrument(hop.span.clone()).await;
        self.recipient.breaker.record(outcome.shows_recipient_up());
        let update = self.result_of(&d, outcome, duration);
        let _held = self.exchanged(slot).await;
        self.recorder.record(vec![update]).await;
    }

    /// Sends `claimed` in one POST, then records each record's own result. The circuit breaker
    /// counts the POST once: whether the recipient answered it, not how it answered each record.
    async fn attempt_batch(self: &Arc<Self>, claimed: Vec<ClaimedDelivery>, slot: OwnedSemaphorePermit) {
        let Outbound::Http(client) = &self.recipient.outbound else {
            // Only a push recipient is batched; anything else is sent one delivery at a time, in
            // this slot.
            let mut given = Some(slot);
            for d in claimed {
                let slot = match given.take() {
                    Some(slot) => slot,
                    None => match self.slots.clone().acquire_owned().await {
                        Ok(slot) => slot,
                        Err(_) => return,
                    },
                };
                self.attempt(d, slot).await;
            }
            return;
        };
        let hops: Vec<Hop> = claimed.iter().map(Self::hop).collect();
        let traceparents: Vec<String> = hops.iter().map(|hop| hop.context.traceparent()).collect();
        let signatures: Vec<Option<String>> = claimed.iter().map(|d| self.sign(d)).collect();
        let records: Vec<BatchRecord> = claimed
            .iter()
            .zip(&signatures)
            .zip(&traceparents)
            .map(|((delivery, signature), traceparent)| BatchRecord {
                delivery,
                signature: signature.as_deref(),
                traceparent,
            })
            .collect();
        let (outcome, duration) = client.send_batch(&records).await;
        drop(hops);
        self.recipient.breaker.record(outcome.request.shows_recipient_up());
        let updates = claimed.iter().zip(outcome.each).map(|(d, each)| self.result_of(d, each, duration)).collect();
        let _held = self.exchanged(slot).await;
        self.recorder.record(updates).await;
    }

    /// What `outcome` makes of an attempt at `d` that took `duration`: its result to record,
    /// after its telemetry is emitted.
    fn result_of(&self, d: &ClaimedDelivery, outcome: AttemptOutcome, duration: Duration) -> AttemptUpdate {
        let attempt = d.attempts + 1;
        let now = clock::now_ms();
        let age = Duration::from_millis((now - d.created_at).max(0) as u64);
        let jitter = crate::random::unit();
        let failure = |status: Option<u16>, error: String, retry_after| Failure { status, error, retry_after };
        let result = match outcome {
            AttemptOutcome::Accepted { status } => AttemptResult::Delivered { status },
            AttemptOutcome::Refused { status, error } => AttemptResult::Dead { status, error },
            AttemptOutcome::Transient { status, retry_after } => self.backoff.after_failure(
                failure(Some(status), format!("HTTP {status}"), retry_after),
                attempt,
                age,
                jitter,
                now,
            ),
            AttemptOutcome::Unreachable { error } => {
                self.backoff.after_failure(failure(None, error, None), attempt, age, jitter, now)
            }
        };
        let (label, status, error) = summary(&result);
        DeliveryAttempted {
            delivery_id: d.id,
            record_id: &d.record_id,
            recipient: &d.recipient,
            agreement: &d.agreement,
            attempt,
            outcome: label,
            status,
            error,
            duration: Some(duration),
        }
        .emit(&self.metrics);
        AttemptUpdate {
            delivery_id: d.id,
            worker: self.worker_id.clone(),
            record_id: d.record_id.clone(),
            recipient: d.recipient.clone(),
            agreement: d.agreement.clone(),
            body_digest: d.body_digest,
            at: now,
            result,
            latency_ms: Some(duration.as_millis().min(i64::MAX as u128) as i64),
        }
    }
}

/// One attempt of a worker, counted until dropped (also when its task is dropped unfinished).
struct Attempting(Arc<Worker>);

impl Drop for Attempting {
    fn drop(&mut self) {
        if self.0.running.fetch_sub(1, SeqCst) == 1 {
            self.0.attempt_ended.notify_waiters();
        }
    }
}

/// Stable per record and recipient, so a recipient can drop a duplicate.
pub fn idempotency_key(d: &ClaimedDelivery) -> String {
    format!("{}.{}", d.record_id, d.recipient)
}

/// What an attempt's result counts as, its HTTP status and its error, for the telemetry.
pub fn summary(result: &AttemptResult) -> (DeliveryOutcome, Option<u16>, Option<&str>) {
    match result {
        AttemptResult::Delivered { status } => (DeliveryOutcome::Delivered, *status, None),
        AttemptResult::Retry { status, error, .. } => (DeliveryOutcome::Retry, *status, Some(error)),
        AttemptResult::Dead { status, error } => (DeliveryOutcome::Dead, *status, Some(error)),
    }
}

/// How often the backlog gauges are read: every [`BACKLOG_EVERY`], or less often when the
/// store's answer is slow. The query counts every pending and dead delivery, so its cost grows
/// with the backlog; waiting [`BACKLOG_COST_SHARE`] times as long as the last read took keeps
/// the gauges' share of the store's time bounded (at most 1/20) however deep the backlog is.
const BACKLOG_EVERY: Duration = Duration::from_secs(2);
/// See [`BACKLOG_EVERY`].
const BACKLOG_COST_SHARE: u32 = 20;
/// The longest wait between two reads, so the gauges never go stale for long.
const BACKLOG_AT_MOST_EVERY: Duration = Duration::from_secs(30);

/// The wait after a backlog read that took `took`.
fn backlog_wait(took: Duration) -> Duration {
    took.saturating_mul(BACKLOG_COST_SHARE).clamp(BACKLOG_EVERY, BACKLOG_AT_MOST_EVERY)
}

/// Keeps the pending, oldest-pending and dead gauges current.
async fn observe_backlog(
    (recipients, mailboxes): (Recipients, Mailboxes),
    store: Arc<dyn Store>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let started = std::time::Instant::now();
        let read = store.backlog().await;
        let wait = backlog_wait(started.elapsed());
        if let Ok(backlog) = read {
            let now = clock::now_ms();
            for recipient in recipients.ids().iter().chain(&mailboxes.ids()) {
                let b = backlog.iter().find(|b| &b.recipient == recipient);
                BacklogObserved {
                    recipient,
                    pending: b.map_or(0, |b| b.pending),
                    oldest_pending_seconds: b
                        .and_then(|b| b.oldest_pending_at)
                        .map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0),
                    dead: b.map_or(0, |b| b.dead),
                    mailbox: mailboxes.get(recipient).is_some(),
                }
                .emit(&metrics);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_backlog_read_is_made_less_often_within_bounds() {
        // A quick read: the usual two seconds.
        assert_eq!(backlog_wait(Duration::from_millis(5)), Duration::from_secs(2));
        // A read of 150 ms (a deep backlog on PostgreSQL): every 2 s it would take 7.5 % of the
        // store's time; waiting 20 times as long keeps it at 5 %.
        assert_eq!(backlog_wait(Duration::from_millis(150)), Duration::from_secs(3));
        // A store that hangs: the gauges are still read twice a minute.
        assert_eq!(backlog_wait(Duration::from_secs(10)), Duration::from_secs(30));
    }
}
