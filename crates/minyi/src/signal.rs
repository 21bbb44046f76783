//! Shutdown on SIGTERM or SIGINT; a second signal exits at once.

/// Resolves on the first SIGTERM or SIGINT. A second one exits the process immediately.
pub async fn shutdown() {
    wait_one().await;
    tracing::info!("signal received; shutting down gracefully (signal again to exit now)");
    tokio::spawn(async {
        wait_one().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(130);
    });
}

async fn wait_one() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
