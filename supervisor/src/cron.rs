//! Cron expressions and time zones: parsing, validation and "when is the next
//! occurrence".
//!
//! The dialect is croner's: 5 fields (`min hour dom month dow`, second 0), 6 fields
//! (seconds first: `0 0 8 ? * MON` is Mondays 08:00:00), 7 fields (a year last); names,
//! `?`, ranges, lists, steps (also Quartz's `0/10`), `L`, `W`, `#`, and the macros
//! `@yearly @annually @monthly @weekly @daily @hourly`. On top of it, `@every <n><unit>`
//! (units `ms s m h d`) fires at every multiple of the interval since the Unix epoch, so
//! all nodes and restarts agree on its instants. Weekdays are POSIX: 0 and 7 are Sunday.
//!
//! Parsed expressions are interned: a million jobs on `0 * * * *` share one parse.
//! This module knows nothing of jobs or scheduling; it only answers questions about time.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::CronParser;
use parking_lot::Mutex;

/// A parsed schedule in a time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    kind: Kind,
    tz: Tz,
}

#[derive(Debug, Clone)]
enum Kind {
    Cron(Arc<Cron>),
    Every { period_ms: i64 },
}

/// Why an expression or zone was refused, in words fit for an API error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(pub String);

/// Longest expression accepted; real ones are far shorter.
const MAX_EXPR_LEN: usize = 256;
/// Smallest `@every` period: below this the scheduler would be a busy loop.
const MIN_EVERY_MS: i64 = 100;

pub fn parse_timezone(name: &str) -> Result<Tz, CronError> {
    let name = name.trim();
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>().map_err(|_| {
        CronError(format!(
            "unknown time zone {name:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""
        ))
    })
}

impl Schedule {
    /// Parses `expr` in the IANA zone `timezone` (empty means UTC).
    pub fn parse(expr: &str, timezone: &str) -> Result<Schedule, CronError> {
        let tz = parse_timezone(timezone)?;
        let expr = expr.trim();
        if expr.is_empty() {
            return Err(CronError("the cron expression is empty".into()));
        }
        if expr.len() > MAX_EXPR_LEN {
            return Err(CronError(format!(
                "the cron expression is longer than {MAX_EXPR_LEN} characters"
            )));
        }
        let kind = match expr.strip_prefix("@every") {
            Some(rest) => Kind::Every {
                period_ms: parse_every(rest.trim())?,
            },
            None => Kind::Cron(intern(expr)?),
        };
        Ok(Schedule { kind, tz })
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The first occurrence strictly after `after_ms` (Unix ms), or `None` if there is
    /// none (an expression whose years are all past).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every { period_ms } => {
                let p = *period_ms;
                Some((after_ms.div_euclid(p) + 1).checked_mul(p)?)
            }
            Kind::Cron(cron) => {
                // croner works in whole seconds: start from the second containing
                // `after_ms`, exclusive, which is strictly after `after_ms` because
                // occurrences fall on whole seconds.
                let secs = after_ms.div_euclid(1000);
                let start = self.tz.timestamp_opt(secs, 0).single()?;
                let next = cron.find_next_occurrence(&start, false).ok()?;
                Some(next.timestamp_millis())
            }
        }
    }

    /// The latest occurrence at or before `at_ms`, or `None` if there is none.
    pub fn prev_at_or_before(&self, at_ms: i64) -> Option<i64> {
        match &self.kind {
            Kind::Every { period_ms } => Some(at_ms.div_euclid(*period_ms) * period_ms),
            Kind::Cron(cron) => {
                let secs = at_ms.div_euclid(1000);
                let start = self.tz.timestamp_opt(secs, 0).single()?;
                let prev = cron.find_previous_occurrence(&start, true).ok()?;
                Some(prev.timestamp_millis())
            }
        }
    }

    /// The next `count` occurrences after `after_ms`.
    pub fn upcoming(&self, after_ms: i64, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut t = after_ms;
        while out.len() < count {
            let Some(next) = self.next_after(t) else {
                break;
            };
            let Some(dt) = DateTime::<Utc>::from_timestamp_millis(next) else {
                break;
            };
            out.push(dt);
            t = next;
        }
        out
    }
}

fn parse_every(rest: &str) -> Result<i64, CronError> {
    let bad = || {
        CronError(format!(
            "@every needs a duration such as \"@every 10s\" (units ms, s, m, h, d), not {rest:?}"
        ))
    };
    let split = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (num, unit) = rest.split_at(split);
    let n: i64 = num.parse().map_err(|_| bad())?;
    let unit_ms = match unit.trim() {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(bad()),
    };
    let period = n.checked_mul(unit_ms).ok_or_else(bad)?;
    if period < MIN_EVERY_MS {
        return Err(CronError(format!(
            "@every must be at least {MIN_EVERY_MS} ms"
        )));
    }
    Ok(period)
}

fn parser() -> CronParser {
    CronParser::builder().sloppy_ranges(true).build()
}

fn intern(expr: &str) -> Result<Arc<Cron>, CronError> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<Cron>>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(c) = cache.lock().get(expr) {
        return Ok(c.clone());
    }
    let cron = Arc::new(
        parser()
            .parse(expr)
            .map_err(|e| CronError(format!("invalid cron expression {expr:?}: {e}")))?,
    );
    let mut map = cache.lock();
    // The cache only grows with distinct expressions; bound it so that a flood of unique
    // expressions (e.g. previews typed character by character) cannot grow it forever.
    if map.len() >= 100_000 {
        map.clear();
    }
    map.insert(expr.to_owned(), cron.clone());
    Ok(cron)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, Timelike, Weekday};

    fn ms(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn next(expr: &str, tz: &str, after: &str) -> String {
        let s = Schedule::parse(expr, tz).unwrap();
        let n = s.next_after(ms(after)).unwrap();
        DateTime::<Utc>::from_timestamp_millis(n)
            .unwrap()
            .with_timezone(&s.timezone())
            .to_rfc3339()
    }

    fn local_times(expr: &str, tz: &str, from: &str, count: usize) -> Vec<String> {
        let s = Schedule::parse(expr, tz).unwrap();
        s.upcoming(ms(from), count)
            .into_iter()
            .map(|d| d.with_timezone(&s.timezone()).to_rfc3339())
            .collect()
    }

    #[test]
    fn six_fields_are_seconds_first_as_in_the_seed_readme() {
        // 2026-11-24 is a Tuesday.
        assert_eq!(
            next("0 0 8 ? * MON", "UTC", "2026-11-24T00:00:00Z"),
            "2026-11-30T08:00:00+00:00"
        );
    }

    #[test]
    fn five_fields_fire_at_second_zero() {
        assert_eq!(
            next("*/15 * * * *", "UTC", "2026-11-24T10:07:31Z"),
            "2026-11-24T10:15:00+00:00"
        );
    }

    #[test]
    fn weekdays_are_numbered_from_sunday_zero_like_the_seed() {
        assert_eq!(
            next("0 0 8 * * 1", "UTC", "2026-11-24T00:00:00Z"),
            "2026-11-30T08:00:00+00:00"
        );
        assert_eq!(
            next("0 0 * * 0", "UTC", "2026-11-24T00:00:00Z"),
            "2026-11-29T00:00:00+00:00"
        );
    }

    #[test]
    fn seven_fields_carry_a_year() {
        assert_eq!(
            next("0 30 9 1 JAN ? 2028", "UTC", "2026-11-24T00:00:00Z"),
            "2028-01-01T09:30:00+00:00"
        );
        let past = Schedule::parse("0 0 0 1 1 ? 2020", "UTC").unwrap();
        assert_eq!(past.next_after(ms("2026-11-24T00:00:00Z")), None);
    }

    #[test]
    fn last_day_of_month_and_nearest_weekday_and_nth_weekday() {
        assert_eq!(
            next("0 0 L * *", "UTC", "2027-02-01T00:00:00Z"),
            "2027-02-28T00:00:00+00:00"
        );
        // 2027-05-15 is a Saturday: the nearest weekday is Friday the 14th.
        assert_eq!(
            next("0 0 15W * *", "UTC", "2027-05-01T00:00:00Z"),
            "2027-05-14T00:00:00+00:00"
        );
        // The second Tuesday of December 2026 is the 8th.
        assert_eq!(
            next("0 0 * * TUE#2", "UTC", "2026-12-01T00:00:00Z"),
            "2026-12-08T00:00:00+00:00"
        );
        // The last Friday of November 2026 is the 27th.
        assert_eq!(
            next("0 0 * * 5L", "UTC", "2026-11-24T00:00:00Z"),
            "2026-11-27T00:00:00+00:00"
        );
    }

    #[test]
    fn macros_and_quartz_steps() {
        assert_eq!(
            next("@daily", "UTC", "2026-11-24T10:00:00Z"),
            "2026-11-25T00:00:00+00:00"
        );
        assert_eq!(
            next("@hourly", "UTC", "2026-11-24T10:00:00Z"),
            "2026-11-24T11:00:00+00:00"
        );
        assert_eq!(
            next("0/10 * * * * *", "UTC", "2026-11-24T10:00:01Z"),
            "2026-11-24T10:00:10+00:00"
        );
    }

    #[test]
    fn every_is_aligned_to_the_epoch() {
        assert_eq!(
            next("@every 10s", "UTC", "2026-11-24T10:00:01.500Z"),
            "2026-11-24T10:00:10+00:00"
        );
        assert!(Schedule::parse("@every 10", "UTC").is_err());
        assert!(Schedule::parse("@every 1ms", "UTC").is_err());
        assert!(Schedule::parse("@every 99999999999999999d", "UTC").is_err());
    }

    #[test]
    fn prev_is_at_or_before() {
        let s = Schedule::parse("*/10 * * * * *", "UTC").unwrap();
        let t = ms("2026-11-24T10:00:10Z");
        assert_eq!(s.prev_at_or_before(t), Some(t));
        assert_eq!(s.prev_at_or_before(t + 999), Some(t));
        assert_eq!(s.prev_at_or_before(t - 1), Some(t - 10_000));
        let e = Schedule::parse("@every 10s", "UTC").unwrap();
        assert_eq!(e.prev_at_or_before(t + 5), Some(t));
    }

    #[test]
    fn next_is_strictly_after_even_on_an_occurrence() {
        let s = Schedule::parse("* * * * * *", "UTC").unwrap();
        let t = ms("2026-11-24T10:00:00Z");
        assert_eq!(s.next_after(t), Some(t + 1000));
        assert_eq!(s.next_after(t - 1), Some(t));
    }

    #[test]
    fn spring_forward_in_berlin_runs_once_at_three() {
        // 2027-03-28: 02:00 becomes 03:00 in Europe/Berlin.
        let got = local_times("0 30 2 * * *", "Europe/Berlin", "2027-03-27T00:00:00Z", 3);
        assert_eq!(
            got,
            [
                "2027-03-27T02:30:00+01:00",
                "2027-03-28T03:00:00+02:00",
                "2027-03-29T02:30:00+02:00"
            ]
        );
    }

    #[test]
    fn fall_back_in_berlin_runs_once() {
        // 2026-10-25: 03:00 becomes 02:00 again; 02:30 happens twice on the clock.
        let got = local_times("0 30 2 * * *", "Europe/Berlin", "2026-10-24T00:00:00Z", 3);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], "2026-10-24T02:30:00+02:00");
        assert!(got[1].starts_with("2026-10-25T02:30:00"), "{got:?}");
        assert_eq!(got[2], "2026-10-26T02:30:00+01:00");
    }

    #[test]
    fn spring_forward_and_fall_back_in_new_york() {
        // 2027-03-14: 02:00 becomes 03:00 in America/New_York.
        let spring = local_times("30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", 2);
        assert_eq!(
            spring,
            ["2027-03-14T03:00:00-04:00", "2027-03-15T02:30:00-04:00"]
        );
        // 2026-11-01: 02:00 becomes 01:00; a 01:30 job sees 01:30 twice on the clock.
        let fall = local_times("30 1 * * *", "America/New_York", "2026-10-31T12:00:00Z", 3);
        assert_eq!(
            fall,
            [
                "2026-11-01T01:30:00-04:00",
                "2026-11-02T01:30:00-05:00",
                "2026-11-03T01:30:00-05:00"
            ]
        );
    }

    #[test]
    fn time_zones_shift_the_instant() {
        let s = Schedule::parse("0 8 * * *", "Asia/Shanghai").unwrap();
        let n = s.next_after(ms("2026-11-23T23:00:00Z")).unwrap();
        let local = DateTime::<Utc>::from_timestamp_millis(n)
            .unwrap()
            .with_timezone(&s.timezone());
        assert_eq!((local.hour(), local.minute()), (8, 0));
        assert_eq!(local.weekday(), Weekday::Tue);
        assert_eq!(n, ms("2026-11-24T00:00:00Z"));
        // Strictly after: the next one is a day later.
        assert_eq!(s.next_after(n), Some(n + 86_400_000));
    }

    #[test]
    fn bad_input_is_refused_with_a_reason() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "* * * * * * * *",
            "nonsense",
            "@fortnightly",
        ] {
            let e = Schedule::parse(bad, "UTC").unwrap_err();
            assert!(!e.0.is_empty(), "{bad}");
        }
        let e = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(e.0.contains("Mars/Olympus"), "{e}");
        assert!(Schedule::parse(&"*".repeat(300), "UTC").is_err());
    }

    #[test]
    fn interning_shares_one_parse() {
        let a = Schedule::parse("7 7 * * *", "UTC").unwrap();
        let b = Schedule::parse("7 7 * * *", "Europe/Paris").unwrap();
        match (&a.kind, &b.kind) {
            (Kind::Cron(x), Kind::Cron(y)) => assert!(Arc::ptr_eq(x, y)),
            _ => panic!("not cron"),
        }
    }
}
