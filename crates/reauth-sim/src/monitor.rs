//! The invariants of SIM1, checked while a schedule runs and at its end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reauth::{EndReason, TokenSet};
use reauth_server::store::MemoryRepository;

/// What one schedule saw, and what broke.
///
/// * **fork** — two different refresh tokens published or stored for one
///   (lineage, generation), or one lineage spanning two server families;
/// * **spent twice** — the server detected reuse: a generation presented
///   again outside the grace window (a family revoked by a client's own
///   doing);
/// * **spurious logout** — a session ended as rejected or ended elsewhere
///   while its family was live and nobody had logged it out;
/// * **lost rotation** — after the faults healed, a live client could not
///   get a token the server accepts;
/// * **deadline** — a caller waited past its `wait_timeout`;
/// * **C3** — a 401 for a token set other than the published one marked the
///   published one refused;
/// * **C18** — a process sent a refresh while the store did not hold a live
///   lease granted to it;
/// * **not durable** — a caller got a bearer of a rotated set the store did
///   not hold yet (the store still held an older generation of its login),
///   and no write of that set by that process had failed (C13).
#[derive(Default, Debug)]
pub struct Monitor {
    /// The schedule: faults and operations, in simulated time.
    pub log: Vec<String>,
    /// Broken invariants, in the order they broke.
    pub violations: Vec<String>,
    by_stamp: BTreeMap<(String, u64), String>,
    families: BTreeMap<String, String>,
    logged_out: BTreeSet<String>,
    logout_failed: BTreeSet<String>,
    logged_out_ok: BTreeSet<String>,
    stored_lineage: Option<String>,
    replaced: BTreeSet<String>,
    rejected: bool,
    /// (process, lineage, generation) whose store write failed (C13).
    write_failed: BTreeSet<(String, String, u64)>,
    /// (lineage, generation) → who spent it, sent and answered when (ms).
    spends: BTreeMap<(String, u64), Vec<Spend>>,
    pub(crate) logins: Vec<TokenSet>,
    pub(crate) now_ms: i64,
    pub(crate) repo: Option<MemoryRepository>,
}

/// A refresh the server answered with a successor: who sent it, and when it
/// was sent and answered (ms of simulated time).
type Spend = (String, (i64, i64));

/// The monitor shared by every host of one seed.
pub(crate) type Shared = Arc<Mutex<Monitor>>;

pub(crate) fn with<T>(m: &Shared, f: impl FnOnce(&mut Monitor) -> T) -> T {
    f(&mut m.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The server family a refresh token names (`rt1_` + base64url(family ‖ …)).
pub(crate) fn family_of(t: &TokenSet) -> Option<String> {
    let rt = t.refresh_token.as_ref()?.secret();
    let raw = URL_SAFE_NO_PAD.decode(rt.strip_prefix("rt1_")?).ok()?;
    Some(raw.get(..16)?.iter().map(|b| format!("{b:02x}")).collect())
}

impl Monitor {
    /// Appends a line to the schedule.
    pub(crate) fn note(&mut self, line: impl AsRef<str>) {
        let t = self.now_ms;
        self.log.push(format!(
            "{:>4}.{:03}s {}",
            t / 1000,
            t % 1000,
            line.as_ref()
        ));
    }

    /// Records a broken invariant (and puts it in the schedule).
    pub(crate) fn violate(&mut self, what: impl Into<String>) {
        let what = what.into();
        self.note(format!("VIOLATION {what}"));
        self.violations.push(what);
    }

    /// A set some process published or stored: checks it against every other.
    pub(crate) fn observe(&mut self, who: &str, t: &TokenSet) {
        let lineage = t.lineage.as_str().to_owned();
        if lineage.is_empty() {
            return;
        }
        let rt = t
            .refresh_token
            .as_ref()
            .map(|r| r.secret().to_owned())
            .unwrap_or_default();
        let key = (lineage.clone(), t.generation.get());
        match self.by_stamp.get(&key) {
            Some(seen) if *seen != rt => self.violate(format!(
                "fork: {who} holds another refresh token for g{} of {lineage}",
                t.generation
            )),
            Some(_) => {}
            None => {
                self.by_stamp.insert(key, rt);
            }
        }
        if let Some(f) = family_of(t) {
            match self.families.get(&lineage) {
                Some(known) if *known != f => self.violate(format!(
                    "fork: lineage {lineage} spans families {known} and {f} ({who})"
                )),
                Some(_) => {}
                None => {
                    self.families.insert(lineage, f);
                }
            }
        }
    }

    /// `lineage` is being logged out by a client.
    pub(crate) fn logging_out(&mut self, lineage: &str) {
        self.logged_out.insert(lineage.to_owned());
    }

    /// The logout of `lineage` answered `Ok`: no set of it is left in the
    /// store, and none may ever come back (no logout undone).
    pub(crate) fn logged_out_ok(&mut self, lineage: &str) {
        self.logged_out_ok.insert(lineage.to_owned());
    }

    /// The store holds `t` now (`None`: nothing).
    pub(crate) fn stored(&mut self, who: &str, t: Option<&TokenSet>) {
        let now = t.map(|t| t.lineage.as_str().to_owned());
        if now != self.stored_lineage {
            if let Some(old) = self.stored_lineage.take() {
                self.replaced.insert(old);
            }
            self.stored_lineage.clone_from(&now);
            if let Some(l) = &now
                && self.replaced.contains(l)
            {
                self.violate(format!(
                    "login resurrected: the store holds {l} again after another login or a logout replaced it"
                ));
            }
        }
        let Some(t) = t else { return };
        self.observe(who, t);
        let lineage = t.lineage.as_str();
        if self.logged_out_ok.contains(lineage) {
            self.logged_out_ok.remove(lineage);
            self.violate(format!(
                "logout undone: the store holds g{} of {lineage} after its logout answered Ok",
                t.generation
            ));
        }
    }

    /// The logout of `lineage` reported that the store kept its set.
    pub(crate) fn logout_failed(&mut self, lineage: &str) {
        self.logout_failed.insert(lineage.to_owned());
    }

    /// Whether reuse detected on `family` is excused: a logout of one of its
    /// lineages told its caller that the store could not be cleared, so the
    /// store kept a set that the server may have rotated past (documented).
    pub(crate) fn reuse_excused(&self, family: &str) -> bool {
        self.families
            .iter()
            .any(|(l, f)| f == family && self.logout_failed.contains(l))
    }

    fn family_live(&self, lineage: &str) -> Option<bool> {
        let family = self.families.get(lineage)?;
        let repo = self.repo.as_ref()?;
        let row = repo.families().into_iter().find(|f| &f.id == family)?;
        Some(row.revoked_at.is_none())
    }

    /// A session of `lineage` ended for `reason`.
    pub(crate) fn ended(&mut self, who: &str, lineage: &str, reason: EndReason) {
        self.note(format!("{who}: session {lineage} ended: {reason:?}"));
        // The store is emptied by a logout (of any login) or by a rejected
        // refresh: only then may a session find it empty.
        let suspicious = match reason {
            EndReason::RefreshRejected => true,
            EndReason::EndedElsewhere => self.logged_out.is_empty() && !self.rejected,
            _ => false,
        };
        if reason == EndReason::RefreshRejected {
            self.rejected = true;
        }
        if suspicious
            && !self.logged_out.contains(lineage)
            && self.family_live(lineage) == Some(true)
        {
            self.violate(format!(
                "spurious logout: {who} ended {lineage} ({reason:?}) while its family is live and nobody logged it out"
            ));
        }
    }

    /// A write of (lineage, generation) by process `who` failed: it may be
    /// published in memory only (C13).
    pub(crate) fn write_failed(&mut self, who: &str, lineage: &str, generation: u64) {
        self.write_failed
            .insert((who.to_owned(), lineage.to_owned(), generation));
    }

    /// C18: process `who` is sending a refresh of g`generation` of `lineage`
    /// while the store's live lease (if any) is `holder`'s.
    pub(crate) fn refreshing(
        &mut self,
        who: &str,
        holder: Option<&str>,
        lineage: &str,
        generation: u64,
    ) {
        if holder != Some(who) {
            self.violate(format!(
                "C18: {who} sent a refresh of g{generation} of {lineage} while the store's lease was {}",
                holder.map_or_else(|| "free".to_owned(), |h| format!("{h}'s"))
            ));
        }
    }

    /// C18: process `who` received the answer to its refresh of
    /// g`generation` of `lineage`, sent and answered at `span` (ms), while
    /// the store's live lease (if any) was `holder`'s. `spent`: the server
    /// answered with a successor. A generation is spent at most once per
    /// lineage, but for a retry inside the grace window by the process
    /// that spent it — or by another after the spender's lease ended: two
    /// processes' answered refreshes of one generation never overlap.
    pub(crate) fn refreshed(
        &mut self,
        who: &str,
        holder: Option<&str>,
        lineage: &str,
        generation: u64,
        span: (i64, i64),
        spent: bool,
    ) {
        if holder != Some(who) {
            self.violate(format!(
                "C18: {who} received the answer to its refresh of g{generation} of {lineage} after its lease ended (the store's lease was {})",
                holder.map_or_else(|| "free".to_owned(), |h| format!("{h}'s"))
            ));
        }
        if !spent {
            return;
        }
        let spends = self
            .spends
            .entry((lineage.to_owned(), generation))
            .or_default();
        if let Some((other, _)) = spends
            .iter()
            .find(|(w, (a, b))| w != who && *a <= span.1 && span.0 <= *b)
        {
            let other = other.clone();
            self.violate(format!(
                "spent twice: {who} and {other} both spent g{generation} of {lineage} at once (the grace window hid it)"
            ));
            return;
        }
        spends.push((who.to_owned(), span));
    }

    /// Nothing is answered as done before it is durable: a caller of process
    /// `who` got a bearer of g`generation` of `lineage` while the store held
    /// `stored` (lineage, generation).
    pub(crate) fn answered(
        &mut self,
        who: &str,
        lineage: &str,
        generation: u64,
        stored: Option<(String, u64)>,
    ) {
        let Some((l, g)) = stored else { return };
        if l == lineage
            && g < generation
            && !self
                .write_failed
                .contains(&(who.to_owned(), lineage.to_owned(), generation))
        {
            self.violate(format!(
                "not durable: {who} answered a caller with g{generation} of {lineage} while the store held g{g} and no write of it had failed"
            ));
        }
    }
}
