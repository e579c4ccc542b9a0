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

/// Global user indexes (`user_index`, 0 to N-1 over the whole cluster) for
/// new per-worker, per-class user counts, keeping every index a running user
/// already has wherever it can, so an index stays with its user for the run.
///
/// `owned[w][c]` holds the indexes worker `w` runs for class `c` now (empty
/// for a new worker; a lost worker is simply left out, which frees its
/// indexes); `counts[w][c]` is what it should run. Returns the new
/// `owned`, of the shape of `counts`. A worker with too many users of a class
/// gives up its highest indexes; an index at or above the new total N is
/// given up too; the indexes freed or never used go, smallest first, to the
/// workers that lack users.
///
/// # Panics
/// If `owned` has fewer rows than `counts` (a caller's bug).
pub fn assign_user_indexes(owned: &[Vec<Vec<u64>>], counts: &[Vec<u64>]) -> Vec<Vec<Vec<u64>>> {
    let total: u64 = counts.iter().flatten().sum();
    let mut kept: Vec<Vec<Vec<u64>>> = counts
        .iter()
        .enumerate()
        .map(|(w, row)| {
            row.iter()
                .enumerate()
                .map(|(c, &n)| {
                    let mut have: Vec<u64> = owned[w]
                        .get(c)
                        .map(|v| v.iter().copied().filter(|&i| i < total).collect())
                        .unwrap_or_default();
                    have.sort_unstable();
                    have.truncate(n as usize);
                    have
                })
                .collect()
        })
        .collect();
    let used: std::collections::HashSet<u64> = kept.iter().flatten().flatten().copied().collect();
    let mut free = (0..total).filter(|i| !used.contains(i));
    for (w, row) in counts.iter().enumerate() {
        for (c, &n) in row.iter().enumerate() {
            let have = &mut kept[w][c];
            while (have.len() as u64) < n {
                have.push(
                    free.next()
                        .expect("the free indexes cover every missing user"),
                );
            }
        }
    }
    kept
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

    fn all_indexes(owned: &[Vec<Vec<u64>>]) -> Vec<u64> {
        let mut v: Vec<u64> = owned.iter().flatten().flatten().copied().collect();
        v.sort_unstable();
        v
    }

    #[test]
    fn user_indexes_cover_0_to_n_once_and_stay_put() {
        // Two workers, two classes, 7 users.
        let counts = vec![vec![2, 2], vec![2, 1]];
        let first = assign_user_indexes(&[vec![], vec![]], &counts);
        assert_eq!(all_indexes(&first), (0..7).collect::<Vec<_>>());
        // A third worker joins: the others give up users, and keep the rest.
        let counts = vec![vec![1, 1], vec![1, 1], vec![1, 2]];
        let second = assign_user_indexes(&[first[0].clone(), first[1].clone(), vec![]], &counts);
        assert_eq!(all_indexes(&second), (0..7).collect::<Vec<_>>());
        for w in 0..2 {
            for c in 0..2 {
                assert!(second[w][c].iter().all(|i| first[w][c].contains(i)));
            }
        }
        // Worker 0 is lost: its indexes go to the survivors; theirs stay.
        let counts = vec![vec![2, 1], vec![1, 3]];
        let third = assign_user_indexes(&[second[1].clone(), second[2].clone()], &counts);
        assert_eq!(all_indexes(&third), (0..7).collect::<Vec<_>>());
        assert!(third[0][0].contains(&second[1][0][0]));
        assert!(third[1][1].contains(&second[2][1][0]));
    }

    #[test]
    fn shrinking_gives_up_the_highest_indexes() {
        let owned = vec![vec![vec![0, 1, 2, 3, 4]]];
        assert_eq!(
            assign_user_indexes(&owned, &[vec![3]]),
            vec![vec![vec![0, 1, 2]]]
        );
        // An index at or above the new total is given up even where the
        // worker keeps its count: its replacement takes a free low index.
        let owned = vec![vec![vec![4]], vec![vec![0]]];
        let got = assign_user_indexes(&owned, &[vec![1], vec![1]]);
        assert_eq!(all_indexes(&got), vec![0, 1]);
        assert_eq!(got[1], vec![vec![0]]);
    }
}
