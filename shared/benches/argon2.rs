//! Prints the argon2id hash time at the service's parameters (no assertion: a figure).

use std::time::Instant;

use auth::domain::password::{Password, PasswordHasher};
use auth::settings::Argon2Cost;

fn main() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hasher = PasswordHasher::new(Argon2Cost::default()).expect("hasher");
    let password = Password::new("correct-horse-battery-9".into());
    let mut times: Vec<f64> = (0..20)
        .map(|_| {
            let started = Instant::now();
            runtime.block_on(hasher.hash(&password)).expect("hash");
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let cost = Argon2Cost::default();
    println!(
        "argon2id m={} KiB t={} p={}: median {:.1} ms, min {:.1} ms, max {:.1} ms (20 hashes)",
        cost.memory_kib, cost.iterations, cost.parallelism, times[10], times[0], times[19]
    );
}
