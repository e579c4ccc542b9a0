//! `--test-plan`: a stepped load in one argument, e.g. `10:30s,50@5:1m,0:10s`.

use serde::Serialize;

use super::duration::parse_duration_s;

/// One stage: hold `users` (reached at `spawn_rate_per_s`, or at
/// `-r/--spawn-rate` when `None`) for `duration_s` seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    pub users: u64,
    pub spawn_rate_per_s: Option<f64>,
    pub duration_s: f64,
}

/// A whole plan: stages run one after another, then the run ends.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct TestPlan(pub Vec<Stage>);

/// Parses `USERS[@RATE]:DURATION` stages separated by commas, e.g.
/// `10:30s,50@5:1m,0:10s`: 10 users for 30 s, then 50 users (ramped at
/// 5 users/s) for a minute, then none for 10 s.
///
/// # Errors
/// A message naming the bad stage and the form it should take.
pub fn parse_test_plan(text: &str) -> Result<TestPlan, String> {
    let form = "give stages as USERS[@RATE]:DURATION separated by commas, e.g. 10:30s,50@5:1m";
    let stages = text
        .split(',')
        .map(str::trim)
        .map(|stage| {
            let bad = |why: &str| format!("test plan stage '{stage}': {why}: {form}");
            let (load, duration) = stage.split_once(':').ok_or_else(|| bad("no ':DURATION'"))?;
            let (users, rate) = match load.split_once('@') {
                Some((u, r)) => (u, Some(r)),
                None => (load, None),
            };
            let users = users
                .trim()
                .parse::<u64>()
                .map_err(|_| bad("users must be a whole number of 0 or more"))?;
            let spawn_rate_per_s = rate
                .map(|r| match r.trim().parse::<f64>() {
                    Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                    _ => Err(bad("the rate after '@' must be users per second above 0")),
                })
                .transpose()?;
            let duration_s = parse_duration_s(duration).map_err(|e| bad(&e))?;
            if duration_s <= 0.0 {
                return Err(bad("the duration must be above 0"));
            }
            Ok(Stage {
                users,
                spawn_rate_per_s,
                duration_s,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TestPlan(stages))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_parse() {
        let plan = parse_test_plan("10:30s, 50@5:1m,0:10").unwrap();
        assert_eq!(
            plan.0,
            vec![
                Stage {
                    users: 10,
                    spawn_rate_per_s: None,
                    duration_s: 30.0
                },
                Stage {
                    users: 50,
                    spawn_rate_per_s: Some(5.0),
                    duration_s: 60.0
                },
                Stage {
                    users: 0,
                    spawn_rate_per_s: None,
                    duration_s: 10.0
                },
            ]
        );
    }

    #[test]
    fn bad_stages_name_themselves() {
        for (text, needle) in [
            ("10", "'10': no ':DURATION'"),
            ("x:30s", "users must be"),
            ("5@0:30s", "rate after '@'"),
            ("5:10x", "not a duration"),
            ("5:0s", "above 0"),
        ] {
            let err = parse_test_plan(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }
}
