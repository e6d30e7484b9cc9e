//! The abuse limits (docs/api.md#abuse-limits): each attempt is counted in every scope that
//! applies, all or none, *before* it is checked. A refused attempt (429) counts nowhere.

use crate::domain::client_ip::ClientIp;
use crate::domain::records::{User, UserId};

use crate::domain::throttle::{window_start, Counter, Rule};
use crate::store::{CounterKey, CounterWrite, Effects};
use crate::Error;

use super::Service;

/// The epoch address + IP records are counted under: the account's last completed reset (a
/// reset sets last login, and nothing else here does; 0 without an account). A reset moves it,
/// which voids every address + IP record of the address at once, whatever IPs they name.
pub fn reset_epoch(user: Option<&User>) -> i64 {
    user.and_then(|u| u.last_login).unwrap_or(0)
}

/// An address + IP counter as it counts under `epoch`: one from before the last reset is void
/// (only its version still matters, to replace it).
pub fn under_epoch(counter: Counter, epoch: i64) -> Counter {
    match counter.epoch == epoch {
        true => counter,
        false => Counter {
            epoch,
            version: counter.version,
            ..Counter::default()
        },
    }
}

/// How often a count is retried after losing a race to another request's count.
const SWAP_ATTEMPTS: usize = 32;
const HOUR: i64 = 3600;
const DAY: i64 = 24 * HOUR;

/// One scope of a limit: its counter, its rule, and how long its record lives after a write.
#[derive(Debug, Clone)]
pub struct Scope {
    pub key: CounterKey,
    pub rule: Rule,
    pub expires_at: i64,
}

/// The login scopes of one attempt (docs/api.md#login-limits).
pub struct LoginScopes {
    pub address_ip: Scope,
    pub address: Scope,
    pub ip: Scope,
}

impl LoginScopes {
    pub fn keys(&self) -> [CounterKey; 3] {
        [
            self.address_ip.key.clone(),
            self.address.key.clone(),
            self.ip.key.clone(),
        ]
    }
}

impl Service {
    /// The three login scopes for an address key and a client.
    pub fn login_scopes(&self, email_norm: &str, client: ClientIp) -> LoginScopes {
        let limits = &self.settings.limits;
        let now = self.now();
        let backoff = |free| Rule::Backoff {
            free,
            cap_secs: limits.backoff_cap_secs,
        };
        let window = window_start(now, limits.login_ip_bucket_secs);
        LoginScopes {
            address_ip: Scope {
                key: CounterKey::LoginAddressIp {
                    email_norm: email_norm.to_owned(),
                    ip: client.key(),
                },
                rule: backoff(limits.login_free_per_address_ip),
                expires_at: now + limits.login_record_secs,
            },
            address: Scope {
                key: CounterKey::LoginAddress {
                    email_norm: email_norm.to_owned(),
                },
                rule: backoff(limits.login_free_per_address),
                expires_at: now + limits.login_record_secs,
            },
            ip: Scope {
                key: CounterKey::LoginIp {
                    ip: client.key(),
                    window,
                },
                rule: Rule::Window {
                    free: limits.login_failures_per_ip,
                    ends_at: window + limits.login_ip_bucket_secs,
                },
                expires_at: window + HOUR,
            },
        }
    }

    /// Counts one attempt in each scope that applies (all or none), retrying with a fresh read
    /// when another request counted first, or answers 429 with the longest wait of the scopes
    /// that refuse. `prepare` turns the counters as read (one per scope) into the counters as
    /// they count, `None` for a scope that does not apply; it runs again on every fresh read.
    /// Answers, per scope, the counter as written (or as read, for a scope that did not apply).
    pub async fn count_attempt(
        &self,
        scopes: &[&Scope],
        read: Vec<Counter>,
        prepare: &(dyn Fn(Vec<Counter>) -> Vec<Option<Counter>> + Sync),
    ) -> Result<Vec<Counter>, Error> {
        let keys: Vec<CounterKey> = scopes.iter().map(|s| s.key.clone()).collect();
        let mut read = read;
        for _ in 0..SWAP_ATTEMPTS {
            let now = self.now();
            let applied = prepare(read.clone());
            let wait = scopes
                .iter()
                .zip(&applied)
                .filter_map(|(scope, counter)| {
                    counter.and_then(|counter| scope.rule.refusal(&counter, now))
                })
                .max();
            if let Some(wait) = wait {
                return Err(Error::Throttled {
                    wait_seconds: wait.max(1) as u64,
                });
            }
            let counted: Vec<Option<CounterWrite>> = scopes
                .iter()
                .zip(&applied)
                .map(|(scope, counter)| {
                    counter.map(|counter| {
                        let counter = scope.rule.after_attempt(&counter, now);
                        CounterWrite {
                            key: scope.key.clone(),
                            // A known IP's record lives as long as it is known.
                            expires_at: scope.expires_at.max(counter.known_until),
                            counter,
                            conditional: true,
                        }
                    })
                })
                .collect();
            let writes: Vec<CounterWrite> = counted.iter().flatten().cloned().collect();
            if self.store.swap_counters(&writes, &Effects::none()).await? {
                return Ok(counted
                    .into_iter()
                    .zip(read)
                    .map(|(written, read)| written.map_or(read, |w| w.counter))
                    .collect());
            }
            read = self.store.counters(&keys, now).await?;
        }
        // Contention this heavy on one counter is itself a flood.
        Err(Error::Throttled { wait_seconds: 1 })
    }

    /// Counts one attempt in a single scope, reading its counter first.
    pub async fn count_one(&self, scope: &Scope) -> Result<Counter, Error> {
        let read = self
            .store
            .counters(std::slice::from_ref(&scope.key), self.now())
            .await?;
        let every = |read: Vec<Counter>| read.into_iter().map(Some).collect();
        let mut counted = self.count_attempt(&[scope], read, &every).await?;
        Ok(counted.remove(0))
    }

    /// A successful login: its address + IP record becomes a known IP's (exempt from the
    /// address-wide scope for `LOGIN_KNOWN_IP_DAYS`), the address record is cleared, and the
    /// IP scope gets its attempt back (it counts failures, not attempts). `counted` is what
    /// [`Self::count_attempt`] answered for the scopes in [`LoginScopes::keys`] order.
    pub async fn login_succeeded(
        &self,
        scopes: &LoginScopes,
        counted: &[Counter],
        epoch: i64,
        effects: &Effects,
    ) -> Result<(), Error> {
        let limits = &self.settings.limits;
        let now = self.now();
        let known_until = now + limits.login_known_ip_secs;
        let [address_ip, address, ip] = [counted[0], counted[1], counted[2]];
        let writes = vec![
            CounterWrite {
                key: scopes.address_ip.key.clone(),
                counter: Counter {
                    known_until,
                    epoch,
                    version: address_ip.version + 1,
                    ..Counter::default()
                },
                expires_at: known_until,
                conditional: false,
            },
            CounterWrite {
                key: scopes.address.key.clone(),
                counter: Counter {
                    version: address.version + 1,
                    ..Counter::default()
                },
                expires_at: now + limits.login_record_secs,
                conditional: false,
            },
        ];
        let mut give_back = writes.clone();
        give_back.push(CounterWrite {
            key: scopes.ip.key.clone(),
            counter: Counter {
                n: ip.n.saturating_sub(1),
                version: ip.version + 1,
                ..ip
            },
            expires_at: scopes.ip.expires_at,
            conditional: true,
        });
        // If another attempt from this IP counted since, it keeps this one too: erring on the
        // side of the limit costs one attempt, never lets one more through.
        if !self.store.swap_counters(&give_back, effects).await? {
            self.store.swap_counters(&writes, effects).await?;
        }
        Ok(())
    }

    /// The `current_password` scope of a user (password change, delete).
    pub fn password_proof_scope(&self, user: UserId) -> Scope {
        let limits = &self.settings.limits;
        Scope {
            key: CounterKey::PasswordProof { user },
            rule: Rule::Backoff {
                free: limits.password_proof_free,
                cap_secs: limits.backoff_cap_secs,
            },
            expires_at: self.now() + limits.login_record_secs,
        }
    }

    /// Sign-up attempts of one IP this hour.
    pub fn sign_up_scope(&self, client: ClientIp) -> Scope {
        let window = window_start(self.now(), HOUR);
        Scope {
            key: CounterKey::SignUpIp {
                ip: client.key(),
                window,
            },
            rule: Rule::Window {
                free: self.settings.limits.signups_per_ip_per_hour,
                ends_at: window + HOUR,
            },
            expires_at: window + HOUR,
        }
    }

    /// Reset requests of one IP this hour.
    pub fn reset_request_scope(&self, client: ClientIp) -> Scope {
        let window = window_start(self.now(), HOUR);
        Scope {
            key: CounterKey::ResetIp {
                ip: client.key(),
                window,
            },
            rule: Rule::Window {
                free: self.settings.limits.reset_requests_per_ip_per_hour,
                ends_at: window + HOUR,
            },
            expires_at: window + HOUR,
        }
    }

    /// Reset mails to one address this day (past them: 204, nothing sent).
    pub fn reset_mail_scope(&self, email_norm: &str) -> Scope {
        let window = window_start(self.now(), DAY);
        Scope {
            key: CounterKey::ResetMails {
                email_norm: email_norm.to_owned(),
                window,
            },
            rule: Rule::Window {
                free: self.settings.limits.reset_mails_per_address_per_day,
                ends_at: window + DAY,
            },
            expires_at: window + DAY,
        }
    }
}
