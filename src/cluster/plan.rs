//! What each worker runs: the pure part of the master's dispatch.

use serde::{Deserialize, Serialize};

use super::protocol::ClassUsers;
use crate::dispatch::{self, ClassSpec, DispatchError};

/// One user class as the master's options describe it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassPlan {
    pub name: String,
    pub weight: f64,
    pub fixed_count: u64,
}

/// Per-worker user counts for `users` users over `workers` workers (in
/// worker-index order): every class split so no two workers differ by more
/// than one user, fixed counts honoured over the whole cluster.
///
/// # Errors
/// [`DispatchError`] for no classes or a bad weight.
pub fn assign_users(
    classes: &[ClassPlan],
    users: u64,
    workers: usize,
) -> Result<Vec<Vec<ClassUsers>>, DispatchError> {
    let specs: Vec<ClassSpec> = classes
        .iter()
        .map(|c| ClassSpec {
            weight: c.weight,
            fixed_count: c.fixed_count,
        })
        .collect();
    let counts = dispatch::user_counts(&specs, users)?;
    Ok(dispatch::split_over_workers(&counts, workers)
        .into_iter()
        .map(|row| {
            classes
                .iter()
                .zip(row)
                .map(|(c, n)| ClassUsers {
                    name: c.name.clone(),
                    users: n,
                    user_indexes: Vec::new(),
                })
                .collect()
        })
        .collect())
}

/// `total` iterations split exactly over `workers`: the first `total %
/// workers` workers take one more.
pub fn split_iterations(total: u64, workers: usize) -> Vec<u64> {
    if workers == 0 {
        return Vec::new();
    }
    let n = workers as u64;
    (0..n)
        .map(|i| total / n + u64::from(i < total % n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_split_evenly_per_class() {
        let classes = vec![
            ClassPlan {
                name: "A".into(),
                weight: 3.0,
                fixed_count: 0,
            },
            ClassPlan {
                name: "B".into(),
                weight: 1.0,
                fixed_count: 0,
            },
            ClassPlan {
                name: "Admin".into(),
                weight: 1.0,
                fixed_count: 1,
            },
        ];
        let rows = assign_users(&classes, 41, 4).unwrap();
        let total: u64 = rows.iter().flatten().map(|c| c.users).sum();
        assert_eq!(total, 41);
        let admins: u64 = rows.iter().map(|r| r[2].users).sum();
        assert_eq!(admins, 1);
        for c in 0..3 {
            let col: Vec<u64> = rows.iter().map(|r| r[c].users).collect();
            assert!(
                col.iter().max().unwrap() - col.iter().min().unwrap() <= 1,
                "{col:?}"
            );
        }
    }

    #[test]
    fn iterations_split_exactly() {
        assert_eq!(split_iterations(10, 4), [3, 3, 2, 2]);
        assert_eq!(split_iterations(2, 4), [1, 1, 0, 0]);
        assert_eq!(split_iterations(10, 0), Vec::<u64>::new());
    }
}
