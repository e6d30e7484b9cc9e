//! `import-django`: a Django `dumpdata accounts otp_totp otp_static` JSON array, streamed.
//!
//! The file is read twice, each time record by record (a reader thread parses, a bounded channel
//! hands records over, so memory does not grow with the file):
//! 1. two-factor records: TOTP devices by user, emergency-code devices by user, and their
//!    unused codes, hashed at once under the emergency-code key (dumpdata writes devices before
//!    their tokens; a token seen before its device is held until the device comes);
//! 2. users, joined with what pass 1 kept, written in batches through `Store::import_users`.
//!
//! Memory is bounded by the two-factor side (about 300 bytes per two-factor user), not by the
//! number of users. Nothing secret is printed: the report names user ids and reasons only.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufReader, Write};
use std::path::Path;
use std::time::Instant;

use auth::domain::email::Email;
use auth::domain::records::{Failures, StaticCodes, TotpDevice, User, UserId};
use auth::domain::totp;
use auth::service::{random_id, Service};
use auth::store::Imported;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::AdminResult;

pub struct Options {
    pub dry_run: bool,
    /// Users per `import_users` call.
    pub batch: usize,
    /// Draw a progress bar (only ever on a terminal).
    pub progress: bool,
}

/// One dumpdata record; `fields` is interpreted by model.
#[derive(Deserialize)]
struct Record {
    model: String,
    pk: Value,
    #[serde(default)]
    fields: Map<String, Value>,
}

/// The closing report: counts and reasons, user ids only.
#[derive(Debug, Default)]
pub struct Report {
    pub dry_run: bool,
    pub users_seen: u64,
    pub imported: u64,
    pub imported_disabled: u64,
    pub imported_totp: u64,
    pub imported_codes: u64,
    /// Reason -> (count, first few ids).
    pub skipped: BTreeMap<String, (u64, Vec<String>)>,
    pub refused: BTreeMap<String, (u64, Vec<String>)>,
    /// Records that are not users but were left out (devices, codes), with reasons.
    pub notes: BTreeMap<String, (u64, Vec<String>)>,
    pub seconds: f64,
    pub error: Option<String>,
}

const EXAMPLES: usize = 10;

fn note(map: &mut BTreeMap<String, (u64, Vec<String>)>, reason: &str, id: impl ToString) {
    let entry = map.entry(reason.to_owned()).or_default();
    entry.0 += 1;
    if entry.1.len() < EXAMPLES {
        entry.1.push(id.to_string());
    }
}

impl Report {
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    pub fn refused_count(&self) -> u64 {
        self.refused.values().map(|(n, _)| n).sum()
    }

    pub fn skipped_count(&self) -> u64 {
        self.skipped.values().map(|(n, _)| n).sum()
    }

    pub fn write(&self, out: &mut (dyn Write + Send)) -> std::io::Result<()> {
        let mode = if self.dry_run {
            " (dry run: nothing written)"
        } else {
            ""
        };
        writeln!(out, "import-django{mode}")?;
        writeln!(out, "users in file: {}", self.users_seen)?;
        let rate = self.users_seen as f64 / self.seconds.max(1e-9);
        writeln!(
            out,
            "imported: {} (disabled: {}, with TOTP device: {}, with emergency codes: {})",
            self.imported, self.imported_disabled, self.imported_totp, self.imported_codes
        )?;
        writeln!(out, "skipped: {}", self.skipped_count())?;
        for (reason, (n, ids)) in &self.skipped {
            writeln!(out, "  {n} {reason} (ids: {})", ids.join(", "))?;
        }
        writeln!(out, "refused: {}", self.refused_count())?;
        for (reason, (n, ids)) in &self.refused {
            writeln!(out, "  {n} {reason} (ids: {})", ids.join(", "))?;
        }
        if !self.notes.is_empty() {
            writeln!(out, "two-factor records left out:")?;
            for (reason, (n, ids)) in &self.notes {
                writeln!(out, "  {n} {reason} (record pks: {})", ids.join(", "))?;
            }
        }
        writeln!(out, "time: {:.2} s ({rate:.0} users/s)", self.seconds)?;
        if let Some(error) = &self.error {
            writeln!(out, "STOPPED: {error}")?;
        }
        Ok(())
    }
}

/// Streams the records of a dumpdata file into `tx` from a blocking thread.
fn stream(path: &Path) -> tokio::sync::mpsc::Receiver<Result<Record, String>> {
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        use serde::de::{Deserializer, SeqAccess, Visitor};
        struct Each<'a>(&'a tokio::sync::mpsc::Sender<Result<Record, String>>);
        impl<'de> Visitor<'de> for Each<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a dumpdata JSON array")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                while let Some(record) = seq.next_element::<Record>()? {
                    if self.0.blocking_send(Ok(record)).is_err() {
                        break; // the reader stopped listening
                    }
                }
                Ok(())
            }
        }
        let result = std::fs::File::open(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
            .and_then(|file| {
                let mut de = serde_json::Deserializer::from_reader(BufReader::new(file));
                de.deserialize_seq(Each(&tx))
                    .map_err(|e| format!("{} is not a dumpdata JSON array: {e}", path.display()))
            });
        if let Err(error) = result {
            let _ = tx.blocking_send(Err(error));
        }
    });
    rx
}

/// A TOTP device from pass 1.
struct DjangoTotp {
    pk: String,
    /// The raw secret; wiped when dropped is not promised (it never leaves this process).
    key: Vec<u8>,
    confirmed: bool,
    last_t: i64,
    drift: i64,
}

#[derive(Default)]
struct TwoFactor {
    totp: HashMap<u64, DjangoTotp>,
    /// Emergency-code device pk -> user id.
    static_devices: HashMap<u64, u64>,
    /// User id -> (first device pk, hashes of unused codes).
    codes: HashMap<u64, (u64, Vec<String>)>,
    /// Codes whose device was not seen yet, by device pk (hashed once it is).
    pending_codes: HashMap<u64, Vec<String>>,
    user_records: u64,
}

fn pk_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .filter(|id| *id > 0)
}

fn field_u64(fields: &Map<String, Value>, name: &str) -> Option<u64> {
    fields.get(name).and_then(pk_u64)
}

fn field_i64(fields: &Map<String, Value>, name: &str) -> Option<i64> {
    fields.get(name).and_then(Value::as_i64)
}

fn hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

async fn pass_one(service: &Service, path: &Path, report: &mut Report) -> AdminResult<TwoFactor> {
    let mut side = TwoFactor::default();
    let mut records = stream(path);
    while let Some(record) = records.recv().await {
        let record = record?;
        let pk = record.pk.to_string();
        let f = &record.fields;
        match record.model.as_str() {
            "accounts.user" => side.user_records += 1,
            "otp_totp.totpdevice" => {
                let Some(user) = field_u64(f, "user") else {
                    note(&mut report.notes, "TOTP device without a user", &pk);
                    continue;
                };
                let supported = field_i64(f, "step").unwrap_or(30) == totp::STEP_SECS
                    && field_i64(f, "digits").unwrap_or(6) == totp::DIGITS as i64
                    && field_i64(f, "t0").unwrap_or(0) == 0;
                let key = f.get("key").and_then(Value::as_str).and_then(hex);
                let (Some(key), true) = (key.filter(|k| !k.is_empty()), supported) else {
                    // The user is refused in pass 2: importing them without it would silently
                    // drop their second factor.
                    side.totp.insert(
                        user,
                        DjangoTotp {
                            pk,
                            key: Vec::new(),
                            confirmed: true,
                            last_t: 0,
                            drift: 0,
                        },
                    );
                    continue;
                };
                let device = DjangoTotp {
                    pk,
                    key,
                    confirmed: f.get("confirmed").and_then(Value::as_bool).unwrap_or(false),
                    last_t: field_i64(f, "last_t").unwrap_or(-1),
                    drift: field_i64(f, "drift")
                        .unwrap_or(0)
                        .clamp(-totp::MAX_DRIFT, totp::MAX_DRIFT),
                };
                // One device per user here: a confirmed one wins over an unconfirmed one.
                match side.totp.get(&user) {
                    Some(kept) if kept.confirmed && !device.confirmed => {
                        note(
                            &mut report.notes,
                            "second TOTP device of a user (kept the confirmed one)",
                            &device.pk,
                        );
                    }
                    Some(kept) => {
                        note(
                            &mut report.notes,
                            "second TOTP device of a user (kept the later one)",
                            &kept.pk,
                        );
                        side.totp.insert(user, device);
                    }
                    None => {
                        side.totp.insert(user, device);
                    }
                }
            }
            "otp_static.staticdevice" => {
                let (Some(device), Some(user)) = (pk_u64(&record.pk), field_u64(f, "user")) else {
                    note(
                        &mut report.notes,
                        "emergency-code device without a user",
                        &pk,
                    );
                    continue;
                };
                side.static_devices.insert(device, user);
                if let Some(codes) = side.pending_codes.remove(&device) {
                    for code in codes {
                        add_code(service, &mut side, device, user, &code);
                    }
                }
            }
            "otp_static.statictoken" => {
                let (Some(device), Some(code)) = (
                    field_u64(f, "device"),
                    f.get("token").and_then(Value::as_str),
                ) else {
                    note(&mut report.notes, "emergency code without a device", &pk);
                    continue;
                };
                if !totp::is_emergency_code_shape(code) {
                    // The API only accepts [a-z2-7]{8}: such a code could never be used.
                    note(
                        &mut report.notes,
                        "emergency code not of 8 [a-z2-7] characters",
                        &pk,
                    );
                    continue;
                }
                match side.static_devices.get(&device).copied() {
                    Some(user) => add_code(service, &mut side, device, user, code),
                    None => side
                        .pending_codes
                        .entry(device)
                        .or_default()
                        .push(code.to_owned()),
                }
            }
            _ => note(&mut report.notes, "record of another model", &record.model),
        }
    }
    for (device, codes) in side.pending_codes.drain() {
        for _ in codes {
            note(
                &mut report.notes,
                "emergency code of an unknown device",
                device,
            );
        }
    }
    Ok(side)
}

fn add_code(service: &Service, side: &mut TwoFactor, device: u64, user: u64, code: &str) {
    let hash = service.emergency_code_hash(UserId(user), code);
    side.codes
        .entry(user)
        .or_insert((device, Vec::new()))
        .1
        .push(hash);
}

/// Seconds since the epoch of a Django datetime (`2026-11-29T19:57:16.024Z`, `+00:00`, or no
/// zone, read as UTC as Django's `USE_TZ` dumps are).
pub fn parse_datetime(text: &str) -> Option<i64> {
    let (date, time) = text.split_once(['T', ' '])?;
    let mut d = date.split('-');
    let (y, m, day): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(at) => (&time[..at], &time[at..]),
        None => (time, ""),
    };
    let mut c = clock.split(':');
    let (h, min): (i64, i64) = (c.next()?.parse().ok()?, c.next()?.parse().ok()?);
    let sec: i64 = c
        .next()
        .map(|s| s.split('.').next().unwrap_or("0").parse())
        .transpose()
        .ok()?
        .unwrap_or(0);
    let offset_secs = match offset {
        "" | "Z" => 0,
        _ => {
            let sign = if offset.starts_with('-') { -1 } else { 1 };
            let (oh, om) = offset[1..].split_once(':').unwrap_or((&offset[1..], "0"));
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) || h > 23 || min > 59 || sec > 60 {
        return None;
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + min * 60 + sec - offset_secs)
}

/// A user record of the file as the store will hold it, or why it is refused.
fn convert(
    service: &Service,
    record: &Record,
    side: &mut TwoFactor,
    report: &mut Report,
) -> Result<User, (&'static str, String)> {
    let pk = record.pk.to_string();
    let f = &record.fields;
    let id = pk_u64(&record.pk).ok_or(("id is not a positive integer", pk.clone()))?;
    let email = f
        .get("email")
        .and_then(Value::as_str)
        .map(str::trim)
        .and_then(Email::parse)
        .ok_or(("bad email address", pk.clone()))?;
    let password_hash = f.get("password").and_then(Value::as_str).unwrap_or("");
    let parts: Vec<&str> = password_hash.split('$').collect();
    if parts.len() != 4 || parts[0] != "pbkdf2_sha256" || parts[1].parse::<u32>().is_err() {
        return Err(("unknown password hash scheme (not pbkdf2_sha256)", pk));
    }
    let created_at = f
        .get("date_joined")
        .and_then(Value::as_str)
        .and_then(parse_datetime)
        .ok_or(("date_joined is not a date", pk.clone()))?;
    let last_login = match f.get("last_login") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_str()
                .and_then(parse_datetime)
                .ok_or(("last_login is not a date", pk.clone()))?,
        ),
    };
    let mut user = User {
        id: UserId(id),
        email: email.as_str().to_owned(),
        email_norm: email.normalized().to_owned(),
        password_hash: password_hash.to_owned(),
        token_gen: random_id(),
        last_login,
        created_at,
        totp: None,
        static_codes: None,
        disabled: !f.get("is_active").and_then(Value::as_bool).unwrap_or(true),
        pending: false,
        recovery: Default::default(),
        reset_at: None,
        sessions: Default::default(),
    };
    if let Some(device) = side.totp.remove(&id) {
        if device.key.is_empty() {
            return Err((
                "TOTP device with an unsupported key, step, digits or t0",
                pk,
            ));
        }
        let device_id = format!("otp_totp.totpdevice/django-{}", device.pk);
        user.totp = Some(TotpDevice {
            secret: service.seal_totp_secret(&user, &device_id, &device.key),
            device_id,
            confirmed: device.confirmed,
            last_step: device.last_t,
            drift: device.drift,
            failures: Failures::default(),
        });
    }
    if let Some((device, hashes)) = side.codes.remove(&id) {
        if user.confirmed_totp().is_some() {
            user.static_codes = Some(StaticCodes {
                device_id: format!("otp_static.staticdevice/django-{device}"),
                hashes,
                failures: Failures::default(),
            });
        } else {
            // Codes only ever stand beside a confirmed TOTP device here (SPEC §7 FIX).
            note(
                &mut report.notes,
                "emergency codes of a user without a confirmed TOTP device",
                id,
            );
        }
    }
    Ok(user)
}

pub async fn import(service: &Service, path: &Path, options: Options) -> AdminResult<Report> {
    let started = Instant::now();
    let mut report = Report {
        dry_run: options.dry_run,
        ..Report::default()
    };
    let mut side = pass_one(service, path, &mut report).await?;
    let bar = match options.progress {
        true => indicatif::ProgressBar::new(side.user_records),
        false => indicatif::ProgressBar::hidden(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} users {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // Dry run only: addresses seen in this file (no store writes to enforce uniqueness).
    let mut seen = std::collections::HashSet::new();
    let mut batch: Vec<User> = Vec::with_capacity(options.batch);
    let mut records = stream(path);
    while let Some(record) = records.recv().await {
        let record = record?;
        if record.model != "accounts.user" {
            continue;
        }
        report.users_seen += 1;
        bar.inc(1);
        match convert(service, &record, &mut side, &mut report) {
            Err((reason, id)) => note(&mut report.refused, reason, id),
            Ok(user) if options.dry_run => {
                let outcome = if !seen.insert(user.email_norm.clone()) {
                    Imported::EmailTaken
                } else if service.store.user(user.id).await?.is_some() {
                    Imported::IdTaken
                } else if service
                    .store
                    .user_by_email(&user.email_norm)
                    .await?
                    .is_some()
                {
                    Imported::EmailTaken
                } else {
                    Imported::Inserted
                };
                tally(&mut report, &user, outcome);
            }
            Ok(user) => {
                batch.push(user);
                if batch.len() >= options.batch {
                    if let Err(err) = flush(service, &mut batch, &mut report).await {
                        report.error = Some(err.to_string());
                        break;
                    }
                }
            }
        }
    }
    if report.error.is_none() {
        if let Err(err) = flush(service, &mut batch, &mut report).await {
            report.error = Some(err.to_string());
        }
    }
    bar.finish_and_clear();
    for user in side.totp.keys() {
        note(
            &mut report.notes,
            "TOTP device of a user not in the file",
            user,
        );
    }
    for user in side.codes.keys() {
        note(
            &mut report.notes,
            "emergency codes of a user not in the file",
            user,
        );
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

async fn flush(service: &Service, batch: &mut Vec<User>, report: &mut Report) -> AdminResult<()> {
    if batch.is_empty() {
        return Ok(());
    }
    let users = std::mem::take(batch);
    let outcomes = service.store.import_users(users.clone()).await?;
    for (user, outcome) in users.iter().zip(outcomes) {
        tally(report, user, outcome);
    }
    Ok(())
}

fn tally(report: &mut Report, user: &User, outcome: Imported) {
    match outcome {
        Imported::Inserted => {
            report.imported += 1;
            report.imported_disabled += u64::from(user.disabled);
            report.imported_totp += u64::from(user.totp.is_some());
            report.imported_codes += u64::from(user.static_codes.is_some());
        }
        Imported::IdTaken => note(
            &mut report.skipped,
            "already present (a user with this id exists)",
            user.id,
        ),
        Imported::EmailTaken => note(
            &mut report.refused,
            "duplicate address (another account has it, case-insensitively)",
            user.id,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn django_datetimes_parse_to_epoch_seconds() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_datetime("2026-11-29T19:57:16.024Z"),
            Some(1_795_982_236)
        );
        assert_eq!(
            parse_datetime("2026-11-29T20:57:16+01:00"),
            Some(1_795_982_236)
        );
        assert_eq!(parse_datetime("2000-02-29 12:00:00"), Some(951_825_600));
        assert_eq!(parse_datetime("yesterday"), None);
    }

    #[test]
    fn hex_keys_decode() {
        assert_eq!(hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(hex("0"), None);
        assert_eq!(hex("zz"), None);
    }
}
