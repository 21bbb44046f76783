//! Shutdown on SIGTERM or SIGINT; a second signal exits at once.

use std::future::Future;

/// Installs the signal handlers now (so a signal that arrives while the app is still being
/// built is not lost) and returns a future that resolves on the first SIGTERM or SIGINT. A
/// second signal exits the process immediately.
pub fn install() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("signal received; shutting down gracefully (signal again to exit now)");
            tokio::spawn(async move {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
                tracing::warn!("second signal: exiting now");
                std::process::exit(130);
            });
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}
