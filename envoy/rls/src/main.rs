//! A rate limit service for tokengate's end-to-end tests: Envoy's `RateLimitService` v3
//! (`ShouldRateLimit`) answered by Limitador's counting on Redis, as Limitador serves it.
//!
//! `tokengate-test-rls --listen 127.0.0.1:PORT --redis redis://127.0.0.1:PORT --limits FILE
//! [--no-statuses]`. FILE is a Limitador limits file (YAML list of `namespace`, `max_value`,
//! `seconds`, `conditions`, `variables`); a request's domain is the namespace and its descriptors
//! are bound as `descriptors[i].<key>`, so `descriptors[0].api_key` counts per key. The hits are
//! the request's `hits_addend` (0 counts as 1, as in Limitador). With statuses (the default,
//! as envoyproxy/ratelimit sends them) each descriptor's status carries the most restrictive
//! counter's limit, remaining and time to reset; `--no-statuses` answers with the overall code
//! only, as Limitador does. A storage failure is answered with gRPC `UNAVAILABLE`.

use std::collections::HashMap;
use std::net::SocketAddr;

use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{Code, DescriptorStatus, RateLimit};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use limitador::counter::Counter;
use limitador::limit::{Context, Limit, Namespace};
use limitador::storage::redis::AsyncRedisStorage;
use limitador::AsyncRateLimiter;
use tonic::{Request, Response, Status};

struct Service {
    limiter: AsyncRateLimiter,
    statuses: bool,
}

#[tonic::async_trait]
impl RateLimitService for Service {
    async fn should_rate_limit(&self, request: Request<RateLimitRequest>) -> Result<Response<RateLimitResponse>, Status> {
        let request = request.into_inner();
        let namespace = Namespace::from(request.domain.as_str());
        let descriptors: Vec<HashMap<String, String>> = request
            .descriptors
            .iter()
            .map(|d| d.entries.iter().map(|e| (e.key.clone(), e.value.clone())).collect())
            .collect();
        let mut ctx = Context::default();
        ctx.list_binding("descriptors".to_owned(), descriptors);
        let hits = u64::from(request.hits_addend.max(1));
        let result = self
            .limiter
            .check_rate_limited_and_update(&namespace, &ctx, hits)
            .await
            .map_err(|e| Status::unavailable(format!("storage: {e}")))?;
        let code = if result.limited { Code::OverLimit } else { Code::Ok };
        let statuses = if self.statuses {
            let status = most_restrictive(&result.counters).map(|c| status_of(c, code));
            request.descriptors.iter().map(|_| status.clone().unwrap_or(DescriptorStatus { code: code.into(), ..Default::default() })).collect()
        } else {
            Vec::new()
        };
        Ok(Response::new(RateLimitResponse { overall_code: code.into(), statuses, ..Default::default() }))
    }
}

fn most_restrictive(counters: &[Counter]) -> Option<&Counter> {
    counters.iter().min_by_key(|c| c.remaining().unwrap_or(c.max_value()))
}

fn status_of(counter: &Counter, code: Code) -> DescriptorStatus {
    let unit = match counter.window().as_secs() {
        1 => Unit::Second,
        60 => Unit::Minute,
        3600 => Unit::Hour,
        86400 => Unit::Day,
        _ => Unit::Unknown,
    };
    let remaining = counter.remaining().unwrap_or(counter.max_value());
    DescriptorStatus {
        code: code.into(),
        current_limit: Some(RateLimit {
            name: counter.limit().name().unwrap_or_default().to_owned(),
            requests_per_unit: u32::try_from(counter.max_value()).unwrap_or(u32::MAX),
            unit: unit.into(),
        }),
        limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
        duration_until_reset: counter.expires_in().map(|d| PbDuration {
            seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
        }),
        ..Default::default()
    }
}

struct Args {
    listen: SocketAddr,
    redis: String,
    limits: String,
    statuses: bool,
}

fn args() -> Result<Args, String> {
    let mut listen = None;
    let mut redis = None;
    let mut limits = None;
    let mut statuses = true;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = it.next(),
            "--redis" => redis = it.next(),
            "--limits" => limits = it.next(),
            "--no-statuses" => statuses = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let listen = listen.ok_or("--listen ADDR is required")?.parse().map_err(|e| format!("--listen: {e}"))?;
    Ok(Args { listen, redis: redis.ok_or("--redis URL is required")?, limits: limits.ok_or("--limits FILE is required")?, statuses })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args()?;
    let text = std::fs::read_to_string(&args.limits).map_err(|e| format!("{}: {e}", args.limits))?;
    let limits: Vec<Limit> = serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", args.limits))?;
    let storage = AsyncRedisStorage::new(&args.redis).await.map_err(|e| format!("redis {}: {e}", args.redis))?;
    let limiter = AsyncRateLimiter::new_with_storage(Box::new(storage));
    let count = limits.len();
    limiter.configure_with(limits).await?;
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    println!("listening on {} ({count} limits, statuses {})", listener.local_addr()?, if args.statuses { "on" } else { "off" });
    let service = RateLimitServiceServer::new(Service { limiter, statuses: args.statuses });
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(tokio_stream_listener(listener), async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

/// The listener's connections with TCP_NODELAY: without it, Nagle holds the answer's last frames
/// until the peer's delayed ACK (~40 ms a call on Linux loopback).
fn tokio_stream_listener(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
