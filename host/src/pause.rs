//! The circuit breaker's state: which roles of this process (the poller, the receiver) are
//! paused, and the one place where `pause`, `resume` and `flip` are applied, whether they came
//! over HTTP ([`crate::admin`]) or NATS ([`crate::management`]).
//!
//! Each role has its own switch, as each of the original's processes had its own breaker: a
//! paused poller scrapes and publishes only its own `promrelay` job; a paused receiver fetches
//! nothing. In a combined `promrelay run` a request without a role pauses the poller only, so the
//! receiver keeps pushing the relay's own job and the centre sees `promrelay_paused 1`.
//!
//! **Invariant:** a role that does not run in this process is never reported and cannot be
//! paused: a request naming it is refused, saying which roles run.

use tokio::sync::watch;

/// One part of the relay that can be paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Poller,
    Receiver,
}

impl Role {
    /// Both roles, in the order they are reported.
    pub const ALL: [Role; 2] = [Role::Poller, Role::Receiver];

    /// The name in requests, answers, metrics and events.
    pub fn name(self) -> &'static str {
        match self {
            Role::Poller => "poller",
            Role::Receiver => "receiver",
        }
    }
}

/// What a request pauses: one role, or every role that runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Role(Role),
    All,
}

impl Scope {
    /// The words a request may use, for help and error texts.
    pub const NAMES: &'static str = "poller, receiver or all";

    /// The word for this scope in requests.
    pub fn name(self) -> &'static str {
        match self {
            Scope::Role(role) => role.name(),
            Scope::All => "all",
        }
    }

    /// Reads `poller`, `receiver` or `all` (case-insensitive, surrounding blanks ignored).
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "poller" => Ok(Scope::Role(Role::Poller)),
            "receiver" => Ok(Scope::Role(Role::Receiver)),
            "all" => Ok(Scope::All),
            other => Err(format!("unknown role {other:?}: use {}", Scope::NAMES)),
        }
    }
}

/// A change of the pause state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Pause,
    Resume,
    /// Pauses when none of the named roles is paused, else resumes them all: flipping `all`
    /// while only the poller is paused resumes the poller rather than swapping the two.
    Flip,
}

impl Change {
    /// The change an action name (`pause`, `resume`, `flip`) asks for; `None` for others.
    pub fn from_action(action: &str) -> Option<Change> {
        match action {
            "pause" => Some(Change::Pause),
            "resume" => Some(Change::Resume),
            "flip" => Some(Change::Flip),
            _ => None,
        }
    }
}

/// The pause switches of the roles of one process. Cloning shares them.
#[derive(Debug, Clone)]
pub struct Breaker {
    poller: watch::Sender<bool>,
    receiver: watch::Sender<bool>,
    runs_poller: bool,
    runs_receiver: bool,
}

impl Breaker {
    /// Switches for a process that runs the poller, the receiver or both, none paused.
    pub fn new(runs_poller: bool, runs_receiver: bool) -> Breaker {
        Breaker {
            poller: watch::channel(false).0,
            receiver: watch::channel(false).0,
            runs_poller,
            runs_receiver,
        }
    }

    fn switch(&self, role: Role) -> &watch::Sender<bool> {
        match role {
            Role::Poller => &self.poller,
            Role::Receiver => &self.receiver,
        }
    }

    /// Whether `role` runs in this process.
    pub fn runs(&self, role: Role) -> bool {
        match role {
            Role::Poller => self.runs_poller,
            Role::Receiver => self.runs_receiver,
        }
    }

    /// The roles that run here.
    pub fn roles(&self) -> impl Iterator<Item = Role> + '_ {
        Role::ALL.into_iter().filter(|role| self.runs(*role))
    }

    /// What a request without a role pauses: the poller where one runs, else the receiver.
    pub fn default_role(&self) -> Role {
        if self.runs_poller {
            Role::Poller
        } else {
            Role::Receiver
        }
    }

    /// `true` while `role` is paused; what its task watches.
    pub fn subscribe(&self, role: Role) -> watch::Receiver<bool> {
        self.switch(role).subscribe()
    }

    /// Whether `role` is paused now.
    pub fn is_paused(&self, role: Role) -> bool {
        *self.switch(role).borrow()
    }

    /// Whether any role that runs is paused: the meaning `paused` and the unlabelled
    /// `promrelay_paused` always had.
    pub fn any_paused(&self) -> bool {
        self.roles().any(|role| self.is_paused(role))
    }

    /// Applies `change` to `scope` (`None`: the [default role](Self::default_role)). Only a real
    /// change notifies the watchers (gauge, log line, lifecycle event). Refuses a role that does
    /// not run here.
    pub fn apply(&self, change: Change, scope: Option<Scope>) -> Result<(), String> {
        let roles: Vec<Role> = match scope.unwrap_or(Scope::Role(self.default_role())) {
            Scope::All => self.roles().collect(),
            Scope::Role(role) if self.runs(role) => vec![role],
            Scope::Role(role) => {
                let running: Vec<&str> = self.roles().map(Role::name).collect();
                return Err(format!(
                    "this relay runs no {} (it runs: {}); name one of those roles or all",
                    role.name(),
                    running.join(", ")
                ));
            }
        };
        let target = match change {
            Change::Pause => true,
            Change::Resume => false,
            Change::Flip => !roles.iter().any(|role| self.is_paused(*role)),
        };
        for role in roles {
            self.switch(role).send_if_modified(|paused| {
                let changed = *paused != target;
                *paused = target;
                changed
            });
        }
        Ok(())
    }

    /// The state as the management answers carry it: `{"paused": <any role>, "roles":
    /// {"poller": {"paused": …}, "receiver": {"paused": …}}}`, with only the roles that run.
    pub fn status(&self) -> serde_json::Value {
        let roles: serde_json::Map<String, serde_json::Value> = self
            .roles()
            .map(|role| {
                (
                    role.name().to_owned(),
                    serde_json::json!({ "paused": self.is_paused(role) }),
                )
            })
            .collect();
        serde_json::json!({ "paused": self.any_paused(), "roles": roles })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paused(breaker: &Breaker) -> (bool, bool) {
        (
            breaker.is_paused(Role::Poller),
            breaker.is_paused(Role::Receiver),
        )
    }

    #[test]
    fn a_request_without_a_role_pauses_the_poller_where_one_runs_else_the_receiver() {
        let combined = Breaker::new(true, true);
        combined.apply(Change::Pause, None).expect("pause");
        assert_eq!(paused(&combined), (true, false));
        assert!(combined.any_paused());

        let receiver = Breaker::new(false, true);
        receiver.apply(Change::Pause, None).expect("pause");
        assert_eq!(paused(&receiver), (false, true));
    }

    #[test]
    fn all_names_every_running_role_and_flip_pauses_only_when_none_is_paused() {
        let breaker = Breaker::new(true, true);
        breaker
            .apply(Change::Pause, Some(Scope::All))
            .expect("pause");
        assert_eq!(paused(&breaker), (true, true));
        breaker
            .apply(Change::Resume, Some(Scope::Role(Role::Receiver)))
            .expect("resume");
        assert_eq!(paused(&breaker), (true, false));
        // One paused: flipping all resumes all.
        breaker.apply(Change::Flip, Some(Scope::All)).expect("flip");
        assert_eq!(paused(&breaker), (false, false));
        breaker.apply(Change::Flip, Some(Scope::All)).expect("flip");
        assert_eq!(paused(&breaker), (true, true));
        breaker.apply(Change::Flip, None).expect("flip");
        assert_eq!(paused(&breaker), (false, true));
    }

    #[test]
    fn a_role_that_does_not_run_is_refused_and_not_reported() {
        let poller = Breaker::new(true, false);
        let error = poller
            .apply(Change::Pause, Some(Scope::Role(Role::Receiver)))
            .expect_err("no receiver here");
        assert!(
            error.contains("no receiver") && error.contains("poller"),
            "{error}"
        );
        assert!(!poller.any_paused());
        poller.apply(Change::Pause, Some(Scope::All)).expect("all");
        assert_eq!(
            poller.status(),
            serde_json::json!({ "paused": true, "roles": { "poller": { "paused": true } } })
        );
    }

    #[test]
    fn scopes_parse_case_insensitively_and_unknown_ones_name_the_choices() {
        assert_eq!(Scope::parse(" Poller "), Ok(Scope::Role(Role::Poller)));
        assert_eq!(Scope::parse("receiver"), Ok(Scope::Role(Role::Receiver)));
        assert_eq!(Scope::parse("ALL"), Ok(Scope::All));
        let error = Scope::parse("pusher").expect_err("unknown");
        assert!(
            error.contains("pusher") && error.contains(Scope::NAMES),
            "{error}"
        );
    }

    #[test]
    fn only_a_real_change_notifies_watchers() {
        let breaker = Breaker::new(true, true);
        let mut poller = breaker.subscribe(Role::Poller);
        breaker
            .apply(Change::Resume, Some(Scope::All))
            .expect("resume");
        assert!(!poller.has_changed().expect("open"));
        breaker.apply(Change::Pause, None).expect("pause");
        assert!(poller.has_changed().expect("open"));
        assert!(*poller.borrow_and_update());
    }
}
