//! The delay before a retry: exponential, capped, with jitter so that many jobs failing
//! together do not retry in lockstep.

use std::time::Duration;

use crate::job::RetryPolicy;

/// Outcomes worth another attempt. A cancelled run was cancelled on purpose, and a run
/// that printed too much would print too much again.
pub fn is_retryable(outcome: &str) -> bool {
    matches!(
        outcome,
        "failed" | "timed_out" | "out_of_memory" | "crashed"
    )
}

/// The wait after attempt `attempt` (1-based) failed: `min(cap, base * 2^(attempt-1))`
/// scaled by `factor` in [0.5, 1] (random in production).
pub fn delay(policy: &RetryPolicy, attempt: u32, factor: f64) -> Duration {
    let exp = policy
        .backoff_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(40));
    let capped = exp.min(policy.max_backoff_ms);
    Duration::from_millis((capped as f64 * factor.clamp(0.5, 1.0)) as u64)
}

/// A random factor in [0.5, 1].
pub fn random_factor() -> f64 {
    let r = uuid::Uuid::new_v4().as_u128() as u64;
    0.5 + (r >> 11) as f64 / (1u64 << 53) as f64 * 0.5
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_delay_doubles_up_to_the_cap_and_jitter_only_shortens_it() {
        let p = RetryPolicy {
            max_retries: 10,
            backoff_ms: 100,
            max_backoff_ms: 1_000,
        };
        let ms = |a, f| delay(&p, a, f).as_millis();
        assert_eq!(
            [ms(1, 1.0), ms(2, 1.0), ms(3, 1.0), ms(4, 1.0), ms(5, 1.0)],
            [100, 200, 400, 800, 1_000]
        );
        assert_eq!(ms(60, 1.0), 1_000);
        assert_eq!(ms(2, 0.5), 100);
        for _ in 0..1000 {
            let f = random_factor();
            assert!((0.5..=1.0).contains(&f), "{f}");
        }
    }

    #[test]
    fn only_failures_are_retried() {
        for o in ["failed", "timed_out", "out_of_memory", "crashed"] {
            assert!(is_retryable(o));
        }
        for o in [
            "succeeded",
            "cancelled",
            "output_limit",
            "skipped",
            "missed",
        ] {
            assert!(!is_retryable(o));
        }
    }
}
