//! Logging setup: tracing with an `RUST_LOG` filter (default `info`), as text or JSON lines; and
//! [`WarnThrottle`] for warnings a sender could otherwise trigger on every request.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    // A subscriber may already be installed (tests); that is fine.
    let _ = result;
}

/// Lets a warning through at most once per interval and counts the ones held back. For warnings
/// a sender can trigger once per request: a log line per request is a synchronous write per
/// request (on a slow log pipe it stalls the worker), and a flood of them buries everything else.
pub struct WarnThrottle {
    interval_ms: u64,
    /// Milliseconds since [`monotonic_ms`]'s origin at which the next warning may pass.
    next_ms: std::sync::atomic::AtomicU64,
    held_back: std::sync::atomic::AtomicU64,
}

impl WarnThrottle {
    pub const fn new(interval: std::time::Duration) -> Self {
        Self {
            interval_ms: interval.as_millis() as u64,
            next_ms: std::sync::atomic::AtomicU64::new(0),
            held_back: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(n)` when this warning should be logged (`n` were held back since the last one).
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(monotonic_ms())
    }

    fn admit_at(&self, now_ms: u64) -> Option<u64> {
        use std::sync::atomic::Ordering;
        let next = self.next_ms.load(Ordering::Relaxed);
        if now_ms >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now_ms + self.interval_ms,
                    Ordering::AcqRel,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::AcqRel));
        }
        self.held_back.fetch_add(1, Ordering::AcqRel);
        None
    }
}

/// Milliseconds since the first call (monotonic).
fn monotonic_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::WarnThrottle;
    use std::time::Duration;

    #[test]
    fn one_warning_per_interval_with_the_count_held_back() {
        let throttle = WarnThrottle::new(Duration::from_secs(10));
        assert_eq!(throttle.admit_at(1_000), Some(0));
        assert_eq!(throttle.admit_at(1_001), None);
        assert_eq!(throttle.admit_at(5_000), None);
        assert_eq!(throttle.admit_at(10_999), None);
        assert_eq!(throttle.admit_at(11_000), Some(3));
        assert_eq!(throttle.admit_at(11_500), None);
        assert_eq!(throttle.admit_at(30_000), Some(1));
    }
}
