//! `reauth-sim <seed>`: runs one seed and prints its schedule (SIM2).
//! `reauth-sim --soak <first> <count>`: a longer soak; stops at the first failure.

use reauth_sim::{Options, run_seed};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Options::default();
    let num = |i: usize, d: u64| args.get(i).and_then(|a| a.parse().ok()).unwrap_or(d);
    if args.first().map(String::as_str) == Some("--soak") {
        let (first, count) = (num(1, 0), num(2, 100_000));
        let began = std::time::Instant::now();
        for seed in first..first + count {
            let r = run_seed(seed, &opts);
            if !r.violations.is_empty() {
                r.schedule.iter().for_each(|l| println!("{l}"));
                println!("seed {seed} FAILED: {:?}", r.violations);
                std::process::exit(1);
            }
            if (seed - first + 1) % 100 == 0 {
                let n = seed - first + 1;
                println!(
                    "{n} seeds, {:.1} seeds/s",
                    n as f64 / began.elapsed().as_secs_f64()
                );
            }
        }
        println!("{count} seeds passed");
        return;
    }
    let seed = num(0, 0);
    let r = run_seed(seed, &opts);
    r.schedule.iter().for_each(|l| println!("{l}"));
    if r.violations.is_empty() {
        println!("seed {seed} passed ({} steps)", r.steps);
    } else {
        println!("seed {seed} FAILED: {:?}", r.violations);
        std::process::exit(1);
    }
}
