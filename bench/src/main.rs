//! `endure-bench`: a closed-loop load driver that speaks `TaskHubSidecarService` itself, so
//! a benchmark measures the engine and not an SDK's worker.
//!
//! One process is both the worker and the client:
//! - the worker keeps one work-item stream open to every endpoint given (as a fleet of
//!   workers spread over the nodes would) and answers each item on its own task;
//! - the client keeps `--concurrency` workflows in flight: each of that many tasks starts a
//!   workflow (round robin over the endpoints), waits for its completion, and starts the
//!   next, until `--workflows` have completed.
//!
//! The workflow, `bench`, runs `--activities` activities one after the other (each adds one
//! to its input) and completes with the last result; the driver checks every output.
//!
//! ```text
//! endure-bench --endpoints http://127.0.0.1:50001,http://127.0.0.1:50002 \
//!     --workflows 2000 --concurrency 50
//! ```
//!
//! prints one line: workflows, concurrency, seconds, workflows/s, latency p50/p90/p99/max
//! from the start call to the completion answer, and retries; `--json` prints it as JSON.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use endure_proto::orchestrator_action::OrchestratorActionType as Action;
use endure_proto::task_hub_sidecar_service_client::TaskHubSidecarServiceClient;
use endure_proto::*;
use tokio_stream::StreamExt;
use tonic::transport::{Channel, Endpoint};
use tonic::Code;

/// The workflow's name on the wire.
const WORKFLOW: &str = "bench";
/// The activity's name on the wire.
const ACTIVITY: &str = "bench_step";

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Closed-loop workflow load against TaskHubSidecarService endpoints"
)]
struct Args {
    /// Comma-separated gRPC endpoints (http://host:port); the worker connects to all.
    #[arg(long, value_delimiter = ',', required = true)]
    endpoints: Vec<String>,
    /// Workflows to complete in the measured run.
    #[arg(long, default_value_t = 2000)]
    workflows: usize,
    /// Workflows in flight at once.
    #[arg(long, default_value_t = 50)]
    concurrency: usize,
    /// Activities each workflow runs one after the other.
    #[arg(long, default_value_t = 3)]
    activities: u32,
    /// Workflows run one at a time before the measured run (connections, caches).
    #[arg(long, default_value_t = 20)]
    warmup: usize,
    /// Instance ID prefix (default: bench-<pid>-<unix seconds>), so runs never collide.
    #[arg(long)]
    prefix: Option<String>,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.workflows == 0 || args.concurrency == 0 {
        bail!("--workflows and --concurrency must be at least 1");
    }
    let channels = args
        .endpoints
        .iter()
        .map(|endpoint| {
            Ok(Endpoint::from_shared(endpoint.clone())
                .with_context(|| format!("bad endpoint {endpoint:?}"))?
                .tcp_nodelay(true)
                .connect_lazy())
        })
        .collect::<anyhow::Result<Vec<Channel>>>()?;
    for channel in &channels {
        tokio::spawn(work(client(channel.clone())));
    }
    let prefix = args.prefix.clone().unwrap_or_else(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("bench-{}-{now}", std::process::id())
    });
    let load = Arc::new(Load {
        channels,
        prefix,
        activities: args.activities,
        next: AtomicUsize::new(0),
        retries: AtomicU64::new(0),
    });
    if args.warmup > 0 {
        load.run(args.warmup, 1, "warmup").await?;
    }
    let started = Instant::now();
    let mut latencies = load.run(args.workflows, args.concurrency, "run").await?;
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    let ms = |q: f64| {
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    let rate = args.workflows as f64 / seconds;
    let retries = load.retries.load(Ordering::Relaxed);
    if args.json {
        let result = serde_json::json!({
            "workflows": args.workflows,
            "concurrency": args.concurrency,
            "activities": args.activities,
            "endpoints": args.endpoints.len(),
            "seconds": seconds,
            "workflows_per_second": rate,
            "p50_ms": ms(0.50),
            "p90_ms": ms(0.90),
            "p99_ms": ms(0.99),
            "max_ms": ms(1.0),
            "retries": retries,
        });
        println!("{result}");
    } else {
        println!(
            "workflows={} concurrency={} activities={} seconds={seconds:.2} rate={rate:.1} wf/s \
             p50={:.1} ms p90={:.1} ms p99={:.1} ms max={:.1} ms retries={retries}",
            args.workflows,
            args.concurrency,
            args.activities,
            ms(0.50),
            ms(0.90),
            ms(0.99),
            ms(1.0),
        );
    }
    Ok(())
}

fn client(channel: Channel) -> TaskHubSidecarServiceClient<Channel> {
    TaskHubSidecarServiceClient::new(channel)
}

/// The client side of a run.
struct Load {
    channels: Vec<Channel>,
    prefix: String,
    activities: u32,
    /// Next workflow number (over warmup and run, so IDs never repeat).
    next: AtomicUsize,
    /// Calls retried after UNAVAILABLE (an election, a leader moving).
    retries: AtomicU64,
}

impl Load {
    /// Completes `count` workflows, `concurrency` at a time; their latencies.
    async fn run(
        self: &Arc<Self>,
        count: usize,
        concurrency: usize,
        phase: &'static str,
    ) -> anyhow::Result<Vec<Duration>> {
        let remaining = Arc::new(AtomicUsize::new(count));
        let mut tasks = Vec::new();
        for _ in 0..concurrency.min(count) {
            let load = self.clone();
            let remaining = remaining.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                while remaining
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                    .is_ok()
                {
                    latencies.push(load.one().await?);
                }
                anyhow::Ok(latencies)
            }));
        }
        let mut latencies = Vec::with_capacity(count);
        for task in tasks {
            latencies.extend(task.await.context(phase)??);
        }
        Ok(latencies)
    }

    /// Starts one workflow, waits for it, checks its output; the time that took.
    async fn one(&self) -> anyhow::Result<Duration> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let instance_id = format!("{}-{number}", self.prefix);
        let mut client = client(self.channels[number % self.channels.len()].clone());
        let started = Instant::now();
        let start = CreateInstanceRequest {
            instance_id: instance_id.clone(),
            name: WORKFLOW.into(),
            input: Some(self.activities.to_string()),
            ..Default::default()
        };
        loop {
            match client.start_instance(start.clone()).await {
                Ok(_) => break,
                // An earlier attempt was applied before its answer was lost.
                Err(status) if status.code() == Code::AlreadyExists => break,
                Err(status) if status.code() == Code::Unavailable => self.retry().await,
                Err(status) => bail!("start {instance_id}: {status}"),
            }
        }
        let wait = GetInstanceRequest {
            instance_id: instance_id.clone(),
            get_inputs_and_outputs: true,
            ..Default::default()
        };
        let state = loop {
            let mut request = tonic::Request::new(wait.clone());
            request.set_timeout(Duration::from_secs(60));
            match client.wait_for_instance_completion(request).await {
                Ok(response) => break response.into_inner().orchestration_state,
                Err(status)
                    if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) =>
                {
                    self.retry().await
                }
                Err(status) => bail!("wait for {instance_id}: {status}"),
            }
        };
        let elapsed = started.elapsed();
        let state = state.with_context(|| format!("{instance_id}: no state in the answer"))?;
        let expected = self.activities.to_string();
        if state.orchestration_status != OrchestrationStatus::Completed as i32
            || state.output.as_deref() != Some(expected.as_str())
        {
            bail!(
                "{instance_id} ended {:?} with output {:?}, expected COMPLETED with {expected}",
                OrchestrationStatus::try_from(state.orchestration_status),
                state.output
            );
        }
        Ok(elapsed)
    }

    async fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The worker on one endpoint: its work-item stream, reopened whenever it ends.
async fn work(client: TaskHubSidecarServiceClient<Channel>) {
    loop {
        if let Err(error) = serve(client.clone()).await {
            eprintln!("worker stream ended: {error}; reconnecting");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn serve(mut client: TaskHubSidecarServiceClient<Channel>) -> anyhow::Result<()> {
    let mut stream = client
        .get_work_items(GetWorkItemsRequest::default())
        .await?
        .into_inner();
    while let Some(item) = stream.next().await {
        let item = item?;
        let mut client = client.clone();
        tokio::spawn(async move {
            let answered = match item.request {
                Some(work_item::Request::OrchestratorRequest(turn)) => client
                    .complete_orchestrator_task(OrchestratorResponse {
                        instance_id: turn.instance_id.clone(),
                        actions: turn_actions(&turn),
                        completion_token: item.completion_token,
                        ..Default::default()
                    })
                    .await
                    .map(drop),
                Some(work_item::Request::ActivityRequest(activity)) => client
                    .complete_activity_task(activity_answer(activity, item.completion_token))
                    .await
                    .map(drop),
                _ => Ok(()),
            };
            if let Err(status) = answered {
                // The engine redelivers an unanswered item; the run's checks catch any loss.
                eprintln!("answer refused: {status}");
            }
        });
    }
    Ok(())
}

/// `bench_step`: its input plus one.
fn activity_answer(activity: ActivityRequest, completion_token: String) -> ActivityResponse {
    let value: u64 = activity
        .input
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    ActivityResponse {
        instance_id: activity
            .orchestration_instance
            .map(|i| i.instance_id)
            .unwrap_or_default(),
        task_id: activity.task_id,
        result: Some((value + 1).to_string()),
        completion_token,
        ..Default::default()
    }
}

/// The `bench` workflow, replayed from its history as an SDK would: schedule the next
/// activity with the last result, or complete once `input` activities have run.
fn turn_actions(turn: &OrchestratorRequest) -> Vec<OrchestratorAction> {
    let mut steps = 0;
    let mut scheduled = 0;
    let mut last = 0u64;
    let mut completed = 0;
    for event in turn.past_events.iter().chain(turn.new_events.iter()) {
        match &event.event_type {
            Some(history_event::EventType::ExecutionStarted(e)) => {
                steps = e.input.as_deref().and_then(|v| v.parse().ok()).unwrap_or(0)
            }
            Some(history_event::EventType::TaskScheduled(_)) => scheduled += 1,
            Some(history_event::EventType::TaskCompleted(e)) => {
                completed += 1;
                last = e
                    .result
                    .as_deref()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
            }
            _ => {}
        }
    }
    if scheduled > completed {
        return Vec::new();
    }
    let kind = if scheduled < steps {
        Action::ScheduleTask(ScheduleTaskAction {
            name: ACTIVITY.into(),
            input: Some(last.to_string()),
            ..Default::default()
        })
    } else {
        Action::CompleteOrchestration(CompleteOrchestrationAction {
            orchestration_status: OrchestrationStatus::Completed as i32,
            result: Some(last.to_string()),
            ..Default::default()
        })
    };
    vec![OrchestratorAction {
        id: scheduled + 1,
        orchestrator_action_type: Some(kind),
        ..Default::default()
    }]
}
