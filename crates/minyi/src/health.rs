//! `minyi health`: asks a Minyi process's gRPC health service whether it serves. It is the
//! container image's HEALTHCHECK (the image has no grpc_health_probe or curl), and a quick
//! check for operators. Exit code 0 when serving.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::{Context, bail};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::config::Config;
use crate::tls::ClientTls;

/// Where to ask by default: the plaintext health-only listener when one is configured
/// (`health_addr`), else the gRPC address, over TLS when the process serves TLS. A wildcard
/// listen address is asked on loopback.
pub fn default_endpoint(config: &Config) -> String {
    let local = |a: SocketAddr| match a.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv4Addr::LOCALHOST.into(), a.port())
        }
        IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::new(Ipv6Addr::LOCALHOST.into(), a.port())
        }
        _ => a,
    };
    match config.health_addr {
        Some(h) => format!("http://{}", local(h)),
        None if config.tls.enabled() => format!("https://{}", local(config.grpc_addr)),
        None => format!("http://{}", local(config.grpc_addr)),
    }
}

/// Checks `service` ("" = the whole server) at `endpoint`, within 3 s.
pub async fn check(endpoint: &str, tls: &ClientTls, service: &str) -> anyhow::Result<()> {
    let channel = crate::tls::endpoint(endpoint, tls)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(3))
        .connect()
        .await
        .with_context(|| format!("cannot reach {endpoint}"))?;
    let status = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .with_context(|| format!("health check at {endpoint} failed"))?
        .into_inner()
        .status();
    if status != ServingStatus::Serving {
        bail!("{endpoint} answers {}", status.as_str_name());
    }
    Ok(())
}
