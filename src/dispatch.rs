//! Which users run: how many of each user class, in what order they spawn,
//! and how they split over workers. Pure functions, no I/O.
//!
//! The rules follow Locust's `dispatch.py`: classes with a `fixed_count` are
//! served first, the remaining users are shared by weight, and during a
//! ramp-up the mix of spawned users stays as close to the weights as it can.

use thiserror::Error;

/// One user class as dispatch sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClassSpec {
    /// Relative share of the users not taken by fixed counts; 0 takes none.
    pub weight: f64,
    /// Exactly this many users, whatever the total (0 means "use weight").
    pub fixed_count: u64,
}

/// A user mix that cannot be dispatched.
#[derive(Debug, Error, PartialEq)]
pub enum DispatchError {
    #[error("no user classes to run")]
    NoClasses,
    #[error("user class weight must be 0 or more and finite, got {0}")]
    BadWeight(f64),
}

/// Users per class for `total` users: fixed counts first (in class order,
/// until the total runs out), then the rest by weight with the largest
/// remainder method, so the counts always sum to `total` exactly.
///
/// # Errors
/// [`DispatchError::NoClasses`] for an empty list, [`DispatchError::BadWeight`]
/// for a negative or non-finite weight.
pub fn user_counts(classes: &[ClassSpec], total: u64) -> Result<Vec<u64>, DispatchError> {
    if classes.is_empty() {
        return Err(DispatchError::NoClasses);
    }
    if let Some(c) = classes
        .iter()
        .find(|c| !(c.weight.is_finite() && c.weight >= 0.0))
    {
        return Err(DispatchError::BadWeight(c.weight));
    }
    let mut counts = vec![0u64; classes.len()];
    let mut left = total;
    for (i, c) in classes.iter().enumerate() {
        if c.fixed_count > 0 {
            counts[i] = c.fixed_count.min(left);
            left -= counts[i];
        }
    }
    let weighted: Vec<usize> = (0..classes.len())
        .filter(|&i| classes[i].fixed_count == 0)
        .collect();
    let weight_sum: f64 = weighted.iter().map(|&i| classes[i].weight).sum();
    if left == 0 || weighted.is_empty() {
        return Ok(counts);
    }
    // All weights zero: share evenly rather than drop users.
    let share = |i: usize| {
        if weight_sum > 0.0 {
            classes[i].weight / weight_sum
        } else {
            1.0 / weighted.len() as f64
        }
    };
    let mut remainders: Vec<(f64, usize)> = Vec::with_capacity(weighted.len());
    let mut given = 0u64;
    for &i in &weighted {
        let exact = left as f64 * share(i);
        let floor = exact.floor() as u64;
        counts[i] = floor;
        given += floor;
        remainders.push((exact - floor as f64, i));
    }
    // Largest remainders first; ties go to the class declared first.
    remainders.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, i) in remainders.iter().take((left - given) as usize) {
        counts[i] += 1;
    }
    Ok(counts)
}

/// The order in which to spawn `counts[i]` users of each class `i`, so that
/// every prefix of the order keeps the classes' proportions (smooth weighted
/// round-robin, as nginx balances upstreams).
pub fn spawn_order(counts: &[u64]) -> Vec<usize> {
    let total: u64 = counts.iter().sum();
    let mut current = vec![0i128; counts.len()];
    let mut left = counts.to_vec();
    let mut order = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best: Option<usize> = None;
        for i in 0..counts.len() {
            if left[i] == 0 {
                continue;
            }
            current[i] += counts[i] as i128;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let b = best.expect("a class with users left exists while the order is short");
        current[b] -= total as i128;
        left[b] -= 1;
        order.push(b);
    }
    order
}

/// Splits per-class counts over `workers` workers: for every class, no two
/// workers differ by more than one user, and the per-worker sums stay
/// balanced too (the extra users of each class go to the workers with the
/// fewest users so far).
///
/// Returns `workers` rows of per-class counts. With 0 workers, no rows.
pub fn split_over_workers(counts: &[u64], workers: usize) -> Vec<Vec<u64>> {
    let mut rows = vec![vec![0u64; counts.len()]; workers];
    if workers == 0 {
        return rows;
    }
    let mut load = vec![0u64; workers];
    for (c, &n) in counts.iter().enumerate() {
        let base = n / workers as u64;
        let extra = (n % workers as u64) as usize;
        for (w, row) in rows.iter_mut().enumerate() {
            row[c] = base;
            load[w] += base;
        }
        let mut by_load: Vec<usize> = (0..workers).collect();
        by_load.sort_by_key(|&w| (load[w], w));
        for &w in by_load.iter().take(extra) {
            rows[w][c] += 1;
            load[w] += 1;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(weight: f64) -> ClassSpec {
        ClassSpec {
            weight,
            fixed_count: 0,
        }
    }

    #[test]
    fn counts_follow_weights_and_sum_exactly() {
        assert_eq!(user_counts(&[w(3.0), w(1.0)], 40).unwrap(), [30, 10]);
        assert_eq!(
            user_counts(&[w(1.0), w(1.0), w(1.0)], 10).unwrap(),
            [4, 3, 3]
        );
        for total in 0..200 {
            let c = user_counts(&[w(5.0), w(2.0), w(0.5)], total).unwrap();
            assert_eq!(c.iter().sum::<u64>(), total);
        }
    }

    #[test]
    fn fixed_counts_come_first() {
        let classes = [
            ClassSpec {
                weight: 1.0,
                fixed_count: 2,
            },
            w(1.0),
            w(3.0),
        ];
        assert_eq!(user_counts(&classes, 10).unwrap(), [2, 2, 6]);
        assert_eq!(user_counts(&classes, 1).unwrap(), [1, 0, 0]);
    }

    #[test]
    fn bad_input_is_an_error() {
        assert_eq!(user_counts(&[], 3), Err(DispatchError::NoClasses));
        assert!(matches!(
            user_counts(&[w(-1.0)], 3),
            Err(DispatchError::BadWeight(_))
        ));
    }

    #[test]
    fn spawn_order_keeps_proportions_in_every_prefix() {
        let order = spawn_order(&[30, 10]);
        assert_eq!(order.len(), 40);
        for k in 1..=40 {
            let b = order[..k].iter().filter(|&&c| c == 1).count() as f64;
            assert!((b - k as f64 * 0.25).abs() <= 1.0, "prefix {k}: {b}");
        }
    }

    #[test]
    fn split_differs_by_at_most_one_per_class() {
        let rows = split_over_workers(&[7, 5, 1], 4);
        for c in 0..3 {
            let col: Vec<u64> = rows.iter().map(|r| r[c]).collect();
            assert!(col.iter().max().unwrap() - col.iter().min().unwrap() <= 1);
        }
        let loads: Vec<u64> = rows.iter().map(|r| r.iter().sum()).collect();
        assert_eq!(loads.iter().sum::<u64>(), 13);
        assert!(loads.iter().max().unwrap() - loads.iter().min().unwrap() <= 1);
    }
}
