//! SIM1 in CI: seeded schedules within a seed count and a wall-clock budget.
//!
//! `REAUTH_SIM_SEEDS` (default 2000) bounds the count, `REAUTH_SIM_BUDGET_SECS`
//! (default 180) the time; `REAUTH_SIM_SEED=<n>` runs one seed and prints its
//! schedule (SIM2). A failure names its seed and prints its schedule.

use std::time::{Duration, Instant};

use reauth_sim::{Options, run_seed};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn sim1_invariants_hold_on_every_schedule() {
    let opts = Options::default();
    if let Ok(seed) = std::env::var("REAUTH_SIM_SEED") {
        let seed: u64 = seed.parse().expect("REAUTH_SIM_SEED is a number");
        let report = run_seed(seed, &opts);
        for line in &report.schedule {
            println!("{line}");
        }
        assert!(
            report.violations.is_empty(),
            "seed {seed}: {:?}",
            report.violations
        );
        return;
    }
    let first = env("REAUTH_SIM_FIRST_SEED", 0);
    let seeds = env("REAUTH_SIM_SEEDS", 2000);
    let budget = Duration::from_secs(env("REAUTH_SIM_BUDGET_SECS", 180));
    let began = Instant::now();
    let mut ran = 0u64;
    let mut steps = 0u64;
    for seed in first..first + seeds {
        if began.elapsed() >= budget {
            break;
        }
        let report = run_seed(seed, &opts);
        ran += 1;
        steps += report.steps;
        if !report.violations.is_empty() {
            for line in &report.schedule {
                eprintln!("{line}");
            }
            panic!(
                "seed {seed} broke {:?}\nreproduce: REAUTH_SIM_SEED={seed} cargo test -p reauth-sim --test sim -- --nocapture",
                report.violations
            );
        }
    }
    let secs = began.elapsed().as_secs_f64();
    println!(
        "SIM1: {ran} seeds ({first}..{}) in {secs:.1}s: {:.1} seeds/s, {:.0} steps/s",
        first + ran,
        ran as f64 / secs,
        steps as f64 / secs
    );
    assert!(ran > 0);
}

/// SIM2: a seed is its schedule. Run twice, a seed makes the same schedule
/// — every fault, operation and outcome in the same order at the same
/// simulated instant — so the command a failure prints reproduces it; and
/// another seed makes another schedule.
#[test]
fn sim2_a_seed_replays_to_the_same_schedule() {
    let opts = Options::default();
    let first = run_seed(5, &opts);
    let again = run_seed(5, &opts);
    let other = run_seed(6, &opts);
    assert!(first.schedule.len() > 50, "a schedule has events");
    assert!(
        first.schedule.iter().any(|l| l.contains("fault:")),
        "a schedule has faults"
    );
    assert_eq!(first.schedule, again.schedule);
    assert_eq!(first.steps, again.steps);
    assert_eq!(first.violations, again.violations);
    assert_ne!(first.schedule, other.schedule);
}
