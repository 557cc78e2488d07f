//! SIM3: the simulation checks itself. Built with `--cfg reauth_sim_mutants`
//! (never otherwise), `REAUTH_SIM_MUTANT=<name>` switches off one safeguard so
//! that `crates/reauth-sim` can show it catches its loss:
//!
//! | name | safeguard removed |
//! |---|---|
//! | `generation_recheck` | the single flight's re-check of the generation a caller saw (C3) |
//! | `lease_fence` | the holder's lease deadline and the store's fence on writes (C18) |
//! | `lineage` | the lineage check on the stored set (C19) |
//! | `persist_before_publish` | writing a rotated set before publishing it (C13) |
//!
//! In every other build [`on`] is a constant `false` and the code it guards
//! is removed by the compiler: no product build carries a switch.

/// Whether the SIM3 mutant `name` is switched on.
#[cfg(reauth_sim_mutants)]
pub(crate) fn on(name: &str) -> bool {
    std::env::var("REAUTH_SIM_MUTANT").is_ok_and(|v| v == name)
}

/// Whether the SIM3 mutant `name` is switched on: never, in this build.
#[cfg(not(reauth_sim_mutants))]
#[inline(always)]
pub(crate) const fn on(_name: &str) -> bool {
    false
}
