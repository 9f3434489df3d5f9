//! The scheduling-policy fields of a job as the API sets them: parsing the policy
//! names, bounds on every number, and their defaults.
//!
//! Errors name the field (`overlap`, `maxConcurrent`, …) in the API's spelling.

use web::dto::JobInput;
use web::{ServiceError, ServiceResult};

use crate::job::{ExecType, Job, MisfirePolicy, OverlapPolicy};

pub const MAX_CONCURRENT: u64 = 100;
pub const MAX_MISFIRE_WINDOW_S: u64 = 7 * 24 * 3600;
pub const MAX_CATCH_UP: u64 = 1_000;
pub const MAX_RETRIES: u64 = 20;
pub const MIN_BACKOFF_MS: u64 = 100;
pub const MAX_BACKOFF_MS: u64 = 24 * 3_600_000;
pub const MAX_JITTER_S: u64 = 3_600;
pub const MAX_SCRIPT_NOTE_CHARS: usize = 500;
pub const DEFAULT_MAX_CATCH_UP: u32 = 10;

fn in_range(field: &str, v: u64, min: u64, max: u64) -> ServiceResult<u64> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(ServiceError::invalid(
            field,
            format!("{field} must be between {min} and {max}, not {v}"),
        ))
    }
}

fn small(field: &str, v: u64, min: u64, max: u64) -> ServiceResult<u32> {
    // `max` is below u32::MAX for every field, so the cast cannot truncate.
    in_range(field, v, min, max).map(|v| v as u32)
}

/// Applies the policy fields present in `input` to `job`, checking each.
pub fn apply(job: &mut Job, input: &JobInput) -> ServiceResult<()> {
    if let Some(v) = &input.overlap {
        job.overlap = OverlapPolicy::parse(v).ok_or_else(|| {
            ServiceError::invalid(
                "overlap",
                format!("overlap must be allow, skip, queue_one or replace, not {v:?}"),
            )
        })?;
    }
    if let Some(v) = &input.misfire {
        job.misfire = MisfirePolicy::parse(v).ok_or_else(|| {
            ServiceError::invalid(
                "misfire",
                format!("misfire must be skip, run_once or run_all, not {v:?}"),
            )
        })?;
    }
    if let Some(v) = input.max_concurrent {
        job.max_concurrent = small("maxConcurrent", v, 1, MAX_CONCURRENT)?;
    }
    if let Some(v) = input.misfire_window_s {
        job.misfire_window_s = small("misfireWindowS", v, 0, MAX_MISFIRE_WINDOW_S)?;
    }
    if let Some(v) = input.max_catch_up {
        job.max_catch_up = small("maxCatchUp", v, 1, MAX_CATCH_UP)?;
    }
    if let Some(v) = input.retries {
        job.retry.max_retries = small("retries", v, 0, MAX_RETRIES)?;
    }
    if let Some(v) = input.retry_backoff_ms {
        job.retry.backoff_ms = in_range("retryBackoffMs", v, MIN_BACKOFF_MS, MAX_BACKOFF_MS)?;
    }
    if let Some(v) = input.retry_max_backoff_ms {
        job.retry.max_backoff_ms =
            in_range("retryMaxBackoffMs", v, MIN_BACKOFF_MS, MAX_BACKOFF_MS)?;
    }
    if let Some(v) = input.jitter_s {
        job.jitter_s = small("jitterS", v, 0, MAX_JITTER_S)?;
    }
    Ok(())
}

/// Rules across fields, checked on the merged job.
pub fn validate(job: &Job) -> ServiceResult<()> {
    if job.retry.max_backoff_ms < job.retry.backoff_ms {
        return Err(ServiceError::invalid(
            "retryMaxBackoffMs",
            format!(
                "retryMaxBackoffMs ({}) must not be below retryBackoffMs ({})",
                job.retry.max_backoff_ms, job.retry.backoff_ms
            ),
        ));
    }
    if job.jitter_s > 0 && job.exec_type == ExecType::Delay {
        return Err(ServiceError::invalid(
            "jitterS",
            "jitterS applies to timing jobs only; a delay job runs at its execAt",
        ));
    }
    Ok(())
}

/// Checks a script version note.
pub fn check_note(note: &str) -> ServiceResult<()> {
    if note.contains('\0') {
        return Err(ServiceError::invalid(
            "scriptNote",
            "scriptNote contains a NUL character",
        ));
    }
    if note.chars().count() > MAX_SCRIPT_NOTE_CHARS {
        return Err(ServiceError::invalid(
            "scriptNote",
            format!("scriptNote is longer than {MAX_SCRIPT_NOTE_CHARS} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::conformance::sample_job;

    fn input(json: &str) -> JobInput {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_policy_name_is_read_and_a_bad_one_names_its_field() {
        let mut job = sample_job("a");
        for name in ["allow", "skip", "queue_one", "replace"] {
            apply(&mut job, &input(&format!(r#"{{"overlap":"{name}"}}"#))).unwrap();
            assert_eq!(job.overlap.as_str(), name);
        }
        for name in ["skip", "run_once", "run_all"] {
            apply(&mut job, &input(&format!(r#"{{"misfire":"{name}"}}"#))).unwrap();
            assert_eq!(job.misfire.as_str(), name);
        }
        let bad = apply(&mut job, &input(r#"{"overlap":"sometimes"}"#)).unwrap_err();
        assert!(matches!(bad, ServiceError::Invalid { field: Some(f), .. } if f == "overlap"));
    }

    #[test]
    fn numbers_out_of_range_are_refused_naming_their_field() {
        let mut job = sample_job("a");
        let before = job.clone();
        let err = apply(&mut job, &input(r#"{"retries":21}"#)).unwrap_err();
        assert!(
            err.to_string().contains("retries must be between 0 and 20"),
            "{err}"
        );
        assert_eq!(job, before);
        for (json, field) in [
            (r#"{"maxConcurrent":0}"#, "maxConcurrent"),
            (r#"{"maxCatchUp":1001}"#, "maxCatchUp"),
            (r#"{"retryBackoffMs":5}"#, "retryBackoffMs"),
            (r#"{"jitterS":3601}"#, "jitterS"),
            (r#"{"misfireWindowS":999999999}"#, "misfireWindowS"),
        ] {
            let err = apply(&mut sample_job("a"), &input(json)).unwrap_err();
            assert!(
                matches!(&err, ServiceError::Invalid { field: Some(f), .. } if f == field),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn the_backoff_cap_must_not_be_below_the_base_and_delay_jobs_take_no_jitter() {
        let mut job = sample_job("a");
        apply(
            &mut job,
            &input(r#"{"retryBackoffMs":5000,"retryMaxBackoffMs":1000}"#),
        )
        .unwrap();
        assert!(validate(&job).is_err());
        let mut delay = sample_job("d");
        delay.exec_type = ExecType::Delay;
        delay.jitter_s = 5;
        assert!(validate(&delay).is_err());
    }
}
