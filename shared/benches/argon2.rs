//! Prints the argon2id hash time at the service's parameters (no assertion: a figure), beside a
//! reference measured in the same run: the argon2 crate called directly, into one reused `Vec`
//! in ordinary 4 KiB pages (the crate's own speed on this machine, with nothing of the service
//! around it). The service's memory sits in huge pages where the kernel allows, so it can beat
//! the reference.

use std::time::Instant;

use argon2::{Algorithm, Argon2, Block, Params, Version};
use auth::domain::password::{Password, PasswordHasher};
use auth::settings::Argon2Cost;

const HASHES: usize = 20;

/// (median, min, max) in ms of `HASHES` runs of `hash`.
fn timed(mut hash: impl FnMut()) -> (f64, f64, f64) {
    let mut times: Vec<f64> = (0..HASHES)
        .map(|_| {
            let started = Instant::now();
            hash();
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (times[HASHES / 2], times[0], times[HASHES - 1])
}

fn main() {
    let cost = Argon2Cost::default();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let hasher = PasswordHasher::new(cost).expect("hasher");
    let password = Password::new("correct-horse-battery-9".into());

    let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None).unwrap();
    let reference = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    let mut memory = vec![Block::default(); params.block_count()];
    let mut output = [0u8; 32];
    // Alternate the two, so both see the same machine.
    let mut service = Vec::new();
    let mut direct = Vec::new();
    for _ in 0..3 {
        service.push(timed(|| {
            runtime.block_on(hasher.hash(&password)).expect("hash");
        }));
        direct.push(timed(|| {
            reference
                .hash_password_into_with_memory(
                    b"correct-horse-battery-9",
                    b"a-sixteen-b-salt",
                    &mut output,
                    &mut memory,
                )
                .expect("hash");
        }));
    }
    let best = |runs: &[(f64, f64, f64)]| {
        let median = runs.iter().map(|r| r.0).fold(f64::MAX, f64::min);
        let min = runs.iter().map(|r| r.1).fold(f64::MAX, f64::min);
        let max = runs.iter().map(|r| r.2).fold(0.0, f64::max);
        (median, min, max)
    };
    let (median, min, max) = best(&service);
    let (ref_median, ref_min, _) = best(&direct);
    println!(
        "argon2id m={} KiB t={} p={}: median {median:.1} ms, min {min:.1} ms, max {max:.1} ms \
         ({} hashes); the crate directly, one reused Vec in 4 KiB pages: median {ref_median:.1} \
         ms, min {ref_min:.1} ms: the service's hash takes {:.0}% of the crate's time",
        cost.memory_kib,
        cost.iterations,
        cost.parallelism,
        3 * HASHES,
        100.0 * min / ref_min
    );
}
